//! The score step end to end: real Postgres, the SQS emulator, the real ML engine (at
//! `ML_ENGINE_URL`, started by the test command) and the score handler, fed the way Lambda's
//! event source mapping feeds it. Faults are injected by a proxy in front of the real engine.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use lambda_runtime::LambdaEvent;
use quote_pipeline::features::FEATURE_NAMES;
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::money::Money;
use quote_pipeline::scoring::Predictor;
use quote_pipeline::store::PgStore;
use score::{App, handle};
use serde_json::json;
use sqlx::Row as _;
use testkit::{
    Fault, FaultProxy, MemoryEvents, PRICE_VALIDITY, TestEnv, engine_client, engine_url,
    http_event, lambda_context, sqs_event, trained_model,
};
use uuid::Uuid;

fn app(env: &TestEnv, url: &str) -> App<PgStore, MlEngine, MemoryEvents> {
    App {
        store: env.store.clone(),
        predictor: engine_client(url, 2000),
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    }
}

/// `score` evaluating the engine's model in process.
fn embedded_app(env: &TestEnv) -> App<PgStore, EmbeddedModel, MemoryEvents> {
    App {
        store: env.store.clone(),
        predictor: trained_model(),
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    }
}

/// Creates quotes through the real `generate` handler; returns their ids.
async fn create_quotes(env: &TestEnv, count: u32, ids_per_message: usize) -> Vec<Uuid> {
    let app = generate::App {
        store: env.store.clone(),
        queue: env.queue(ids_per_message),
        idempotency_ttl: Duration::from_secs(3600),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    };
    let body = json!({"count": count, "seed": 99}).to_string();
    let event = http_event(
        "POST",
        "/quotes/generate-batch",
        Some("scorer-test"),
        Some("application/json"),
        &body,
    );
    let request = lambda_http::request::from_str(&event).unwrap();
    let response = generate::handle(&app, request).await;
    assert_eq!(response.status(), 202);
    testkit::api::ids_of(&testkit::api::body_json(&response))
}

