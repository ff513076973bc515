//! The API's one error type and its one shape:
//! `{"code", "message", "details": [{"field"?, "line"?, "message"}], "ids"?, "batch_id"?}`.
//!
//! Every code the API answers is an [`ErrorCode`], and each code's HTTP status is written once,
//! in [`ErrorCode::status`].

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use quote_pipeline::import::LineError;
use quote_pipeline::quote::FieldError;
use quote_pipeline::store::StoreError;
use serde::Serialize;

/// The `code` of an error answer: a contract with clients (`openapi.yaml`, the README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No body where one is required.
    MissingBody,
    /// The body is not a JSON object.
    InvalidJson,
    /// A bad query parameter or header.
    InvalidParameter,
    /// No user identity.
    Unauthorized,
    /// No such route, or no such quote for this caller.
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The body is over its limit.
    BodyTooLarge,
    /// The body is not of the route's content type.
    UnsupportedMediaType,
    /// Invalid fields, every one listed.
    ValidationFailed,
    /// Invalid CSV lines, every one listed.
    InvalidCsv,
    /// The idempotency key was used with another request.
    IdempotencyKeyReused,
    /// An explanation asked of a quote that has no price (pending or failed).
    NotScored,
    /// An explanation asked of a quote priced by another model than the one loaded.
    ModelVersionMismatch,
    /// The model that explains prices cannot be loaded.
    ExplanationsUnavailable,
    /// The database is unreachable; nothing was written.
    DatabaseUnavailable,
    /// The database did not confirm the write: it may or may not have been saved.
    WriteOutcomeUnknown,
    /// The quotes were saved but not queued.
    QueueUnavailable,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    /// The HTTP status each code is answered with.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::MissingBody | ErrorCode::InvalidJson | ErrorCode::InvalidParameter => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::NotScored | ErrorCode::ModelVersionMismatch => StatusCode::CONFLICT,
            ErrorCode::ValidationFailed
            | ErrorCode::InvalidCsv
            | ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::DatabaseUnavailable
            | ErrorCode::WriteOutcomeUnknown
            | ErrorCode::QueueUnavailable
            | ErrorCode::ExplanationsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

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
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
    /// What was done before the failure, for a client to act on (the saved quotes' ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<uuid::Uuid>>,
    /// The batch of those saved quotes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<uuid::Uuid>,
    /// Headers the answer needs, such as `Retry-After` or `Allow`.
    #[serde(skip)]
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
            ids: None,
            batch_id: None,
            headers: Vec::new(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A 400 naming one field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut error = Self::new(ErrorCode::InvalidParameter, format!("{field} {message}"));
        error.details.push(Detail {
            field: Some(field.into()),
            line: None,
            message,
        });
        error
    }

    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let mut error = Self::new(
            ErrorCode::ValidationFailed,
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
            ErrorCode::InvalidCsv,
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
        Self::new(ErrorCode::NotFound, "no such quote")
    }

    pub fn batch_not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such batch")
    }

    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database unavailable");
                let mut error = Self::new(
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable; nothing was written, try again shortly",
                );
                error.headers.push((header::RETRY_AFTER, "5".into()));
                error
            }
            StoreError::OutcomeUnknown(_) => {
                tracing::error!(error = %e, "write outcome unknown");
                let mut error = Self::new(
                    ErrorCode::WriteOutcomeUnknown,
                    "the database did not confirm the write: the quotes may or may not have \
                     been saved. Resending with the same Idempotency-Key is safe (it answers \
                     the first outcome); without a key, check GET /quotes before resending",
                );
                error.headers.push((header::RETRY_AFTER, "5".into()));
                error
            }
            StoreError::Other(_) => {
                tracing::error!(error = %e, "database error");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = serde_json::to_string(&self).expect("an error always serializes");
        builder.body(Body::Text(body)).expect("a valid response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_the_snake_case_strings_clients_know() {
        let codes = [
            (ErrorCode::MissingBody, "missing_body", 400),
            (ErrorCode::InvalidJson, "invalid_json", 400),
            (ErrorCode::InvalidParameter, "invalid_parameter", 400),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::MethodNotAllowed, "method_not_allowed", 405),
            (ErrorCode::BodyTooLarge, "body_too_large", 413),
            (
                ErrorCode::UnsupportedMediaType,
                "unsupported_media_type",
                415,
            ),
            (ErrorCode::ValidationFailed, "validation_failed", 422),
            (ErrorCode::InvalidCsv, "invalid_csv", 422),
            (
                ErrorCode::IdempotencyKeyReused,
                "idempotency_key_reused",
                422,
            ),
            (ErrorCode::NotScored, "not_scored", 409),
            (
                ErrorCode::ModelVersionMismatch,
                "model_version_mismatch",
                409,
            ),
            (
                ErrorCode::ExplanationsUnavailable,
                "explanations_unavailable",
                503,
            ),
            (ErrorCode::DatabaseUnavailable, "database_unavailable", 503),
            (ErrorCode::WriteOutcomeUnknown, "write_outcome_unknown", 503),
            (ErrorCode::QueueUnavailable, "queue_unavailable", 503),
            (ErrorCode::Internal, "internal", 500),
        ];
        for (code, text, status) in codes {
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            assert_eq!(code.status().as_u16(), status, "{text}");
        }
    }

    #[test]
    fn an_error_serializes_in_the_one_shape() {
        let mut error = ApiError::bad_field("limit", "must be a whole number from 1 to 100");
        error.headers.push((header::RETRY_AFTER, "5".into()));
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({
                "code": "invalid_parameter",
                "message": "limit must be a whole number from 1 to 100",
                "details": [{"field": "limit", "message": "must be a whole number from 1 to 100"}]
            })
        );
    }
}
