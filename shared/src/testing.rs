//! Integration-test support: each test gets a database and a queue of its own, on the real
//! local Postgres and SQS emulator, so tests run in parallel without seeing each other.
//!
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a database
//! to create the test databases from, directly as their owner; `TEST_POOLER_URL` (default
//! `postgres://quote_app@127.0.0.1:6432/postgres?sslmode=require`) the PgBouncer in front of
//! Postgres, in transaction mode, and the application role that the code under test connects
//! as, as it does through RDS Proxy on AWS; `AWS_ENDPOINT_URL_SQS` (default
//! `http://127.0.0.1:9324`) the emulator.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::config::{DatabaseConfig, QueueConfig};
use crate::queue::{QuoteMessage, SqsQueue};
use crate::store::PgStore;

pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `name` through the pooler, as `user` (the application role
/// `quote_app`, or the owner `postgres` for what the deploy's migrations do).
pub fn pooler_url(name: &str, user: &str) -> String {
    let base = std::env::var("TEST_POOLER_URL")
        .unwrap_or_else(|_| "postgres://quote_app@127.0.0.1:6432/postgres?sslmode=require".into());
    let (_, rest) = base
        .split_once('@')
        .expect("TEST_POOLER_URL is postgres://user@host:port/database?query");
    let (host, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    format!("postgres://{user}@{host}/{name}?{query}")
}

pub fn sqs_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SQS").unwrap_or_else(|_| "http://127.0.0.1:9324".into())
}

/// The ML engine the test command started (`ML_ENGINE_URL`, default `http://127.0.0.1:8002`).
pub fn engine_url() -> String {
    std::env::var("ML_ENGINE_URL").unwrap_or_else(|_| "http://127.0.0.1:8002".into())
}

/// The SDK configuration for the emulator, independent of the process's AWS environment.
pub async fn emulator_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// The model `make test` trained, as `score` loads it in embedded mode.
pub fn trained_model() -> crate::model::EmbeddedModel {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ml-engine/model");
    crate::model::EmbeddedModel::load(&dir).expect("the trained model (make test trains it)")
}

pub struct TestEnv {
    /// The test database through the pooler, as the application role: what a function gets.
    pub database: DatabaseConfig,
    /// The owner's direct pool, for a test's own set-up and checks.
    pub pool: PgPool,
    /// The store the functions use, through the pooler as the application role.
    pub store: PgStore,
    pub sqs: Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub sdk: aws_config::SdkConfig,
}

impl TestEnv {
    /// A new migrated database and a new queue with its dead-letter queue (redrive after
    /// `max_receives`).
    pub async fn new() -> Self {
        Self::with_max_receives(3).await
    }

    pub async fn with_max_receives(max_receives: u32) -> Self {
        let admin = admin_database_url();
        let name = format!("quotes_test_{}", Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("Postgres is reachable");
        let create = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(&create)
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let (base, _) = admin
            .rsplit_once('/')
            .expect("a database URL ends with its name");
        // The owner's direct pool: migrations, and the tests' own set-up and checks.
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&format!("{base}/{name}"))
            .await
            .expect("connect");
        PgStore::from_pool(pool.clone())
            .migrate()
            .await
            .expect("migrations apply");
        let database = DatabaseConfig {
            url: pooler_url(&name, "quote_app"),
            iam: None,
            max_connections: 5,
            acquire_timeout_ms: 3000,
        };
        let store = PgStore::connect_lazy(&database).expect("a valid pooler URL");

        let sdk = emulator_sdk_config(&sqs_endpoint()).await;
        let sqs = Client::new(&sdk);
        let suffix = Uuid::now_v7().simple().to_string();
        let dlq_url = create_queue(&sqs, &format!("test-dlq-{suffix}"), None).await;
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("a queue ARN");
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let queue_url = create_queue(&sqs, &format!("test-quotes-{suffix}"), Some(redrive)).await;
        TestEnv {
            database,
            pool,
            store,
            sqs,
            queue_url,
            dlq_url,
            sdk,
        }
    }

    pub fn queue(&self, ids_per_message: usize) -> SqsQueue {
        SqsQueue::new(
            &self.sdk,
            &QueueConfig {
                url: Some(self.queue_url.clone()),
                ids_per_message,
            },
        )
        .expect("a queue URL is set")
    }

    /// Receives every message now visible on `queue_url`, deleting none.
    pub async fn receive_all(&self, queue_url: &str, visibility_timeout: i32) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(visibility_timeout)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            if out.messages().is_empty() {
                return all;
            }
            all.extend(out.messages().iter().cloned());
        }
    }

    /// The quote ids of every message visible on the main queue, which it leaves hidden.
    pub async fn queued_ids(&self) -> Vec<Uuid> {
        self.receive_all(&self.queue_url, 60)
            .await
            .iter()
            .flat_map(|m| {
                QuoteMessage::parse(m.body().unwrap_or_default())
                    .expect("a quote message")
                    .quote_ids
            })
            .collect()
    }

    pub async fn count_quotes(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM quotes")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

async fn create_queue(sqs: &Client, name: &str, redrive: Option<String>) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    if let Some(policy) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    request
        .send()
        .await
        .expect("the SQS emulator is reachable")
        .queue_url()
        .expect("a queue URL")
        .to_owned()
}

