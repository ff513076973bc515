//! The real store and queue, each call timed: wrapped around the clients that
//! `generate::handle` is given, they measure the time the handler itself spends waiting on
//! Postgres and on SQS, in the same invocation, with the same data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quote_pipeline::queue::{QueueError, QuoteQueue};
use quote_pipeline::quote::{PriceRecord, Quote};
use quote_pipeline::scoring::Prediction;
use quote_pipeline::store::{
    BatchProgress, IdempotencyRecord, Inserted, ListFilter, Outcome, Page, QuoteStore, Recorded,
    StoreError,
};
use uuid::Uuid;

/// Time accumulated since the last [`Clock::take`].
#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicU64>);

impl Clock {
    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn take(&self) -> Duration {
        Duration::from_nanos(self.0.swap(0, Ordering::Relaxed))
    }
}

pub struct Timed<T> {
    pub inner: T,
    pub clock: Clock,
}

impl<S: QuoteStore> QuoteStore for Timed<S> {
    async fn insert(
        &self,
        batch_id: Uuid,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        deadline: Instant,
    ) -> Result<Inserted, StoreError> {
        let started = Instant::now();
        let result = self
            .inner
            .insert(batch_id, quotes, idempotency, deadline)
            .await;
        self.clock.add(started.elapsed());
        result
    }

    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(owner, id).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn batch(&self, owner: &str, id: Uuid) -> Result<Option<BatchProgress>, StoreError> {
        let started = Instant::now();
        let result = self.inner.batch(owner, id).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        let started = Instant::now();
        let result = self.inner.list(owner, filter).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        let started = Instant::now();
        let result = self.inner.pending(ids).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_with_history(owner, id).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn priced(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        let started = Instant::now();
        let result = self.inner.priced(ids).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn reprice(
        &self,
        predictions: &[Prediction],
        validity: Duration,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.reprice(predictions, validity).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn record(
        &self,
        outcomes: &[Outcome],
        validity: Duration,
    ) -> Result<Recorded, StoreError> {
        let started = Instant::now();
        let result = self.inner.record(outcomes, validity).await;
        self.clock.add(started.elapsed());
        result
    }
}

impl<Q: QuoteQueue> QuoteQueue for Timed<Q> {
    async fn enqueue(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        let started = Instant::now();
        let result = self.inner.enqueue(ids).await;
        self.clock.add(started.elapsed());
        result
    }

    async fn enqueue_reprice(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        let started = Instant::now();
        let result = self.inner.enqueue_reprice(ids).await;
        self.clock.add(started.elapsed());
        result
    }
}
