//! Announcing completed batches: one `QuoteBatchCompleted` event per batch whose last quote
//! ended (scored or failed).
//!
//! The write that ends a batch's last quote completes it, in the same statement
//! (`QuoteStore::record` for `score`, reconcile's giving up), and returns it to one caller only,
//! however many end the batch's quotes at once or see the same message twice; that caller
//! publishes its event with [`publish`] once the write is committed. The completion is also
//! the event's outbox: an event whose publish fails stays unsent, and [`retry_unsent`] (run by
//! reconcile) publishes it again once its last try is old enough. The one duplicate left is a
//! publish that reached the bus but whose "sent" was not recorded (a crash between the two):
//! consumers must treat the batch id as the event's identity.

use std::time::Duration;

use quote_domain::ports::{BatchStore, CompletedBatch, EventPublisher, StoreError};

/// How long after its last try an unsent event is tried again: past the longest a `score`
/// invocation can still be publishing it (its 60 s timeout), so a retry does not race the
/// first try.
pub const EVENT_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What a completion pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompletionReport {
    /// Batches completed by the write whose events this pass publishes.
    pub completed: u64,
    /// Events published.
    pub published: u64,
    /// Events that could not be published, left for a retry.
    pub publish_failures: u64,
}

/// Completes the batches created at least `older_than` ago (at most `limit`) that have no
/// quote pending but were never completed (their counts drifted: a write that did not keep
/// them), and publishes their events.
pub async fn complete_overdue<S: BatchStore, E: EventPublisher>(
    store: &S,
    events: &E,
    older_than: Duration,
    limit: i64,
) -> Result<CompletionReport, StoreError> {
    let batches = store.complete_overdue(older_than, limit).await?;
    publish(store, events, &batches).await
}

/// Publishes again the events of completed batches still unsent whose last try is at least
/// `retry_after` old (at most `limit`).
pub async fn retry_unsent<S: BatchStore, E: EventPublisher>(
    store: &S,
    events: &E,
    retry_after: Duration,
    limit: i64,
) -> Result<CompletionReport, StoreError> {
    let batches = store.claim_unsent_events(retry_after, limit).await?;
    Ok(CompletionReport {
        completed: 0,
        ..publish(store, events, &batches).await?
    })
}

/// Publishes the events of `batches` (completed by a committed write, or claimed for a
/// retry) and records those sent.
pub async fn publish<S: BatchStore, E: EventPublisher>(
    store: &S,
    events: &E,
    batches: &[CompletedBatch],
) -> Result<CompletionReport, StoreError> {
    if batches.is_empty() {
        return Ok(CompletionReport::default());
    }
    let published = events.batches_completed(batches).await;
    for (batch, reason) in &published.failed {
        tracing::warn!(batch_id = %batch, %reason, "batch event not published; reconcile retries it");
    }
    store.events_sent(&published.sent).await?;
    for batch in batches.iter().filter(|b| published.sent.contains(&b.id)) {
        tracing::info!(
            batch_id = %batch.id,
            size = batch.size,
            scored = batch.scored,
            failed = batch.failed,
            "batch completed"
        );
    }
    Ok(CompletionReport {
        completed: batches.len() as u64,
        published: published.sent.len() as u64,
        publish_failures: published.failed.len() as u64,
    })
}
