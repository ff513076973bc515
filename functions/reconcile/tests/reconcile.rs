//! Reconcile against the real local Postgres and SQS emulator.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use quote_pipeline::events::{EventBridgeBus, EventPublisher};
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::quote::Quote;
use quote_pipeline::scoring::Prediction;
use quote_pipeline::store::{Outcome, PgStore, QuoteStore, ReconcilePolicy};
use reconcile::{App, handle};
use testkit::{MemoryEvents, TestBus, TestEnv, lambda_context};
use uuid::Uuid;

fn policy(max_attempts: i32, limit: i64) -> ReconcilePolicy {
    ReconcilePolicy {
        min_age: Duration::ZERO,
        max_attempts,
        limit,
        shadow_retention: testkit::SHADOW_RETENTION,
    }
}

fn app(env: &TestEnv, policy: ReconcilePolicy) -> App<PgStore, SqsQueue, MemoryEvents> {
    App {
        store: env.store.clone(),
        queue: env.queue(100),
        events: MemoryEvents::default(),
        policy,
    }
}

/// The sweep publishing on a bus of the emulator, whose events the test reads.
fn app_on_bus(
    env: &TestEnv,
    bus: &TestBus,
    policy: ReconcilePolicy,
) -> App<PgStore, SqsQueue, EventBridgeBus> {
    App {
        store: env.store.clone(),
        queue: env.queue(100),
        events: bus.events.clone(),
        policy,
    }
}

/// A run's report that failed and re-enqueued these, and did nothing else.
fn report(failed: u64, reenqueued: u64) -> serde_json::Value {
    serde_json::json!({
        "failed": failed, "reenqueued": reenqueued, "keys_purged": 0, "batches_completed": 0,
        "events_published": 0, "event_publish_failures": 0, "requeued": 0, "reprice_enqueued": 0,
        "shadow_prices_purged": 0
    })
}

/// Writes `n` pending quotes without queueing them, as when the queue refused the send.
async fn stranded(env: &TestEnv, n: u32) -> Vec<Uuid> {
    let params = quote_pipeline::generator::GenerateParams {
        seed: Some(4),
        ..quote_pipeline::generator::GenerateParams::new(n)
    };
    let now = chrono::Utc::now() - chrono::Duration::seconds(5);
    let quotes: Vec<Quote> = quote_pipeline::generator::generate(&params)
        .into_iter()
        .map(|input| Quote::new_pending("stranded-owner", input, now))
        .collect();
    env.store
        .insert(
            uuid::Uuid::now_v7(),
            &quotes,
            None,
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    quotes.iter().map(|q| q.id).collect()
}

async fn run<E: EventPublisher>(app: &App<PgStore, SqsQueue, E>) -> serde_json::Value {
    let report = handle(
        app,
        LambdaEvent::new(
            serde_json::json!({"source": "aws.events"}),
            lambda_context(Duration::from_secs(30)),
        ),
    )
    .await
    .expect("reconcile succeeds");
    serde_json::to_value(report).unwrap()
}

#[tokio::test]
async fn stranded_quotes_are_queued_again_and_their_attempt_counted() {
    let env = TestEnv::new().await;
    let ids = stranded(&env, 250).await;
    let app = app(&env, policy(5, 1000));
    assert_eq!(run(&app).await, report(0, 250));
    let queued: Vec<Uuid> = env.queued_ids().await;
    assert_eq!(queued.len(), 250);
    assert_eq!(
        queued.into_iter().collect::<HashSet<_>>(),
        ids.into_iter().collect()
    );
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT enqueue_attempts FROM quotes")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, [2]);

    // Just sent: not due again until `min_age` has passed.
    let patient = App {
        policy: ReconcilePolicy {
            min_age: Duration::from_secs(3600),
            ..policy(5, 1000)
        },
        ..app
    };
    assert_eq!(run(&patient).await, report(0, 0));
}

#[tokio::test]
async fn quotes_past_the_last_attempt_are_failed_with_the_reason() {
    let env = TestEnv::new().await;
    stranded(&env, 40).await;
    sqlx::query("UPDATE quotes SET enqueue_attempts = 3")
        .execute(&env.pool)
        .await
        .unwrap();
    let app = app(&env, policy(3, 1000));
    assert_eq!(
        run(&app).await,
        serde_json::json!({
            "failed": 40, "reenqueued": 0, "keys_purged": 0, "batches_completed": 1,
            "events_published": 1, "event_publish_failures": 0, "requeued": 0,
            "reprice_enqueued": 0, "shadow_prices_purged": 0
        })
    );
    let reasons: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT DISTINCT status, failure_reason FROM quotes")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [(
            "failed".to_string(),
            Some("not scored after 3 enqueue attempts".to_string())
        )]
    );
    assert!(env.queued_ids().await.is_empty());
}