/// Invokes the handler with `messages`; returns the ids of the messages it failed.
async fn invoke<P: Predictor>(
    app: &App<PgStore, P, MemoryEvents>,
    messages: &[Message],
    budget: Duration,
) -> Vec<String> {
    let event = LambdaEvent::new(sqs_event(messages), lambda_context(budget));
    handle(app, event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// status, premium, confidence, model version, scored at, failure reason: per quote.
type Row = (
    String,
    Option<f64>,
    Option<f64>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
);

/// A quote's facts, then its premium, confidence, model version and price range.
type PricedFacts = (
    String,
    String,
    i64,
    i32,
    i64,
    i32,
    chrono::NaiveDate,
    f64,
    f64,
    String,
    f64,
    f64,
);

/// Every scored quote's prices, as the model gave them and as the API answers them, ordered
/// by the quote's facts (the same quotes under other ids in another database come in the same
/// order); checks on the way that each range holds its median and each price is valid
/// [`PRICE_VALIDITY`] from its scoring.
async fn scored_prices(env: &TestEnv) -> Vec<(Uuid, [u64; 3], [String; 3])> {
    let rows = sqlx::query(
        "SELECT id, premium_low, premium, premium_high, scored_at, valid_until FROM quotes \
         WHERE status = 'scored' \
         ORDER BY coverage_type, coverage_level, estimated_amount, user_age, annual_revenue, \
                  num_employees, founded_at",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let validity = chrono::Duration::from_std(PRICE_VALIDITY).unwrap();
    rows.iter()
        .map(|r| {
            let id: Uuid = r.get("id");
            let range: [f64; 3] = ["premium_low", "premium", "premium_high"].map(|c| r.get(c));
            let [low, median, high] = range;
            assert!(
                0.0 <= low && low <= median && median <= high && high.is_finite(),
                "{id}: the range {low} ..= {high} does not hold {median}"
            );
            let scored_at: chrono::DateTime<chrono::Utc> = r.get("scored_at");
            let valid_until: chrono::DateTime<chrono::Utc> = r.get("valid_until");
            assert_eq!(valid_until - scored_at, validity, "{id}");
            let money = range.map(|v| Money::from_f64(v).unwrap().to_string());
            (id, range.map(f64::to_bits), money)
        })
        .collect()
}

async fn rows(env: &TestEnv) -> HashMap<Uuid, Row> {
    let rows = sqlx::query(
        "SELECT id, status, premium, confidence, model_version, scored_at, failure_reason FROM quotes",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let row = (
                r.get("status"),
                r.get("premium"),
                r.get("confidence"),
                r.get("model_version"),
                r.get("scored_at"),
                r.get("failure_reason"),
            );
            (r.get("id"), row)
        })
        .collect()
}

async fn engine_health() -> serde_json::Value {
    let body = reqwest_get(&format!("{}/health", engine_url())).await;
    serde_json::from_str(&body).expect("health is JSON")
}

/// A plain HTTP GET over a raw socket, so the tests need no HTTP client of their own.
async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("the ML engine is up");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[tokio::test]
async fn the_engine_serves_the_features_the_library_computes() {
    let health = engine_health().await;
    let names: Vec<&str> = health["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names, FEATURE_NAMES,
        "training and serving share one feature list"
    );
}

/// Generates 1000 quotes, feeds the queue to `app` like Lambda does, and checks every quote
/// ends scored by the engine's model, with both queues empty.
async fn a_batch_of_1000_ends_scored<P: Predictor>(
    env: &TestEnv,
    app: &App<PgStore, P, MemoryEvents>,
) -> HashMap<Uuid, Row> {
    let ids = create_quotes(env, 1000, 100).await;
    let invocations = env
        .drain(10, 30, async |event| {
            let response = handle(
                app,
                LambdaEvent::new(event, lambda_context(Duration::from_secs(30))),
            )
            .await;
            response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect()
        })
        .await;
    assert!(invocations >= 1);

    let version = engine_health().await["model_version"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = rows(env).await;
    assert_eq!(rows.len(), 1000);
    for id in &ids {
        let (status, premium, confidence, model_version, scored_at, reason) = &rows[id];
        assert_eq!(status, "scored");
        assert!(premium.is_some_and(|p| p > 0.0));
        assert!(confidence.is_some_and(|c| (0.0..=1.0).contains(&c)));
        assert_eq!(model_version.as_deref(), Some(version.as_str()));
        assert!(scored_at.is_some() && reason.is_none());
    }
    assert_eq!(scored_prices(env).await.len(), 1000);
    assert_eq!(env.depth(&env.queue_url).await, 0);
    assert_eq!(env.depth(&env.dlq_url).await, 0);
    rows
}

/// Delivers the same batch twice: the second delivery changes nothing.
async fn the_same_batch_twice<P: Predictor>(env: &TestEnv, app: &App<PgStore, P, MemoryEvents>) {
    create_quotes(env, 120, 40).await;
    let messages = env.receive(10, 30).await;
    assert_eq!(messages.len(), 3);
    assert!(
        invoke(app, &messages, Duration::from_secs(30))
            .await
            .is_empty()
    );
    let first = rows(env).await;
    assert!(first.values().all(|r| r.0 == "scored"));
    assert!(
        invoke(app, &messages, Duration::from_secs(30))
            .await
            .is_empty()
    );
    assert_eq!(rows(env).await, first);
}

#[tokio::test]
async fn a_batch_of_1000_ends_scored_and_the_queues_end_empty() {
    let env = TestEnv::new().await;
    a_batch_of_1000_ends_scored(&env, &app(&env, &engine_url())).await;
}

#[tokio::test]
async fn embedded_scoring_gives_the_engines_premiums() {
    let engine_env = TestEnv::new().await;
    a_batch_of_1000_ends_scored(&engine_env, &app(&engine_env, &engine_url())).await;
    let env = TestEnv::new().await;
    a_batch_of_1000_ends_scored(&env, &embedded_app(&env)).await;
    // Same seed, so the same quotes under other ids: match them by their facts.
    let priced = async |env: &TestEnv| -> Vec<PricedFacts> {
        sqlx::query_as(
            "SELECT coverage_type, coverage_level, estimated_amount, user_age, annual_revenue, num_employees, \
                    founded_at, premium, confidence, model_version, premium_low, premium_high \
             FROM quotes \
             ORDER BY coverage_type, coverage_level, estimated_amount, user_age, annual_revenue, \
                    num_employees, founded_at, premium, confidence",
        )
        .fetch_all(&env.pool)
        .await
        .unwrap()
    };
    let (by_model, by_engine) = (priced(&env).await, priced(&engine_env).await);
    assert_eq!(by_model.len(), 1000);
    let differ: Vec<_> = by_model
        .iter()
        .zip(&by_engine)
        .filter(|(m, e)| m != e)
        .take(3)
        .collect();
    assert!(
        differ.is_empty(),
        "embedded and engine premiums or ranges differ: {differ:?}"
    );
}

#[tokio::test]
async fn the_same_batch_delivered_twice_changes_nothing_the_second_time() {
    let env = TestEnv::new().await;
    the_same_batch_twice(&env, &app(&env, &engine_url())).await;
    let env = TestEnv::new().await;
    the_same_batch_twice(&env, &embedded_app(&env)).await;
}

/// Two unreadable messages among good ones: exactly they fail, and the good ones are scored.
async fn malformed_messages_fail_alone<P: Predictor>(
    env: &TestEnv,
    app: &App<PgStore, P, MemoryEvents>,
) {
    create_quotes(env, 60, 30).await;
    for body in ["not json", r#"{"v":9,"quote_ids":[]}"#] {
        env.sqs
            .send_message()
            .queue_url(&env.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let messages = env.receive(10, 30).await;
    assert_eq!(messages.len(), 4);
    let mut bad: Vec<String> = messages
        .iter()
        .filter(|m| !m.body().unwrap().contains("quote_ids\":[\""))
        .map(|m| m.message_id().unwrap().to_string())
        .collect();
    let mut failed = invoke(app, &messages, Duration::from_secs(30)).await;
    failed.sort();
    bad.sort();
    assert_eq!(failed, bad);
    assert!(rows(env).await.values().all(|r| r.0 == "scored"));
}

#[tokio::test]
async fn a_malformed_message_fails_alone() {
    let env = TestEnv::new().await;
    malformed_messages_fail_alone(&env, &app(&env, &engine_url())).await;
    let env = TestEnv::new().await;
    malformed_messages_fail_alone(&env, &embedded_app(&env)).await;
}

#[tokio::test]
async fn an_engine_that_is_down_or_failing_fails_the_messages_until_it_is_back() {
    let env = TestEnv::new().await;
    create_quotes(&env, 100, 25).await;
    let proxy = FaultProxy::start(&engine_url()).await;
    let app = App {
        store: env.store.clone(),
        predictor: engine_client(&proxy.url, 500),
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    };
    let messages = env.receive(10, 30).await;
    let all: Vec<String> = messages
        .iter()
        .map(|m| m.message_id().unwrap().to_string())
        .collect();
    for fault in [Fault::Down, Fault::Error500, Fault::Hang] {
        proxy.set(fault);
        let mut failed = invoke(&app, &messages, Duration::from_millis(2500)).await;
        failed.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(failed, expected, "{fault:?}: every message comes back");
        assert!(
            rows(&env)
                .await
                .values()
                .all(|r| r.0 == "pending_ml" && r.1.is_none()),
            "{fault:?}"
        );
    }
    proxy.set(Fault::None);
    assert!(
        invoke(&app, &messages, Duration::from_secs(30))
            .await
            .is_empty()
    );
    assert!(rows(&env).await.values().all(|r| r.0 == "scored"));
}

#[tokio::test]
async fn quotes_the_engine_rejects_for_their_values_end_failed_with_the_reason() {
    let env = TestEnv::new().await;
    let ids = create_quotes(&env, 80, 20).await;
    let proxy = FaultProxy::start(&engine_url()).await;
    proxy.set(Fault::BadFeatureOfEvenIds);
    let app = app(&env, &proxy.url);
    let messages = env.receive(10, 30).await;
    assert!(
        invoke(&app, &messages, Duration::from_secs(30))
            .await
            .is_empty(),
        "a rejection is final, not retried"
    );
    let rows = rows(&env).await;
    let even = |id: &Uuid| {
        id.simple()
            .to_string()
            .chars()
            .last()
            .unwrap()
            .to_digit(16)
            .unwrap()
            .is_multiple_of(2)
    };
    assert!(ids.iter().any(even) && !ids.iter().all(even));
    for id in &ids {
        let (status, premium, _, _, _, reason) = &rows[id];
        if even(id) {
            assert_eq!(status, "failed");
            assert!(premium.is_none());
            assert!(
                reason
                    .as_deref()
                    .unwrap()
                    .contains("non-numeric feature: risk_score"),
                "{reason:?}"
            );
        } else {
            assert_eq!(status, "scored");
        }
    }
}

#[tokio::test]
async fn the_sample_events_fail_exactly_their_malformed_messages() {
    let env = TestEnv::new().await;
    let app = app(&env, &engine_url());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/score");
    for (name, expected) in [
        ("good-batch", vec![]),
        ("reprice-batch", vec![]),
        (
            "batch-with-malformed-message",
            vec!["c0ffee00-0000-4000-8000-000000000bad"],
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&text).unwrap();
        let response = handle(
            &app,
            LambdaEvent::new(event, lambda_context(Duration::from_secs(10))),
        )
        .await;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(failed, expected, "{name}");
    }
}

#[tokio::test]
async fn an_engine_answer_no_retry_would_change_fails_its_quotes_at_once_with_the_reason() {
    let env = TestEnv::new().await;
    create_quotes(&env, 40, 20).await;
    let proxy = FaultProxy::start(&engine_url()).await;
    proxy.set(Fault::TooLarge);
    let app = app(&env, &proxy.url);
    let messages = env.receive(10, 30).await;
    let started = std::time::Instant::now();
    let failed = invoke(&app, &messages, Duration::from_secs(30)).await;
    assert!(
        failed.is_empty(),
        "its quotes are done: no message comes back"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not retried until the deadline: {:?}",
        started.elapsed()
    );
    let rows = rows(&env).await;
    assert_eq!(rows.len(), 40);
    for (status, premium, _, _, _, reason) in rows.values() {
        assert_eq!(status, "failed");
        assert!(premium.is_none());
        let reason = reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("will not change on retry") && reason.contains("413"),
            "{reason}"
        );
    }
}

/// Every corner of the API's bounds, as a client may send them, not as the generator draws
/// them: each numeric field at its least and its greatest, founded in 1800 or today, in every
/// coverage type and level. Imported as one CSV, as a client would.
fn edge_quotes_csv() -> (String, usize) {
    let today = chrono::Utc::now().date_naive();
    let mut csv = String::from(
        "coverage_type,coverage_level,estimated_amount,user_age,annual_revenue,num_employees,founded_at\n",
    );
    let mut count = 0;
    for corner in 0..32u32 {
        let pick = |bit: u32, low: &str, high: &str| {
            if corner & (1 << bit) == 0 {
                low.to_owned()
            } else {
                high.to_owned()
            }
        };
        let founded = pick(4, "1800-01-01", &today.to_string());
        for coverage_type in ["life", "health", "property"] {
            for level in ["basic", "standard", "premium"] {
                csv += &format!(
                    "{coverage_type},{level},{},{},{},{},{founded}\n",
                    pick(0, "1000", "50000000"),
                    pick(1, "18", "85"),
                    pick(2, "0", "100000000000"),
                    pick(3, "1", "1000000"),
                );
                count += 1;
            }
        }
    }
    (csv, count)
}

#[tokio::test]
async fn quotes_at_every_corner_of_the_apis_bounds_are_stored_and_priced_in_both_modes() {
    let (csv, count) = edge_quotes_csv();
    let mut premiums: Vec<HashMap<Uuid, f64>> = Vec::new();
    let mut ranges = Vec::new();
    for embedded in [false, true] {
        let env = TestEnv::new().await;
        let generate = generate::App {
            store: env.store.clone(),
            queue: env.queue(100),
            idempotency_ttl: Duration::from_secs(3600),
            explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
        };
        let event = http_event(
            "POST",
            "/quotes/import",
            Some("edges"),
            Some("text/csv"),
            &csv,
        );
        let response =
            generate::handle(&generate, lambda_http::request::from_str(&event).unwrap()).await;
        assert_eq!(response.status(), 202, "{:?}", response.body());
        let messages = env.receive(10, 30).await;
        let failed = if embedded {
            invoke(&embedded_app(&env), &messages, Duration::from_secs(30)).await
        } else {
            invoke(
                &app(&env, &engine_url()),
                &messages,
                Duration::from_secs(30),
            )
            .await
        };
        assert!(failed.is_empty(), "every message done");
        let rows = rows(&env).await;
        assert_eq!(rows.len(), count);
        let mut prices = HashMap::new();
        for (id, (status, premium, confidence, _, _, reason)) in &rows {
            assert_eq!(status, "scored", "{id}: {reason:?}");
            let (premium, confidence) = (premium.unwrap(), confidence.unwrap());
            // Above 0: the model gives no such price, and the score step would refuse it.
            assert!(premium.is_finite() && premium > 0.0, "{id}: {premium}");
            assert!(confidence > 0.0 && confidence <= 1.0, "{id}: {confidence}");
            prices.insert(*id, premium);
        }
        premiums.push(prices);
        let scored = scored_prices(&env).await;
        assert_eq!(scored.len(), count);
        ranges.push(scored);
    }
    // Quote by quote (the same order of facts), the same range to the bit, and so the same
    // rounded prices.
    let [by_engine, embedded] = [&ranges[0], &ranges[1]];
    for ((engine_id, engine, engine_money), (id, bits, money)) in by_engine.iter().zip(embedded) {
        assert_eq!(
            (engine, engine_money),
            (bits, money),
            "engine's {engine_id} and embedded {id}"
        );
    }
    // The same quotes in both databases have other ids; the prices, sorted, are the same.
    let mut sorted: Vec<Vec<u64>> = premiums
        .iter()
        .map(|p| {
            let mut v: Vec<u64> = p.values().map(|x| x.to_bits()).collect();
            v.sort_unstable();
            v
        })
        .collect();
    let embedded = sorted.pop().unwrap();
    assert_eq!(
        sorted.pop().unwrap(),
        embedded,
        "both modes price the edges alike"
    );
}

#[tokio::test]
async fn both_modes_report_the_time_spent_pricing_the_batch() {
    for embedded in [true, false] {
        let env = TestEnv::new().await;
        create_quotes(&env, 20, 10).await;
        let messages = env.receive(10, 30).await;
        let event = || {
            LambdaEvent::new(
                sqs_event(&messages),
                lambda_context(Duration::from_secs(10)),
            )
        };
        let (response, metrics) = if embedded {
            score::process(&embedded_app(&env), event()).await
        } else {
            score::process(&app(&env, &engine_url()), event()).await
        };
        assert!(response.batch_item_failures.is_empty());
        let emf = metrics.to_emf(0);
        assert!(emf["PricingTime"].is_number(), "embedded {embedded}: {emf}");
        assert_eq!(emf["MlEngineLatency"].is_null(), embedded, "{emf}");
    }
}
