//! In-memory fakes of the ports (`QuoteStore`, `ReconcileStore`, `QuoteQueue`), so a test of
//! what a handler decides runs without Postgres or the SQS emulator.
//!
//! They keep the contracts the real adapters keep (a batch is written whole or not at all, an
//! idempotency key answers its first request's answer, only pending quotes are scored, a
//! claimed quote is skipped by another claim until released), not their SQL: what the
//! statements themselves do is tested against the real Postgres.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use quote_pipeline::queue::{MAX_IDS_PER_MESSAGE, QueueError, QuoteQueue};
use quote_pipeline::quote::{PriceRange, Pricing, Quote, QuoteStatus};
use quote_pipeline::store::{
    Cursor, IdempotencyRecord, Inserted, ListFilter, MAX_PAGE_SIZE, Outcome, Page, QuoteStore,
    ReconcilePolicy, ReconcileStore, Recorded, RequeueFilter, StoreError, StuckQuotes,
};
use uuid::Uuid;

/// A store held in memory; clones share it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<StoreState>>,
}

#[derive(Default)]
struct StoreState {
    rows: Vec<Row>,
    keys: HashMap<(String, String), KeptAnswer>,
    /// Quotes a reconcile run has claimed and not yet released.
    claimed: HashSet<Uuid>,
}

struct Row {
    quote: Quote,
    last_enqueued_at: DateTime<Utc>,
}

struct KeptAnswer {
    request_hash: [u8; 32],
    status_code: u16,
    response_body: String,
    expires_at: DateTime<Utc>,
}

impl MemoryStore {
    /// Every quote written, in the order written.
    pub fn quotes(&self) -> Vec<Quote> {
        self.lock().rows.iter().map(|r| r.quote.clone()).collect()
    }

    /// Moves the last enqueue of every quote `age` into the past, as time passing would.
    pub fn age_enqueues(&self, age: Duration) {
        let age = chrono::Duration::from_std(age).expect("a short age");
        for row in &mut self.lock().rows {
            row.last_enqueued_at -= age;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().expect("no poisoned lock")
    }
}

impl QuoteStore for MemoryStore {
    async fn insert(
        &self,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        // Written at once: a deadline cannot pass.
        _deadline: std::time::Instant,
    ) -> Result<Inserted, StoreError> {
        let mut state = self.lock();
        let now = Utc::now();
        if let Some(record) = idempotency {
            let key = (record.owner.clone(), record.key.clone());
            match state.keys.get(&key) {
                Some(kept) if kept.expires_at >= now => {
                    return Ok(if kept.request_hash == record.request_hash {
                        Inserted::Replay {
                            status_code: kept.status_code,
                            response_body: kept.response_body.clone(),
                        }
                    } else {
                        Inserted::KeyReused
                    });
                }
                _ => {
                    let ttl = chrono::Duration::from_std(record.ttl).expect("a sane TTL");
                    state.keys.insert(
                        key,
                        KeptAnswer {
                            request_hash: record.request_hash,
                            status_code: record.status_code,
                            response_body: record.response_body.clone(),
                            expires_at: now + ttl,
                        },
                    );
                }
            }
        }
        state.rows.extend(quotes.iter().map(|q| Row {
            quote: q.clone(),
            last_enqueued_at: q.created_at,
        }));
        Ok(Inserted::New)
    }

    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        Ok(self
            .lock()
            .rows
            .iter()
            .find(|r| r.quote.id == id && r.quote.user_id == owner)
            .map(|r| r.quote.clone()))
    }

    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.clamp(1, MAX_PAGE_SIZE) as usize;
        let position = |q: &Quote| (q.created_at, q.id);
        let mut quotes: Vec<Quote> = self
            .lock()
            .rows
            .iter()
            .map(|r| &r.quote)
            .filter(|q| q.user_id == owner)
            .filter(|q| filter.status.is_none_or(|s| q.status() == s))
            .filter(|q| {
                filter
                    .coverage_type
                    .is_none_or(|c| q.input.coverage_type == c)
            })
            .filter(|q| {
                filter
                    .after
                    .is_none_or(|after| position(q) < (after.created_at, after.id))
            })
            .cloned()
            .collect();
        quotes.sort_by_key(|q| std::cmp::Reverse(position(q)));
        let next = (quotes.len() > limit).then(|| {
            quotes.truncate(limit);
            let last = quotes.last().expect("a full page");
            Cursor {
                created_at: last.created_at,
                id: last.id,
            }
        });
        Ok(Page { quotes, next })
    }

    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Ok(self
            .lock()
            .rows
            .iter()
            .map(|r| &r.quote)
            .filter(|q| q.status() == QuoteStatus::PendingMl && ids.contains(&q.id))
            .cloned()
            .collect())
    }

    async fn record(
        &self,
        outcomes: &[Outcome],
        validity: Duration,
    ) -> Result<Recorded, StoreError> {
        let mut state = self.lock();
        let (mut scored, mut failed) = (0, 0);
        for outcome in outcomes {
            let id = match outcome {
                Outcome::Scored(p) => p.quote_id,
                Outcome::Failed { id, .. } => *id,
            };
            let Some(quote) = state
                .rows
                .iter_mut()
                .map(|r| &mut r.quote)
                .find(|q| q.id == id && q.status() == QuoteStatus::PendingMl)
            else {
                continue;
            };
            match outcome {
                Outcome::Scored(p) => {
                    let scored_at = Utc::now();
                    quote.pricing = Pricing::Scored {
                        premium: p.premium,
                        range: Some(PriceRange {
                            low: p.premium_low,
                            high: p.premium_high,
                        }),
                        confidence: p.confidence,
                        model_version: p.model_version.to_string(),
                        scored_at,
                        valid_until: Some(scored_at + validity),
                    };
                    scored += 1;
                }
                Outcome::Failed { reason, .. } => {
                    quote.pricing = Pricing::Failed {
                        reason: reason.clone(),
                    };
                    failed += 1;
                }
            }
        }
        Ok(Recorded { scored, failed })
    }
}