#[tokio::test]
async fn work_per_run_is_bounded() {
    let env = TestEnv::new().await;
    stranded(&env, 300).await;
    // The quotes were written 5 s ago; once sent again they are not due for 2 s.
    let app = app(
        &env,
        ReconcilePolicy {
            min_age: Duration::from_secs(2),
            ..policy(5, 120)
        },
    );
    for expected in [120, 120, 60, 0] {
        assert_eq!(run(&app).await["reenqueued"], expected);
    }
    assert_eq!(env.queued_ids().await.len(), 300);
}

#[tokio::test]
async fn two_runs_at_once_never_send_a_quote_twice() {
    let env = TestEnv::new().await;
    let ids = stranded(&env, 600).await;
    // Written 5 s ago; once sent, not due again for 2 s, so a run that starts after the other
    // has committed sees only what that one left.
    let patient = ReconcilePolicy {
        min_age: Duration::from_secs(2),
        ..policy(5, 400)
    };
    let (a, b) = (app(&env, patient.clone()), app(&env, patient));
    let (ra, rb) = tokio::join!(run(&a), run(&b));
    let total = ra["reenqueued"].as_u64().unwrap() + rb["reenqueued"].as_u64().unwrap();
    assert_eq!(total, 600, "{ra} {rb}");
    let queued = env.queued_ids().await;
    assert_eq!(queued.len(), 600, "no quote is sent twice");
    assert_eq!(
        queued.into_iter().collect::<HashSet<_>>(),
        ids.into_iter().collect()
    );
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT enqueue_attempts FROM quotes")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, [2]);
}

#[tokio::test]
async fn a_queue_outage_leaves_the_attempt_uncounted() {
    let env = TestEnv::new().await;
    stranded(&env, 10).await;
    let dead = testkit::emulator_sdk_config("http://127.0.0.1:9").await;
    let config = quote_pipeline::config::QueueConfig {
        url: env.queue_url.clone(),
        ids_per_message: 100,
    };
    let app = App {
        store: env.store.clone(),
        queue: SqsQueue::new(&dead, &config),
        events: MemoryEvents::default(),
        policy: policy(5, 100),
    };
    let event = LambdaEvent::new(
        serde_json::json!({}),
        lambda_context(Duration::from_secs(30)),
    );
    assert!(handle(&app, event).await.is_err());
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT enqueue_attempts FROM quotes")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, [1], "a send that failed is not an attempt");
}

#[tokio::test]
async fn nothing_to_do_makes_no_queue_call() {
    let env = TestEnv::new().await;
    // A queue nothing answers: a sweep with nothing to send must not need it.
    let dead = testkit::emulator_sdk_config("http://127.0.0.1:9").await;
    let config = quote_pipeline::config::QueueConfig {
        url: env.queue_url.clone(),
        ids_per_message: 100,
    };
    let app = App {
        store: env.store.clone(),
        queue: SqsQueue::new(&dead, &config),
        events: MemoryEvents::default(),
        policy: policy(5, 1000),
    };
    assert_eq!(run(&app).await, report(0, 0));
}

/// `n` idempotency keys of one caller, expiring `expires_in` seconds from now (past when
/// negative).
async fn keys(env: &TestEnv, prefix: &str, n: i32, expires_in: i32) {
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, response_body, \
             expires_at) \
         SELECT 'keeper', $1 || i, '\\x00', 202, '{}', now() + make_interval(secs => $3) \
         FROM generate_series(1, $2) AS i",
    )
    .bind(prefix)
    .bind(n)
    .bind(f64::from(expires_in))
    .execute(&env.pool)
    .await
    .unwrap();
}

