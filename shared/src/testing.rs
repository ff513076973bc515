//! Integration-test support: each test gets a database and a queue of its own, on the real
//! local Postgres and SQS emulator, so tests run in parallel without seeing each other.
//!
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a database
//! to create the test databases from; `AWS_ENDPOINT_URL_SQS` (default
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

pub fn sqs_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SQS").unwrap_or_else(|_| "http://127.0.0.1:9324".into())
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

pub struct TestEnv {
    pub database: DatabaseConfig,
    pub pool: PgPool,
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
        let mut conn = PgConnection::connect(&admin).await.expect("Postgres is reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let (base, _) = admin.rsplit_once('/').expect("a database URL ends with its name");
        let database =
            DatabaseConfig { url: format!("{base}/{name}"), max_connections: 5, acquire_timeout_ms: 3000 };
        let pool = PgPoolOptions::new().max_connections(5).connect(&database.url).await.expect("connect");
        let store = PgStore::from_pool(pool.clone());
        store.migrate().await.expect("migrations apply");

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
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let queue_url = create_queue(&sqs, &format!("test-quotes-{suffix}"), Some(redrive)).await;
        TestEnv { database, pool, store, sqs, queue_url, dlq_url, sdk }
    }

    pub fn queue(&self, ids_per_message: usize) -> SqsQueue {
        SqsQueue::new(&self.sdk, &QueueConfig { url: self.queue_url.clone(), ids_per_message })
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
            .flat_map(|m| QuoteMessage::parse(m.body().unwrap_or_default()).expect("a quote message").quote_ids)
            .collect()
    }

    pub async fn count_quotes(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM quotes").fetch_one(&self.pool).await.expect("count")
    }
}

async fn create_queue(sqs: &Client, name: &str, redrive: Option<String>) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    if let Some(policy) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    request.send().await.expect("the SQS emulator is reachable").queue_url().expect("a queue URL").to_owned()
}
