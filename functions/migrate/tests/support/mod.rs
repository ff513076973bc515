//! What the custom resource's tests stand in for: the pre-signed response URL CloudFormation
//! waits on, the events it sends (`events/migrate/`), and a database of the test's own with as
//! much of the schema as the test says.

#![allow(dead_code)] // each test file uses part of it

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quote_pipeline::config::DatabaseConfig;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use testkit::{admin_database_url, pooler_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// One request the response URL received.
#[derive(Debug, Clone)]
pub struct Put {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub at: Instant,
}

impl Put {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A local stand-in for the pre-signed S3 URL of an event: records every request and answers
/// 500 to the first `failures`, 200 to the others, as S3 would take the answer.
pub struct ResponseUrl {
    pub base: String,
    puts: tokio::sync::mpsc::UnboundedReceiver<Put>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResponseUrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResponseUrl {
    pub async fn start(failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let (sender, puts) = tokio::sync::mpsc::unbounded_channel();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sender, served) = (sender.clone(), served.clone());
                tokio::spawn(serve(stream, sender, served, failures));
            }
        });
        ResponseUrl { base, puts, task }
    }

    /// A pre-signed-looking URL on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "{}/cloudformation-custom-resource-response/{name}?X-Amz-Signature=abc",
            self.base
        )
    }

    /// The next request received, if one comes `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Put> {
        tokio::time::timeout(within, self.puts.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    sender: tokio::sync::mpsc::UnboundedSender<Put>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failures: usize,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split_whitespace();
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let body = serde_json::from_slice(&buffer[head_end..head_end + length])
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&buffer[head_end..]).into()));
        buffer.drain(..head_end + length);
        let _ = sender.send(Put {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = if n < failures {
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The sample event `events/migrate/<name>.json`, answering to `response_url`.
pub fn event(name: &str, response_url: &str) -> Value {
    let path = repo().join(format!("events/migrate/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut event: Value = serde_json::from_str(&text).expect("a JSON event");
    event["ResponseURL"] = response_url.into();
    event["RequestId"] = Uuid::now_v7().to_string().into();
    event
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real migrations, read at run time (a test can then keep some, or add to them).
pub async fn real_migrator() -> Migrator {
    Migrator::new(repo().join("migrations"))
        .await
        .expect("the migrations folder reads")
}

/// A database of its own, empty, with the owner's direct pool for the test's set-up and checks.
pub struct Database {
    pub name: String,
    pub pool: PgPool,
}

impl Database {
    pub async fn empty() -> Self {
        let admin = admin_database_url();
        let name = format!("quotes_test_migrate_{}", Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("Postgres is reachable");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let (base, _) = admin.rsplit_once('/').expect("a URL ends with a database");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&format!("{base}/{name}"))
            .await
            .expect("connect");
        Database { name, pool }
    }

    /// A database with the real migrations before `version` applied: where a test writes the
    /// rows an older schema held, before applying the rest.
    pub async fn just_before(version: i64) -> Self {
        let before = real_migrator()
            .await
            .migrations
            .iter()
            .position(|m| m.version == version)
            .expect("the migration exists");
        Self::with_first(before).await
    }

    /// A database with the first `count` of the real migrations applied.
    pub async fn with_first(count: usize) -> Self {
        let database = Self::empty().await;
        let mut migrator = real_migrator().await;
        migrator.migrations = Cow::Owned(migrator.migrations[..count].to_vec());
        migrator
            .run(&database.pool)
            .await
            .expect("migrations apply");
        database
    }

    /// What the function connects with: the pooler, as the owner, as through RDS Proxy.
    pub fn owner_through_pooler(&self) -> String {
        pooler_url(&self.name, "postgres")
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.owner_through_pooler(),
            iam: None,
            max_connections: 2,
            acquire_timeout_ms: 3000,
        }
    }

    /// Every applied migration's version, oldest first, and how often each was applied.
    pub async fn applied(&self) -> Vec<(i64, i64)> {
        sqlx::query_as(
            "SELECT version, count(*) FROM _sqlx_migrations WHERE success \
             GROUP BY version ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .expect("_sqlx_migrations reads")
    }

    /// The schema's tables, columns, indexes, roles' rights and recorded migrations, as text.
    pub async fn schema(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type \
                 FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes \
                 WHERE schemaname = 'public' \
             UNION ALL SELECT 'grant ' || grantee || ' ' || table_name || ' ' || privilege_type \
                 FROM information_schema.role_table_grants WHERE table_schema = 'public' \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .expect("the catalog reads")
    }

    /// No migration was ever run here.
    pub async fn applied_table_absent(&self) -> bool {
        !self.has_table("_sqlx_migrations").await
    }

    pub async fn has_table(&self, name: &str) -> bool {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .expect("the catalog reads")
    }
}

/// A folder of migrations for a test: the real ones, then `extra` (file name, SQL).
pub fn migrations_with(extra: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migrate-test-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a temp folder");
    for entry in std::fs::read_dir(repo().join("migrations")).expect("the migrations folder") {
        let path = entry.expect("an entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("a file name"))).expect("copy");
    }
    for (name, sql) in extra {
        std::fs::write(dir.join(name), sql).expect("write a migration");
    }
    dir
}

/// The function's timeout in template.yaml: every answer must come before it.
pub fn function_timeout() -> Duration {
    let template = std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml");
    let section = template
        .split("\n  MigrateFunction:\n")
        .nth(1)
        .expect("template.yaml has a MigrateFunction");
    let seconds = section
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("Timeout:"))
        .expect("MigrateFunction has a Timeout")
        .trim()
        .parse()
        .expect("a whole number of seconds");
    Duration::from_secs(seconds)
}
