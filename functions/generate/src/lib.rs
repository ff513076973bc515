//! The `generate` function: the HTTP API of the quote pipeline.
//!
//! Writes validate, become quotes, go to Postgres in one statement and onto the queue, and
//! answer 202 with the new ids. Reads show a caller its own quotes only: another user's id is
//! a 404, exactly like an id that does not exist.
//!
//! - [`routes`]: the route table, and one file per route.
//! - [`write`]: the write routes' call to the pipeline's create step, and its outcome.
//! - [`request`]: bodies, the idempotency key, the request digest.
//! - [`views`]: the response bodies.
//! - [`error`]: the one error type and its codes.
//! - [`explain`]: a scored quote's explanation, from the model embedded beside the binary.
//! - [`identity`]: the caller.

pub mod error;
pub mod explain;
pub mod identity;
pub mod request;
pub mod routes;
pub mod views;
pub mod write;

use std::time::{Duration, Instant};

use lambda_http::{Body, Request, RequestExt, Response};
use quote_pipeline::budget;
use quote_pipeline::metrics::{self, Metrics};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};

use crate::error::{ApiError, ErrorCode};
use crate::routes::{Call, Route};

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
    /// Explanations of scored quotes (`GET /quotes/{id}?explain=true`).
    pub explainer: explain::Explainer,
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
    let response = match dispatch(app, &request, &mut metrics).await {
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

/// Finds the route (404 or 405 first), identifies the caller (401), reads the idempotency key
/// (400), then hands the call to the route.
async fn dispatch<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    request: &Request,
    metrics: &mut Metrics,
) -> Result<Response<Body>, ApiError> {
    let route = Route::parse(request.method(), request.raw_http_path())?;
    let owner = identity::caller(request).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "the request carries no user identity",
        )
    })?;
    // Lambda's deadline; a request handed over without one (a test's) gets the timeout.
    let deadline = request.lambda_context_ref().map_or_else(
        || Instant::now() + budget::GENERATE_TIMEOUT,
        |context| budget::invocation_deadline(context.deadline),
    );
    let call = Call {
        owner: &owner,
        idempotency_key: request::idempotency_key(request)?,
        request,
        metrics,
        deadline,
    };
    match route {
        Route::CreateQuote => routes::create_quote::handle(app, call).await,
        Route::GenerateBatch => routes::generate_batch::handle(app, call).await,
        Route::ImportCsv => routes::import_csv::handle(app, call).await,
        Route::ListQuotes => routes::list_quotes::handle(app, call).await,
        Route::GetQuote(id) => routes::get_quote::handle(app, call, id).await,
        Route::GetBatch(id) => routes::get_batch::handle(app, call, id).await,
    }
}
