//! The HTTP API against the real local Postgres and SQS emulator: each test has a database and
//! a queue of its own, and calls the handler with API Gateway v2 events, like Lambda does. The
//! requests turned away before anything is written are in `contract.rs`, on fakes.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use generate::explain::Explainer;
use generate::{App, handle};
use lambda_http::Request;
use quote_pipeline::config::QueueConfig;
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::pricing::{Outcome, Prediction};
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::quote::Quote;
use quote_pipeline::store::{PgStore, QuoteStore};
use serde_json::{Value, json};
use testkit::api::{CSV_HEADER, body_json, get, ids_of, post_json, request};
use testkit::{TestEnv, trained_model};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

async fn app(env: &TestEnv) -> App<PgStore, SqsQueue> {
    App {
        store: env.store.clone(),
        queue: env.queue(50),
        idempotency_ttl: DAY,
        explainer: Explainer::new(testkit::trained_model_dir()),
    }
}

fn one_quote() -> Value {
    json!({
        "coverage_type": "property", "coverage_level": "premium", "estimated_amount": 750000,
        "user_age": 51, "annual_revenue": 4200000, "num_employees": 37, "founded_at": "2009-04-15"
    })
}

#[tokio::test]
async fn generate_batch_of_1000_writes_and_enqueues_each_id_once() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(
        &app,
        post_json(
            "/quotes/generate-batch",
            "alice",
            &json!({"count": 1000, "seed": 42}),
        ),
    )
    .await;
    assert_eq!(response.status(), 202, "{:?}", response.body());
    let body = body_json(&response);
    assert_eq!(body["status"], "pending_ml");
    let ids = ids_of(&body);
    assert_eq!(ids.len(), 1000);

    let owners: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, count(*) FROM quotes GROUP BY user_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(owners, [("alice".to_string(), 1000)]);
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM quotes WHERE status = 'pending_ml' AND id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(pending, 1000);

    let queued = env.queued_ids().await;
    assert_eq!(queued.len(), 1000, "every id is queued exactly once");
    assert_eq!(
        queued.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
}

#[tokio::test]
async fn one_quote_is_written_queued_and_read_back_by_its_owner_only() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(&app, post_json("/quotes", "alice", &one_quote())).await;
    assert_eq!(response.status(), 202);
    let ids = ids_of(&body_json(&response));
    assert_eq!(env.queued_ids().await, ids);

    let path = format!("/quotes/{}", ids[0]);
    let mine = handle(&app, get(&path, "alice")).await;
    assert_eq!(mine.status(), 200);
    let quote = body_json(&mine);
    assert_eq!(quote["status"], "pending_ml");
    assert_eq!(quote["estimated_amount"], 750000);
    assert_eq!(quote["founded_at"], "2009-04-15");
    assert_eq!(quote["premium"], Value::Null);

    let theirs = handle(&app, get(&path, "mallory")).await;
    assert_eq!(theirs.status(), 404);
    let missing = handle(&app, get(&format!("/quotes/{}", Uuid::now_v7()), "alice")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        body_json(&theirs),
        body_json(&missing),
        "another user's id looks like no id at all"
    );
    let listed = handle(&app, get("/quotes", "mallory")).await;
    assert_eq!(body_json(&listed)["quotes"], json!([]));
}

#[tokio::test]
async fn a_quotes_history_is_answered_on_request_only_and_to_its_owner_only() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(&app, post_json("/quotes", "alice", &one_quote())).await;
    let path = format!("/quotes/{}", ids_of(&body_json(&response))[0]);
    let read = |query: &str, user: &str| handle(&app, get(&format!("{path}{query}"), user));
    let pending = body_json(&read("?history=true", "alice").await);
    assert_eq!(pending["price_history"], json!([]), "never priced");
    let plain = body_json(&read("?history=false", "alice").await);
    assert!(plain.get("price_history").is_none(), "{plain}");
    assert_eq!(read("?history=true", "mallory").await.status(), 404);
    let bad = read("?history=yes", "alice").await;
    assert_eq!(bad.status(), 400);
    assert_eq!(body_json(&bad)["details"][0]["field"], "history");
}

