//! In-memory fakes of the ports (`QuoteStore`, `ReconcileStore`, `BatchStore`, `ShadowStore`,
//! `QuoteQueue`, `EventPublisher`), so a test of what a handler decides runs without Postgres, the SQS
//! emulator or EventBridge.
//!
//! They keep the contracts the real adapters keep (a batch is written whole or not at all, an
//! idempotency key answers its first request's answer, only pending quotes are scored, a
//! claimed quote is skipped by another claim until released), not their SQL: what the
//! statements themselves do is tested against the real Postgres.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use quote_pipeline::events::{EventPublisher, Published};
use quote_pipeline::queue::{MAX_IDS_PER_MESSAGE, QueueError, QuoteQueue};
use quote_pipeline::quote::{PriceRange, PriceRecord, Pricing, Quote, QuoteStatus};
use quote_pipeline::scoring::Prediction;
use quote_pipeline::store::{
    BatchProgress, BatchStore, CompletedBatch, Cursor, IdempotencyRecord, Inserted, ListFilter,
    MAX_PAGE_SIZE, Outcome, Page, QuoteStore, ReconcilePolicy, ReconcileStore, Recorded,
    RepriceCursor, RepriceFilter, RepricePage, RequeueFilter, ShadowStore, StoreError, StuckQuotes,
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
    batches: HashMap<Uuid, BatchRow>,
    /// Prices re-pricing replaced, by quote, oldest first.
    superseded: HashMap<Uuid, Vec<PriceRecord>>,
    /// Shadow prices, by quote and model version, with when each was written.
    shadow: HashMap<(Uuid, String), (Prediction, DateTime<Utc>)>,
}

struct Row {
    quote: Quote,
    batch_id: Uuid,
    last_enqueued_at: DateTime<Utc>,
}

struct BatchRow {
    owner: String,
    size: u32,
    created_at: DateTime<Utc>,
    completed: Option<CompletedBatch>,
    event_attempted_at: Option<DateTime<Utc>>,
    event_sent: bool,
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

    /// Moves the last event try of every completed batch `age` into the past.
    pub fn age_event_attempts(&self, age: Duration) {
        let age = chrono::Duration::from_std(age).expect("a short age");
        for batch in self.lock().batches.values_mut() {
            if let Some(at) = &mut batch.event_attempted_at {
                *at -= age;
            }
        }
    }

    /// Every shadow price written, with when.
    pub fn shadow_prices(&self) -> Vec<(Prediction, DateTime<Utc>)> {
        self.lock().shadow.values().cloned().collect()
    }

