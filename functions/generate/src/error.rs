//! The API's one error shape: `{"code", "message", "details": [{"field"?, "line"?, "message"}]}`.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use quote_pipeline::import::LineError;
use quote_pipeline::quote::FieldError;
use quote_pipeline::store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
    /// What was done before the failure, for a client to act on (the saved quotes' ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<uuid::Uuid>>,
    /// Headers the answer needs, such as `Retry-After` or `Allow`.
    #[serde(skip)]
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            ids: None,
            headers: Vec::new(),
        }
    }

    /// A 400 naming one field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{field} {message}"),
        );
        error.details.push(Detail {
            field: Some(field.into()),
            line: None,
            message,
        });
        error
    }

    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "the request has invalid fields",
        );
        error.details = errors
            .into_iter()
            .map(|e| Detail {
                field: Some(e.field),
                line: None,
                message: e.message,
            })
            .collect();
        error
    }

    pub fn invalid_lines(errors: Vec<LineError>) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_csv",
            "the file has invalid lines; nothing was imported",
        );
        error.details = errors
            .into_iter()
            .map(|e| Detail {
                field: e.field,
                line: Some(e.line),
                message: e.message,
            })
            .collect();
        error
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such quote")
    }

    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database unavailable");
                let mut error = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; nothing was written, try again shortly",
                );
                error.headers.push((header::RETRY_AFTER, "5".into()));
                error
            }
            StoreError::Other(_) => {
                tracing::error!(error = %e, "database error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = serde_json::to_string(&self).expect("an error always serializes");
        builder.body(Body::Text(body)).expect("a valid response")
    }
}