/// Scores `id` as the score step does, with these unrounded model outputs.
async fn score(env: &TestEnv, id: Uuid, [low, premium, high]: [f64; 3], validity: Duration) {
    let prediction = Prediction {
        quote_id: id,
        premium,
        premium_low: low,
        premium_high: high,
        confidence: 0.75,
        model_version: "xgb-0123456789ab".into(),
    };
    let recorded = env
        .store
        .record(&[Outcome::Scored(prediction)], validity)
        .await
        .unwrap();
    assert_eq!(recorded.scored, 1);
}

#[tokio::test]
async fn a_scored_quote_answers_its_price_range_in_cents_and_until_when_it_holds() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(&app, post_json("/quotes", "alice", &one_quote())).await;
    let id = ids_of(&body_json(&response))[0];
    // The model's f32 outputs: binary noise, and an exact half cent (512.125).
    score(
        &env,
        id,
        [512.125, 660.164_367_675_781_2, 801.004_9],
        30 * DAY,
    )
    .await;

    let read = handle(&app, get(&format!("/quotes/{id}"), "alice")).await;
    assert_eq!(read.status(), 200);
    let quote = body_json(&read);
    let listed = handle(&app, get("/quotes", "alice")).await;
    assert_eq!(body_json(&listed)["quotes"], json!([quote.clone()]));
    assert_eq!(
        ["premium_low", "premium", "premium_high", "currency"].map(|m| quote[m].clone()),
        [
            json!("512.13"),
            json!("660.16"),
            json!("801.00"),
            json!("USD")
        ]
    );
    assert_eq!(quote["confidence"], 0.75);
    let time = |member: &str| -> DateTime<Utc> { quote[member].as_str().unwrap().parse().unwrap() };
    assert_eq!(
        time("valid_until") - time("scored_at"),
        chrono::Duration::days(30)
    );
    assert_eq!(quote["price_expired"], false);

    // The unrounded outputs stay stored, for explanations and audits.
    let stored: (f64, f64, f64) =
        sqlx::query_as("SELECT premium_low, premium, premium_high FROM quotes WHERE id = $1")
            .bind(id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(stored, (512.125, 660.164_367_675_781_2, 801.004_9));
}

#[tokio::test]
async fn a_price_past_its_valid_until_is_answered_as_expired() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(&app, post_json("/quotes", "alice", &one_quote())).await;
    let id = ids_of(&body_json(&response))[0];
    score(&env, id, [10.0, 20.0, 30.0], Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let read = handle(&app, get(&format!("/quotes/{id}"), "alice")).await;
    let quote = body_json(&read);
    assert_eq!(
        (quote["status"].clone(), quote["price_expired"].clone()),
        (json!("scored"), json!(true))
    );
    assert_eq!(quote["premium"], "20.00", "an expired price is still shown");
    let listed = handle(&app, get("/quotes?status=scored", "alice")).await;
    assert_eq!(body_json(&listed)["quotes"][0]["price_expired"], true);
}

#[tokio::test]
async fn csv_import_of_a_few_hundred_rows_is_written_and_queued() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let mut csv = CSV_HEADER.to_string();
    for i in 0..300 {
        csv.push_str(&format!(
            "health,standard,{},{},{},{},2012-06-0{}\n",
            50_000 + i * 100,
            20 + i % 60,
            i * 1000,
            1 + i % 40,
            1 + i % 9
        ));
    }
    let response = handle(
        &app,
        request(
            "POST",
            "/quotes/import",
            Some("bob"),
            Some("text/csv"),
            &csv,
        ),
    )
    .await;
    assert_eq!(response.status(), 202, "{:?}", response.body());
    let ids = ids_of(&body_json(&response));
    assert_eq!(ids.len(), 300);
    assert_eq!(env.count_quotes().await, 300);
    let queued: HashSet<Uuid> = env.queued_ids().await.into_iter().collect();
    assert_eq!(queued, ids.into_iter().collect());
}

