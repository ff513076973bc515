//! The `score` function: prices the quotes named by a batch of SQS messages.
//!
//! A message that cannot be read fails alone. The quotes of all the others are scored
//! together (one query, one predictor pass, one update), and the answer is an SQS partial
//! batch response naming exactly the messages that did not finish, so only they come back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use quote_pipeline::budget;
use quote_pipeline::metrics::{self, Count, Metrics, Time};
use quote_pipeline::queue::QuoteMessage;
use quote_pipeline::scoring::{self, Predictor};
use quote_pipeline::store::QuoteStore;
use uuid::Uuid;

/// EMF takes at most 100 values of one metric in a document.
const MAX_LATENCY_VALUES: usize = 100;

/// The function's clients, built once per container, and how long a price holds.
pub struct App<S, P> {
    pub store: S,
    pub predictor: P,
    pub price_validity: Duration,
}

/// Handles one batch and writes its metrics to the log.
pub async fn handle<S: QuoteStore, P: Predictor>(
    app: &App<S, P>,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let (response, metrics) = process(app, event).await;
    metrics.flush();
    response
}

/// Handles one batch; returns the partial batch response and the invocation's metrics.
pub async fn process<S: QuoteStore, P: Predictor>(
    app: &App<S, P>,
    event: LambdaEvent<SqsEvent>,
) -> (SqsBatchResponse, Metrics) {
    let mut metrics = Metrics::for_function("score");
    let cold_start = metrics::cold_start();
    metrics
        .property("requestId", event.context.request_id.as_str())
        .cold_start(cold_start);
    metrics.count(Count::BatchSize, event.payload.records.len() as u64);
    // The predictor stops early enough to leave the final write its worst case.
    let deadline = budget::score_predictor_deadline(
        budget::invocation_deadline(event.context.deadline),
        Instant::now(),
    );
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
    let scored = scoring::score(
        &app.store,
        &app.predictor,
        &ids,
        deadline,
        app.price_validity,
    );
    match scored.await {
        Ok(report) => {
            metrics
                .count(Count::QuotesScored, report.scored)
                .count(Count::QuotesFailed, report.failed)
                .count(Count::MlEngineErrors, report.call_errors.into())
                .count(
                    Count::MlEnginePermanentErrors,
                    report.permanent_errors.into(),
                )
                .count(
                    Count::MlEngineSchemaMismatches,
                    report.schema_mismatches.into(),
                )
                .time(Time::DatabaseTime, report.database_time);
            if let Some(pricing) = report.pricing_time {
                metrics.time(Time::PricingTime, pricing);
            }
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
            tracing::error!(error = %e, "scoring failed; every message will come back");
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