impl ReconcileStore for MemoryStore {
    type Stuck = MemoryStuckQuotes;

    async fn fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let StoreState { rows, claimed, .. } = &mut *state;
        let due = due_rows(rows, claimed, policy, |attempts| {
            attempts >= policy.max_attempts
        });
        for &i in &due {
            let quote = &mut rows[i].quote;
            quote.pricing = Pricing::Failed {
                reason: format!(
                    "not scored after {} enqueue attempts",
                    quote.enqueue_attempts
                ),
            };
        }
        Ok(due.len() as u64)
    }

    async fn purge_expired_keys(&self, limit: i64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let now = Utc::now();
        let mut expired: Vec<_> = state
            .keys
            .iter()
            .filter(|(_, kept)| kept.expires_at < now)
            .map(|(key, kept)| (kept.expires_at, key.clone()))
            .collect();
        expired.sort();
        expired.truncate(usize::try_from(limit).unwrap_or(0));
        for (_, key) in &expired {
            state.keys.remove(key);
        }
        Ok(expired.len() as u64)
    }

    async fn claim_stuck(&self, policy: &ReconcilePolicy) -> Result<MemoryStuckQuotes, StoreError> {
        let mut state = self.lock();
        let due = due_rows(&state.rows, &state.claimed, policy, |attempts| {
            attempts < policy.max_attempts
        });
        let ids: Vec<Uuid> = due.iter().map(|&i| state.rows[i].quote.id).collect();
        state.claimed.extend(&ids);
        Ok(MemoryStuckQuotes {
            store: self.clone(),
            ids,
            released: false,
        })
    }

    async fn return_failed(&self, filter: &RequeueFilter) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let mut picked: Vec<&mut Row> = state
            .rows
            .iter_mut()
            .filter(|row| match &row.quote.pricing {
                Pricing::Failed { reason } => {
                    filter
                        .created_after
                        .is_none_or(|t| row.quote.created_at >= t)
                        && reason.contains(filter.reason_contains.as_deref().unwrap_or(""))
                }
                _ => false,
            })
            .collect();
        picked.sort_by_key(|row| row.quote.created_at);
        picked.truncate(usize::try_from(filter.limit).unwrap_or(0));
        for row in &mut picked {
            row.quote.pricing = Pricing::Pending;
            row.quote.enqueue_attempts = 0;
            row.last_enqueued_at = DateTime::<Utc>::MIN_UTC;
        }
        Ok(picked.len() as u64)
    }
}

/// The rows of pending quotes whose attempts pass `attempts_due`, last enqueued at least
/// `min_age` ago and not claimed: at most `limit`, oldest enqueue first.
fn due_rows(
    rows: &[Row],
    claimed: &HashSet<Uuid>,
    policy: &ReconcilePolicy,
    attempts_due: impl Fn(i32) -> bool,
) -> Vec<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(policy.min_age).expect("a sane age");
    let mut due: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            let (quote, at) = (&rows[i].quote, rows[i].last_enqueued_at);
            quote.status() == QuoteStatus::PendingMl
                && attempts_due(quote.enqueue_attempts)
                && at < cutoff
                && !claimed.contains(&quote.id)
        })
        .collect();
    due.sort_by_key(|&i| rows[i].last_enqueued_at);
    due.truncate(policy.limit.max(0) as usize);
    due
}

/// Quotes a [`MemoryStore`] claimed; released when dropped, counted once enqueued.
pub struct MemoryStuckQuotes {
    store: MemoryStore,
    ids: Vec<Uuid>,
    released: bool,
}

impl StuckQuotes for MemoryStuckQuotes {
    fn ids(&self) -> &[Uuid] {
        &self.ids
    }

    async fn enqueued(mut self) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut state = self.store.lock();
        for row in state
            .rows
            .iter_mut()
            .filter(|r| self.ids.contains(&r.quote.id))
        {
            row.quote.enqueue_attempts += 1;
            row.last_enqueued_at = now;
        }
        for id in &self.ids {
            state.claimed.remove(id);
        }
        self.released = true;
        Ok(())
    }
}

