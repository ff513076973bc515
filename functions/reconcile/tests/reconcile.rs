//! Reconcile against the real local Postgres and SQS emulator.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::quote::Quote;
use quote_pipeline::store::{PgStore, QuoteStore, ReconcilePolicy};
use reconcile::{App, handle};
use testkit::{TestEnv, lambda_context};
use uuid::Uuid;

fn policy(max_attempts: i32, limit: i64) -> ReconcilePolicy {
    ReconcilePolicy {
        min_age: Duration::ZERO,
        max_attempts,
        limit,
    }
}

fn app(env: &TestEnv, policy: ReconcilePolicy) -> App<PgStore, SqsQueue> {
    App {
        store: env.store.clone(),
        queue: env.queue(100),
        policy,
    }
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
        .insert(&quotes, None, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    quotes.iter().map(|q| q.id).collect()
}

async fn run(app: &App<PgStore, SqsQueue>) -> serde_json::Value {
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
    assert_eq!(
        run(&app).await,
        serde_json::json!({"failed": 0, "reenqueued": 250, "keys_purged": 0, "requeued": 0})
    );
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
    assert_eq!(
        run(&patient).await,
        serde_json::json!({"failed": 0, "reenqueued": 0, "keys_purged": 0, "requeued": 0})
    );
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
        serde_json::json!({"failed": 40, "reenqueued": 0, "keys_purged": 0, "requeued": 0})
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
        policy: policy(5, 1000),
    };
    assert_eq!(
        run(&app).await,
        serde_json::json!({"failed": 0, "reenqueued": 0, "keys_purged": 0, "requeued": 0})
    );
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