/// The SQS event Lambda's event source mapping would deliver for `messages`.
pub fn sqs_event(messages: &[Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:quotes".into());
            record.aws_region = Some("us-east-1".into());
            record
        })
        .collect();
    event
}

/// An invocation context with `budget` left before its deadline.
pub fn lambda_context(budget: std::time::Duration) -> lambda_runtime::Context {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let mut context = lambda_runtime::Context::default();
    context.request_id = Uuid::now_v7().to_string();
    context.deadline = (now + budget).as_millis() as u64;
    context
}

/// How the [`FaultProxy`] treats the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass requests through to the real engine.
    None,
    /// Close the connection without an answer, as a crashed engine would.
    Down,
    /// Answer 500.
    Error500,
    /// Never answer, so the client's timeout fires.
    Hang,
    /// Drop a feature from the quotes whose id ends in an even hex digit before passing the
    /// request on, so the real engine rejects those quotes.
    DropFeatureOfEvenIds,
    /// Pass requests through after this many milliseconds.
    Delay(u64),
    /// Answer 500 to every other request and hang on every fourth, pass the rest through.
    Flaky,
}

/// A TCP proxy in front of the real ML engine that injects faults: every request goes through
/// a connection of its own (`Connection: close`), so a change of fault applies at once.
pub struct FaultProxy {
    pub url: String,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, an `http://host:port` URL.
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let fault = std::sync::Arc::new(std::sync::Mutex::new(Fault::None));
        let shared = fault.clone();
        let task = tokio::spawn(async move {
            let mut served = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                let current = match *shared.lock().expect("no poisoned lock") {
                    Fault::Flaky if served % 4 == 3 => Fault::Hang,
                    Fault::Flaky if served % 2 == 1 => Fault::Error500,
                    Fault::Flaky => Fault::None,
                    other => other,
                };
                served += 1;
                tokio::spawn(proxy_one(client, upstream.clone(), current));
            }
        });
        FaultProxy { url, fault, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("no poisoned lock") = fault;
    }
}

async fn proxy_one(mut client: tokio::net::TcpStream, upstream: String, fault: Fault) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((head, mut body)) = read_request(&mut client).await else {
        return;
    };
    let reply = |status: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfault"
        )
    };
    match fault {
        Fault::Down => return,
        Fault::Error500 => {
            let _ = client
                .write_all(reply("500 Internal Server Error").as_bytes())
                .await;
            return;
        }
        Fault::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return;
        }
        Fault::DropFeatureOfEvenIds => {
            if let Ok(serde_json::Value::Array(mut items)) = serde_json::from_slice(&body) {
                for item in &mut items {
                    let even = item["quote_id"]
                        .as_str()
                        .and_then(|id| id.chars().last())
                        .and_then(|c| c.to_digit(16))
                        .is_some_and(|d| d % 2 == 0);
                    if even && let Some(features) = item["features"].as_object_mut() {
                        features.remove("risk_score");
                    }
                }
                body = serde_json::to_vec(&items).expect("serializable");
            }
        }
        Fault::Delay(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        Fault::None | Fault::Flaky => {}
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
        return;
    };
    let head: String = head
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !lower.starts_with("content-length:")
                && !lower.starts_with("connection:")
                && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let request = format!(
        "{head}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if server.write_all(request.as_bytes()).await.is_err() || server.write_all(&body).await.is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    if server.read_to_end(&mut answer).await.is_ok() {
        let _ = client.write_all(&answer).await;
    }
}