async fn remaining_keys(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_idempotency_keys_are_purged_in_bounded_batches_and_live_ones_stay() {
    let env = TestEnv::new().await;
    keys(&env, "expired-", 5, -60).await;
    keys(&env, "live-", 3, 3600).await;
    let app = app(&env, policy(5, 3));

    assert_eq!(run(&app).await["keys_purged"], 3, "at most `limit` a run");
    assert_eq!(run(&app).await["keys_purged"], 2);
    assert_eq!(run(&app).await["keys_purged"], 0);
    assert_eq!(remaining_keys(&env).await, ["live-1", "live-2", "live-3"]);
}

/// `n` shadow prices of model `version`, written `age_days` ago.
async fn shadow_prices(env: &TestEnv, version: &str, n: i32, age_days: i32) {
    sqlx::query(
        "INSERT INTO quote_shadow_prices (quote_id, model_version, premium, premium_low, \
             premium_high, confidence, priced_at) \
         SELECT gen_random_uuid(), $1, 100, 90, 110, 0.8, now() - make_interval(days => $3) \
         FROM generate_series(1, $2)",
    )
    .bind(version)
    .bind(n)
    .bind(age_days)
    .execute(&env.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn shadow_prices_past_their_retention_are_purged_in_bounded_batches_and_recent_ones_stay() {
    let env = TestEnv::new().await;
    shadow_prices(&env, "xgb-old-shadow", 5, 31).await;
    shadow_prices(&env, "xgb-new-shadow", 3, 29).await;
    let app = app(&env, policy(5, 3));
    assert_eq!(
        app.policy.shadow_retention,
        Duration::from_secs(30 * 86_400)
    );

    assert_eq!(
        run(&app).await["shadow_prices_purged"],
        3,
        "at most `limit` a run"
    );
    assert_eq!(run(&app).await["shadow_prices_purged"], 2);
    assert_eq!(run(&app).await["shadow_prices_purged"], 0);
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT model_version, count(*) FROM quote_shadow_prices GROUP BY model_version",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(left, [("xgb-new-shadow".to_owned(), 3)]);
}

#[tokio::test]
async fn giving_up_on_a_batchs_last_quotes_completes_it_with_one_event_of_its_counts() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    let ids = stranded(&env, 10).await;
    // Three of the batch were scored; the other seven stay pending through every attempt.
    let scored: Vec<Outcome> = ids[..3]
        .iter()
        .map(|&quote_id| {
            Outcome::Scored(Prediction {
                quote_id,
                premium: 100.0,
                premium_low: 80.0,
                premium_high: 120.0,
                confidence: 0.5,
                model_version: "m".into(),
            })
        })
        .collect();
    env.store
        .record(&scored, testkit::PRICE_VALIDITY)
        .await
        .unwrap();
    sqlx::query("UPDATE quotes SET enqueue_attempts = 3")
        .execute(&env.pool)
        .await
        .unwrap();
    let app = app_on_bus(&env, &bus, policy(3, 1000));
    let first = run(&app).await;
    assert_eq!(
        (first["failed"].clone(), first["batches_completed"].clone()),
        (serde_json::json!(7), serde_json::json!(1))
    );
    run(&app).await;
    let events = bus.received().await;
    assert_eq!(events.len(), 1, "one event for the batch: {events:?}");
    let (event, detail) = (&events[0], &events[0]["detail"]);
    assert_eq!(
        (&event["source"], &event["detail-type"]),
        (
            &serde_json::json!("quote-pipeline"),
            &serde_json::json!("QuoteBatchCompleted")
        )
    );
    assert_eq!(
        (
            &detail["size"],
            &detail["scored"],
            &detail["failed"],
            &detail["user_id"]
        ),
        (
            &serde_json::json!(10),
            &serde_json::json!(3),
            &serde_json::json!(7),
            &serde_json::json!("stranded-owner")
        )
    );
}

#[tokio::test]
async fn an_event_the_bus_did_not_take_is_published_by_a_later_run() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    stranded(&env, 5).await;
    sqlx::query("UPDATE quotes SET enqueue_attempts = 3")
        .execute(&env.pool)
        .await
        .unwrap();
    let dead = testkit::emulator_sdk_config("http://127.0.0.1:9").await;
    let unreachable = App {
        store: env.store.clone(),
        queue: env.queue(100),
        events: EventBridgeBus::new(&dead, &bus.name),
        policy: policy(3, 1000),
    };
    let first = run(&unreachable).await;
    assert_eq!(
        (
            first["batches_completed"].as_u64(),
            first["event_publish_failures"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let retried = run(&App {
        events: bus.events.clone(),
        ..unreachable
    })
    .await;
    assert_eq!(retried["events_published"], 1, "{retried}");
    assert_eq!(bus.received().await.len(), 1);
    let unsent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM quote_batches WHERE event_sent_at IS NULL")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(unsent, 0);
}

#[tokio::test]
async fn a_batch_completed_by_a_write_whose_writer_stopped_is_announced_by_a_later_run() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    let ids = stranded(&env, 6).await;
    // The write that ends the batch's last quotes completes it in the same statement; its
    // writer stops before publishing, as a `score` that timed out there would.
    let outcomes: Vec<Outcome> = ids
        .iter()
        .map(|&id| Outcome::Failed {
            id,
            reason: "not scored".into(),
        })
        .collect();
    let written = env
        .store
        .record(&outcomes, testkit::PRICE_VALIDITY)
        .await
        .unwrap();
    assert_eq!(
        written
            .completed
            .iter()
            .map(|b| (b.size, b.scored, b.failed))
            .collect::<Vec<_>>(),
        [(6, 0, 6)]
    );
    let app = app_on_bus(&env, &bus, policy(3, 1000));
    let report = run(&app).await;
    assert_eq!(report["events_published"], 1, "{report}");
    assert_eq!(run(&app).await["events_published"], 0, "once");
    let events = bus.received().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["failed"], 6);
}

#[tokio::test]
async fn a_batch_ended_by_writes_that_kept_no_counts_is_completed_by_a_later_run() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    stranded(&env, 6).await;
    // As if the deploy before the batch counts failed the batch's last quotes.
    sqlx::query("UPDATE quotes SET status = 'failed', failure_reason = 'not scored'")
        .execute(&env.pool)
        .await
        .unwrap();
    let app = app_on_bus(&env, &bus, policy(3, 1000));
    let report = run(&app).await;
    assert_eq!(
        (
            report["batches_completed"].as_u64(),
            report["events_published"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(run(&app).await["batches_completed"], 0, "once");
    let events = bus.received().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["failed"], 6);
}
