//! Reconciliation: no quote stays pending for ever.
//!
//! A quote can be left `pending_ml` with no message on its way: the queue refused the send
//! after the write, its message went to the dead-letter queue, or a batch was lost. Each run
//! sends such quotes (pending, last enqueued at least `min_age` ago) to the queue again and
//! counts the attempt; a quote still pending after `max_attempts` enqueues is failed with the
//! reason. Two runs at once touch disjoint quotes (`FOR UPDATE SKIP LOCKED`); a run touches at
//! most `limit` quotes of each kind. Each run also purges up to `limit` expired idempotency
//! keys, which nothing else deletes.
//!
//! A failed quote stays failed until an operator, having fixed the cause, returns it to
//! pending ([`requeue_failed`]): it is then due at once, with its attempts reset, and the same
//! sweep sends it; if the queue refuses, the next scheduled run does.

use serde::Serialize;

pub use quote_domain::ports::RequeueFilter;
use quote_domain::ports::{
    QueueError, QuoteQueue, ReconcilePolicy, ReconcileStore, StoreError, StuckQuotes,
};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub failed: u64,
    pub reenqueued: u64,
    pub keys_purged: u64,
    /// Failed quotes returned to pending by [`requeue_failed`] (and among `reenqueued`).
    pub requeued: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The quotes stay pending with their attempt uncounted, for the next run.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub async fn reconcile<S: ReconcileStore, Q: QuoteQueue>(
    store: &S,
    queue: &Q,
    policy: &ReconcilePolicy,
) -> Result<ReconcileReport, ReconcileError> {
    let failed = store.fail_exhausted(policy).await?;
    let stuck = store.claim_stuck(policy).await?;
    let reenqueued = stuck.ids().len() as u64;
    if reenqueued > 0 {
        queue.enqueue(stuck.ids()).await?;
        stuck.enqueued().await?;
    }
    let keys_purged = store.purge_expired_keys(policy.limit).await?;
    Ok(ReconcileReport {
        failed,
        reenqueued,
        keys_purged,
        requeued: 0,
    })
}

/// Returns the failed quotes `filter` picks to pending, then sweeps, which sends them (due at
/// once, oldest enqueue first) with any other stuck quotes.
pub async fn requeue_failed<S: ReconcileStore, Q: QuoteQueue>(
    store: &S,
    queue: &Q,
    policy: &ReconcilePolicy,
    filter: &RequeueFilter,
) -> Result<ReconcileReport, ReconcileError> {
    let requeued = store.return_failed(filter).await?;
    let report = reconcile(store, queue, policy).await?;
    Ok(ReconcileReport { requeued, ..report })
}
