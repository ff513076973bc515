//! The ports: what the pipeline steps need of the store, the queue and the event bus, as
//! traits the adapters (Postgres, SQS and EventBridge in `quote_pipeline`, in-memory fakes in
//! `testkit`) implement, with errors that name what a caller can act on (retry later, or not)
//! and keep the adapter's own error only as a source.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::pricing::{Outcome, Prediction};
use crate::quote::{CoverageType, PriceRecord, Quote, QuoteStatus};

/// The largest page a list may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;

/// An adapter's own error, kept as the source of a port's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, or did not answer in time: worth retrying later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A write's `COMMIT` was sent and its answer never came (the connection broke, or the
    /// write's time ran out waiting): the write may or may not have been saved.
    #[error("the database did not confirm the commit; the write may have been saved: {0}")]
    OutcomeUnknown(#[source] BoxError),
    #[error("database error: {0}")]
    Other(#[source] BoxError),
}

/// Which of an owner's quotes to list, and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub status: Option<QuoteStatus>,
    pub coverage_type: Option<CoverageType>,
    /// Only the quotes of this batch.
    pub batch: Option<Uuid>,
    /// Resume after this position (exclusive), newest first.
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// A position in an owner's quotes, newest first: the last quote of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque token: microseconds since the epoch and the id.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (micros, id) = token.split_once('.')?;
        // Cursors come from real creation times: nothing before 1970 (nor before Postgres's
        // earliest timestamp, which a forged one could ask for).
        let micros: i64 = micros.parse().ok().filter(|m| *m >= 0)?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub quotes: Vec<Quote>,
    pub next: Option<Cursor>,
}

