//! The `reconcile` function: run on a schedule, it sends quotes left pending back to the
//! queue, fails those it has given up on (completing their batches) and publishes again the
//! batch events that failed to publish (see `quote_pipeline::reconcile`).
//!
//! An operator invokes it with `{"requeue_failed": {...}}` to return failed quotes to pending
//! once their cause is fixed (see [`RequeueRequest`] and the README's Operations section),
//! and with `{"reprice": {...}}` to have scored quotes priced again by the model `score`
//! runs now (see [`RepriceRequest`]).

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use quote_pipeline::events::EventPublisher;
use quote_pipeline::metrics::{self, Count, Metrics};
use quote_pipeline::queue::QuoteQueue;
use quote_pipeline::reconcile::{
    ReconcileReport, RepriceCursor, RepriceFilter, RequeueFilter, reconcile, reprice,
    requeue_failed,
};
use quote_pipeline::store::{BatchStore, ReconcilePolicy, ReconcileStore};
use serde::Deserialize;
use uuid::Uuid;

/// The most failed quotes one requeue request returns to pending.
pub const MAX_REQUEUE: i64 = 100_000;
/// The most scored quotes one reprice request sends to be priced again.
pub const MAX_REPRICE: i64 = 100_000;

/// The function's clients and policy, built once per container.
pub struct App<S, Q, E> {
    pub store: S,
    pub queue: Q,
    /// Where batch completion events go.
    pub events: E,
    pub policy: ReconcilePolicy,
}

/// The body of a `requeue_failed` request: which failed quotes go back to pending.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// Only quotes whose `failure_reason` contains this text (for example "ML engine").
    pub reason_contains: Option<String>,
    /// Only quotes created at or after this RFC 3339 time.
    pub created_after: Option<DateTime<Utc>>,
    /// At most this many, oldest first (1 to `MAX_REQUEUE`, default the sweep's limit).
    pub limit: Option<i64>,
}

/// The body of a `reprice` request: which scored quotes whose price still holds go to be
/// priced again, one page at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepriceRequest {
    /// Only the quotes of this batch; without it, every still-valid quote.
    pub batch_id: Option<Uuid>,
    /// The `reprice_next` of the previous answer, to go on with the same pass.
    pub after: Option<String>,
    /// At most this many (1 to `MAX_REPRICE`, default the sweep's limit).
    pub limit: Option<i64>,
}

/// What an invocation asks for.
#[derive(Debug, PartialEq)]
enum Requested {
    /// The scheduled sweep (any event without a request of the operator's).
    Sweep,
    /// Failed quotes returned to pending, then the sweep.
    Requeue(RequeueFilter),
    /// A page of scored quotes sent to be priced again (no sweep).
    Reprice(RepriceFilter),
}

/// The request's limit: within 1 to `max`, the sweep's by default.
fn limit(
    limit: Option<i64>,
    policy: &ReconcilePolicy,
    field: &str,
    max: i64,
) -> Result<i64, String> {
    let limit = limit.unwrap_or(policy.limit);
    if !(1..=max).contains(&limit) {
        return Err(format!("{field}.limit: must be from 1 to {max}"));
    }
    Ok(limit)
}

fn requested(event: &serde_json::Value, policy: &ReconcilePolicy) -> Result<Requested, String> {
    if let Some(request) = event.get("reprice") {
        if event.get("requeue_failed").is_some() {
            return Err("reprice and requeue_failed: ask for one at a time".into());
        }
        let request = RepriceRequest::deserialize(request).map_err(|e| format!("reprice: {e}"))?;
        let after = request
            .after
            .map(|token| {
                RepriceCursor::decode(&token).ok_or_else(|| {
                    "reprice.after: is not a reprice_next this function answered".to_owned()
                })
            })
            .transpose()?;
        return Ok(Requested::Reprice(RepriceFilter {
            batch: request.batch_id,
            after,
            limit: limit(request.limit, policy, "reprice", MAX_REPRICE)?,
        }));
    }
    let Some(request) = event.get("requeue_failed") else {
        return Ok(Requested::Sweep);
    };
    let request =
        RequeueRequest::deserialize(request).map_err(|e| format!("requeue_failed: {e}"))?;
    Ok(Requested::Requeue(RequeueFilter {
        reason_contains: request.reason_contains,
        created_after: request.created_after,
        limit: limit(request.limit, policy, "requeue_failed", MAX_REQUEUE)?,
    }))
}