    /// Moves the writing of every shadow price `age` into the past.
    pub fn age_shadow_prices(&self, age: Duration) {
        let age = chrono::Duration::from_std(age).expect("a short age");
        for (_, at) in self.lock().shadow.values_mut() {
            *at -= age;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().expect("no poisoned lock")
    }
}

impl QuoteStore for MemoryStore {
    async fn insert(
        &self,
        batch_id: Uuid,
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
        let Some(first) = quotes.first() else {
            return Ok(Inserted::New);
        };
        state.batches.insert(
            batch_id,
            BatchRow {
                owner: first.user_id.clone(),
                size: quotes.len() as u32,
                created_at: first.created_at,
                completed: None,
                event_attempted_at: None,
                event_sent: false,
            },
        );
        // As Postgres writes them: with the batch's owner and creation time.
        state.rows.extend(quotes.iter().map(|q| Row {
            quote: Quote {
                user_id: first.user_id.clone(),
                created_at: first.created_at,
                ..q.clone()
            },
            batch_id,
            last_enqueued_at: first.created_at,
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

    async fn batch(&self, owner: &str, id: Uuid) -> Result<Option<BatchProgress>, StoreError> {
        let state = self.lock();
        let Some(batch) = state.batches.get(&id).filter(|b| b.owner == owner) else {
            return Ok(None);
        };
        let count = |status: QuoteStatus| {
            state
                .rows
                .iter()
                .filter(|r| r.batch_id == id && r.quote.status() == status)
                .count() as u32
        };
        Ok(Some(BatchProgress {
            id,
            size: batch.size,
            pending: count(QuoteStatus::PendingMl),
            scored: count(QuoteStatus::Scored),
            failed: count(QuoteStatus::Failed),
            created_at: batch.created_at,
            completed_at: batch.completed.as_ref().map(|c| c.completed_at),
        }))
    }

    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.clamp(1, MAX_PAGE_SIZE) as usize;
        let position = |q: &Quote| (q.created_at, q.id);
        let mut quotes: Vec<Quote> = self
            .lock()
            .rows
            .iter()
            .filter(|r| filter.batch.is_none_or(|b| r.batch_id == b))
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

    async fn get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, StoreError> {
        let state = self.lock();
        Ok(state
            .rows
            .iter()
            .find(|r| r.quote.id == id && r.quote.user_id == owner)
            .map(|r| {
                let mut history = state.superseded.get(&id).cloned().unwrap_or_default();
                history.reverse();
                (r.quote.clone(), history)
            }))
    }

    async fn priced(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        let now = Utc::now();
        Ok(self
            .lock()
            .rows
            .iter()
            .map(|r| &r.quote)
            .filter(|q| ids.contains(&q.id) && still_valid(q, now))
            .cloned()
            .collect())
    }

    async fn reprice(
        &self,
        predictions: &[Prediction],
        validity: Duration,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let StoreState {
            rows, superseded, ..
        } = &mut *state;
        let now = now_as_stored();
        let mut repriced = 0;
        for p in predictions {
            let Some(row) = rows
                .iter_mut()
                .find(|r| r.quote.id == p.quote_id && still_valid(&r.quote, now))
            else {
                continue;
            };
            let kept = superseded.entry(p.quote_id).or_default();
            let current = row.quote.pricing.current_price().expect("a scored quote");
            if current.model_version == *p.model_version
                || kept.iter().any(|h| h.model_version == *p.model_version)
            {
                continue;
            }
            kept.push(PriceRecord {
                superseded_at: Some(now),
                ..current
            });
            row.quote.pricing = Pricing::Scored {
                premium: p.premium,
                range: Some(PriceRange {
                    low: p.premium_low,
                    high: p.premium_high,
                }),
                confidence: p.confidence,
                model_version: p.model_version.to_string(),
                scored_at: now,
                valid_until: Some(now + validity),
            };
            repriced += 1;
        }
        Ok(repriced)
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
        let mut batches = HashSet::new();
        for outcome in outcomes {
            let id = match outcome {
                Outcome::Scored(p) => p.quote_id,
                Outcome::Failed { id, .. } => *id,
            };
            let Some(row) = state
                .rows
                .iter_mut()
                .find(|r| r.quote.id == id && r.quote.status() == QuoteStatus::PendingMl)
            else {
                continue;
            };
            batches.insert(row.batch_id);
            let quote = &mut row.quote;
            match outcome {
                Outcome::Scored(p) => {
                    let scored_at = now_as_stored();
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
        Ok(Recorded {
            scored,
            failed,
            completed: complete(&mut state, batches),
        })
    }
}

impl ShadowStore for MemoryStore {
    async fn record_shadow(&self, predictions: &[Prediction]) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let now = now_as_stored();
        let mut written = 0;
        for p in predictions {
            let key = (p.quote_id, p.model_version.to_string());
            if let std::collections::hash_map::Entry::Vacant(e) = state.shadow.entry(key) {
                e.insert((p.clone(), now));
                written += 1;
            }
        }
        Ok(written)
    }
}

impl ReconcileStore for MemoryStore {
    type Stuck = MemoryStuckQuotes;

    async fn fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<Recorded, StoreError> {
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
        let batches: HashSet<Uuid> = due.iter().map(|&i| rows[i].batch_id).collect();
        Ok(Recorded {
            scored: 0,
            failed: due.len() as u64,
            completed: complete(&mut state, batches),
        })
    }

    async fn purge_expired_keys(&self, limit: i64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        Ok(purge_oldest(
            &mut state.keys,
            |kept| kept.expires_at,
            Utc::now(),
            limit,
        ))
    }

    async fn purge_shadow_prices(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let before = Utc::now() - chrono::Duration::from_std(older_than).expect("a retention");
        Ok(purge_oldest(
            &mut state.shadow,
            |(_, at)| *at,
            before,
            limit,
        ))
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
        let StoreState { rows, batches, .. } = &mut *state;
        let mut picked: Vec<&mut Row> = rows
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
            if let Some(batch) = batches.get_mut(&row.batch_id) {
                batch.completed = None;
                batch.event_attempted_at = None;
                batch.event_sent = false;
            }
        }
        Ok(picked.len() as u64)
    }

    async fn repriceable(&self, filter: &RepriceFilter) -> Result<RepricePage, StoreError> {
        let state = self.lock();
        let now = now_as_stored();
        let started = filter.after.map_or(now, |c| c.started);
        let mut picked: Vec<Uuid> = state
            .rows
            .iter()
            .filter(|r| filter.batch.is_none_or(|b| r.batch_id == b))
            .filter(|r| filter.after.is_none_or(|c| r.quote.id > c.id))
            .filter_map(|r| match &r.quote.pricing {
                Pricing::Scored {
                    scored_at,
                    valid_until: Some(valid_until),
                    ..
                } if *valid_until > now && *scored_at < started => Some(r.quote.id),
                _ => None,
            })
            .collect();
        picked.sort();
        picked.truncate(usize::try_from(filter.limit).unwrap_or(0));
        let next = (picked.len() as i64 == filter.limit)
            .then(|| picked.last())
            .flatten()
            .map(|&id| RepriceCursor { started, id });
        Ok(RepricePage { ids: picked, next })
    }
}

/// Now, to the microsecond, as Postgres keeps a time: a re-price cursor (microseconds)
/// then names a quote's position exactly.
fn now_as_stored() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a time in range")
}

/// Whether `quote` is scored with a price that still holds at `now`.
fn still_valid(quote: &Quote, now: DateTime<Utc>) -> bool {
    quote.pricing.expired(now) == Some(false)
}

impl BatchStore for MemoryStore {
    async fn complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(older_than).expect("a sane age");
        let mut state = self.lock();
        let mut open: Vec<(DateTime<Utc>, Uuid)> = state
            .batches
            .iter()
            .filter(|(_, b)| b.completed.is_none() && b.created_at < cutoff)
            .map(|(id, b)| (b.created_at, *id))
            .collect();
        open.sort();
        open.truncate(limit.max(0) as usize);
        Ok(complete(
            &mut state,
            open.into_iter().map(|(_, id)| id).collect(),
        ))
    }

    async fn events_sent(&self, batch_ids: &[Uuid]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for id in batch_ids {
            if let Some(batch) = state.batches.get_mut(id) {
                batch.event_sent = true;
            }
        }
        Ok(())
    }

    async fn claim_unsent_events(
        &self,
        retry_after: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        let now = Utc::now();
        let cutoff = now - chrono::Duration::from_std(retry_after).expect("a sane age");
        let mut state = self.lock();
        let mut due: Vec<(&DateTime<Utc>, &Uuid)> = state
            .batches
            .iter()
            .filter(|(_, b)| b.completed.is_some() && !b.event_sent)
            .filter_map(|(id, b)| b.event_attempted_at.as_ref().map(|at| (at, id)))
            .filter(|(at, _)| **at < cutoff)
            .collect();
        due.sort();
        due.truncate(limit.max(0) as usize);
        let ids: Vec<Uuid> = due.into_iter().map(|(_, id)| *id).collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let batch = state.batches.get_mut(id)?;
                batch.event_attempted_at = Some(now);
                batch.completed.clone()
            })
            .collect())
    }
}

/// Completes those of `candidates` not completed with no quote pending, as the write that
/// ends their last quotes does on Postgres (the lock held makes it the same statement).
fn complete(state: &mut StoreState, candidates: HashSet<Uuid>) -> Vec<CompletedBatch> {
    let StoreState { rows, batches, .. } = state;
    let now = Utc::now();
    let mut completed = Vec::new();
    for id in candidates {
        let Some(batch) = batches.get_mut(&id) else {
            continue;
        };
        let statuses: Vec<QuoteStatus> = rows
            .iter()
            .filter(|r| r.batch_id == id)
            .map(|r| r.quote.status())
            .collect();
        if batch.completed.is_some() || statuses.contains(&QuoteStatus::PendingMl) {
            continue;
        }
        let count = |s| statuses.iter().filter(|&&x| x == s).count() as u32;
        let done = CompletedBatch {
            id,
            owner: batch.owner.clone(),
            size: batch.size,
            scored: count(QuoteStatus::Scored),
            failed: count(QuoteStatus::Failed),
            created_at: batch.created_at,
            completed_at: now,
        };
        batch.completed = Some(done.clone());
        batch.event_attempted_at = Some(now);
        completed.push(done);
    }
    completed
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

/// A queue held in memory: each enqueue's ids, in messages of `ids_per_message`, and apart
/// those sent to be re-priced.
#[derive(Clone)]
pub struct MemoryQueue {
    messages: Arc<Mutex<Vec<Vec<Uuid>>>>,
    reprices: Arc<Mutex<Vec<Vec<Uuid>>>>,
    ids_per_message: usize,
}

impl MemoryQueue {
    pub fn new(ids_per_message: usize) -> Self {
        MemoryQueue {
            messages: Arc::default(),
            reprices: Arc::default(),
            ids_per_message: ids_per_message.clamp(1, MAX_IDS_PER_MESSAGE),
        }
    }

    /// Every id enqueued, in order.
    pub fn queued_ids(&self) -> Vec<Uuid> {
        self.messages.lock().expect("no poisoned lock").concat()
    }

    /// Every id sent to be re-priced, in order.
    pub fn reprice_ids(&self) -> Vec<Uuid> {
        self.reprices.lock().expect("no poisoned lock").concat()
    }
}

impl QuoteQueue for MemoryQueue {
    async fn enqueue(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        Ok(self.send(&self.messages, ids))
    }

    async fn enqueue_reprice(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        Ok(self.send(&self.reprices, ids))
    }
}

impl MemoryQueue {
    fn send(&self, to: &Mutex<Vec<Vec<Uuid>>>, ids: &[Uuid]) -> usize {
        let mut messages = to.lock().expect("no poisoned lock");
        let before = messages.len();
        messages.extend(ids.chunks(self.ids_per_message).map(<[Uuid]>::to_vec));
        messages.len() - before
    }
}

/// An event bus held in memory: every batch event published, in order. It can be told to
/// refuse every publish, as an unreachable bus would.
#[derive(Clone, Default)]
pub struct MemoryEvents {
    published: Arc<Mutex<Vec<CompletedBatch>>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryEvents {
    /// Every batch whose completion was published, in order.
    pub fn published(&self) -> Vec<CompletedBatch> {
        self.published.lock().expect("no poisoned lock").clone()
    }

    /// From now on, refuse (`true`) or take (`false`) every event.
    pub fn refuse(&self, refusing: bool) {
        self.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }
}

impl EventPublisher for MemoryEvents {
    async fn batches_completed(&self, batches: &[CompletedBatch]) -> Published {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Published {
                sent: Vec::new(),
                failed: batches
                    .iter()
                    .map(|b| (b.id, "refused by the fake".into()))
                    .collect(),
            };
        }
        self.published
            .lock()
            .expect("no poisoned lock")
            .extend_from_slice(batches);
        Published {
            sent: batches.iter().map(|b| b.id).collect(),
            failed: Vec::new(),
        }
    }
}

/// Removes from `map` at most `limit` entries whose time (`at`) is before `before`, the
/// oldest first, as the store's bounded purges do; how many.
fn purge_oldest<K: Clone + Eq + std::hash::Hash + Ord, V>(
    map: &mut HashMap<K, V>,
    at: impl Fn(&V) -> DateTime<Utc>,
    before: DateTime<Utc>,
    limit: i64,
) -> u64 {
    let mut old: Vec<(DateTime<Utc>, K)> = map
        .iter()
        .filter(|(_, v)| at(v) < before)
        .map(|(key, v)| (at(v), key.clone()))
        .collect();
    old.sort();
    old.truncate(usize::try_from(limit).unwrap_or(0));
    for (_, key) in &old {
        map.remove(key);
    }
    old.len() as u64
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
        block_on(store.insert(Uuid::now_v7(), &quotes, None, std::time::Instant::now())).unwrap();
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
        let events = MemoryEvents::default();
        let ids = pending(&store, 3);
        let policy = ReconcilePolicy {
            min_age: Duration::from_secs(60),
            max_attempts: 2,
            limit: 10,
            shadow_retention: crate::SHADOW_RETENTION,
        };
        let run = || block_on(reconcile(&store, &queue, &events, &policy)).unwrap();
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
                batches_completed: 1,
                events_published: 1,
                ..ReconcileReport::default()
            }
        );
        let published = events.published();
        assert_eq!(
            (published.len(), published[0].size, published[0].failed),
            (1, 3, 3)
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
            block_on(requeue_failed(&store, &queue, &events, &policy, &filter)).unwrap()
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
    fn an_event_the_bus_refused_is_published_by_a_later_run_once_its_try_is_old() {
        let (store, queue) = (MemoryStore::default(), MemoryQueue::new(100));
        let events = MemoryEvents::default();
        pending(&store, 2);
        let policy = ReconcilePolicy {
            min_age: Duration::from_secs(60),
            max_attempts: 1,
            limit: 10,
            shadow_retention: crate::SHADOW_RETENTION,
        };
        let run = || block_on(reconcile(&store, &queue, &events, &policy)).unwrap();
        store.age_enqueues(Duration::from_secs(61));
        events.refuse(true);
        let report = run();
        assert_eq!(
            (
                report.failed,
                report.batches_completed,
                report.event_publish_failures
            ),
            (2, 1, 1)
        );
        events.refuse(false);
        assert_eq!(
            run(),
            ReconcileReport::default(),
            "the last try is too recent"
        );
        store.age_event_attempts(Duration::from_secs(61));
        assert_eq!(run().events_published, 1);
        store.age_event_attempts(Duration::from_secs(61));
        assert_eq!(run(), ReconcileReport::default(), "sent once only");
        assert_eq!(events.published().len(), 1);
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
            shadow_retention: crate::SHADOW_RETENTION,
        };
        let first = block_on(store.claim_stuck(&policy)).unwrap();
        let second = block_on(store.claim_stuck(&policy)).unwrap();
        assert_eq!((first.ids().len(), second.ids().len()), (2, 0));
        drop(first);
        let again = block_on(store.claim_stuck(&policy)).unwrap();
        assert_eq!(again.ids().len(), 2);
        assert!(store.quotes().iter().all(|q| q.enqueue_attempts == 1));
    }

