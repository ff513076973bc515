//! Re-pricing with a new model, against the real local Postgres, SQS emulator and model: an
//! operator's `reprice` request to reconcile sends still-valid scored quotes through the same
//! queue to `score`, which gives them the new model's price and keeps every earlier one.
//!
//! The "new model" is the trained model with its answers relabelled and scaled
//! ([`Retrained`]): training a second model would take the test a minute, and what is under
//! test is what the pipeline does with a second version, not the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use quote_pipeline::features::Features;
use quote_pipeline::metrics::Metrics;
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::reconcile::ReconcileReport;
use quote_pipeline::scoring::{Predicted, Predictor};
use quote_pipeline::store::{PgStore, ReconcilePolicy};
use score::{App, process};
use serde_json::{Value, json};
use testkit::api::{body_json, get, post_json};
use testkit::{
    Fault, FaultProxy, MemoryEvents, PRICE_VALIDITY, TestEnv, engine_url, lambda_context,
    trained_model,
};
use uuid::Uuid;

/// The trained model as a new version would answer: the same quotes, every premium scaled by
/// `factor`, under another model version.
struct Retrained<P> {
    model: P,
    version: &'static str,
    factor: f64,
}

impl<P: Predictor> Predictor for Retrained<P> {
    async fn predict(&self, quotes: &[(Uuid, Features)], deadline: Instant) -> Predicted {
        let mut predicted = self.model.predict(quotes, deadline).await;
        let version: Arc<str> = self.version.into();
        for p in &mut predicted.predictions {
            p.premium *= self.factor;
            p.premium_low *= self.factor;
            p.premium_high *= self.factor;
            p.model_version = version.clone();
        }
        predicted
    }
}

const V2: &str = "xgb-retrained-v2";

fn score_app<P: Predictor>(env: &TestEnv, predictor: P) -> App<PgStore, P, MemoryEvents> {
    App {
        store: env.store.clone(),
        predictor,
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    }
}

fn generate_app(env: &TestEnv) -> generate::App<PgStore, SqsQueue> {
    generate::App {
        store: env.store.clone(),
        queue: env.queue(10),
        idempotency_ttl: Duration::from_secs(60),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    }
}

fn reconcile_app(env: &TestEnv) -> reconcile::App<PgStore, SqsQueue, MemoryEvents> {
    reconcile::App {
        store: env.store.clone(),
        queue: env.queue(10),
        events: MemoryEvents::default(),
        policy: ReconcilePolicy {
            min_age: Duration::from_secs(300),
            max_attempts: 5,
            limit: 1000,
            shadow_retention: testkit::SHADOW_RETENTION,
        },
    }
}

