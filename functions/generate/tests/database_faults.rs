//! Writes meeting a database that fails in the middle, through a proxy in front of PgBouncer
//! that breaks the Postgres conversation at a chosen point (`testkit::pg_proxy`): each answer
//! says truthfully what was written, and in time.

use std::time::{Duration, Instant};

use generate::{App, handle};
use lambda_http::{Request, RequestExt};
use quote_pipeline::budget;
use quote_pipeline::config::DatabaseConfig;
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::store::PgStore;
use serde_json::{Value, json};
use testkit::api::{body_json, post_json};
use testkit::{PgFault, PgFaultProxy, TestEnv, lambda_context};
use uuid::Uuid;

/// The test's database reached through a fault proxy in front of its pooler.
async fn through_proxy(env: &TestEnv) -> (PgFaultProxy, App<PgStore, SqsQueue>) {
    let (_, rest) = env.database.url.split_once('@').expect("user@host");
    let (pooler, rest) = rest.split_once('/').expect("host/database");
    let name = rest.split('?').next().expect("a database name");
    let proxy = PgFaultProxy::start(pooler).await;
    let database = DatabaseConfig {
        url: proxy.url(name, "quote_app"),
        iam: None,
        max_connections: 2,
        acquire_timeout_ms: budget::DB_ACQUIRE.as_millis() as u64,
    };
    let app = App {
        store: PgStore::connect_lazy(&database).expect("a valid URL"),
        queue: env.queue(50),
        idempotency_ttl: Duration::from_secs(3600),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    };
    (proxy, app)
}

fn batch(count: u32, key: Option<&str>) -> Request {
    let mut request = post_json("/quotes/generate-batch", "uma", &json!({"count": count}));
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
    }
    request
}

fn ids_of(body: &Value) -> Vec<Uuid> {
    let mut ids = testkit::api::ids_of(body);
    ids.sort();
    ids
}

async fn saved_ids(env: &TestEnv) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT id FROM quotes ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_answers_write_outcome_unknown_and_a_resend_with_its_key_replays_it()
 {
    let env = TestEnv::new().await;
    let (proxy, app) = through_proxy(&env).await;
    proxy.set(PgFault::CutAfterCommit);
    let response = handle(&app, batch(7, Some("lost-answer"))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body = body_json(&response);
    assert_eq!(body["code"], "write_outcome_unknown", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("may or may not") && message.contains("Idempotency-Key"),
        "{message}"
    );
    let saved = saved_ids(&env).await;
    assert_eq!(saved.len(), 7, "the commit landed");
    assert!(
        env.queued_ids().await.is_empty(),
        "left to reconcile to queue"
    );

    proxy.set(PgFault::None);
    let again = handle(&app, batch(7, Some("lost-answer"))).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        ids_of(&body_json(&again)),
        saved,
        "the first write's answer"
    );
    assert_eq!(saved_ids(&env).await, saved, "nothing written twice");
}

#[tokio::test]
async fn a_connection_lost_before_commit_answers_database_unavailable_and_writes_nothing() {
    let env = TestEnv::new().await;
    let (proxy, app) = through_proxy(&env).await;
    proxy.set(PgFault::CutBeforeStatement);
    for key in [Some("cut-early"), None] {
        let response = handle(&app, batch(5, key)).await;
        assert_eq!(response.status(), 503, "{key:?}");
        assert_eq!(body_json(&response)["code"], "database_unavailable");
        assert!(saved_ids(&env).await.is_empty(), "{key:?}: nothing written");
    }
    proxy.set(PgFault::None);
    let again = handle(&app, batch(5, Some("cut-early"))).await;
    assert_eq!(again.status(), 202);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(ids_of(&body_json(&again)), saved_ids(&env).await);
}

#[tokio::test]
async fn a_write_to_a_stalled_database_answers_503_before_the_invocations_deadline() {
    let env = TestEnv::new().await;
    let (proxy, app) = through_proxy(&env).await;
    proxy.set(PgFault::Stall);
    // Time for the enqueue and the answer, and 1.5 s more: the write gets the 1.5 s.
    let write = Duration::from_millis(1500);
    let left = budget::ENQUEUE + budget::ANSWER + write;
    for key in [None, Some("stalled")] {
        let started = Instant::now();
        let request = batch(3, key).with_lambda_context(lambda_context(left));
        let response = handle(&app, request).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 503, "{key:?}");
        assert_eq!(body_json(&response)["code"], "database_unavailable");
        assert!(
            took >= write - Duration::from_millis(100) && took < write + Duration::from_secs(1),
            "{key:?}: the write used its time, not the invocation's: {took:?}"
        );
        assert!(took + budget::ANSWER < left, "{key:?}: answered in time");
    }
    proxy.set(PgFault::None);
    assert!(saved_ids(&env).await.is_empty(), "nothing written");
    // With less time left than the enqueue and the answer need, no write is started at all.
    let started = Instant::now();
    let short = batch(3, None).with_lambda_context(lambda_context(budget::ENQUEUE));
    let response = handle(&app, short).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert!(
        saved_ids(&env).await.is_empty(),
        "a healthy database, yet nothing written"
    );
}
