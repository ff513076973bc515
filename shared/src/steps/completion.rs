//! Completing batches: when a batch's last quote ends (scored or failed), one
//! `QuoteBatchCompleted` event for it.
//!
//! Whoever ends quotes (`score`, or reconcile giving up on them) calls [`complete`] with their
//! batches (which the write that ended them returns) once the outcomes are committed. The
//! store marks each of those batches that has no quote left pending, and hands it to one caller only, however many finish the batch at the
//! same moment or see the same message twice; that caller publishes its event. The mark is
//! also the event's outbox: an event whose publish fails stays unsent, and [`retry_unsent`]
//! (run by reconcile) publishes it again once its last try is old enough. The one duplicate
//! left is a publish that reached the bus but whose "sent" was not recorded (a crash between
//! the two): consumers must treat the batch id as the event's identity.

use std::time::Duration;

use quote_domain::ports::{BatchStore, CompletedBatch, EventPublisher, StoreError};
use uuid::Uuid;

/// How long after its last try an unsent event is tried again: past the longest a `score`
/// invocation can still be publishing it (its 60 s timeout), so a retry does not race the
/// first try.
pub const EVENT_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What a completion pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompletionReport {
    /// Batches this pass marked completed.
    pub completed: u64,
    /// Events published.
    pub published: u64,
    /// Events that could not be published, left for a retry.
    pub publish_failures: u64,
}

/// Marks completed those of `batch_ids` that have no quote left pending, and publishes their
/// events. Call it after the quotes' outcomes are committed.
pub async fn complete<S: BatchStore, E: EventPublisher>(
    store: &S,
    events: &E,
    batch_ids: &[Uuid],
) -> Result<CompletionReport, StoreError> {
    let batches = store.complete_batches(batch_ids).await?;
    let mut report = publish(store, events, &batches).await?;
    report.completed = batches.len() as u64;
    Ok(report)
}

/// Completes the batches created at least `older_than` ago (at most `limit`) that have no
/// quote pending but were never marked (their last quotes' writer, `score` or reconcile,
/// stopped between its write and the completion), and publishes their events.
pub async fn complete_overdue<S: BatchStore, E: EventPublisher>(
    store: &S,
    events: &E,
    older_than: Duration,
    limit: i64,
) -> Result<CompletionReport, StoreError> {
    let batches = store.complete_overdue(older_than, limit).await?;
    let mut report = publish(store, events, &batches).await?;
    report.completed = batches.len() as u64;
    Ok(report)
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
    publish(store, events, &batches).await
}

async fn publish<S: BatchStore, E: EventPublisher>(
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
        completed: 0,
        published: published.sent.len() as u64,
        publish_failures: published.failed.len() as u64,
    })
}