#[tokio::test]
async fn pagination_walks_every_quote_once_newest_first() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let mut created = HashSet::new();
    for seed in 0..3 {
        let response = handle(
            &app,
            post_json(
                "/quotes/generate-batch",
                "carol",
                &json!({"count": 45, "seed": seed}),
            ),
        )
        .await;
        created.extend(ids_of(&body_json(&response)));
    }
    handle(
        &app,
        post_json("/quotes/generate-batch", "dave", &json!({"count": 10})),
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/quotes?limit=20&cursor={c}"),
            None => "/quotes?limit=20".to_string(),
        };
        let page = body_json(&handle(&app, get(&path, "carol")).await);
        for q in page["quotes"].as_array().unwrap() {
            assert_eq!(q["user_id"], "carol");
            seen.push((
                q["created_at"].as_str().unwrap().to_string(),
                q["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 135);
    assert_eq!(
        seen.iter().map(|(_, id)| *id).collect::<HashSet<_>>(),
        created
    );
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let filtered = body_json(&handle(&app, get("/quotes?status=scored", "carol")).await);
    assert_eq!(filtered["quotes"], json!([]));
    let bad = handle(&app, get("/quotes?status=done", "carol")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(body_json(&bad)["details"][0]["field"], "status");
    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=garbage",
        "colour=red",
    ] {
        let bad = handle(&app, get(&format!("/quotes?{query}"), "carol")).await;
        assert_eq!(bad.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn queue_unreachable_answers_503_and_keeps_the_quotes_pending() {
    let env = TestEnv::new().await;
    // A port nothing listens on: the SQS client's calls are refused.
    let dead = testkit::emulator_sdk_config("http://127.0.0.1:9").await;
    let app = App {
        store: env.store.clone(),
        queue: SqsQueue::new(
            &dead,
            &QueueConfig {
                url: env.queue_url.clone(),
                ids_per_message: 50,
            },
        ),
        idempotency_ttl: DAY,
        explainer: Explainer::new(testkit::trained_model_dir()),
    };
    let response = handle(
        &app,
        post_json("/quotes/generate-batch", "erin", &json!({"count": 20})),
    )
    .await;
    assert_eq!(response.status(), 503);
    let body = body_json(&response);
    assert_eq!(body["code"], "queue_unavailable");
    let ids = ids_of(&body);
    assert_eq!(ids.len(), 20);
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM quotes WHERE status = 'pending_ml' AND id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        pending, 20,
        "the saved quotes stay pending_ml, to be enqueued again"
    );
    let (batch_id, _) = batch_of(&body);
    let (status, batch) = progress(&app, "erin", batch_id).await;
    assert_eq!(
        status, 200,
        "the 503 names the batch the saved quotes are in"
    );
    assert_eq!(without_times(&batch), expect(20, 20, 0, 0, false));
}

#[tokio::test]
async fn database_unreachable_answers_503_with_retry_after_and_queues_nothing() {
    let env = TestEnv::new().await;
    let dead = quote_pipeline::config::DatabaseConfig {
        url: "postgres://postgres@127.0.0.1:9/quotes".into(),
        iam: None,
        max_connections: 1,
        acquire_timeout_ms: 500,
    };
    let app = App {
        store: PgStore::connect_lazy(&dead).unwrap(),
        queue: env.queue(50),
        idempotency_ttl: DAY,
        explainer: Explainer::new(testkit::trained_model_dir()),
    };
    let response = handle(
        &app,
        post_json("/quotes/generate-batch", "erin", &json!({"count": 5})),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(body_json(&response)["code"], "database_unavailable");
    assert!(env.queued_ids().await.is_empty());
}

#[tokio::test]
async fn every_sample_event_gets_its_expected_status() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/generate");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("events/generate exists") {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let expected: u16 = name
            .split('-')
            .next()
            .unwrap()
            .parse()
            .expect("events are named <status>-<what>.json");
        let event = std::fs::read_to_string(&path).unwrap();
        let response = handle(&app, lambda_http::request::from_str(&event).unwrap()).await;
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{name}: {:?}",
            response.body()
        );
        seen += 1;
    }
    assert!(
        seen >= 8,
        "a sample event for every route and a few bad ones"
    );
}

fn with_key(mut request: Request, key: &str) -> Request {
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_writes_nothing_new() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let body = json!({"count": 30});
    let first = handle(
        &app,
        with_key(post_json("/quotes/generate-batch", "ivy", &body), "k-1"),
    )
    .await;
    assert_eq!(first.status(), 202);
    let again = handle(
        &app,
        with_key(post_json("/quotes/generate-batch", "ivy", &body), "k-1"),
    )
    .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(ids_of(&body_json(&again)), ids_of(&body_json(&first)));
    assert_eq!(
        body_json(&again)["batch_id"],
        body_json(&first)["batch_id"],
        "the replay answers the same batch"
    );
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM quote_batches")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(batches, 1, "the repeat writes no batch");
    assert_eq!(env.count_quotes().await, 30);
    assert_eq!(
        env.queued_ids().await.len(),
        30,
        "the repeat queues nothing"
    );

    let other = handle(
        &app,
        with_key(
            post_json("/quotes/generate-batch", "ivy", &json!({"count": 31})),
            "k-1",
        ),
    )
    .await;
    assert_eq!(other.status(), 422);
    assert_eq!(body_json(&other)["code"], "idempotency_key_reused");
    let someone_else = handle(
        &app,
        with_key(post_json("/quotes/generate-batch", "jay", &body), "k-1"),
    )
    .await;
    assert_eq!(someone_else.status(), 202, "keys are per caller");
    assert_eq!(env.count_quotes().await, 60);

    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&env.pool)
        .await
        .unwrap();
    let expired = handle(
        &app,
        with_key(post_json("/quotes/generate-batch", "ivy", &body), "k-1"),
    )
    .await;
    assert_eq!(expired.status(), 202);
    assert_ne!(
        ids_of(&body_json(&expired)),
        ids_of(&body_json(&first)),
        "an expired key starts afresh"
    );
    assert_ne!(
        body_json(&expired)["batch_id"],
        body_json(&first)["batch_id"]
    );

    for bad in ["", &"x".repeat(256), "has space"] {
        let mut request = post_json("/quotes/generate-batch", "ivy", &body);
        request.headers_mut().insert(
            "idempotency-key",
            lambda_http::http::HeaderValue::from_str(bad).unwrap(),
        );
        let response = handle(&app, request).await;
        assert_eq!(response.status(), 400, "{bad:?}");
        assert_eq!(
            body_json(&response)["details"][0]["field"],
            "Idempotency-Key"
        );
    }
}

#[tokio::test]
async fn racing_requests_with_one_key_write_once() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let csv = format!("{CSV_HEADER}life,basic,100000,40,500000,5,2010-01-01\n");
    let requests = (0..6).map(|_| {
        handle(
            &app,
            with_key(
                request(
                    "POST",
                    "/quotes/import",
                    Some("kim"),
                    Some("text/csv"),
                    &csv,
                ),
                "same",
            ),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let first = ids_of(&body_json(&answers[0]));
    for answer in &answers {
        assert_eq!(answer.status(), 202);
        assert_eq!(ids_of(&body_json(answer)), first);
    }
    assert_eq!(env.count_quotes().await, 1);
    assert_eq!(env.queued_ids().await, first);
}

#[tokio::test]
async fn no_filter_cursor_or_id_shows_another_users_quotes() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let theirs = ids_of(&body_json(
        &handle(
            &app,
            post_json("/quotes/generate-batch", "owner", &json!({"count": 30})),
        )
        .await,
    ));
    let owner_page = body_json(&handle(&app, get("/quotes?limit=10", "owner")).await);
    let their_cursor = owner_page["next_cursor"].as_str().unwrap().to_string();
    for query in [
        "",
        "?status=pending_ml",
        "?coverage_type=life",
        "?limit=100",
        &format!("?cursor={their_cursor}"),
    ] {
        let page = body_json(&handle(&app, get(&format!("/quotes{query}"), "intruder")).await);
        assert_eq!(page["quotes"], json!([]), "{query}");
    }
    for id in &theirs {
        for user in ["intruder", "OWNER", "owner ", ""] {
            let response = handle(&app, get(&format!("/quotes/{id}"), user)).await;
            assert!([401, 404].contains(&response.status().as_u16()), "{user:?}");
        }
    }
    for method in ["PUT", "PATCH", "DELETE"] {
        let response = handle(
            &app,
            request(
                method,
                &format!("/quotes/{}", theirs[0]),
                Some("intruder"),
                None,
                "",
            ),
        )
        .await;
        assert_eq!(response.status(), 405);
    }
    let untouched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM quotes WHERE user_id = 'owner' AND status = 'pending_ml'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(untouched, 30);
}

/// A write's answer: its batch and its ids.
fn batch_of(body: &Value) -> (Uuid, Vec<Uuid>) {
    (
        body["batch_id"].as_str().unwrap().parse().unwrap(),
        ids_of(body),
    )
}

/// `GET /quotes/batches/{id}` as `user`: the status and the body.
async fn progress(app: &App<PgStore, SqsQueue>, user: &str, batch_id: Uuid) -> (u16, Value) {
    let response = handle(app, get(&format!("/quotes/batches/{batch_id}"), user)).await;
    (response.status().as_u16(), body_json(&response))
}

/// The progress members `GET /quotes/batches/{id}` answers, but for the times.
fn expect(size: u32, pending: u32, scored: u32, failed: u32, finished: bool) -> Value {
    json!({
        "size": size, "counts": {"pending_ml": pending, "scored": scored, "failed": failed},
        "finished": finished
    })
}

fn without_times(body: &Value) -> Value {
    json!({
        "size": body["size"], "counts": body["counts"], "finished": body["finished"]
    })
}

/// Prices `ids` as `score` does (its step, the model in process), which completes the batches
/// it finishes; `failing` are failed instead, as the engine's refusal would.
async fn end(env: &TestEnv, ids: &[Uuid], failing: &[Uuid]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let failures: Vec<Outcome> = failing
        .iter()
        .map(|&id| Outcome::Failed {
            id,
            reason: "refused".into(),
        })
        .collect();
    env.store
        .record(&failures, testkit::PRICE_VALIDITY)
        .await
        .unwrap();
    let report = quote_pipeline::scoring::score(
        &env.store,
        &trained_model(),
        None::<&EmbeddedModel>,
        ids,
        deadline,
        testkit::PRICE_VALIDITY,
    )
    .await
    .unwrap();
    assert!(report.unfinished.is_empty());
}

/// Every id `GET /quotes?batch_id=` lists, walking its pages of `limit`.
async fn listed(app: &App<PgStore, SqsQueue>, user: &str, batch_id: Uuid, limit: u32) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = body_json(
            &handle(
                app,
                get(
                    &format!("/quotes?batch_id={batch_id}&limit={limit}{cursor}"),
                    user,
                ),
            )
            .await,
        );
        let quotes = page["quotes"].as_array().unwrap();
        ids.extend(
            quotes
                .iter()
                .map(|q| q["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn a_generated_batch_reports_its_progress_pending_partly_scored_and_finished() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    // Other quotes of the same caller, in another batch: not counted, not listed.
    handle(&app, post_json("/quotes", "pat", &one_quote())).await;
    let response = handle(
        &app,
        post_json(
            "/quotes/generate-batch",
            "pat",
            &json!({"count": 12, "seed": 3}),
        ),
    )
    .await;
    assert_eq!(response.status(), 202);
    let (batch_id, ids) = batch_of(&body_json(&response));

    let (status, body) = progress(&app, "pat", batch_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["batch_id"], json!(batch_id));
    assert_eq!(without_times(&body), expect(12, 12, 0, 0, false));
    assert!(body["created_at"].is_string());
    assert_eq!(body["finished_at"], Value::Null);
    let mut listed_ids = listed(&app, "pat", batch_id, 5).await;
    listed_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        listed_ids, expected,
        "the batch's quotes, each once, over pages"
    );

    end(&env, &ids[..5], &ids[5..6]).await;
    let (_, body) = progress(&app, "pat", batch_id).await;
    assert_eq!(without_times(&body), expect(12, 6, 5, 1, false));
    assert_eq!(body["finished_at"], Value::Null);

    end(&env, &ids[6..], &[]).await;
    let (_, body) = progress(&app, "pat", batch_id).await;
    assert_eq!(without_times(&body), expect(12, 0, 11, 1, true));
    assert!(body["finished_at"].is_string());
    let scored = body_json(
        &handle(
            &app,
            get(
                &format!("/quotes?batch_id={batch_id}&status=scored&limit=100"),
                "pat",
            ),
        )
        .await,
    );
    assert_eq!(scored["quotes"].as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn an_import_reports_its_progress_pending_partly_scored_and_finished() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let csv = format!(
        "{CSV_HEADER}health,basic,90000,33,400000,4,2019-05-01\n\
         life,premium,250000,40,1200000,12,2015-03-01\n\
         property,standard,1000000,58,9000000,80,1990-10-10\n"
    );
    let response = handle(
        &app,
        request(
            "POST",
            "/quotes/import",
            Some("quinn"),
            Some("text/csv"),
            &csv,
        ),
    )
    .await;
    assert_eq!(response.status(), 202);
    let (batch_id, ids) = batch_of(&body_json(&response));
    assert_eq!(
        without_times(&progress(&app, "quinn", batch_id).await.1),
        expect(3, 3, 0, 0, false)
    );
    end(&env, &ids[..1], &[]).await;
    assert_eq!(
        without_times(&progress(&app, "quinn", batch_id).await.1),
        expect(3, 2, 1, 0, false)
    );
    end(&env, &ids[1..], &[]).await;
    assert_eq!(
        without_times(&progress(&app, "quinn", batch_id).await.1),
        expect(3, 0, 3, 0, true)
    );
}

#[tokio::test]
async fn a_single_quote_is_a_batch_of_one_pending_then_finished() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(&app, post_json("/quotes", "rae", &one_quote())).await;
    let (batch_id, ids) = batch_of(&body_json(&response));
    assert_eq!(ids.len(), 1);
    assert_eq!(
        without_times(&progress(&app, "rae", batch_id).await.1),
        expect(1, 1, 0, 0, false)
    );
    assert_eq!(listed(&app, "rae", batch_id, 20).await, ids);
    end(&env, &ids, &[]).await;
    assert_eq!(
        without_times(&progress(&app, "rae", batch_id).await.1),
        expect(1, 0, 1, 0, true)
    );
}

#[tokio::test]
async fn another_users_batch_is_a_404_like_no_batch_and_lists_nothing() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let response = handle(
        &app,
        post_json("/quotes/generate-batch", "owner", &json!({"count": 4})),
    )
    .await;
    let (batch_id, _) = batch_of(&body_json(&response));
    let (theirs_status, theirs) = progress(&app, "intruder", batch_id).await;
    let (missing_status, missing) = progress(&app, "owner", Uuid::now_v7()).await;
    assert_eq!((theirs_status, missing_status), (404, 404));
    assert_eq!(
        theirs, missing,
        "another user's batch looks like no batch at all"
    );
    assert_eq!(theirs["code"], "not_found");
    let not_an_id = handle(&app, get("/quotes/batches/not-a-uuid", "owner")).await;
    assert_eq!(not_an_id.status(), 404);
    assert!(listed(&app, "intruder", batch_id, 100).await.is_empty());
    let bad = handle(&app, get("/quotes?batch_id=nope", "owner")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(body_json(&bad)["details"][0]["field"], "batch_id");
}

/// A batch's quotes are found by its owner and creation time, with its id telling it apart:
/// two writes of one owner in the same microsecond (concurrent requests) list apart.
#[tokio::test]
async fn two_batches_written_by_one_owner_at_the_same_instant_list_apart() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let now = Utc::now();
    let mut batches = Vec::new();
    for count in [3, 4] {
        let quotes: Vec<Quote> = generate(&GenerateParams::new(count))
            .into_iter()
            .map(|input| Quote::new_pending("twin", input, now))
            .collect();
        let batch_id = Uuid::now_v7();
        env.store
            .insert(batch_id, &quotes, None, std::time::Instant::now() + DAY)
            .await
            .unwrap();
        batches.push((
            batch_id,
            quotes.iter().map(|q| q.id).collect::<HashSet<_>>(),
        ));
    }
    for (batch_id, ids) in &batches {
        let listed: HashSet<Uuid> = listed(&app, "twin", *batch_id, 2)
            .await
            .into_iter()
            .collect();
        assert_eq!(&listed, ids);
        let (status, progress) = progress(&app, "twin", *batch_id).await;
        assert_eq!(
            (status, progress["size"].as_u64()),
            (200, Some(ids.len() as u64))
        );
    }
}

/// `?explain=true` on a quote scored by the embedded model: each feature's contribution to its
/// median, largest first, adding up to the median the model computed; asked of a quote with no
/// price, or priced by another model, it is a 409 saying why; without it nothing changes.
#[tokio::test]
async fn explain_true_takes_a_scored_quotes_median_apart_by_feature() {
    let env = TestEnv::new().await;
    let app = app(&env).await;
    let model = testkit::trained_model();
    let created = handle(
        &app,
        post_json(
            "/quotes/generate-batch",
            "alice",
            &json!({"count": 3, "seed": 5}),
        ),
    )
    .await;
    let ids = ids_of(&body_json(&created));
    let read = |id: Uuid, query: &str| get(&format!("/quotes/{id}{query}"), "alice");

    // Pending: nothing to explain yet.
    let pending = handle(&app, read(ids[0], "?explain=true")).await;
    assert_eq!(pending.status(), 409);
    let body = body_json(&pending);
    assert_eq!(body["code"], "not_scored");
    assert!(
        body["message"].as_str().unwrap().contains("pending_ml"),
        "{body}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    quote_pipeline::scoring::score(
        &env.store,
        &model,
        None::<&EmbeddedModel>,
        &ids[..1],
        deadline,
        30 * DAY,
    )
    .await
    .unwrap();
    let quote = env.store.get("alice", ids[0]).await.unwrap().unwrap();
    let x = quote_pipeline::features::features(&quote.input, quote.created_at.date_naive());
    let expected = model.explain(&x);

    let plain = body_json(&handle(&app, read(ids[0], "")).await);
    assert!(plain.get("explanation").is_none(), "{plain}");
    let response = handle(&app, read(ids[0], "?explain=true")).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let body = body_json(&response);
    let mut without = body.clone();
    without.as_object_mut().unwrap().remove("explanation");
    without["price_expired"] = plain["price_expired"].clone();
    assert_eq!(
        without, plain,
        "the quote itself is answered as without explain"
    );

    let explanation = &body["explanation"];
    assert_eq!(explanation["units"], "ln(premium)");
    assert_eq!(explanation["base"], f64::from(expected.base));
    let contributions = explanation["contributions"].as_array().unwrap();
    assert_eq!(contributions.len(), 13);
    let mut total = explanation["base"].as_f64().unwrap();
    let mut previous = f64::INFINITY;
    for c in contributions {
        let feature = c["feature"].as_str().unwrap();
        let i = quote_pipeline::features::FEATURE_NAMES
            .iter()
            .position(|&f| f == feature)
            .unwrap();
        assert_eq!(c["value"], x[i], "{feature}");
        assert_eq!(
            c["contribution"],
            f64::from(expected.contributions[i]),
            "{feature}"
        );
        let size = c["contribution"].as_f64().unwrap().abs();
        assert!(
            size <= previous,
            "sorted by absolute contribution, largest first"
        );
        previous = size;
        total += c["contribution"].as_f64().unwrap();
    }
    let median = f64::from(model.median_margin(&x));
    assert!(
        (total - median).abs() <= 1e-4 * median.abs().max(1.0),
        "{total} vs {median}"
    );

    // Priced by another model version: this model cannot explain that price.
    score(&env, ids[1], [100.0, 200.0, 300.0], DAY).await;
    let other = handle(&app, read(ids[1], "?explain=true")).await;
    assert_eq!(other.status(), 409);
    let body = body_json(&other);
    assert_eq!(body["code"], "model_version_mismatch");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("xgb-0123456789ab"),
        "{body}"
    );

    // Failed: nothing to explain, and the reason is named.
    env.store
        .record(
            &[Outcome::Failed {
                id: ids[2],
                reason: "not scored after 5 enqueue attempts".into(),
            }],
            DAY,
        )
        .await
        .unwrap();
    let failed = body_json(&handle(&app, read(ids[2], "?explain=true")).await);
    assert_eq!(failed["code"], "not_scored");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("5 enqueue attempts"),
        "{failed}"
    );

    let bad = handle(&app, read(ids[0], "?explain=yes")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(body_json(&bad)["details"][0]["field"], "explain");
    assert_eq!(
        handle(&app, read(ids[0], "?explain=false")).await.status(),
        200
    );
}

/// A model missing from the package fails explanations alone, with a 503 naming the file.
#[tokio::test]
async fn a_missing_model_answers_503_to_explanations_only() {
    let env = TestEnv::new().await;
    let mut app = app(&env).await;
    app.explainer = Explainer::new("/nonexistent/model".into());
    let created = handle(&app, post_json("/quotes", "alice", &one_quote())).await;
    let id = ids_of(&body_json(&created))[0];
    score(&env, id, [100.0, 200.0, 300.0], DAY).await;
    let path = format!("/quotes/{id}");
    assert_eq!(handle(&app, get(&path, "alice")).await.status(), 200);
    let explained = handle(&app, get(&format!("{path}?explain=true"), "alice")).await;
    assert_eq!(explained.status(), 503);
    let body = body_json(&explained);
    assert_eq!(body["code"], "explanations_unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/model/metadata.json"),
        "{body}"
    );
}