/// Reads one HTTP/1.1 request: its head (up to the blank line) and its body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

impl TestEnv {
    /// Receives up to `batch` visible messages, hiding them for `visibility` seconds.
    pub async fn receive(&self, batch: usize, visibility: i32) -> Vec<Message> {
        let mut messages = Vec::new();
        while messages.len() < batch {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages((batch - messages.len()).min(10) as i32)
                .visibility_timeout(visibility)
                .send()
                .await
                .expect("receive");
            if out.messages().is_empty() {
                break;
            }
            messages.extend(out.messages().iter().cloned());
        }
        messages
    }

    /// What Lambda's event source mapping does, until no message is visible: receive a batch,
    /// invoke, delete the messages the invocation did not report as failed. Failures come back
    /// after `visibility` seconds. Returns the number of invocations.
    pub async fn drain(
        &self,
        batch: usize,
        visibility: i32,
        mut invoke: impl AsyncFnMut(aws_lambda_events::event::sqs::SqsEvent) -> Vec<String>,
    ) -> usize {
        let mut invocations = 0;
        loop {
            let messages = self.receive(batch, visibility).await;
            if messages.is_empty() {
                return invocations;
            }
            invocations += 1;
            let failed = invoke(sqs_event(&messages)).await;
            self.delete_except(&messages, &failed).await;
        }
    }

    /// Deletes `messages` but those whose ids are in `failed`.
    pub async fn delete_except(&self, messages: &[Message], failed: &[String]) {
        for m in messages
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        {
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }

    /// Visible and in-flight messages on `queue_url`.
    pub async fn depth(&self, queue_url: &str) -> i64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = out.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            attributes
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }

    /// Records every status change of a quote, so a test can tell a quote scored twice from
    /// one scored once.
    pub async fn audit_status_changes(&self) {
        sqlx::raw_sql(
            "CREATE TABLE status_changes (id uuid NOT NULL, status text NOT NULL); \
             CREATE FUNCTION record_status_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN INSERT INTO status_changes VALUES (NEW.id, NEW.status); RETURN NEW; END $$; \
             CREATE TRIGGER status_changes AFTER UPDATE OF status ON quotes FOR EACH ROW \
                 WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION record_status_change(); \
             GRANT INSERT ON status_changes TO quote_app;",
        )
        .execute(&self.pool)
        .await
        .expect("install the audit trigger");
    }

    /// Checks the pipeline's promise: every quote ended `scored` or `failed`, and none changed
    /// status more than once (with [`TestEnv::audit_status_changes`] installed).
    pub async fn assert_every_quote_finished_once(&self) {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM quotes WHERE status NOT IN ('scored', 'failed')",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count");
        assert_eq!(unfinished, 0, "every quote ends scored or failed");
        let twice: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT id FROM status_changes GROUP BY id HAVING count(*) > 1) t",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count");
        assert_eq!(twice, 0, "no quote is scored twice");
    }
}

/// A local stand-in for the Lambda Runtime API: a function binary started with
/// `AWS_LAMBDA_RUNTIME_API` pointing here polls it for events and posts its answers, as on
/// Lambda. Each event is served once, in order; then `next` waits for ever.
pub struct RuntimeApi {
    pub address: String,
    answers: tokio::sync::mpsc::UnboundedReceiver<RuntimeAnswer>,
    task: tokio::task::JoinHandle<()>,
}

