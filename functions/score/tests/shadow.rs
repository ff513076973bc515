//! Shadow scoring end to end: real Postgres, the real ML engine (at `ML_ENGINE_URL`) and the
//! score handler. The live model is the trained one, served by the engine or in process; the
//! shadow is a copy of it under another model version (the same trees, so the same prices),
//! as `SHADOW_MODEL_DIR` would name it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use lambda_runtime::LambdaEvent;
use quote_pipeline::metrics::Metrics;
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::scoring::Predictor;
use quote_pipeline::store::{PgStore, ShadowStore};
use score::{App, process};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::api::{body_json, get, post_json};
use testkit::{
    MemoryEvents, PRICE_VALIDITY, TestEnv, engine_client, engine_url, lambda_context, sqs_event,
    trained_model, trained_model_dir,
};
use uuid::Uuid;

/// A copy of the trained model in a directory of its own, under another version: its
/// `model.json` with a newline more (the version is a digest of the file, which
/// `EmbeddedModel::load` checks) and its metadata naming the new version. Returns the
/// directory and the version.
fn shadow_model_dir() -> (PathBuf, String) {
    let from = trained_model_dir();
    let dir = std::env::temp_dir().join(format!("shadow-model-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut model = std::fs::read(from.join("model.json")).unwrap();
    model.push(b'\n');
    let digest = Sha256::digest(&model);
    let version = format!(
        "xgb-{}",
        digest[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut metadata: Value =
        serde_json::from_slice(&std::fs::read(from.join("metadata.json")).unwrap()).unwrap();
    metadata["model_version"] = json!(version);
    std::fs::write(dir.join("model.json"), model).unwrap();
    std::fs::write(dir.join("metadata.json"), metadata.to_string()).unwrap();
    (dir, version)
}

fn shadow_model(dir: &Path) -> EmbeddedModel {
    EmbeddedModel::load(dir).expect("the shadow copy loads as SHADOW_MODEL_DIR would")
}

fn app<P: Predictor>(
    env: &TestEnv,
    predictor: P,
    shadow: Option<EmbeddedModel>,
) -> App<PgStore, P, MemoryEvents> {
    App {
        store: env.store.clone(),
        predictor,
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow,
    }
}

fn generate_app(env: &TestEnv) -> generate::App<PgStore, quote_pipeline::queue::SqsQueue> {
    generate::App {
        store: env.store.clone(),
        queue: env.queue(10),
        idempotency_ttl: Duration::from_secs(60),
        explainer: generate::explain::Explainer::new(trained_model_dir()),
    }
}

/// Creates `count` quotes of `user` through `generate`, the same ones for the same count;
/// returns their ids.
async fn create(env: &TestEnv, user: &str, count: u32) -> Vec<Uuid> {
    let response = generate::handle(
        &generate_app(env),
        post_json(
            "/quotes/generate-batch",
            user,
            &json!({"count": count, "seed": 15}),
        ),
    )
    .await;
    assert_eq!(response.status(), 202);
    testkit::api::ids_of(&body_json(&response))
}

/// Runs `app` on every message now on the queue, in one invocation; returns the ids of the
/// messages it failed and its metrics.
async fn score<P: Predictor>(
    app: &App<PgStore, P, MemoryEvents>,
    messages: &[Message],
) -> (Vec<String>, Value) {
    let event = LambdaEvent::new(sqs_event(messages), lambda_context(Duration::from_secs(30)));
    let (response, metrics): (_, Metrics) = process(app, event).await;
    let failed = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    (failed, metrics.to_emf(0))
}

/// Each scored quote's live median and its shadow median (if any), by quote.
async fn live_and_shadow(env: &TestEnv, version: &str) -> Vec<(Uuid, f64, Option<f64>)> {
    sqlx::query_as(
        "SELECT q.id, q.premium, s.premium FROM quotes q \
         LEFT JOIN quote_shadow_prices s ON s.quote_id = q.id AND s.model_version = $1 \
         WHERE q.status = 'scored' ORDER BY q.id",
    )
    .bind(version)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

async fn shadow_rows(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM quote_shadow_prices")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// A metric's values in an EMF document, one or many.
fn values(emf: &Value, name: &str) -> Vec<f64> {
    match &emf[name] {
        Value::Null => Vec::new(),
        Value::Array(list) => list.iter().map(|v| v.as_f64().unwrap()).collect(),
        one => vec![one.as_f64().unwrap()],
    }
}

#[tokio::test]
async fn each_scored_quote_gets_one_shadow_price_equal_to_the_live_one_in_either_mode() {
    let (dir, version) = shadow_model_dir();
    let env = TestEnv::new().await;
    let engine_app = app(
        &env,
        engine_client(&engine_url(), 5000),
        Some(shadow_model(&dir)),
    );
    let embedded_app = app(&env, trained_model(), Some(shadow_model(&dir)));
    let live_version = trained_model().model_version().to_string();
    assert_ne!(version, live_version);

    for (mode, count) in [("engine", 30), ("embedded", 20)] {
        create(&env, "alice", count).await;
        let messages = env.receive(10, 30).await;
        let (failed, emf) = match mode {
            "engine" => score(&engine_app, &messages).await,
            _ => score(&embedded_app, &messages).await,
        };
        assert!(failed.is_empty(), "{mode}: {failed:?}");
        assert_eq!(values(&emf, "QuotesScored"), [f64::from(count)], "{mode}");
        assert_eq!(
            values(&emf, "ShadowPricesRecorded"),
            [f64::from(count)],
            "{mode}"
        );
        assert_eq!(values(&emf, "ShadowFailures"), [0.0], "{mode}");
        let differences = values(&emf, "ShadowPriceDifference");
        assert_eq!(differences.len(), count as usize, "{mode}: one a quote");
        assert!(
            differences.iter().all(|d| *d == 0.0),
            "{mode}: {differences:?}"
        );
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["Name"] == "ShadowPriceDifference")
                .unwrap()["Unit"],
            "Percent"
        );
        env.delete_except(&messages, &failed).await;
    }
    let priced = live_and_shadow(&env, &version).await;
    assert_eq!(priced.len(), 50);
    for (id, live, shadow) in &priced {
        assert_eq!(
            shadow.map(f64::to_bits),
            Some(live.to_bits()),
            "{id}: the same trees price the same"
        );
    }
    assert_eq!(shadow_rows(&env).await, 50, "no other row");
    let (versions, confidences_in_range): (Vec<String>, bool) = sqlx::query_as(
        "SELECT array_agg(DISTINCT model_version), bool_and(confidence BETWEEN 0 AND 1 \
             AND premium_low <= premium AND premium <= premium_high AND priced_at <= now()) \
         FROM quote_shadow_prices",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((versions, confidences_in_range), (vec![version], true));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_message_delivered_again_or_twice_at_once_records_each_shadow_price_once() {
    let (dir, version) = shadow_model_dir();
    let env = TestEnv::new().await;
    let app = app(&env, trained_model(), Some(shadow_model(&dir)));
    create(&env, "alice", 40).await;
    let messages = env.receive(10, 30).await;
    // Two deliveries at once may both find the quotes pending and both price them.
    let ((failed_a, emf_a), (failed_b, emf_b)) =
        tokio::join!(score(&app, &messages), score(&app, &messages));
    assert!(failed_a.is_empty() && failed_b.is_empty());
    let recorded = [&emf_a, &emf_b]
        .iter()
        .flat_map(|emf| values(emf, "ShadowPricesRecorded"))
        .sum::<f64>();
    assert_eq!(recorded, 40.0, "each price written by one delivery only");
    assert_eq!(shadow_rows(&env).await, 40);

    // Later, every quote is scored: a delivery again finds nothing pending, shadows nothing.
    let (failed, emf) = score(&app, &messages).await;
    assert!(failed.is_empty());
    assert!(values(&emf, "ShadowPricesRecorded").is_empty(), "{emf}");
    assert_eq!(shadow_rows(&env).await, 40);

    // And the write itself keeps the first price of a version.
    let model = shadow_model(&dir);
    let ids: Vec<(Uuid, quote_pipeline::features::Features)> =
        sqlx::query_as::<_, (Uuid,)>("SELECT quote_id FROM quote_shadow_prices")
            .fetch_all(&env.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id,)| (id, [1.0; quote_pipeline::features::FEATURE_NAMES.len()]))
            .collect();
    let again = Predictor::predict(
        &model,
        &ids,
        std::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        env.store.record_shadow(&again.predictions).await.unwrap(),
        0
    );
    assert!(
        live_and_shadow(&env, &version)
            .await
            .iter()
            .all(|(_, live, shadow)| *shadow == Some(*live)),
        "the first shadow prices stand"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_shadow_write_postgres_refuses_leaves_live_scoring_whole() {
    let (dir, _) = shadow_model_dir();
    let env = TestEnv::new().await;
    // The application role may no longer write shadow prices: every shadow write fails.
    sqlx::query("REVOKE INSERT ON quote_shadow_prices FROM quote_app")
        .execute(&env.pool)
        .await
        .unwrap();
    let with_shadow = app(&env, trained_model(), Some(shadow_model(&dir)));
    let ids = create(&env, "alice", 30).await;
    let messages = env.receive(10, 30).await;
    let (failed, emf) = score(&with_shadow, &messages).await;

    assert!(failed.is_empty(), "no message comes back: {failed:?}");
    assert_eq!(values(&emf, "QuotesScored"), [30.0]);
    assert_eq!(values(&emf, "QuotesFailed"), [0.0]);
    assert_eq!(values(&emf, "ShadowPricesRecorded"), [0.0]);
    assert_eq!(values(&emf, "ShadowFailures"), [30.0]);
    assert!(values(&emf, "ShadowPriceDifference").is_empty());
    assert_eq!(
        values(&emf, "BatchesCompleted"),
        [1.0],
        "the batch completes"
    );
    assert_eq!(shadow_rows(&env).await, 0);
    let live: Vec<(Uuid, f64)> =
        sqlx::query_as("SELECT id, premium FROM quotes WHERE status = 'scored' ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(live.len(), ids.len());

    // The same quotes scored without a shadow, in another database, get the same prices.
    let plain_env = TestEnv::new().await;
    let plain = app(&plain_env, trained_model(), None);
    create(&plain_env, "alice", 30).await;
    let messages = plain_env.receive(10, 30).await;
    assert!(score(&plain, &messages).await.0.is_empty());
    let mut with: Vec<u64> = live.iter().map(|(_, p)| p.to_bits()).collect();
    let mut without: Vec<u64> =
        sqlx::query_scalar::<_, f64>("SELECT premium FROM quotes WHERE status = 'scored'")
            .fetch_all(&plain_env.pool)
            .await
            .unwrap()
            .into_iter()
            .map(f64::to_bits)
            .collect();
    with.sort_unstable();
    without.sort_unstable();
    assert_eq!(with, without);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn without_a_shadow_model_nothing_is_shadowed_or_measured() {
    let env = TestEnv::new().await;
    let app = app(&env, trained_model(), None);
    create(&env, "alice", 20).await;
    let messages = env.receive(10, 30).await;
    let (failed, emf) = score(&app, &messages).await;
    assert!(failed.is_empty());
    assert_eq!(values(&emf, "QuotesScored"), [20.0]);
    assert_eq!(shadow_rows(&env).await, 0);
    for name in [
        "ShadowPricesRecorded",
        "ShadowFailures",
        "ShadowPriceDifference",
    ] {
        assert!(emf.get(name).is_none(), "{name} in {emf}");
    }
}

#[tokio::test]
async fn a_shadow_price_is_recorded_but_never_shown() {
    let (dir, version) = shadow_model_dir();
    let env = TestEnv::new().await;
    let app = app(&env, trained_model(), Some(shadow_model(&dir)));
    let ids = create(&env, "alice", 3).await;
    let messages = env.receive(10, 30).await;
    assert!(score(&app, &messages).await.0.is_empty());
    assert_eq!(shadow_rows(&env).await, 3);

    let live_version = trained_model().model_version().to_string();
    let generate = generate_app(&env);
    for id in &ids {
        for query in [
            "",
            "?history=true",
            "?explain=true",
            "?history=true&explain=true",
        ] {
            let response =
                generate::handle(&generate, get(&format!("/quotes/{id}{query}"), "alice")).await;
            assert_eq!(response.status(), 200, "{query}");
            let body = body_json(&response);
            let text = body.to_string();
            assert!(!text.contains(&version), "{query}: {text}");
            assert!(!text.contains("shadow"), "{query}: {text}");
            assert_eq!(body["model_version"], live_version.as_str());
            if query.contains("history") {
                let history = body["price_history"].as_array().unwrap();
                assert_eq!(history.len(), 1, "the live price alone: {body}");
                assert_eq!(history[0]["model_version"], live_version.as_str());
            }
        }
    }
    let listed = generate::handle(&generate, get("/quotes?limit=100", "alice")).await;
    assert!(!body_json(&listed).to_string().contains(&version));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs the real `score` binary's init, embedded, with `shadow_dir` as its `SHADOW_MODEL_DIR`
/// and no Lambda Runtime API to poll (so even a good init ends in an error); returns whether
/// it succeeded and what it wrote.
async fn init_score(env: &TestEnv, shadow_dir: &Path) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_score"))
        .env_clear()
        .env("DATABASE_URL", &env.database.url)
        .env("SCORING_MODE", "embedded")
        .env("MODEL_DIR", trained_model_dir())
        .env("SHADOW_MODEL_DIR", shadow_dir)
        .env("EVENT_BUS_NAME", "quotes")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("init ends")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn a_malformed_shadow_model_stops_score_at_init() {
    let env = TestEnv::new().await;
    let (good, version) = shadow_model_dir();
    let (ok, text) = init_score(&env, &good).await;
    assert!(!ok, "no Runtime API to poll");
    assert!(
        text.contains("shadow model loaded") && text.contains(&version),
        "{text}"
    );

    // Its metadata names a version its model.json is not: the edit an operator might forget.
    let (bad, _) = shadow_model_dir();
    std::fs::copy(
        trained_model_dir().join("metadata.json"),
        bad.join("metadata.json"),
    )
    .unwrap();
    let (ok, text) = init_score(&env, &bad).await;
    assert!(!ok);
    assert!(!text.contains("shadow model loaded"), "{text}");
    assert!(
        text.contains("does not match model.json"),
        "init names the problem: {text}"
    );
    for dir in [good, bad] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
