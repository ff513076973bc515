//! The create step on in-memory fakes of the store and the queue: each of its outcomes, and
//! what it measures for the function's metrics. What the SQL does with a key (races, expiry)
//! is tested against Postgres in `functions/generate/tests/api.rs`.

use std::time::{Duration, Instant};

use quote_pipeline::budget;
use quote_pipeline::create::{
    Answer, CreateError, Created, Creation, Deadline, Idempotency, create,
};
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::ports::{
    BatchProgress, IdempotencyRecord, Inserted, ListFilter, Page, QueueError, QuoteQueue,
    QuoteStore, Recorded, StoreError,
};
use quote_pipeline::pricing::{Outcome, Prediction};
use quote_pipeline::quote::{PriceRecord, Quote, QuoteInput, QuoteStatus};
use testkit::{MemoryQueue, MemoryStore};
use uuid::Uuid;

fn inputs(n: u32) -> Vec<QuoteInput> {
    generate(&GenerateParams::new(n))
}

/// A create with the whole of `generate`'s timeout ahead of it.
fn deadline() -> Deadline {
    Deadline {
        at: Instant::now() + budget::GENERATE_TIMEOUT,
        budget: budget::CREATE,
    }
}

/// `owner`'s create of `n` quotes, with the whole of `generate`'s time ahead.
async fn create_n(
    store: &impl QuoteStore,
    queue: &impl QuoteQueue,
    owner: &str,
    n: u32,
    key: Option<Idempotency>,
) -> Creation {
    create(store, queue, owner, inputs(n), key, answer, deadline()).await
}

fn key(name: &str, request: u8) -> Option<Idempotency> {
    Some(Idempotency {
        key: name.into(),
        request_hash: [request; 32],
        ttl: Duration::from_secs(60),
    })
}

/// The answer a caller would give: the batch and the ids, so a replay can be told apart.
fn answer(batch_id: Uuid, ids: &[Uuid]) -> Answer {
    Answer {
        status_code: 202,
        body: format!("{batch_id} {ids:?}"),
    }
}

/// A queue that refuses every send.
struct DownQueue;

impl QuoteQueue for DownQueue {
    async fn enqueue(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        Err(QueueError {
            failed: 1,
            total: 1,
            reason: format!("the queue is down ({} ids)", ids.len()),
        })
    }

    async fn enqueue_reprice(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        self.enqueue(ids).await
    }
}

/// A store that cannot be reached.
struct DownStore;

fn unavailable() -> StoreError {
    StoreError::Unavailable("connection refused".into())
}

