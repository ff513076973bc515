//! The `generate` function: the HTTP API of the quote pipeline.
//!
//! Writes validate, become quotes, go to Postgres in one statement and onto the queue, and
//! answer 202 with the new ids. Reads show a caller its own quotes only: another user's id is
//! a 404, exactly like an id that does not exist.

pub mod error;
pub mod identity;

use std::time::{Duration, Instant};

use chrono::Utc;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use quote_pipeline::generator::{self, GenerateParams};
use quote_pipeline::import;
use quote_pipeline::metrics::{self, Count, Metrics, Time};
use quote_pipeline::queue::QuoteQueue;
use quote_pipeline::quote::{self, Quote, QuoteInput, QuoteStatus};
use quote_pipeline::store::{Cursor, IdempotencyRecord, Inserted, ListFilter, QuoteStore};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

/// The largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// The largest CSV file accepted.
pub const MAX_CSV_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The function's clients, built once per container.
pub struct App<S, Q> {
    pub store: S,
    pub queue: Q,
    /// How long an idempotency key's answer is kept.
    pub idempotency_ttl: Duration,
}

#[derive(Debug, Serialize)]
struct Accepted {
    ids: Vec<Uuid>,
    count: usize,
    status: QuoteStatus,
}

#[derive(Debug, Serialize)]
struct QuotePage {
    quotes: Vec<Quote>,
    next_cursor: Option<String>,
}

/// Handles one API request; every outcome, error or not, is an HTTP response. A write's
/// metrics go to the log in Embedded Metric Format.
pub async fn handle<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    request: Request,
) -> Response<Body> {
    let mut metrics = Metrics::for_function("generate");
    let cold_start = metrics::cold_start();
    metrics.cold_start(cold_start);
    let request_id = request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let response = match route(app, &request, &mut metrics).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::info!(
        cold_start,
        method = %request.method(),
        path = request.raw_http_path(),
        status = response.status().as_u16(),
        "request handled"
    );
    if !metrics.is_empty() {
        metrics.property("requestId", request_id);
        metrics.flush();
    }
    response
}

async fn route<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    request: &Request,
    metrics: &mut Metrics,
) -> Result<Response<Body>, ApiError> {
    let path = request.raw_http_path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method();
    let allowed = match segments.as_slice() {
        ["quotes"] => &[Method::GET, Method::POST][..],
        ["quotes", "generate-batch" | "import"] => &[Method::POST][..],
        ["quotes", _] => &[Method::GET][..],
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            ));
        }
    };
    if !allowed.contains(method) {
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        );
        let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        error.headers.push((header::ALLOW, allow.join(", ")));
        return Err(error);
    }
    let owner = identity::caller(request).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the request carries no user identity",
        )
    })?;
    let write = Write {
        owner: &owner,
        key: idempotency_key(request)?,
        request,
        metrics,
    };
    match (segments.as_slice(), method) {
        (["quotes"], &Method::POST) => {
            let body = json_object(request)?;
            let input = quote::validate_json(&body, Utc::now().date_naive())
                .map_err(ApiError::invalid_fields)?;
            create(app, write, vec![input]).await
        }
        (["quotes", "generate-batch"], _) => {
            let body = json_object(request)?;
            let params = GenerateParams::from_json(&body).map_err(ApiError::invalid_fields)?;
            create(app, write, generator::generate(&params)).await
        }
        (["quotes", "import"], _) => {
            let data = body_bytes(request, "text/csv", MAX_CSV_BYTES)?;
            let inputs = import::parse_csv(data, Utc::now().date_naive())
                .map_err(ApiError::invalid_lines)?;
            create(app, write, inputs).await
        }
        (["quotes"], _) => list(app, &owner, request).await,
        (["quotes", id], _) => {
            let id = Uuid::try_parse(id).map_err(|_| ApiError::not_found())?;
            let quote = app.store.get(&owner, id).await.map_err(ApiError::store)?;
            Ok(json(
                StatusCode::OK,
                &quote.ok_or_else(ApiError::not_found)?,
            ))
        }
        _ => unreachable!("every allowed route is matched above"),
    }
}

/// A write request: who sends it, and its idempotency key if it has one.
struct Write<'r> {
    owner: &'r str,
    key: Option<String>,
    request: &'r Request,
    metrics: &'r mut Metrics,
}

