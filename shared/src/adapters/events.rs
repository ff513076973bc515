//! The EventBridge bus that batch events go to: the adapter of the `EventPublisher` port.
//!
//! One `QuoteBatchCompleted` event per completed batch, `PutEvents` of at most ten entries a
//! call (EventBridge's limit), the calls in flight together. EventBridge answers 200 even when
//! some entries fail, so each entry's result is read: a failed entry is reported as not sent
//! (the outbox keeps it for a retry), never retried here, so a slow bus costs an invocation at
//! most [`PUBLISH_TIMEOUT`].

use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::{StreamExt, stream};
use serde_json::json;

pub use quote_domain::ports::{CompletedBatch, EventPublisher, Published};

/// The events' `source`: this pipeline.
pub const SOURCE: &str = "quote-pipeline";
/// The `detail-type` of a batch's completion.
pub const BATCH_COMPLETED: &str = "QuoteBatchCompleted";
/// The version of the detail's shape; a change that breaks consumers gets a new one.
pub const DETAIL_VERSION: u32 = 1;

/// EventBridge's limit on the entries of one `PutEvents`.
const MAX_ENTRIES: usize = 10;
const CALLS_IN_FLIGHT: usize = 4;

/// The most one publish may take; what is not sent by then is retried by reconcile.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// The span around a publish, by name: X-Ray draws it as a call to EventBridge.
pub const EVENTBRIDGE_PUT: &str = "eventbridge.put_events";

#[derive(Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    /// `bus_name` is the bus's name or ARN (`EVENT_BUS_NAME`).
    pub fn new(sdk: &aws_config::SdkConfig, bus_name: &str) -> Self {
        EventBridgeBus {
            client: Client::new(sdk),
            bus_name: bus_name.to_owned(),
        }
    }

    /// Sends up to ten events; the batches sent and those not, with the reason.
    async fn put(&self, batches: Vec<CompletedBatch>) -> Published {
        let entries = batches
            .iter()
            .map(|batch| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(SOURCE)
                    .detail_type(BATCH_COMPLETED)
                    .detail(detail(batch).to_string())
                    .build()
            })
            .collect();
        let sent = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await;
        let mut published = Published::default();
        match sent {
            Ok(output) => {
                // One result per entry, in the entries' order; a failed one has an error code.
                let results = output.entries();
                for (i, batch) in batches.iter().enumerate() {
                    match results.get(i) {
                        Some(r) if r.error_code().is_none() && r.event_id().is_some() => {
                            published.sent.push(batch.id)
                        }
                        Some(r) => published.failed.push((
                            batch.id,
                            format!(
                                "{}: {}",
                                r.error_code().unwrap_or("no event id"),
                                r.error_message().unwrap_or_default()
                            ),
                        )),
                        None => published
                            .failed
                            .push((batch.id, "no result for the entry".into())),
                    }
                }
            }
            Err(e) => {
                let reason = aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string();
                published.failed = batches.iter().map(|b| (b.id, reason.clone())).collect();
            }
        }
        published
    }
}

/// The event's `detail`: the README's contract with consumers.
pub fn detail(batch: &CompletedBatch) -> serde_json::Value {
    json!({
        "version": DETAIL_VERSION,
        "batch_id": batch.id,
        "user_id": batch.owner,
        "size": batch.size,
        "scored": batch.scored,
        "failed": batch.failed,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    })
}

impl EventPublisher for EventBridgeBus {
    #[tracing::instrument(name = EVENTBRIDGE_PUT, skip_all, fields(events = batches.len()))]
    async fn batches_completed(&self, batches: &[CompletedBatch]) -> Published {
        let calls = stream::iter(batches.chunks(MAX_ENTRIES).map(<[CompletedBatch]>::to_vec))
            .map(|chunk| self.put(chunk))
            .buffer_unordered(CALLS_IN_FLIGHT)
            .collect::<Vec<Published>>();
        match tokio::time::timeout(PUBLISH_TIMEOUT, calls).await {
            Ok(results) => results
                .into_iter()
                .fold(Published::default(), |mut all, one| {
                    all.sent.extend(one.sent);
                    all.failed.extend(one.failed);
                    all
                }),
            // Some may have reached the bus: they count as unsent and are sent again, which
            // consumers tolerate (the batch id is the event's identity).
            Err(_) => Published {
                sent: Vec::new(),
                failed: batches
                    .iter()
                    .map(|b| (b.id, format!("no answer within {PUBLISH_TIMEOUT:?}")))
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_sample_event_has_the_source_type_and_detail_members_published() {
        let sample: serde_json::Value = serde_json::from_str(include_str!(
            "../../../events/eventbridge/quote-batch-completed.json"
        ))
        .unwrap();
        assert_eq!(
            (&sample["source"], &sample["detail-type"]),
            (&json!(SOURCE), &json!(BATCH_COMPLETED))
        );
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let published = detail(&CompletedBatch {
            id: Uuid::nil(),
            owner: String::new(),
            size: 1,
            scored: 1,
            failed: 0,
            created_at: at,
            completed_at: at,
        });
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&sample["detail"]), keys(&published));
    }

    #[test]
    fn the_detail_carries_the_batch_and_its_counts() {
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let id = Uuid::nil();
        let batch = CompletedBatch {
            id,
            owner: "ann".into(),
            size: 3,
            scored: 2,
            failed: 1,
            created_at: at,
            completed_at: at,
        };
        assert_eq!(
            detail(&batch),
            json!({
                "version": 1, "batch_id": "00000000-0000-0000-0000-000000000000",
                "user_id": "ann", "size": 3, "scored": 2, "failed": 1,
                "created_at": "2026-05-28T20:26:40Z", "completed_at": "2026-05-28T20:26:40Z"
            })
        );
    }
}