impl QuoteStore for DownStore {
    async fn insert(
        &self,
        _: Uuid,
        _: &[Quote],
        _: Option<&IdempotencyRecord>,
        _: Instant,
    ) -> Result<Inserted, StoreError> {
        Err(unavailable())
    }
    async fn get(&self, _: &str, _: Uuid) -> Result<Option<Quote>, StoreError> {
        Err(unavailable())
    }
    async fn batch(&self, _: &str, _: Uuid) -> Result<Option<BatchProgress>, StoreError> {
        Err(unavailable())
    }
    async fn list(&self, _: &str, _: &ListFilter) -> Result<Page, StoreError> {
        Err(unavailable())
    }
    async fn get_with_history(
        &self,
        _: &str,
        _: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, StoreError> {
        Err(unavailable())
    }
    async fn pending(&self, _: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Err(unavailable())
    }
    async fn priced(&self, _: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Err(unavailable())
    }
    async fn record(&self, _: &[Outcome], _: Duration) -> Result<Recorded, StoreError> {
        Err(unavailable())
    }
    async fn reprice(&self, _: &[Prediction], _: Duration) -> Result<u64, StoreError> {
        Err(unavailable())
    }
}

#[tokio::test]
async fn new_quotes_are_saved_pending_and_queued_once_as_one_batch_of_the_caller() {
    let (store, queue) = (MemoryStore::default(), MemoryQueue::new(2));
    let Creation { outcome, report } = create_n(&store, &queue, "ann", 5, None).await;
    let Ok(Created::New {
        batch_id,
        ids,
        answer: given,
    }) = outcome
    else {
        panic!("not new: {outcome:?}");
    };
    assert_eq!(ids.len(), 5);
    assert_eq!(given, answer(batch_id, &ids));
    let batch = store
        .batch("ann", batch_id)
        .await
        .unwrap()
        .expect("the batch");
    assert_eq!((batch.size, batch.pending), (5, 5));
    assert_eq!(store.batch("bo", batch_id).await.unwrap(), None);
    let saved = store.quotes();
    assert_eq!(saved.iter().map(|q| q.id).collect::<Vec<_>>(), ids);
    assert!(
        saved
            .iter()
            .all(|q| q.user_id == "ann" && q.status() == QuoteStatus::PendingMl)
    );
    assert_eq!(queue.queued_ids(), ids);
    assert_eq!(
        (report.created, report.enqueued, report.queue_time.is_some()),
        (Some(5), Some(5), true)
    );
}

#[tokio::test]
async fn a_repeat_with_the_same_key_replays_the_first_answer_and_writes_nothing() {
    let (store, queue) = (MemoryStore::default(), MemoryQueue::new(100));
    let first = create_n(&store, &queue, "ann", 3, key("k", 1)).await;
    let Ok(Created::New {
        ids, answer: given, ..
    }) = first.outcome
    else {
        panic!("not new: {:?}", first.outcome);
    };
    let again = create_n(&store, &queue, "ann", 3, key("k", 1)).await;
    assert_eq!(again.outcome.unwrap(), Created::Replayed(given));
    assert_eq!(store.quotes().len(), 3);
    assert_eq!(queue.queued_ids(), ids, "the repeat queues nothing");
    assert_eq!(
        (again.report.created, again.report.queue_time),
        (None, None)
    );
}

#[tokio::test]
async fn a_key_reused_with_another_request_writes_nothing() {
    let (store, queue) = (MemoryStore::default(), MemoryQueue::new(100));
    create_n(&store, &queue, "ann", 2, key("k", 1))
        .await
        .outcome
        .unwrap();
    let other = create_n(&store, &queue, "ann", 4, key("k", 2)).await;
    assert!(
        matches!(other.outcome, Err(CreateError::KeyReused)),
        "{:?}",
        other.outcome
    );
    assert_eq!(store.quotes().len(), 2);
    assert_eq!(queue.queued_ids().len(), 2);
    let someone_else = create_n(&store, &queue, "bo", 4, key("k", 2)).await;
    assert!(
        matches!(someone_else.outcome, Ok(Created::New { .. })),
        "keys are per owner"
    );
}

#[tokio::test]
async fn queue_down_after_the_write_names_the_saved_quotes_left_pending() {
    let store = MemoryStore::default();
    let Creation { outcome, report } = create_n(&store, &DownQueue, "ann", 3, None).await;
    let Err(CreateError::NotQueued { batch_id, ids, .. }) = outcome else {
        panic!("not saved-but-not-queued: {outcome:?}");
    };
    let batch = store.batch("ann", batch_id).await.unwrap();
    assert_eq!(batch.map(|b| (b.size, b.pending)), Some((3, 3)));
    let saved = store.quotes();
    assert_eq!(saved.iter().map(|q| q.id).collect::<Vec<_>>(), ids);
    assert!(
        saved.iter().all(|q| q.status() == QuoteStatus::PendingMl),
        "saved as pending_ml, for reconcile to queue again"
    );
    assert_eq!(
        (report.created, report.queue_time.is_some(), report.enqueued),
        (Some(3), true, None)
    );
}

#[tokio::test]
async fn database_down_writes_and_queues_nothing() {
    let queue = MemoryQueue::new(100);
    let Creation { outcome, report } = create_n(&DownStore, &queue, "ann", 3, key("k", 1)).await;
    assert!(
        matches!(outcome, Err(CreateError::Store(StoreError::Unavailable(_)))),
        "{outcome:?}"
    );
    assert!(queue.queued_ids().is_empty());
    assert_eq!(
        (report.created, report.queue_time, report.enqueued),
        (None, None, None)
    );
}

/// The store's port with the deadline each write was given recorded.
#[derive(Default)]
struct RecordingStore {
    inner: MemoryStore,
    deadlines: std::sync::Mutex<Vec<Instant>>,
}

impl QuoteStore for RecordingStore {
    async fn insert(
        &self,
        batch_id: Uuid,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        deadline: Instant,
    ) -> Result<Inserted, StoreError> {
        self.deadlines.lock().unwrap().push(deadline);
        self.inner
            .insert(batch_id, quotes, idempotency, deadline)
            .await
    }
    async fn batch(&self, owner: &str, id: Uuid) -> Result<Option<BatchProgress>, StoreError> {
        self.inner.batch(owner, id).await
    }
    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        self.inner.get(owner, id).await
    }
    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        self.inner.list(owner, filter).await
    }
    async fn get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, StoreError> {
        self.inner.get_with_history(owner, id).await
    }
    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        self.inner.pending(ids).await
    }
    async fn priced(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        self.inner.priced(ids).await
    }
    async fn record(
        &self,
        outcomes: &[Outcome],
        validity: std::time::Duration,
    ) -> Result<Recorded, StoreError> {
        self.inner.record(outcomes, validity).await
    }
    async fn reprice(
        &self,
        predictions: &[Prediction],
        validity: std::time::Duration,
    ) -> Result<u64, StoreError> {
        self.inner.reprice(predictions, validity).await
    }
}

#[tokio::test]
async fn the_write_must_end_early_enough_to_leave_the_enqueue_and_the_answer_their_time() {
    let (store, queue) = (RecordingStore::default(), MemoryQueue::new(100));
    for left in [budget::GENERATE_TIMEOUT, Duration::from_secs(6)] {
        let at = Instant::now() + left;
        let started = Instant::now();
        let time = Deadline {
            at,
            budget: budget::CREATE,
        };
        let created = create(&store, &queue, "ann", inputs(2), None, answer, time).await;
        assert!(
            matches!(created.outcome, Ok(Created::New { .. })),
            "{left:?}"
        );
        let given = *store.deadlines.lock().unwrap().last().unwrap();
        assert!(given + budget::ENQUEUE + budget::ANSWER <= at, "{left:?}");
        assert!(given <= started + budget::CREATE.write + Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_write_with_too_little_time_left_is_not_started_and_answers_unavailable() {
    let (store, queue) = (RecordingStore::default(), MemoryQueue::new(100));
    let time = Deadline {
        at: Instant::now() + budget::ENQUEUE + budget::ANSWER + Duration::from_millis(100),
        budget: budget::CREATE,
    };
    let Creation { outcome, report } =
        create(&store, &queue, "ann", inputs(3), key("k", 1), answer, time).await;
    assert!(
        matches!(outcome, Err(CreateError::Store(StoreError::Unavailable(_)))),
        "{outcome:?}"
    );
    assert!(
        store.deadlines.lock().unwrap().is_empty(),
        "the store is not called"
    );
    assert!(store.inner.quotes().is_empty() && queue.queued_ids().is_empty());
    assert_eq!(report.created, None);
}
