//! The write routes' common end: the pipeline's create step, and its outcome as an answer.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use quote_pipeline::budget;
use quote_pipeline::create::{self, Answer, CreateError, Created, Creation, Deadline, Idempotency};
use quote_pipeline::metrics::{Count, Time};
use quote_pipeline::ports::{QuoteQueue, QuoteStore};
use quote_pipeline::quote::QuoteInput;
use uuid::Uuid;

use crate::App;
use crate::error::{ApiError, ErrorCode};
use crate::request::request_hash;
use crate::routes::Call;
use crate::views::{Accepted, json_text};

/// Creates the quotes through the pipeline's create step and maps its outcome: 202 with the
/// batch and its new ids; a replay's kept answer, marked `Idempotent-Replayed`; a 422 for a
/// reused key; a 503 for the database (nothing written, or the write's outcome unknown), or a
/// 503 naming the saved ids and their batch when they could not be queued.
pub async fn create_quotes<S: QuoteStore, Q: QuoteQueue>(
    app: &App<S, Q>,
    call: Call<'_>,
    inputs: Vec<QuoteInput>,
) -> Result<Response<Body>, ApiError> {
    let idempotency = call.idempotency_key.map(|key| Idempotency {
        key,
        request_hash: request_hash(call.request),
        ttl: app.idempotency_ttl,
    });
    let Creation { outcome, report } = create::create(
        &app.store,
        &app.queue,
        call.owner,
        inputs,
        idempotency,
        accepted,
        Deadline {
            at: call.deadline,
            budget: budget::CREATE,
        },
    )
    .await;
    let metrics = call.metrics;
    metrics.time(Time::DatabaseTime, report.database_time);
    if let Some(n) = report.created {
        metrics.count(Count::QuotesCreated, n as u64);
    }
    if let Some(elapsed) = report.queue_time {
        metrics.time(Time::QueueTime, elapsed);
    }
    if let Some(n) = report.enqueued {
        metrics.count(Count::QuotesEnqueued, n as u64);
    }
    match outcome {
        Ok(Created::New { answer, .. }) => Ok(kept_answer(answer)),
        Ok(Created::Replayed(answer)) => {
            let mut response = kept_answer(answer);
            response.headers_mut().insert(
                "idempotent-replayed",
                "true".parse().expect("a valid header"),
            );
            Ok(response)
        }
        Err(CreateError::KeyReused) => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request; use a new key",
        )),
        Err(CreateError::Store(e)) => Err(ApiError::store(e)),
        Err(CreateError::NotQueued { batch_id, ids, .. }) => {
            let mut error = ApiError::new(
                ErrorCode::QueueUnavailable,
                "the quotes were saved as pending_ml but could not be queued for scoring; \
                 they will be queued again later, so do not send them again",
            );
            error.ids = Some(ids);
            error.batch_id = Some(batch_id);
            Err(error)
        }
    }
}

/// The 202 for new quotes, also kept for the idempotency key's repeats (so a replay answers
/// the same batch).
fn accepted(batch_id: Uuid, ids: &[Uuid]) -> Answer {
    Answer {
        status_code: StatusCode::ACCEPTED.as_u16(),
        body: serde_json::to_string(&Accepted::new(batch_id, ids))
            .expect("an answer always serializes"),
    }
}

fn kept_answer(answer: Answer) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status_code).unwrap_or(StatusCode::ACCEPTED);
    json_text(status, answer.body)
}