/// The `Idempotency-Key` header, if present: 1 to 255 visible ASCII characters.
fn idempotency_key(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::bad_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// A digest of what makes two requests the same: route, content type and body.
fn request_hash(request: &Request) -> [u8; 32] {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [
        request.method().as_str().as_bytes(),
        request.raw_http_path().as_bytes(),
        content_type,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(request.body().as_ref());
    hash.finalize().into()
}

/// Writes the quotes in one statement, then enqueues their ids. A queue failure after the
/// write is a 503 that names the saved ids: they stay `pending_ml`, to be enqueued again
/// later, so the client must not send them twice. With an idempotency key, a repeat of the
/// same request answers the first 202 (same ids) and writes nothing.
async fn create<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    write: Write<'_>,
    inputs: Vec<QuoteInput>,
) -> Result<Response<Body>, ApiError> {
    let now = Utc::now();
    let quotes: Vec<Quote> = inputs
        .into_iter()
        .map(|input| Quote::new_pending(write.owner, input, now))
        .collect();
    let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
    let accepted = serde_json::to_string(&Accepted {
        ids: ids.clone(),
        count: ids.len(),
        status: QuoteStatus::PendingMl,
    })
    .expect("an answer always serializes");
    let record = write.key.map(|key| IdempotencyRecord {
        owner: write.owner.to_owned(),
        key,
        request_hash: request_hash(write.request),
        status_code: StatusCode::ACCEPTED.as_u16(),
        response_body: accepted.clone(),
        ttl: app.idempotency_ttl,
    });
    let started = Instant::now();
    let inserted = app.store.insert(&quotes, record.as_ref()).await;
    write.metrics.time(Time::DatabaseTime, started.elapsed());
    match inserted.map_err(ApiError::store)? {
        Inserted::New => {}
        Inserted::Replay {
            status_code,
            response_body,
        } => {
            let status = StatusCode::from_u16(status_code).unwrap_or(StatusCode::ACCEPTED);
            let mut response = json_text(status, response_body);
            response.headers_mut().insert(
                "idempotent-replayed",
                "true".parse().expect("a valid header"),
            );
            return Ok(response);
        }
        Inserted::KeyReused => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key",
            ));
        }
    }
    write.metrics.count(Count::QuotesCreated, ids.len() as u64);
    let started = Instant::now();
    let enqueued = app.queue.enqueue(&ids).await;
    write.metrics.time(Time::QueueTime, started.elapsed());
    if let Err(e) = enqueued {
        tracing::error!(error = %e, quotes = ids.len(), "enqueue failed after the write");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the quotes were saved as pending_ml but could not be queued for scoring; \
             they will be queued again later, so do not send them again",
        );
        error.ids = Some(ids);
        return Err(error);
    }
    write.metrics.count(Count::QuotesEnqueued, ids.len() as u64);
    tracing::info!(quotes = ids.len(), "quotes created");
    Ok(json_text(StatusCode::ACCEPTED, accepted))
}

async fn list<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    owner: &str,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let mut filter = ListFilter {
        limit: DEFAULT_PAGE_SIZE,
        ..ListFilter::default()
    };
    let query = request.query_string_parameters();
    for (name, value) in query.iter() {
        match name {
            "status" => {
                filter.status = Some(value.parse().map_err(|m| ApiError::bad_field(name, m))?)
            }
            "coverage_type" => {
                filter.coverage_type =
                    Some(value.parse().map_err(|m| ApiError::bad_field(name, m))?)
            }
            "limit" => {
                let max = quote_pipeline::store::MAX_PAGE_SIZE;
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_field(name, format!("must be a whole number from 1 to {max}"))
                    })?;
            }
            "cursor" => {
                filter.after = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::bad_field(name, "is not a cursor this API returned")
                })?)
            }
            _ => {
                return Err(ApiError::bad_field(
                    name,
                    "is not a query parameter of this route",
                ));
            }
        }
    }
    let page = app
        .store
        .list(owner, &filter)
        .await
        .map_err(ApiError::store)?;
    Ok(json(
        StatusCode::OK,
        &QuotePage {
            quotes: page.quotes,
            next_cursor: page.next.map(|c| c.encode()),
        },
    ))
}

/// The body, if its content type is `expected` and it is within `limit` bytes.
fn body_bytes<'r>(
    request: &'r Request,
    expected: &str,
    limit: usize,
) -> Result<&'r [u8], ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(expected) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be {expected}, not {:?}", content_type),
        ));
    }
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is {} bytes; the limit is {limit}", bytes.len()),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_body",
            "a request body is required",
        ));
    }
    Ok(bytes)
}

fn json_object(request: &Request) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = body_bytes(request, "application/json", MAX_JSON_BYTES)?;
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_text(
        status,
        serde_json::to_string(value).expect("a response always serializes"),
    )
}

fn json_text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .expect("a valid response")
}
