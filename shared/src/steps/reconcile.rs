//! Reconciliation: no quote stays pending for ever.
//!
//! A quote can be left `pending_ml` with no message on its way: the queue refused the send
//! after the write, its message went to the dead-letter queue, or a batch was lost. Each run
//! sends such quotes (pending, last enqueued at least `min_age` ago) to the queue again and
//! counts the attempt; a quote still pending after `max_attempts` enqueues is failed with the
//! reason. Two runs at once touch disjoint quotes (`FOR UPDATE SKIP LOCKED`); a run touches at
//! most `limit` quotes of each kind. The batches whose last quotes it fails are completed by
//! that write and their events published, as `score` does for the quotes it ends, and
//! completion events whose publish failed (unsent, last tried two minutes ago or more) are
//! published again; batches two minutes old or more found with every quote ended but never
//! completed (ended by writes that did not keep their counts) are completed. Each run also
//! purges up to `limit` expired idempotency keys, which nothing else deletes, and up to
//! `limit` shadow prices older than the policy's `shadow_retention` (`score`'s shadow model
//! writes them; nothing else deletes them either).
//!
//! A failed quote stays failed until an operator, having fixed the cause, returns it to
//! pending ([`requeue_failed`]): it is then due at once, with its attempts reset, and the same
//! sweep sends it; if the queue refuses, the next scheduled run does.
//!
//! An operator re-prices scored quotes with the model `score` runs now ([`reprice`]): a
//! page of the quotes whose price still holds (all of them, or one batch's) goes to the
//! queue in messages marked as a re-price, and `score` prices them as it prices any quote.

use serde::Serialize;

use quote_domain::ports::{
    BatchStore, EventPublisher, QueueError, QuoteQueue, ReconcilePolicy, ReconcileStore,
    StoreError, StuckQuotes,
};
pub use quote_domain::ports::{RepriceCursor, RepriceFilter, RequeueFilter};

use crate::completion::{self, CompletionReport};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub failed: u64,
    pub reenqueued: u64,
    pub keys_purged: u64,
    /// Shadow prices deleted past their retention.
    pub shadow_prices_purged: u64,
    /// Failed quotes returned to pending by [`requeue_failed`] (and among `reenqueued`).
    pub requeued: u64,
    /// Batches completed by the quotes this run failed.
    pub batches_completed: u64,
    /// Completion events published, new or retried.
    pub events_published: u64,
    /// Completion events that failed to publish, new or retried; retried by a later run.
    pub event_publish_failures: u64,
    /// Scored quotes sent to be priced again by [`reprice`].
    pub reprice_enqueued: u64,
    /// Where the re-pricing pass goes on (the `after` of the next request); `None` when
    /// it is done, or none was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reprice_next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The quotes stay pending with their attempt uncounted, for the next run.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub async fn reconcile<S: ReconcileStore + BatchStore, Q: QuoteQueue, E: EventPublisher>(
    store: &S,
    queue: &Q,
    events: &E,
    policy: &ReconcilePolicy,
) -> Result<ReconcileReport, ReconcileError> {
    // Earlier events first, so an event this run fails to publish waits for its retry like
    // any other. A policy that resends quotes sooner than that wait (tests, `make run`)
    // retries events as soon.
    let retry_after = completion::EVENT_RETRY_AFTER.min(policy.min_age);
    let retried = completion::retry_unsent(store, events, retry_after, policy.limit).await?;
    let failed = store.fail_exhausted(policy).await?;
    let completed = completion::publish(store, events, &failed.completed).await?;
    // A batch ended by writes that did not keep its counts: found once it is as old as an
    // event's retry.
    let overdue = completion::complete_overdue(store, events, retry_after, policy.limit).await?;
    let stuck = store.claim_stuck(policy).await?;
    let reenqueued = stuck.ids().len() as u64;
    if reenqueued > 0 {
        queue.enqueue(stuck.ids()).await?;
        stuck.enqueued().await?;
    }
    let keys_purged = store.purge_expired_keys(policy.limit).await?;
    let shadow_prices_purged = store
        .purge_shadow_prices(policy.shadow_retention, policy.limit)
        .await?;
    let CompletionReport {
        completed: batches_completed,
        published,
        publish_failures,
    } = completed;
    Ok(ReconcileReport {
        failed: failed.failed,
        reenqueued,
        keys_purged,
        shadow_prices_purged,
        batches_completed: batches_completed + overdue.completed,
        events_published: published + retried.published + overdue.published,
        event_publish_failures: publish_failures
            + retried.publish_failures
            + overdue.publish_failures,
        ..ReconcileReport::default()
    })
}

/// Returns the failed quotes `filter` picks to pending, then sweeps, which sends them (due at
/// once, oldest enqueue first) with any other stuck quotes.
pub async fn requeue_failed<S: ReconcileStore + BatchStore, Q: QuoteQueue, E: EventPublisher>(
    store: &S,
    queue: &Q,
    events: &E,
    policy: &ReconcilePolicy,
    filter: &RequeueFilter,
) -> Result<ReconcileReport, ReconcileError> {
    let requeued = store.return_failed(filter).await?;
    let report = reconcile(store, queue, events, policy).await?;
    Ok(ReconcileReport { requeued, ..report })
}

/// Sends one page of the scored quotes `filter` picks whose price still holds to the queue,
/// marked as a re-price; the report names how many and where the next page starts. A page
/// the queue refuses is an error, and the same request sends it again: a quote re-priced
/// twice by the same model is written once.
pub async fn reprice<S: ReconcileStore, Q: QuoteQueue>(
    store: &S,
    queue: &Q,
    filter: &RepriceFilter,
) -> Result<ReconcileReport, ReconcileError> {
    let page = store.repriceable(filter).await?;
    if !page.ids.is_empty() {
        queue.enqueue_reprice(&page.ids).await?;
    }
    Ok(ReconcileReport {
        reprice_enqueued: page.ids.len() as u64,
        reprice_next: page.next.map(|cursor| cursor.encode()),
        ..ReconcileReport::default()
    })
}
