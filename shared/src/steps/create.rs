//! Creating quotes: from validated inputs to quotes saved and queued for scoring.
//!
//! The quotes are written in one statement, as one batch owned by the caller (with an
//! idempotency key, the key is claimed in the same transaction), then their ids are put on the
//! queue. A queue failure after the write leaves the quotes saved as `pending_ml`, to be
//! queued again by reconcile: the caller is told which ids were saved, so they are not sent
//! twice. With a key, a repeat of the same request
//! answers the first request's answer and writes nothing; the key with another request writes
//! nothing either.
//!
//! The time before the invocation's deadline is shared out by a [`Budget`]: the write must end
//! early enough to leave the enqueue its whole bound and the answer its margin, and a write
//! with too little time left is not started (a 503, nothing written) rather than cut off by
//! Lambda.
//!
//! Written against the ports, so it runs on Postgres and SQS or on the in-memory fakes.

use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;

use quote_domain::ports::{
    IdempotencyRecord, Inserted, QueueError, QuoteQueue, QuoteStore, StoreError,
};
use quote_domain::quote::{Quote, QuoteInput};

/// The answer given to a create, kept with its idempotency key for the key's repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status_code: u16,
    pub body: String,
}

/// An idempotency key and what identifies the request it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    pub key: String,
    /// A digest of the request: a repeat must be the same request.
    pub request_hash: [u8; 32],
    /// How long the answer is kept.
    pub ttl: Duration,
}

/// How a create shares out the time before its invocation's deadline (the function's own is
/// `budget::CREATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most the write may take: the pool's wait, the proxy's borrow, its statements and
    /// `COMMIT`.
    pub write: Duration,
    /// The enqueue's own bound (the queue adapter's), left free after the write.
    pub enqueue: Duration,
    /// Left free after the enqueue, to answer.
    pub answer: Duration,
    /// The least time worth starting the write with; with less, it is not started.
    pub least_write: Duration,
}

impl Budget {
    /// When the write must be done, started at `now` in an invocation ending at `deadline`:
    /// its own bound or the time left less what the later steps need, whichever comes first;
    /// `None` if that leaves less than [`Budget::least_write`].
    pub fn write_deadline(&self, deadline: Instant, now: Instant) -> Option<Instant> {
        let latest = deadline.checked_sub(self.enqueue + self.answer)?;
        let until = latest.min(now + self.write);
        (until.saturating_duration_since(now) >= self.least_write).then_some(until)
    }
}

/// The invocation's deadline and how to share out the time before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub budget: Budget,
}

/// What a create achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The quotes were written, as the batch `batch_id`, and queued.
    New {
        batch_id: Uuid,
        ids: Vec<Uuid>,
        answer: Answer,
    },
    /// A repeat of an earlier request with the same key: that request's answer; nothing was
    /// written or queued.
    Replayed(Answer),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The key was used before with a different request; nothing was written.
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    /// Nothing was written, or with [`StoreError::OutcomeUnknown`], the write may have been
    /// saved (its quotes are then not queued; reconcile queues them).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The quotes were saved as `pending_ml` but not queued; reconcile queues them later, so
    /// they must not be sent again.
    #[error("{} quotes saved but not queued: {source}", ids.len())]
    NotQueued {
        batch_id: Uuid,
        ids: Vec<Uuid>,
        #[source]
        source: QueueError,
    },
}

/// What a create measured, as far as it got (also when it failed): the function's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Time in the write.
    pub database_time: Duration,
    /// Quotes written, if the write wrote them.
    pub created: Option<usize>,
    /// Time in the enqueue, if it was tried.
    pub queue_time: Option<Duration>,
    /// Quotes queued, if the enqueue succeeded.
    pub enqueued: Option<usize>,
}

/// A create's outcome and what it measured.
#[derive(Debug)]
pub struct Creation {
    pub outcome: Result<Created, CreateError>,
    pub report: Report,
}

/// Creates `owner`'s quotes from `inputs`: writes them as one new batch, then queues them.
/// `answer` makes the answer for the batch and its new ids; it is kept with the key (when
/// there is one) before anything is queued, so a repeat gets exactly what the first request
/// got. The write ends by the time `deadline`'s budget gives it, which leaves the enqueue its
/// own bound and the answer its margin.
pub async fn create<S: QuoteStore, Q: QuoteQueue>(
    store: &S,
    queue: &Q,
    owner: &str,
    inputs: Vec<QuoteInput>,
    idempotency: Option<Idempotency>,
    answer: impl FnOnce(Uuid, &[Uuid]) -> Answer,
    deadline: Deadline,
) -> Creation {
    let now = Utc::now();
    let quotes: Vec<Quote> = inputs
        .into_iter()
        .map(|input| Quote::new_pending(owner, input, now))
        .collect();
    let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
    let batch_id = Uuid::now_v7();
    let answer = answer(batch_id, &ids);
    let record = idempotency.map(|i| IdempotencyRecord {
        owner: owner.to_owned(),
        key: i.key,
        request_hash: i.request_hash,
        status_code: answer.status_code,
        response_body: answer.body.clone(),
        ttl: i.ttl,
    });
    let mut report = Report::default();
    let started = Instant::now();
    let inserted = match deadline.budget.write_deadline(deadline.at, started) {
        Some(until) => {
            store
                .insert(batch_id, &quotes, record.as_ref(), until)
                .await
        }
        None => Err(StoreError::Unavailable(
            "too little time left in the invocation to write".into(),
        )),
    };
    report.database_time = started.elapsed();
    let outcome = match inserted {
        Err(e) => Err(CreateError::Store(e)),
        Ok(Inserted::KeyReused) => Err(CreateError::KeyReused),
        Ok(Inserted::Replay {
            status_code,
            response_body,
        }) => Ok(Created::Replayed(Answer {
            status_code,
            body: response_body,
        })),
        Ok(Inserted::New) => {
            report.created = Some(ids.len());
            let started = Instant::now();
            let enqueued = queue.enqueue(&ids).await;
            report.queue_time = Some(started.elapsed());
            match enqueued {
                Err(source) => {
                    tracing::error!(error = %source, quotes = ids.len(), "enqueue failed after the write");
                    Err(CreateError::NotQueued {
                        batch_id,
                        ids,
                        source,
                    })
                }
                Ok(_) => {
                    report.enqueued = Some(ids.len());
                    tracing::info!(quotes = ids.len(), "quotes created");
                    Ok(Created::New {
                        batch_id,
                        ids,
                        answer,
                    })
                }
            }
        }
    };
    Creation { outcome, report }
}