/// Generates `count` quotes for `user`; returns their batch.
async fn generate(env: &TestEnv, user: &str, count: u32) -> Uuid {
    let response = generate::handle(
        &generate_app(env),
        post_json("/quotes/generate-batch", user, &json!({"count": count})),
    )
    .await;
    assert_eq!(response.status(), 202);
    body_json(&response)["batch_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Feeds the queue to `app` until it is empty; returns the metrics of every invocation.
async fn drain<P: Predictor>(env: &TestEnv, app: &App<PgStore, P, MemoryEvents>) -> Vec<Metrics> {
    let mut metrics = Vec::new();
    for _ in 0..20 {
        env.drain(10, 1, async |event| {
            let (response, m) = process(
                app,
                LambdaEvent::new(event, lambda_context(Duration::from_secs(10))),
            )
            .await;
            metrics.push(m);
            response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect()
        })
        .await;
        if env.depth(&env.queue_url).await == 0 {
            return metrics;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the queue did not drain");
}

/// The sum of one count over the invocations' metrics.
fn total(metrics: &[Metrics], name: &str) -> f64 {
    metrics
        .iter()
        .map(|m| match &m.to_emf(0)[name] {
            Value::Number(n) => n.as_f64().unwrap(),
            Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).sum(),
            _ => 0.0,
        })
        .sum()
}

async fn reprice(env: &TestEnv, request: Value) -> ReconcileReport {
    reconcile::handle(
        &reconcile_app(env),
        LambdaEvent::new(
            json!({ "reprice": request }),
            lambda_context(Duration::from_secs(10)),
        ),
    )
    .await
    .unwrap()
}

/// Each quote's current price: id, model version, premium, scored_at, valid_until.
type Current = (
    Uuid,
    String,
    f64,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

async fn prices(env: &TestEnv, batch: Uuid) -> Vec<Current> {
    sqlx::query_as(
        "SELECT id, model_version, premium, scored_at, valid_until FROM quotes \
         WHERE batch_id = $1 AND status = 'scored' ORDER BY id",
    )
    .bind(batch)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

async fn superseded(env: &TestEnv) -> Vec<(Uuid, String, f64)> {
    sqlx::query_as("SELECT quote_id, model_version, premium FROM quote_prices ORDER BY quote_id")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

async fn get_quote(env: &TestEnv, user: &str, path_and_query: &str) -> Value {
    let response = generate::handle(&generate_app(env), get(path_and_query, user)).await;
    assert_eq!(response.status(), 200, "{path_and_query}");
    body_json(&response)
}

#[tokio::test]
async fn a_reprice_keeps_every_price_makes_the_newest_current_and_touches_that_batch_only() {
    let env = TestEnv::new().await;
    let alice = generate(&env, "alice", 20).await;
    let alice_other = generate(&env, "alice", 5).await;
    let bob = generate(&env, "bob", 10).await;
    let first = score_app(&env, trained_model());
    drain(&env, &first).await;
    let before = prices(&env, alice).await;
    let (bob_before, other_before) = (prices(&env, bob).await, prices(&env, alice_other).await);
    assert_eq!((before.len(), bob_before.len()), (20, 10));
    let v1 = before[0].1.clone();
    assert_ne!(v1, V2);
    let completed: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, completed_at FROM quote_batches ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(first.events.published().len(), 3);

    let report = reprice(&env, json!({"batch_id": alice})).await;
    assert_eq!((report.reprice_enqueued, report.reprice_next), (20, None));
    let second = score_app(
        &env,
        Retrained {
            model: trained_model(),
            version: V2,
            factor: 1.25,
        },
    );
    let metrics = drain(&env, &second).await;
    assert_eq!(total(&metrics, "QuotesRepriced"), 20.0);

    let after = prices(&env, alice).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.1, V2, "the new model's price is current");
        assert_eq!(new.2, old.2 * 1.25);
        assert!(new.3 > old.3, "priced later");
        assert_eq!(
            new.4 - new.3,
            chrono::Duration::from_std(PRICE_VALIDITY).unwrap()
        );
    }
    let kept = superseded(&env).await;
    assert_eq!(
        kept,
        before
            .iter()
            .map(|(id, version, premium, ..)| (*id, version.clone(), *premium))
            .collect::<Vec<_>>(),
        "every earlier price is kept"
    );
    assert_eq!(
        prices(&env, bob).await,
        bob_before,
        "another user's quotes are untouched"
    );
    assert_eq!(
        prices(&env, alice_other).await,
        other_before,
        "another batch is untouched"
    );
    let completed_after: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, completed_at FROM quote_batches ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(completed_after, completed, "no batch is completed again");
    assert!(second.events.published().is_empty(), "nor announced again");

    // The API: the current price, and on request the history, newest first.
    let id = after[0].0;
    let plain = get_quote(&env, "alice", &format!("/quotes/{id}")).await;
    assert_eq!(plain["model_version"], V2);
    assert!(plain.get("price_history").is_none(), "{plain}");
    let with = get_quote(&env, "alice", &format!("/quotes/{id}?history=true")).await;
    let history = with["price_history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{with}");
    assert_eq!(
        (&history[0]["model_version"], &history[0]["premium"]),
        (&json!(V2), &plain["premium"])
    );
    assert_eq!(history[0]["superseded_at"], Value::Null);
    assert_eq!(history[1]["model_version"], json!(v1));
    assert_eq!(history[1]["superseded_at"], history[0]["priced_at"]);
    let bob_quote = get_quote(
        &env,
        "bob",
        &format!("/quotes/{}?history=true", bob_before[0].0),
    )
    .await;
    assert_eq!(bob_quote["price_history"].as_array().unwrap().len(), 1);

    // The same version again: sent, priced, and nothing written.
    let report = reprice(&env, json!({"batch_id": alice})).await;
    assert_eq!(report.reprice_enqueued, 20);
    let metrics = drain(&env, &second).await;
    assert_eq!(total(&metrics, "QuotesRepriced"), 0.0);
    assert_eq!(
        prices(&env, alice).await,
        after,
        "a second re-price changes nothing"
    );
    assert_eq!(superseded(&env).await, kept);
}

#[tokio::test]
async fn a_reprice_of_every_valid_quote_pages_through_them_once_and_skips_expired_ones() {
    let env = TestEnv::new().await;
    let alice = generate(&env, "alice", 12).await;
    let bob = generate(&env, "bob", 11).await;
    drain(&env, &score_app(&env, trained_model())).await;
    // Three of bob's prices have expired: they are not offers to re-price.
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE quotes SET valid_until = scored_at + interval '1 microsecond', \
             scored_at = scored_at - interval '31 days' \
         WHERE id IN (SELECT id FROM quotes WHERE batch_id = $1 ORDER BY id LIMIT 3) \
         RETURNING id",
    )
    .bind(bob)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let mut sent = 0;
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let report = reprice(&env, json!({"limit": 7, "after": after})).await;
        sent += report.reprice_enqueued;
        pages += 1;
        // Re-priced between pages, as `score` would while the pass goes on.
        drain(
            &env,
            &score_app(
                &env,
                Retrained {
                    model: trained_model(),
                    version: V2,
                    factor: 2.0,
                },
            ),
        )
        .await;
        match report.reprice_next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((sent, pages), (20, 3), "12 + 8 still valid, in pages of 7");
    let versions: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, model_version FROM quotes ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    for (id, version) in versions {
        assert_eq!(version == V2, !expired.contains(&id), "{id}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM quote_prices")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(kept, 20);
    let _ = alice;
}

#[tokio::test]
async fn a_reprice_the_model_cannot_price_leaves_the_current_price_in_place() {
    let env = TestEnv::new().await;
    let batch = generate(&env, "alice", 10).await;
    drain(&env, &score_app(&env, trained_model())).await;
    let before = prices(&env, batch).await;
    let proxy = FaultProxy::start(&engine_url()).await;
    // A 413 no retry would change: on a first pricing it fails the quotes.
    proxy.set(Fault::TooLarge);
    let config = quote_pipeline::config::MlEngineConfig {
        url: proxy.url.clone(),
        chunk_size: 100,
        concurrency: 4,
        timeout_ms: 2000,
        auth: quote_pipeline::config::MlEngineAuth::None,
    };
    let engine = quote_pipeline::ml_engine::MlEngine::new(&config, None).unwrap();
    assert_eq!(reprice(&env, json!({})).await.reprice_enqueued, 10);
    let metrics = drain(&env, &score_app(&env, engine)).await;
    assert_eq!(total(&metrics, "RepricesFailed"), 10.0);
    assert_eq!(total(&metrics, "QuotesFailed"), 0.0);
    assert_eq!(
        prices(&env, batch).await,
        before,
        "still scored, at the same price"
    );
    assert_eq!(superseded(&env).await, []);
}

#[tokio::test]
async fn a_message_in_the_format_before_repricing_is_scored_as_before() {
    let env = TestEnv::new().await;
    let app = generate::App {
        store: env.store.clone(),
        // Nothing queued by the write: the message below is the only one.
        queue: testkit::MemoryQueue::new(10),
        idempotency_ttl: Duration::from_secs(60),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    };
    let response = generate::handle(
        &app,
        post_json("/quotes/generate-batch", "alice", &json!({"count": 3})),
    )
    .await;
    let ids = body_json(&response)["ids"].clone();
    let body = format!(r#"{{"v":1,"quote_ids":{ids}}}"#);
    env.sqs
        .send_message()
        .queue_url(&env.queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
    let metrics = drain(&env, &score_app(&env, trained_model())).await;
    assert_eq!(total(&metrics, "QuotesScored"), 3.0);
}