/// What the function posted for one invocation, and when its request for the event came.
#[derive(Debug, Clone)]
pub struct RuntimeAnswer {
    pub request_id: String,
    pub error: bool,
    pub body: String,
    pub asked_at: std::time::Instant,
    pub answered_at: std::time::Instant,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A trace header Lambda sends when the invocation is not sampled for X-Ray.
pub const UNSAMPLED_TRACE: &str = "Root=1-00000000-000000000000000000000000;Sampled=0";

impl RuntimeApi {
    /// Serves `events`, each with `trace_header` as its `Lambda-Runtime-Trace-Id`.
    pub async fn start(events: Vec<serde_json::Value>, trace_header: &str) -> Self {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("an address").to_string();
        let (sender, answers) = tokio::sync::mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(
            events
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let asked = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let trace_header: Arc<str> = trace_header.into();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (queue, asked, sender) = (queue.clone(), asked.clone(), sender.clone());
                let trace_header = trace_header.clone();
                tokio::spawn(async move {
                    serve_runtime(stream, queue, asked, sender, &trace_header).await
                });
            }
        });
        RuntimeApi {
            address,
            answers,
            task,
        }
    }

    /// The next answer the function posts.
    pub async fn answer(&mut self, within: std::time::Duration) -> Option<RuntimeAnswer> {
        tokio::time::timeout(within, self.answers.recv())
            .await
            .ok()
            .flatten()
    }
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

async fn serve_runtime(
    mut stream: tokio::net::TcpStream,
    queue: Shared<std::collections::VecDeque<serde_json::Value>>,
    asked: Shared<std::collections::HashMap<String, std::time::Instant>>,
    answers: tokio::sync::mpsc::UnboundedSender<RuntimeAnswer>,
    trace_header: &str,
) {
    use tokio::io::AsyncWriteExt;
    // The runtime's client keeps its connection: serve requests until it closes.
    while let Some((head, body)) = read_request(&mut stream).await {
        let line = head.lines().next().unwrap_or_default().to_owned();
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let reply = if path.ends_with("/invocation/next") {
            let next = queue.lock().expect("no poisoned lock").pop_front();
            let Some(event) = next else {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return;
            };
            let request_id = Uuid::now_v7().to_string();
            asked
                .lock()
                .expect("no poisoned lock")
                .insert(request_id.clone(), std::time::Instant::now());
            let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(30);
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            let body = event.to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {request_id}\r\n\
                 lambda-runtime-deadline-ms: {deadline_ms}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:local\r\n\
                 lambda-runtime-trace-id: {trace_header}\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let mut parts = path.trim_start_matches('/').split('/');
            let request_id = parts.nth(3).unwrap_or_default().to_owned();
            let error = path.ends_with("/error");
            let asked_at = asked
                .lock()
                .expect("no poisoned lock")
                .remove(&request_id)
                .unwrap_or_else(std::time::Instant::now);
            let _ = answers.send(RuntimeAnswer {
                request_id,
                error,
                body: String::from_utf8_lossy(&body).into_owned(),
                asked_at,
                answered_at: std::time::Instant::now(),
            });
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".to_owned()
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An API Gateway HTTP API (v2) event as Lambda delivers it to `generate`: a JWT-authorized
/// caller when `user` is set.
pub fn http_event(
    method: &str,
    path_and_query: &str,
    user: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut headers = serde_json::Map::new();
    if let Some(ct) = content_type {
        headers.insert("content-type".into(), ct.into());
    }
    let mut context = serde_json::json!({
        "accountId": "123456789012", "apiId": "api", "domainName": "example.com",
        "domainPrefix": "example", "requestId": "req-1", "routeKey": "$default",
        "stage": "$default", "time": "27/Nov/2026:00:00:00 +0000", "timeEpoch": 1795737600000u64,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "test"}
    });
    if let Some(sub) = user {
        context["authorizer"] =
            serde_json::json!({"jwt": {"claims": {"sub": sub}, "scopes": null}});
    }
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers, "requestContext": context, "body": body, "isBase64Encoded": false
    })
    .to_string()
}
