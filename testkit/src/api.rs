//! Requests to `generate` as Lambda hands them over, and its answers read back.

use lambda_http::{Body, Request, Response};
use serde_json::Value;
use uuid::Uuid;

use crate::events::http_event;

/// The header row of an import, naming every field of a quote.
pub const CSV_HEADER: &str = "coverage_type,coverage_level,estimated_amount,user_age,annual_revenue,num_employees,founded_at\n";

/// An API Gateway HTTP API (v2) event, built the way Lambda delivers it.
pub fn request(
    method: &str,
    path_and_query: &str,
    user: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Request {
    let event = http_event(method, path_and_query, user, content_type, body);
    lambda_http::request::from_str(&event).expect("a valid API Gateway v2 event")
}

/// A `GET` by `user`, with no body.
pub fn get(path_and_query: &str, user: &str) -> Request {
    request("GET", path_and_query, Some(user), None, "")
}

pub fn post_json(path: &str, user: &str, body: &Value) -> Request {
    request(
        "POST",
        path,
        Some(user),
        Some("application/json"),
        &body.to_string(),
    )
}

pub fn body_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).expect("a JSON body")
}

/// The quote ids a write's 202 answers, in its order.
pub fn ids_of(body: &Value) -> Vec<Uuid> {
    body["ids"]
        .as_array()
        .expect("a write's answer names its ids")
        .iter()
        .map(|v| v.as_str().and_then(|id| id.parse().ok()).expect("a UUID"))
        .collect()
}
