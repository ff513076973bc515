//! The `reconcile` function: run on a schedule, it sends quotes left pending back to the
//! queue, fails those it has given up on (completing their batches) and publishes again the
//! batch events that failed to publish (see `quote_pipeline::reconcile`).

use lambda_runtime::{Diagnostic, LambdaEvent};
use quote_pipeline::events::EventPublisher;
use quote_pipeline::metrics::{self, Count, Metrics};
use quote_pipeline::queue::QuoteQueue;
use quote_pipeline::reconcile::{ReconcileReport, reconcile};
use quote_pipeline::store::{BatchStore, ReconcilePolicy, ReconcileStore};

/// The function's clients and policy, built once per container.
pub struct App<S, Q, E> {
    pub store: S,
    pub queue: Q,
    /// Where batch completion events go.
    pub events: E,
    pub policy: ReconcilePolicy,
}

/// Runs one sweep. The scheduled event's content does not matter; a failed sweep is an
/// invocation error, so it shows in the function's error metric, and the next run retries.
pub async fn handle<S: ReconcileStore + BatchStore, Q: QuoteQueue, E: EventPublisher>(
    app: &App<S, Q, E>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ReconcileReport, Diagnostic> {
    let cold_start = metrics::cold_start();
    match reconcile(&app.store, &app.queue, &app.events, &app.policy).await {
        Ok(report) => {
            tracing::info!(
                cold_start,
                failed = report.failed,
                reenqueued = report.reenqueued,
                keys_purged = report.keys_purged,
                batches_completed = report.batches_completed,
                events_published = report.events_published,
                event_publish_failures = report.event_publish_failures,
                "reconciled"
            );
            let mut metrics = Metrics::for_function("reconcile");
            metrics
                .count(Count::QuotesReenqueued, report.reenqueued)
                .count(Count::QuotesFailed, report.failed)
                .count(Count::IdempotencyKeysPurged, report.keys_purged)
                .count(Count::BatchesCompleted, report.batches_completed)
                .count(Count::BatchEventsPublished, report.events_published)
                .count(
                    Count::BatchEventPublishFailures,
                    report.event_publish_failures,
                )
                .property("requestId", event.context.request_id.as_str())
                .cold_start(cold_start);
            metrics.flush();
            Ok(report)
        }
        Err(e) => {
            tracing::error!(error = %e, "reconcile failed");
            Err(Diagnostic {
                error_type: "ReconcileFailed".into(),
                error_message: e.to_string(),
            })
        }
    }
}
