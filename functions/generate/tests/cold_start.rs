//! The real `generate` binary's start-up under a stand-in of the Lambda Runtime API, with its
//! dependencies down: the init phase's warm-up (`quote_pipeline::warm_up`) never fails init and
//! never holds it longer than its bound, and the first request answers the 503 a database
//! outage is.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{RuntimeAnswer, RuntimeApi, UNSAMPLED_TRACE, http_event};

/// What a debug binary may take to start beyond the warm-up, on a loaded machine.
const START_SLACK: Duration = Duration::from_millis(1500);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `generate` with Postgres and SQS at `database` and `sqs` (host:port), serves it one
/// `generate-batch`, and returns when it was spawned and its answer.
async fn first_answer(database: &str, sqs: &str) -> (Instant, RuntimeAnswer) {
    let event = http_event(
        "POST",
        "/quotes/generate-batch",
        Some("alice"),
        Some("application/json"),
        r#"{"count": 3}"#,
    );
    let mut runtime =
        RuntimeApi::start(vec![serde_json::from_str(&event).unwrap()], UNSAMPLED_TRACE).await;
    let spawned_at = Instant::now();
    let _child = Killed(
        Command::new(env!("CARGO_BIN_EXE_generate"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "generate-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env(
                "DATABASE_URL",
                format!("postgres://quote_app@{database}/quotes?sslmode=prefer"),
            )
            .env("DB_ACQUIRE_TIMEOUT_MS", "500")
            .env(
                "QUOTES_QUEUE_URL",
                format!("http://{sqs}/123456789012/quotes"),
            )
            .env("AWS_ENDPOINT_URL_SQS", format!("http://{sqs}"))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the generate binary starts"),
    );
    let answer = runtime
        .answer(Duration::from_secs(30))
        .await
        .expect("init succeeds and the first request is answered");
    (spawned_at, answer)
}

fn assert_database_unavailable(answer: &RuntimeAnswer) {
    assert!(
        !answer.error,
        "an answer, not an invocation error: {}",
        answer.body
    );
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(response["statusCode"], 503, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "database_unavailable", "{body}");
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_succeeds_and_the_first_request_is_a_503_when_postgres_is_down() {
    let (database, sqs) = (closed_port().await, closed_port().await);
    let (spawned_at, answer) = first_answer(&database, &sqs).await;
    let init = answer.asked_at.duration_since(spawned_at);
    assert!(
        init < quote_pipeline::warm_up::BOUND + START_SLACK,
        "init took {init:?}"
    );
    assert_database_unavailable(&answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_that_never_answer_delay_init_by_the_warm_ups_bound_at_most() {
    // Accepts every connection and never says a word: a hung Postgres, a hung SQS endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let (spawned_at, answer) = first_answer(&address, &address).await;
    let init = answer.asked_at.duration_since(spawned_at);
    let bound = quote_pipeline::warm_up::BOUND;
    // The warm-up waited (both connections hung) ...
    assert!(
        init >= bound - Duration::from_millis(50),
        "init took {init:?}"
    );
    // ... and no longer than its bound.
    assert!(init < bound + START_SLACK, "init took {init:?}");
    assert_database_unavailable(&answer);
    silent.abort();
}
