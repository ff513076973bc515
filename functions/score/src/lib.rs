//! The `score` function: prices the quotes named by a batch of SQS messages.
//!
//! A message that cannot be read fails alone. The quotes of all the others are scored
//! together (one query, one predictor pass, one update), and the answer is an SQS partial
//! batch response naming exactly the messages that did not finish, so only they come back.
//! Once the outcomes are committed, the batches those quotes finished are completed and their
//! `QuoteBatchCompleted` events published (`quote_pipeline::completion`); a batch whose
//! completion did not run (a failure or a crash after the write) is completed by reconcile.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use quote_pipeline::budget;
use quote_pipeline::completion;
use quote_pipeline::events::EventPublisher;
use quote_pipeline::metrics::{self, Count, Metrics, Time};
use quote_pipeline::queue::QuoteMessage;
use quote_pipeline::scoring::{self, Predictor};
use quote_pipeline::store::{BatchStore, QuoteStore};
use uuid::Uuid;

/// EMF takes at most 100 values of one metric in a document.
const MAX_LATENCY_VALUES: usize = 100;

/// The function's clients, built once per container.
pub struct App<S, P, E> {
    pub store: S,
    pub predictor: P,
    /// Where batch completion events go.
    pub events: E,
}

/// Handles one batch and writes its metrics to the log.
pub async fn handle<S: QuoteStore + BatchStore, P: Predictor, E: EventPublisher>(
    app: &App<S, P, E>,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let (response, metrics) = process(app, event).await;
    metrics.flush();
    response
}

/// Handles one batch; returns the partial batch response and the invocation's metrics.
pub async fn process<S: QuoteStore + BatchStore, P: Predictor, E: EventPublisher>(
    app: &App<S, P, E>,
    event: LambdaEvent<SqsEvent>,
) -> (SqsBatchResponse, Metrics) {
    let mut metrics = Metrics::for_function("score");
    let cold_start = metrics::cold_start();
    metrics
        .property("requestId", event.context.request_id.as_str())
        .cold_start(cold_start);
    metrics.count(Count::BatchSize, event.payload.records.len() as u64);
    let deadline = deadline_of(&event.context);
    tracing::debug!(
        budget_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
        "batch received"
    );
    let mut failed: Vec<String> = Vec::new();
    let mut messages: Vec<(String, Vec<Uuid>)> = Vec::new();
    for record in event.payload.records {
        let Some(id) = record.message_id else {
            // Nothing to report a record without an id by; it cannot be retried alone.
            tracing::error!("SQS record without a message id skipped");
            continue;
        };
        match QuoteMessage::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(message) => messages.push((id, message.quote_ids)),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "unreadable message");
                failed.push(id);
            }
        }
    }
    let ids: Vec<Uuid> = messages
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let scored = match scoring::score(&app.store, &app.predictor, &ids, deadline).await {
        Ok(report) => completion::complete(&app.store, &app.events, &report.batches)
            .await
            .map(|completion| (report, completion)),
        Err(e) => Err(e),
    };
    match scored {
        Ok((report, completion)) => {
            metrics
                .count(Count::QuotesScored, report.scored)
                .count(Count::QuotesFailed, report.failed)
                .count(Count::MlEngineErrors, report.call_errors.into())
                .count(
                    Count::MlEnginePermanentErrors,
                    report.permanent_errors.into(),
                )
                .count(Count::BatchesCompleted, completion.completed)
                .count(Count::BatchEventsPublished, completion.published)
                .count(
                    Count::BatchEventPublishFailures,
                    completion.publish_failures,
                )
                .time(Time::DatabaseTime, report.database_time);
            for call in report.call_times.iter().take(MAX_LATENCY_VALUES) {
                metrics.time(Time::MlEngineLatency, *call);
            }
            tracing::info!(
                cold_start,
                messages = messages.len(),
                quotes = ids.len(),
                scored = report.scored,
                failed = report.failed,
                unfinished = report.unfinished.len(),
                "batch scored"
            );
            failed.extend(
                messages
                    .into_iter()
                    .filter(|(_, ids)| ids.iter().any(|id| report.unfinished.contains(id)))
                    .map(|(message_id, _)| message_id),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "scoring or batch completion failed; every message will come back");
            failed.extend(messages.into_iter().map(|(message_id, _)| message_id));
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    (response, metrics)
}

/// When the predictor must be done: the invocation's deadline less the time for the write.
fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    // Lambda sends the deadline as epoch milliseconds; `cargo lambda watch` sends the function's
    // timeout itself, a value no epoch deadline can be (before 2001).
    const EPOCH_2001_MS: u64 = 978_307_200_000;
    let remaining = if context.deadline < EPOCH_2001_MS {
        Duration::from_millis(context.deadline)
    } else {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Duration::from_millis(context.deadline.saturating_sub(now_ms))
    };
    Instant::now() + remaining.saturating_sub(budget::SCORE_WRITE_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(deadline: u64) -> lambda_runtime::Context {
        let mut context = lambda_runtime::Context::default();
        context.deadline = deadline;
        context
    }

    #[test]
    fn the_deadline_keeps_time_back_for_the_write() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let budget =
            deadline_of(&context(now_ms + 10_000)).saturating_duration_since(Instant::now());
        assert!(
            budget > Duration::from_millis(8000) && budget <= Duration::from_millis(8500),
            "{budget:?}"
        );
        let past = deadline_of(&context(now_ms - 1000)).saturating_duration_since(Instant::now());
        assert_eq!(past, Duration::ZERO);
    }

    #[test]
    fn a_cargo_lambda_timeout_is_read_as_a_duration() {
        let budget = deadline_of(&context(600_000)).saturating_duration_since(Instant::now());
        assert!(budget > Duration::from_secs(590), "{budget:?}");
    }
}