/// Runs one sweep, after returning failed quotes to pending if the event asks for it. A
/// failed sweep (or a malformed request) is an invocation error, so it shows in the
/// function's error metric, and the next scheduled run retries the sweep.
pub async fn handle<S: ReconcileStore + BatchStore, Q: QuoteQueue, E: EventPublisher>(
    app: &App<S, Q, E>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ReconcileReport, Diagnostic> {
    let cold_start = metrics::cold_start();
    let request = requested(&event.payload, &app.policy).map_err(|message| {
        tracing::error!(error = %message, "invalid reconcile request");
        Diagnostic {
            error_type: "InvalidRequest".into(),
            error_message: message,
        }
    })?;
    let outcome = match &request {
        Requested::Requeue(filter) => {
            requeue_failed(&app.store, &app.queue, &app.events, &app.policy, filter).await
        }
        Requested::Reprice(filter) => reprice(&app.store, &app.queue, filter).await,
        Requested::Sweep => reconcile(&app.store, &app.queue, &app.events, &app.policy).await,
    };
    match outcome {
        Ok(report) => {
            tracing::info!(
                cold_start,
                failed = report.failed,
                reenqueued = report.reenqueued,
                keys_purged = report.keys_purged,
                shadow_prices_purged = report.shadow_prices_purged,
                requeued = report.requeued,
                reprice_enqueued = report.reprice_enqueued,
                reprice_next = report.reprice_next.as_deref(),
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
                .count(Count::ShadowPricesPurged, report.shadow_prices_purged)
                .count(Count::QuotesRequeued, report.requeued)
                .count(Count::RepricesEnqueued, report.reprice_enqueued)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn policy() -> ReconcilePolicy {
        ReconcilePolicy {
            min_age: Duration::from_secs(300),
            max_attempts: 5,
            limit: 1000,
            shadow_retention: testkit::SHADOW_RETENTION,
        }
    }

    #[test]
    fn a_scheduled_event_asks_for_the_sweep_alone() {
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(requested(&scheduled, &policy()), Ok(Requested::Sweep));
        assert_eq!(requested(&json!(null), &policy()), Ok(Requested::Sweep));
    }

    #[test]
    fn a_requeue_request_names_its_filter_and_defaults_to_the_sweeps_limit() {
        let event = json!({"requeue_failed": {"reason_contains": "ML engine", "created_after": "2026-11-28T00:00:00Z"}});
        let Ok(Requested::Requeue(filter)) = requested(&event, &policy()) else {
            panic!("a requeue");
        };
        assert_eq!(filter.reason_contains.as_deref(), Some("ML engine"));
        assert_eq!(
            filter.created_after.unwrap().to_rfc3339(),
            "2026-11-28T00:00:00+00:00"
        );
        assert_eq!(filter.limit, 1000);
        assert!(matches!(
            requested(&json!({"requeue_failed": {}}), &policy()),
            Ok(Requested::Requeue(RequeueFilter { limit: 1000, .. }))
        ));
    }

    #[test]
    fn a_reprice_request_names_its_batch_and_page_and_defaults_to_the_sweeps_limit() {
        assert_eq!(
            requested(&json!({"reprice": {}}), &policy()),
            Ok(Requested::Reprice(RepriceFilter {
                batch: None,
                after: None,
                limit: 1000
            }))
        );
        let batch = Uuid::now_v7();
        let cursor = RepriceCursor {
            started: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
            id: Uuid::now_v7(),
        };
        let event = json!({"reprice": {"batch_id": batch, "after": cursor.encode(), "limit": 50}});
        assert_eq!(
            requested(&event, &policy()),
            Ok(Requested::Reprice(RepriceFilter {
                batch: Some(batch),
                after: Some(cursor),
                limit: 50
            }))
        );
    }

    #[test]
    fn a_malformed_requeue_request_is_refused_naming_the_field() {
        for (event, field) in [
            (json!({"requeue_failed": {"reason": "x"}}), "reason"),
            (
                json!({"requeue_failed": {"created_after": "yesterday"}}),
                "requeue_failed",
            ),
            (
                json!({"requeue_failed": {"limit": 0}}),
                "requeue_failed.limit",
            ),
            (
                json!({"requeue_failed": {"limit": 1_000_000}}),
                "requeue_failed.limit",
            ),
            (json!({"requeue_failed": "all"}), "requeue_failed"),
            (json!({"reprice": {"batch": "x"}}), "batch"),
            (json!({"reprice": {"batch_id": "x"}}), "reprice"),
            (json!({"reprice": {"after": "x"}}), "reprice.after"),
            (json!({"reprice": {"limit": 0}}), "reprice.limit"),
            (json!({"reprice": {"limit": 100_001}}), "reprice.limit"),
            (
                json!({"reprice": {}, "requeue_failed": {}}),
                "one at a time",
            ),
        ] {
            let error = requested(&event, &policy()).unwrap_err();
            assert!(error.contains(field), "{event}: {error}");
        }
    }
}