    #[test]
    fn a_reprice_pass_pages_through_valid_quotes_once_and_marks_its_messages() {
        let (store, queue) = (MemoryStore::default(), MemoryQueue::new(2));
        let ids = pending(&store, 5);
        let old: Vec<Outcome> = ids
            .iter()
            .map(|&quote_id| {
                Outcome::Scored(Prediction {
                    quote_id,
                    premium: 100.0,
                    premium_low: 90.0,
                    premium_high: 110.0,
                    confidence: 0.9,
                    model_version: "v1".into(),
                })
            })
            .collect();
        block_on(store.record(&old, Duration::from_secs(3600))).unwrap();
        let mut filter = RepriceFilter {
            batch: None,
            after: None,
            limit: 2,
        };
        let mut sent = Vec::new();
        for _ in 0..5 {
            let report =
                block_on(quote_pipeline::reconcile::reprice(&store, &queue, &filter)).unwrap();
            sent.push(report.reprice_enqueued);
            let Some(next) = report.reprice_next else {
                break;
            };
            filter.after = Some(RepriceCursor::decode(&next).unwrap());
        }
        assert_eq!(sent, [2, 2, 1], "then no next page");
        assert!(queue.queued_ids().is_empty(), "nothing sent as pending");
        let mut repriced = queue.reprice_ids();
        repriced.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(repriced, expected, "each valid quote once");
    }
}