impl Drop for MemoryStuckQuotes {
    fn drop(&mut self) {
        if !self.released {
            let mut state = self.store.lock();
            for id in &self.ids {
                state.claimed.remove(id);
            }
        }
    }
}

/// A queue held in memory: each enqueue's ids, in messages of `ids_per_message`.
#[derive(Clone)]
pub struct MemoryQueue {
    messages: Arc<Mutex<Vec<Vec<Uuid>>>>,
    ids_per_message: usize,
}

impl MemoryQueue {
    pub fn new(ids_per_message: usize) -> Self {
        MemoryQueue {
            messages: Arc::default(),
            ids_per_message: ids_per_message.clamp(1, MAX_IDS_PER_MESSAGE),
        }
    }

    /// Every id enqueued, in order.
    pub fn queued_ids(&self) -> Vec<Uuid> {
        self.messages.lock().expect("no poisoned lock").concat()
    }
}

impl QuoteQueue for MemoryQueue {
    async fn enqueue(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        let mut messages = self.messages.lock().expect("no poisoned lock");
        let before = messages.len();
        messages.extend(ids.chunks(self.ids_per_message).map(<[Uuid]>::to_vec));
        Ok(messages.len() - before)
    }
}

#[cfg(test)]
mod tests {
    use quote_pipeline::generator::{GenerateParams, generate};
    use quote_pipeline::reconcile::{ReconcileReport, reconcile, requeue_failed};

    use super::*;

    fn pending(store: &MemoryStore, n: u32) -> Vec<Uuid> {
        let quotes: Vec<Quote> = generate(&GenerateParams::new(n))
            .into_iter()
            .map(|input| Quote::new_pending("owner", input, Utc::now()))
            .collect();
        block_on(store.insert(&quotes, None, std::time::Instant::now())).unwrap();
        quotes.iter().map(|q| q.id).collect()
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    #[test]
    fn reconcile_on_the_fakes_reenqueues_fails_and_requeues_on_request_as_on_postgres() {
        let (store, queue) = (MemoryStore::default(), MemoryQueue::new(100));
        let ids = pending(&store, 3);
        let policy = ReconcilePolicy {
            min_age: Duration::from_secs(60),
            max_attempts: 2,
            limit: 10,
        };
        let run = || block_on(reconcile(&store, &queue, &policy)).unwrap();
        assert_eq!(run(), ReconcileReport::default(), "too young to resend");
        store.age_enqueues(Duration::from_secs(61));
        assert_eq!(
            run(),
            ReconcileReport {
                reenqueued: 3,
                ..ReconcileReport::default()
            }
        );
        assert_eq!(queue.queued_ids(), ids);
        store.age_enqueues(Duration::from_secs(61));
        assert_eq!(
            run(),
            ReconcileReport {
                failed: 3,
                ..ReconcileReport::default()
            }
        );
        assert!(
            store
                .quotes()
                .iter()
                .all(|q| q.status() == QuoteStatus::Failed
                    && matches!(&q.pricing, Pricing::Failed { reason }
                        if reason == "not scored after 2 enqueue attempts"))
        );

        let requeue = |reason: &str| {
            let filter = RequeueFilter {
                reason_contains: Some(reason.into()),
                created_after: None,
                limit: 10,
            };
            block_on(requeue_failed(&store, &queue, &policy, &filter)).unwrap()
        };
        assert_eq!(requeue("the engine refused"), ReconcileReport::default());
        assert_eq!(
            requeue("enqueue attempts"),
            ReconcileReport {
                requeued: 3,
                reenqueued: 3,
                ..ReconcileReport::default()
            },
            "returned to pending, due at once, and sent"
        );
        assert_eq!(queue.queued_ids().len(), 6);
        assert!(
            store
                .quotes()
                .iter()
                .all(|q| q.status() == QuoteStatus::PendingMl && q.enqueue_attempts == 1)
        );
        assert_eq!(
            requeue("enqueue attempts").requeued,
            0,
            "a repeat changes nothing"
        );
    }

    #[test]
    fn a_claim_dropped_unsent_releases_its_quotes_uncounted() {
        let store = MemoryStore::default();
        pending(&store, 2);
        store.age_enqueues(Duration::from_secs(1));
        let policy = ReconcilePolicy {
            min_age: Duration::ZERO,
            max_attempts: 5,
            limit: 10,
        };
        let first = block_on(store.claim_stuck(&policy)).unwrap();
        let second = block_on(store.claim_stuck(&policy)).unwrap();
        assert_eq!((first.ids().len(), second.ids().len()), (2, 0));
        drop(first);
        let again = block_on(store.claim_stuck(&policy)).unwrap();
        assert_eq!(again.ids().len(), 2);
        assert!(store.quotes().iter().all(|q| q.enqueue_attempts == 1));
    }
}
