//! What the API answers: the response bodies, built here and nowhere else.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use quote_pipeline::quote::{Quote, QuoteStatus};
use serde::Serialize;
use uuid::Uuid;

/// The 202 of a write: the new quotes' ids, on their way to scoring.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub ids: Vec<Uuid>,
    pub count: usize,
    pub status: QuoteStatus,
}

impl Accepted {
    pub fn new(ids: &[Uuid]) -> Self {
        Accepted {
            ids: ids.to_vec(),
            count: ids.len(),
            status: QuoteStatus::PendingMl,
        }
    }
}

/// A page of quotes, newest first, and where the next page starts.
#[derive(Debug, Serialize)]
pub struct QuotePage {
    pub quotes: Vec<Quote>,
    pub next_cursor: Option<String>,
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_text(
        status,
        serde_json::to_string(value).expect("a response always serializes"),
    )
}

pub fn json_text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .expect("a valid response")
}