/// The store the functions need: a port, so the domain does not depend on Postgres itself.
pub trait QuoteStore: Send + Sync {
    /// Writes a batch of new quotes in one statement, and the batch `batch_id` that holds them;
    /// all or nothing. The quotes are made together: the batch, and every quote in it, takes
    /// the first quote's owner and creation time. With an idempotency record, the key is claimed
    /// in the same transaction, and a key already claimed writes nothing and answers what its
    /// first request was answered. Done by `deadline`: a write that is not is abandoned,
    /// [`StoreError::Unavailable`] if its `COMMIT` was not yet sent,
    /// [`StoreError::OutcomeUnknown`] if it was.
    fn insert(
        &self,
        batch_id: Uuid,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Inserted, StoreError>> + Send;
    /// One quote, if it exists and belongs to `owner`.
    fn get(
        &self,
        owner: &str,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Quote>, StoreError>> + Send;
    /// One batch's progress, if it exists and belongs to `owner`.
    fn batch(
        &self,
        owner: &str,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<BatchProgress>, StoreError>> + Send;
    /// One page of `owner`'s quotes, newest first.
    fn list(
        &self,
        owner: &str,
        filter: &ListFilter,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
    /// One quote with the prices re-pricing superseded (newest first), in one query, if it
    /// exists and belongs to `owner`; its current price is its own.
    fn get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<(Quote, Vec<PriceRecord>)>, StoreError>> + Send;
    /// The quotes among `ids` that are still `pending_ml`, in one query.
    fn pending(&self, ids: &[Uuid]) -> impl Future<Output = Result<Vec<Quote>, StoreError>> + Send;
    /// The quotes among `ids` that are scored and whose price still holds, in one query: what
    /// a re-price prices again.
    fn priced(&self, ids: &[Uuid]) -> impl Future<Output = Result<Vec<Quote>, StoreError>> + Send;
    /// Makes each prediction its quote's current price, valid for `validity` from now, where
    /// the quote is scored, its price still holds and no price of the prediction's model
    /// version is among its current and superseded ones; the price it replaces is kept as
    /// superseded, in the same transaction. Returns how many quotes were re-priced: a repeat
    /// with the same version re-prices none. Batches are left alone: a re-priced quote stays
    /// scored, so no batch is completed again.
    fn reprice(
        &self,
        predictions: &[Prediction],
        validity: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Writes every outcome in one statement, to quotes still `pending_ml` only, counting them
    /// into their batches and completing the batches they finish; returns how many quotes
    /// became scored and failed, and those batches. A scored quote's price is valid for
    /// `validity` from the moment it is written (its `scored_at`).
    fn record(
        &self,
        outcomes: &[Outcome],
        validity: Duration,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
}

/// Where shadow prices go: the prices a second model, evaluated beside the live one, gives
/// the quotes the live one scored. Kept apart from the quotes, which never show them.
pub trait ShadowStore: Send + Sync {
    /// Records each prediction as a shadow price of its quote, priced now, where the quote has
    /// none of the prediction's model version yet; returns how many were written, so a
    /// repeat (a message delivered again) writes none.
    fn record_shadow(
        &self,
        predictions: &[Prediction],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What a write that ends quotes ([`QuoteStore::record`], or reconcile giving up) changed:
/// how many quotes it scored and how many it failed (quotes no longer pending are left alone,
/// so these may be fewer than asked), and the batches whose last quotes it ended: each is
/// completed by that write, and by no other, however many end a batch's quotes at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub scored: u64,
    pub failed: u64,
    pub completed: Vec<CompletedBatch>,
}

/// A batch (the quotes of one write) as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProgress {
    pub id: Uuid,
    pub size: u32,
    pub pending: u32,
    pub scored: u32,
    pub failed: u32,
    pub created_at: DateTime<Utc>,
    /// When its last quote ended (its completion event is sent then).
    pub completed_at: Option<DateTime<Utc>>,
}

/// A batch whose every quote has ended: what its completion event tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedBatch {
    pub id: Uuid,
    pub owner: String,
    pub size: u32,
    pub scored: u32,
    pub failed: u32,
    pub created_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// The outbox of batch completion events: each completed batch (completed by the write that
/// ended its last quote, see [`Recorded`]) until its event is sent; and the net for batches
/// whose counts drifted.
pub trait BatchStore: Send + Sync {
    /// Completes, counting their quotes, the batches created at least `older_than` ago (at
    /// most `limit`, the oldest first) that are not completed and have no quote pending:
    /// those whose counts a write did not keep (a deploy from before the counting still
    /// running, or a change by hand), which no write will complete. Returned once, like a
    /// write's.
    fn complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<CompletedBatch>, StoreError>> + Send;
    /// Records that these batches' events were sent.
    fn events_sent(
        &self,
        batch_ids: &[Uuid],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Completed batches whose event is unsent and was last tried at least `retry_after` ago
    /// (at most `limit`, the longest waiting first), marked tried now, so a concurrent claim
    /// skips them.
    fn claim_unsent_events(
        &self,
        retry_after: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<CompletedBatch>, StoreError>> + Send;
}

/// What a publish sent and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub sent: Vec<Uuid>,
    /// Each batch not sent, and why.
    pub failed: Vec<(Uuid, String)>,
}

/// Where batch events go: a port, so the domain does not depend on EventBridge itself.
pub trait EventPublisher: Send + Sync {
    /// Publishes one `QuoteBatchCompleted` event per batch.
    fn batches_completed(
        &self,
        batches: &[CompletedBatch],
    ) -> impl Future<Output = Published> + Send;
}

/// When a pending quote counts as stuck, when reconcile gives up on it, and how much one run
/// touches and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcilePolicy {
    /// Time since the last enqueue after which a pending quote is sent again.
    pub min_age: Duration,
    /// Enqueues after which a quote still pending is failed.
    pub max_attempts: i32,
    /// The most rows of each kind one run touches: quotes failed, quotes re-enqueued,
    /// expired idempotency keys and old shadow prices purged.
    pub limit: i64,
    /// How long a shadow price is kept: long enough to judge a model, not for ever.
    pub shadow_retention: Duration,
}

/// Which failed quotes an operator returns to pending, once the cause of their failure is
/// fixed (reconcile's `requeue_failed` event).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequeueFilter {
    /// Only quotes whose `failure_reason` contains this text.
    pub reason_contains: Option<String>,
    /// Only quotes created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// At most this many quotes, oldest first.
    pub limit: i64,
}

/// Which scored quotes an operator has priced again with the model `score` runs now
/// (reconcile's `reprice` request): those whose price still holds, one page at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct RepriceFilter {
    /// Only the quotes of this batch.
    pub batch: Option<Uuid>,
    /// Resume after this position; `None` starts a new pass.
    pub after: Option<RepriceCursor>,
    /// At most this many quotes.
    pub limit: i64,
}

/// A position in a re-pricing pass: when the pass started (quotes priced since, re-priced
/// by it or scored by the new model, are not picked again) and the last quote picked, in the
/// pass's order (by id: the oldest quotes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepriceCursor {
    pub started: DateTime<Utc>,
    pub id: Uuid,
}

impl RepriceCursor {
    /// An opaque token: the start in microseconds since the epoch, and the id.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.started.timestamp_micros(), self.id.simple())
    }

    pub fn decode(token: &str) -> Option<RepriceCursor> {
        let (started, id) = token.split_once('.')?;
        let micros: i64 = started.parse().ok().filter(|m| *m >= 0)?;
        Some(RepriceCursor {
            started: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// One page of a re-pricing pass: the quotes picked, and where the next page starts (`None`
/// when the pass is done).
#[derive(Debug, Clone, PartialEq)]
pub struct RepricePage {
    pub ids: Vec<Uuid>,
    pub next: Option<RepriceCursor>,
}

/// What reconcile needs of the store: a port, so the sweep runs on Postgres or on a fake.
pub trait ReconcileStore: Send + Sync {
    type Stuck: StuckQuotes;
    /// Fails the quotes that stayed pending through `max_attempts` enqueues, the last one at
    /// least `min_age` ago; at most `limit` of them. Returns how many, and their batches.
    fn fail_exhausted(
        &self,
        policy: &ReconcilePolicy,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
    /// Locks the pending quotes due for another enqueue (at most `limit`, oldest first), and
    /// skips those another run holds, so two runs never send the same quote.
    fn claim_stuck(
        &self,
        policy: &ReconcilePolicy,
    ) -> impl Future<Output = Result<Self::Stuck, StoreError>> + Send;
    /// Deletes at most `limit` idempotency keys past their expiry, the longest expired first,
    /// so the table holds about a day of keys rather than every key ever used. Returns how
    /// many.
    fn purge_expired_keys(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes at most `limit` shadow prices recorded more than `older_than` ago, the oldest
    /// first; returns how many.
    fn purge_shadow_prices(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Returns the failed quotes `filter` picks to pending, their reason cleared, their
    /// enqueue attempts reset and due for the next enqueue at once; returns how many. Quotes
    /// no longer failed are left alone, so a repeat changes nothing.
    fn return_failed(
        &self,
        filter: &RequeueFilter,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The next page of scored quotes `filter` picks whose price still holds, oldest first,
    /// priced before the pass started. Locks nothing and changes nothing.
    fn repriceable(
        &self,
        filter: &RepriceFilter,
    ) -> impl Future<Output = Result<RepricePage, StoreError>> + Send;
}

/// Pending quotes locked for re-enqueueing; dropping them without [`StuckQuotes::enqueued`]
/// releases them untouched.
pub trait StuckQuotes: Send {
    fn ids(&self) -> &[Uuid];
    /// Counts the enqueue and releases the quotes.
    fn enqueued(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A write request's idempotency key, and the answer to keep for its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub owner: String,
    pub key: String,
    /// A digest of the request: a repeat must be the same request.
    pub request_hash: [u8; 32],
    pub status_code: u16,
    pub response_body: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// The key was used before by the same request: this was its answer.
    Replay {
        status_code: u16,
        response_body: String,
    },
    /// The key was used before by a different request.
    KeyReused,
}

#[derive(Debug, thiserror::Error)]
#[error("could not enqueue {failed} of {total} messages: {reason}")]
pub struct QueueError {
    pub failed: usize,
    pub total: usize,
    pub reason: String,
}

/// The queue the functions need: a port, so the domain does not depend on SQS itself.
pub trait QuoteQueue: Send + Sync {
    /// Puts every id on the queue; returns how many messages carried them.
    fn enqueue(&self, ids: &[Uuid]) -> impl Future<Output = Result<usize, QueueError>> + Send;
    /// Puts every id on the queue in messages marked as a re-price of scored quotes.
    fn enqueue_reprice(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<usize, QueueError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x",
            "1.",
            ".abc",
            "12.not-a-uuid",
            "99999999999999999999.0",
            "-250000000000000000.0190b5d200007000800000000000000",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_reprice_cursor_round_trips_and_rejects_garbage() {
        let cursor = RepriceCursor {
            started: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(RepriceCursor::decode(&cursor.encode()), Some(cursor));
        let id = Uuid::now_v7().simple();
        assert_eq!(
            RepriceCursor::decode(&format!("0.{id}")).map(|c| c.started),
            DateTime::from_timestamp_micros(0),
            "the epoch is a start like any other"
        );
        for bad in [
            String::new(),
            "1.2".into(),
            id.to_string(),
            format!("1.{id}.3"),
            format!("-1.{id}"),
            format!("x.{id}"),
            // A token of the passes that paged by expiry.
            format!("1.2.{id}"),
            "1.not-a-uuid".into(),
            // Past the last time a timestamp holds.
            format!("{}.{id}", i64::MAX),
        ] {
            assert_eq!(RepriceCursor::decode(&bad), None, "{bad}");
        }
    }
}
