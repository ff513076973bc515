//! A batch's completion event against the real Postgres, SQS emulator and ML engine, with an
//! EventBridge bus on the emulator whose rule copies each event to a queue the tests read: one
//! `QuoteBatchCompleted` per batch, however its last quotes end.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use lambda_runtime::LambdaEvent;
use quote_pipeline::events::EventBridgeBus;
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::store::PgStore;
use score::{App, handle};
use serde_json::{Value, json};
use testkit::{
    PRICE_VALIDITY, TestBus, TestEnv, engine_client, engine_url, http_event, lambda_context,
    sqs_event,
};
use uuid::Uuid;

fn app(env: &TestEnv, bus: &TestBus) -> App<PgStore, MlEngine, EventBridgeBus> {
    App {
        store: env.store.clone(),
        predictor: engine_client(&engine_url(), 5000),
        price_validity: PRICE_VALIDITY,
        events: bus.events.clone(),
        shadow: None,
    }
}

/// A generated batch of `count` quotes, `ids_per_message` ids a message; its id.
async fn batch(env: &TestEnv, count: u32, ids_per_message: usize) -> Uuid {
    let generate = generate::App {
        store: env.store.clone(),
        queue: env.queue(ids_per_message),
        idempotency_ttl: Duration::from_secs(60),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    };
    let body = json!({"count": count, "seed": 5}).to_string();
    let event = http_event(
        "POST",
        "/quotes/generate-batch",
        Some("events-owner"),
        Some("application/json"),
        &body,
    );
    let response =
        generate::handle(&generate, lambda_http::request::from_str(&event).unwrap()).await;
    assert_eq!(response.status(), 202);
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    body["batch_id"].as_str().unwrap().parse().unwrap()
}

/// Invokes `score` with `messages`; returns the ids of those it failed.
async fn invoke(app: &App<PgStore, MlEngine, EventBridgeBus>, messages: &[Message]) -> Vec<String> {
    let event = LambdaEvent::new(sqs_event(messages), lambda_context(Duration::from_secs(20)));
    handle(app, event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// The events the bus delivered, waiting a little for the emulator's rule.
async fn events(bus: &TestBus) -> Vec<Value> {
    let mut received = bus.received().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    received.extend(bus.received().await);
    received
}

fn detail(batch_id: Uuid, size: u64, scored: u64, failed: u64) -> Value {
    json!({"batch_id": batch_id, "size": size, "scored": scored, "failed": failed})
}

/// The members of an event's detail that `detail` names.
fn counts(event: &Value) -> Value {
    let d = &event["detail"];
    json!({"batch_id": d["batch_id"], "size": d["size"], "scored": d["scored"], "failed": d["failed"]})
}

#[tokio::test]
async fn two_invocations_finishing_a_batchs_last_quotes_at_once_publish_one_event() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    // Several rounds: each a race between two invocations over the two halves of a batch.
    for _ in 0..5 {
        let batch_id = batch(&env, 40, 5).await;
        let messages = env.receive(8, 60).await;
        assert_eq!(messages.len(), 8);
        let (a, b) = (app(&env, &bus), app(&env, &bus));
        let (fa, fb) = tokio::join!(invoke(&a, &messages[..4]), invoke(&b, &messages[4..]));
        assert!(fa.is_empty() && fb.is_empty(), "{fa:?} {fb:?}");
        env.delete_except(&messages, &[]).await;
        let received = events(&bus).await;
        assert_eq!(received.len(), 1, "one event per batch: {received:?}");
        assert_eq!(counts(&received[0]), detail(batch_id, 40, 40, 0));
        assert_eq!(received[0]["source"], "quote-pipeline");
        assert_eq!(received[0]["detail-type"], "QuoteBatchCompleted");
    }
}

#[tokio::test]
async fn the_last_message_delivered_twice_publishes_one_event() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    let app = app(&env, &bus);
    let batch_id = batch(&env, 30, 10).await;
    let messages = env.receive(3, 60).await;
    assert_eq!(messages.len(), 3);
    assert!(invoke(&app, &messages[..2]).await.is_empty());
    assert!(events(&bus).await.is_empty(), "not finished yet");
    // The last message twice at the same moment, then once more later.
    let last = &messages[2..];
    let (fa, fb) = tokio::join!(invoke(&app, last), invoke(&app, last));
    assert!(fa.is_empty() && fb.is_empty());
    assert!(invoke(&app, last).await.is_empty());
    let received = events(&bus).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(counts(&received[0]), detail(batch_id, 30, 30, 0));
}
