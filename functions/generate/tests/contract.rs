//! The HTTP API's contract for requests it turns away, on in-memory fakes of the store and the
//! queue: every kind of bad request gets its 4xx naming the fault, and nothing is written or
//! queued. What needs Postgres or SQS themselves (the SQL, idempotency races, outages) is in
//! `api.rs`, against the real services.

use generate::{App, MAX_CSV_BYTES, MAX_JSON_BYTES, handle};
use lambda_http::{Body, Request};
use serde_json::json;
use testkit::api::{CSV_HEADER, body_json, get, post_json, request};
use testkit::{MemoryQueue, MemoryStore};
use uuid::Uuid;

fn app() -> App<MemoryStore, MemoryQueue> {
    App {
        store: MemoryStore::default(),
        queue: MemoryQueue::new(50),
        idempotency_ttl: std::time::Duration::from_secs(86_400),
        explainer: generate::explain::Explainer::new(testkit::trained_model_dir()),
    }
}

fn assert_nothing_written(app: &App<MemoryStore, MemoryQueue>) {
    assert!(app.store.quotes().is_empty(), "nothing may be written");
    assert!(app.queue.queued_ids().is_empty(), "nothing may be queued");
}

#[tokio::test]
async fn a_csv_with_one_bad_line_names_it_and_writes_nothing() {
    let app = app();
    let csv = format!(
        "{CSV_HEADER}life,basic,100000,40,500000,5,2010-01-01\nlife,basic,100000,12,500000,5,2010-01-01\nlife,basic,100000,40,500000,5,2010-01-01\n"
    );
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
    assert_eq!(response.status(), 422);
    let body = body_json(&response);
    assert_eq!(body["code"], "invalid_csv");
    assert_eq!(
        body["details"],
        json!([{"line": 3, "field": "user_age", "message": "must be a whole number from 18 to 85"}])
    );
    assert_nothing_written(&app);
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_fault_and_writes_nothing() {
    let app = app();
    let batch = "/quotes/generate-batch";
    let cases: Vec<(Request, u16, &str, Option<&str>)> = vec![
        (
            post_json(batch, "u", &json!({"count": 0})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            post_json(batch, "u", &json!({"count": 1001})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            post_json(batch, "u", &json!({"count": -5})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            post_json(batch, "u", &json!({"count": 2.5})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            post_json(batch, "u", &json!({"count": "10"})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            post_json(batch, "u", &json!({})),
            422,
            "validation_failed",
            Some("count"),
        ),
        (
            request("POST", batch, Some("u"), Some("application/json"), ""),
            400,
            "missing_body",
            None,
        ),
        (
            request(
                "POST",
                batch,
                Some("u"),
                Some("application/json"),
                "{count: 3",
            ),
            400,
            "invalid_json",
            None,
        ),
        (
            request("POST", batch, Some("u"), Some("application/json"), "[1,2]"),
            400,
            "invalid_json",
            None,
        ),
        (
            request(
                "POST",
                batch,
                Some("u"),
                Some("text/plain"),
                r#"{"count":3}"#,
            ),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            request("POST", batch, Some("u"), None, r#"{"count":3}"#),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            post_json("/quotes", "u", &json!({"coverage_type": "pet"})),
            422,
            "validation_failed",
            Some("coverage_type"),
        ),
        (
            request(
                "POST",
                "/quotes",
                Some("u"),
                Some("application/json"),
                &format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_JSON_BYTES)),
            ),
            413,
            "body_too_large",
            None,
        ),
        (
            request(
                "POST",
                "/quotes/import",
                Some("u"),
                Some("text/csv"),
                &"x".repeat(MAX_CSV_BYTES + 1),
            ),
            413,
            "body_too_large",
            None,
        ),
        (
            request(
                "POST",
                "/quotes/import",
                Some("u"),
                Some("application/json"),
                CSV_HEADER,
            ),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            post_json(batch, "", &json!({"count": 3})),
            401,
            "unauthorized",
            None,
        ),
        (
            request(
                "POST",
                batch,
                None,
                Some("application/json"),
                r#"{"count":3}"#,
            ),
            401,
            "unauthorized",
            None,
        ),
        (
            request("GET", "/quotes", None, None, ""),
            401,
            "unauthorized",
            None,
        ),
        (
            request("DELETE", "/quotes", Some("u"), None, ""),
            405,
            "method_not_allowed",
            None,
        ),
        (get("/nowhere", "u"), 404, "not_found", None),
    ];
    for (i, (req, status, code, field)) in cases.into_iter().enumerate() {
        let response = handle(&app, req).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "case {i}: {:?}",
            response.body()
        );
        let body = body_json(&response);
        assert_eq!(body["code"], code, "case {i}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case {i}"
        );
        if let Some(field) = field {
            assert!(
                body["details"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["field"] == field),
                "case {i}: {body}"
            );
        }
    }
    assert_nothing_written(&app);
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let app = app();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
        .unwrap();
    // The paths section: a path at two spaces of indent, its methods at four.
    let mut documented: Vec<(String, String)> = Vec::new();
    let mut path = None;
    for line in doc
        .lines()
        .skip_while(|l| *l != "paths:")
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.is_empty())
    {
        if let Some(p) = line.strip_prefix("  /") {
            path = Some(format!("/{}", p.trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && ["get", "post", "put", "patch", "delete"].contains(&m)
        {
            documented.push((m.to_uppercase(), path.clone().unwrap()));
        }
    }
    assert_eq!(documented.len(), 6, "{documented:?}");
    for path in [
        "/quotes",
        "/quotes/generate-batch",
        "/quotes/import",
        "/quotes/{id}",
        "/quotes/batches/{id}",
    ] {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let concrete = path.replace("{id}", &Uuid::now_v7().to_string());
            let response = handle(&app, request(method, &concrete, Some("doc"), None, "")).await;
            let served = response.status() != 405;
            let listed = documented.contains(&(method.to_string(), path.to_string()));
            assert_eq!(
                served, listed,
                "{method} {path}: served {served}, documented {listed}"
            );
            if !served {
                assert!(response.headers().contains_key("allow"));
            }
        }
    }
}

#[tokio::test]
async fn bytes_no_emulator_can_carry_still_get_a_4xx() {
    let app = app();
    let mut latin1 = post_json("/quotes/generate-batch", "u", &json!({"count": 1}));
    latin1.headers_mut().insert(
        "idempotency-key",
        lambda_http::http::HeaderValue::from_bytes(b"\xd7\xf8\x9b").unwrap(),
    );
    assert_eq!(handle(&app, latin1).await.status(), 400);

    let mut binary = post_json("/quotes/generate-batch", "u", &json!({"count": 1}));
    *binary.body_mut() = Body::Binary(vec![0xff, 0x1d, 0x00]);
    let response = handle(&app, binary).await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["code"], "invalid_json");

    let mut csv = request("POST", "/quotes/import", Some("u"), Some("text/csv"), "");
    let mut bytes = format!("{CSV_HEADER}life,basic,1000,40,0,1,2001-01-01\n").into_bytes();
    bytes.extend_from_slice(b"\xff\x00,x\n");
    *csv.body_mut() = Body::Binary(bytes);
    assert_eq!(handle(&app, csv).await.status(), 422);
    assert_nothing_written(&app);
}
