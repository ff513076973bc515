//! Integration-test support: each test gets a database and a queue of its own, on the real
//! local Postgres and SQS emulator, so tests run in parallel without seeing each other.
//!
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a database
//! to create the test databases from, directly as their owner; `TEST_POOLER_URL` (default
//! `postgres://quote_app@127.0.0.1:6432/postgres?sslmode=require`) the PgBouncer in front of
//! Postgres, in transaction mode, and the application role that the code under test connects
//! as, as it does through RDS Proxy on AWS; `AWS_ENDPOINT_URL_SQS` (default
//! `http://127.0.0.1:9324`) the emulator, which serves EventBridge too: [`TestEnv::event_bus`]
//! makes a bus whose events a test reads back from a queue.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use quote_pipeline::config::{DatabaseConfig, MlEngineAuth, MlEngineConfig, QueueConfig};
use quote_pipeline::events::EventBridgeBus;
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::queue::{QuoteMessage, QuoteQueue, SqsQueue};
use quote_pipeline::quote::Quote;
use quote_pipeline::store::{PgStore, QuoteStore};

use crate::events::sqs_event;

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

/// An unsigned client of the engine at `url`, with `score`'s default chunks and concurrency
/// and a timeout of `timeout_ms` per call.
pub fn engine_client(url: &str, timeout_ms: u64) -> MlEngine {
    MlEngine::new(
        &MlEngineConfig {
            url: url.into(),
            chunk_size: 250,
            concurrency: 4,
            timeout_ms,
            auth: MlEngineAuth::None,
        },
        None,
    )
    .expect("an engine client")
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

/// The directory of the model `make test` trained.
pub fn trained_model_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ml-engine/model")
}

/// The model `make test` trained, as `score` loads it in embedded mode.
pub fn trained_model() -> EmbeddedModel {
    EmbeddedModel::load(&trained_model_dir()).expect("the trained model (make test trains it)")
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
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
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
                url: self.queue_url.clone(),
                ids_per_message,
            },
        )
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

    /// `count` generated quotes (from `seed`) of `owner`, stored pending and queued 10 to a
    /// message, and those messages received (hidden for 30 s): a `score` invocation's batch.
    pub async fn queued_pending(
        &self,
        owner: &str,
        count: u32,
        seed: u64,
    ) -> (Vec<Uuid>, Vec<Message>) {
        let params = GenerateParams {
            seed: Some(seed),
            ..GenerateParams::new(count)
        };
        let quotes: Vec<Quote> = generate(&params)
            .into_iter()
            .map(|input| Quote::new_pending(owner, input, chrono::Utc::now()))
            .collect();
        self.store
            .insert(
                Uuid::now_v7(),
                &quotes,
                None,
                std::time::Instant::now() + std::time::Duration::from_secs(10),
            )
            .await
            .expect("insert");
        let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
        QuoteQueue::enqueue(&self.queue(10), &ids)
            .await
            .expect("enqueue");
        (ids, self.receive(count as usize, 30).await)
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

async fn queue_arn(sqs: &Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("a queue ARN")
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

/// A test's own EventBridge bus on the emulator, with a rule that copies each of its
/// `QuoteBatchCompleted` events to a queue the test reads: what a consumer would see.
pub struct TestBus {
    /// The publisher the functions get, on this bus.
    pub events: EventBridgeBus,
    pub name: String,
    queue_url: String,
    sqs: Client,
}

impl TestEnv {
    /// A new bus, its rule and the queue the rule sends to.
    pub async fn event_bus(&self) -> TestBus {
        let name = format!("test-bus-{}", Uuid::now_v7().simple());
        let bridge = aws_sdk_eventbridge::Client::new(&self.sdk);
        bridge
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .expect("the emulator serves EventBridge");
        let queue_url = create_queue(&self.sqs, &format!("{name}-events"), None).await;
        let queue_arn = queue_arn(&self.sqs, &queue_url).await;
        let pattern = serde_json::json!({
            "source": [quote_pipeline::events::SOURCE],
            "detail-type": [quote_pipeline::events::BATCH_COMPLETED],
        });
        bridge
            .put_rule()
            .name(format!("{name}-completed"))
            .event_bus_name(&name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("put the rule");
        bridge
            .put_targets()
            .rule(format!("{name}-completed"))
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .expect("id and arn are set"),
            )
            .send()
            .await
            .expect("target the queue");
        TestBus {
            events: EventBridgeBus::new(&self.sdk, &name),
            name,
            queue_url,
            sqs: self.sqs.clone(),
        }
    }
}

impl TestBus {
    /// Every event the rule delivered so far (each received once: they are deleted), as
    /// EventBridge's envelope (`source`, `detail-type`, `detail`).
    pub async fn received(&self) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            if out.messages().is_empty() {
                return events;
            }
            for m in out.messages() {
                events.push(
                    serde_json::from_str(m.body().unwrap_or_default()).expect("an event envelope"),
                );
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}
