//! The `migrate` function: a CloudFormation custom resource (`DatabaseSchema` in
//! `template.yaml`) that applies the schema's migrations (`migrations/`, embedded at build
//! time) on every create and update of the stack, so that `sam deploy` leaves the database at
//! the schema the functions of the same deploy expect, with nothing run by hand in the VPC.
//!
//! CloudFormation sends the event, then waits up to an hour for an answer PUT to the event's
//! pre-signed `ResponseURL`; it never reads the function's own result. So every path answers
//! that URL:
//!
//! - Create and Update apply the migrations not yet applied and answer SUCCESS, with how many
//!   were applied and the latest version as the resource's `Data`. The physical id is fixed,
//!   and an Update keeps the one it is sent: a new id would make CloudFormation send a Delete
//!   for the "old" resource.
//! - Delete answers SUCCESS and touches nothing: the schema and its quotes outlive the stack's
//!   resource (a stack deleted by mistake, or the Delete that follows a failed Create).
//! - A failed migration answers FAILED, the reason naming the migration (version and
//!   description) and Postgres's error. Each migration runs in its own transaction, so the
//!   schema stays as the last good migration left it.
//! - A malformed event that still names a `ResponseURL` answers FAILED; one without is an
//!   invocation error, as there is nobody to answer. A function whose configuration is wrong
//!   answers every event FAILED rather than failing its start, which would answer nothing.
//! - The work runs under the invocation's deadline less a margin kept for the answer: running
//!   out of time, or a panic, answers FAILED rather than leaving the stack waiting an hour.
//!
//! The database is reached as its owner (`DB_USER`, the instance's master user, with an IAM
//! token on AWS) through RDS Proxy, which pins the owner's connection (sqlx's bookkeeping
//! statements are session state); locally PgBouncer gives the owner a session pool, the same.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as Request, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus as Status,
};
use futures::FutureExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use quote_pipeline::config::DatabaseConfig;
use quote_pipeline::store::PgStore;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

pub type Response = CloudFormationCustomResourceResponse;

/// The one physical id of the schema: it never changes, so CloudFormation never replaces it.
pub const PHYSICAL_RESOURCE_ID: &str = "quote-pipeline-schema";

/// CloudFormation takes an answer of at most 4 KB; the reason is kept well inside that.
pub const REASON_MAX_BYTES: usize = 1024;

/// Time kept back from the invocation's deadline to send the answer (at most a quarter of
/// what is left, for short deadlines).
const ANSWER_MARGIN: Duration = Duration::from_secs(10);
/// Tries at the answer's PUT, each bounded by what is left of the invocation.
const ANSWER_ATTEMPTS: u32 = 5;
const ANSWER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the function needs for every event, built once per container.
pub struct App {
    /// The owner's connection, or why the configuration could not be read.
    pub database: Result<DatabaseConfig, String>,
    /// The AWS SDK's configuration, whose credentials sign the IAM tokens (IAM mode only).
    pub sdk: Option<aws_config::SdkConfig>,
    pub migrator: Migrator,
    pub http: reqwest::Client,
}

impl App {
    pub fn new(
        database: Result<DatabaseConfig, String>,
        sdk: Option<aws_config::SdkConfig>,
        mut migrator: Migrator,
    ) -> Self {
        // No advisory lock. sqlx takes a session-level `pg_advisory_lock` around the run by
        // default, which a transaction pooler breaks: the lock and the unlock can land on
        // different server connections (PgBouncer), and session state pins an RDS Proxy
        // connection. Nothing else runs these migrations at the same time: CloudFormation runs
        // one operation on a stack at a time, and this resource is in one stack.
        migrator.set_locking(false);
        // A rollback of the stack can run older code against a schema a newer deploy already
        // migrated (migrations only go forward): the migrations it does not know are left be,
        // rather than failing the rollback too.
        migrator.set_ignore_missing(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client with default TLS settings builds");
        App {
            database,
            sdk,
            migrator,
            http,
        }
    }
}

/// Answers one custom resource event at its `ResponseURL`, and returns the answer. An error
/// only when there is no URL to answer, or the answer could not be delivered in time.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Response, Diagnostic> {
    let (payload, context) = event.into_parts();
    let deadline = context.deadline();
    let Some(url) = payload
        .get("ResponseURL")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        tracing::error!("the event has no ResponseURL: nothing to answer");
        return Err(Diagnostic {
            error_type: "NoResponseUrl".into(),
            error_message: "the event has no ResponseURL to answer".into(),
        });
    };
    let request_type = payload
        .get("RequestType")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let response = respond(app, payload, deadline).await;
    match response.status {
        Status::Success => tracing::info!(
            request_type,
            reason = response.reason.as_deref(),
            "custom resource succeeded"
        ),
        _ => tracing::error!(
            request_type,
            reason = response.reason.as_deref(),
            "custom resource failed"
        ),
    }
    match send(&app.http, &url, &response, deadline).await {
        Ok(()) => Ok(response),
        Err(error) => {
            tracing::error!(%error, "the answer was not delivered");
            Err(Diagnostic {
                error_type: "AnswerNotDelivered".into(),
                error_message: error,
            })
        }
    }
}

/// The answer to `payload`: what it asks done within the time left before `deadline`.
async fn respond(app: &App, payload: Value, deadline: SystemTime) -> Response {
    let text = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut response = Response::default();
    response.stack_id = text("StackId");
    response.request_id = text("RequestId");
    response.logical_resource_id = text("LogicalResourceId");
    response.physical_resource_id = match text("PhysicalResourceId") {
        id if id.is_empty() => PHYSICAL_RESOURCE_ID.to_owned(),
        id => id,
    };
    let outcome = match serde_json::from_value::<Request>(payload) {
        Err(e) => Err(format!("malformed custom resource event: {e}")),
        Ok(Request::Delete(_)) => Ok((
            "nothing done: the schema and its data are kept".to_owned(),
            HashMap::new(),
        )),
        Ok(Request::Create(_) | Request::Update(_)) => {
            let budget = work_budget(deadline, SystemTime::now());
            within(budget, apply(app, budget / 2)).await.map(|applied| {
                let summary = applied.summary();
                (summary, applied.data())
            })
        }
        Ok(_) => Err("unknown request type".to_owned()),
    };
    match outcome {
        Ok((reason, data)) => {
            response.status = Status::Success;
            response.reason = Some(reason);
            response.data = data;
        }
        Err(reason) => {
            response.status = Status::Failed;
            response.reason = Some(truncate(&reason, REASON_MAX_BYTES));
        }
    }
    response
}

/// What a run applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The versions applied by this run, in order.
    pub versions: Vec<i64>,
    /// The latest version applied to the database, by this run or before.
    pub latest: Option<i64>,
}

impl Applied {
    fn summary(&self) -> String {
        let latest = self.latest.map_or("none".to_owned(), |v| v.to_string());
        format!(
            "applied {} migration(s); schema at version {latest}",
            self.versions.len()
        )
    }

    /// The resource's attributes (`!GetAtt DatabaseSchema.LatestVersion`).
    fn data(&self) -> HashMap<String, String> {
        let joined = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        HashMap::from([
            ("Applied".to_owned(), self.versions.len().to_string()),
            // Within the answer's 4 KB however many a first deploy applies.
            (
                "AppliedVersions".to_owned(),
                truncate(&joined(&self.versions), REASON_MAX_BYTES),
            ),
            (
                "LatestVersion".to_owned(),
                self.latest.map_or(String::new(), |v| v.to_string()),
            ),
        ])
    }
}

/// Connects as configured, waiting up to `patience` for the database, and applies the pending
/// migrations. A new store each time: a fresh IAM token, and no connection kept between the
/// rare events.
async fn apply(app: &App, patience: Duration) -> Result<Applied, String> {
    let database = app
        .database
        .as_ref()
        .map_err(|e| format!("the function is misconfigured: {e}"))?;
    let store = PgStore::from_config(database, app.sdk.as_ref())
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    let result = match reachable(store.pool(), patience).await {
        Ok(()) => run(&app.migrator, store.pool()).await,
        Err(e) => Err(e),
    };
    store.pool().close().await;
    result
}

/// Waits for a first answer from the database: a proxy whose target was just registered can
/// refuse connections for a while. After `patience`, the last error.
async fn reachable(pool: &PgPool, patience: Duration) -> Result<(), String> {
    let give_up = Instant::now() + patience;
    let mut pause = Duration::from_millis(250);
    loop {
        match ping(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() + pause < give_up => {
                tracing::warn!(error = %e, "the database is not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(format!(
                    "cannot connect to the database: {}",
                    database_error(&e)
                ));
            }
        }
    }
}

/// One statement in a transaction of its own, as every statement through a pooler.
async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1")
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Applies `migrator`'s pending migrations on `pool`, and says which.
pub async fn run(migrator: &Migrator, pool: &PgPool) -> Result<Applied, String> {
    let unreadable =
        |e: sqlx::Error| format!("cannot read the applied migrations: {}", database_error(&e));
    let before = applied_versions(pool).await.map_err(unreadable)?;
    migrator
        .run(pool)
        .await
        .map_err(|e| describe(migrator, e))?;
    let after = applied_versions(pool).await.map_err(unreadable)?;
    Ok(Applied {
        versions: after
            .iter()
            .copied()
            .filter(|v| !before.contains(v))
            .collect(),
        latest: after.iter().copied().max(),
    })
}

/// The versions recorded as applied, oldest first; none before the first run.
async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    let versions = if exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(versions)
}

/// A migration failure as a reason: which migration, and Postgres's error.
fn describe(migrator: &Migrator, error: MigrateError) -> String {
    match &error {
        MigrateError::ExecuteMigration(source, version) => {
            let description = migrator
                .iter()
                .find(|m| m.version == *version)
                .map_or("", |m| m.description.as_ref());
            format!(
                "migration {version} ({description}) failed: {}",
                database_error(source)
            )
        }
        MigrateError::Execute(source) => format!("migrations failed: {}", database_error(source)),
        other => format!("migrations failed: {other}"),
    }
}

/// Postgres's message and SQLSTATE, or the driver's error.
fn database_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// The time the work may take: what is left before `deadline`, less the margin for the answer.
pub fn work_budget(deadline: SystemTime, now: SystemTime) -> Duration {
    let left = deadline.duration_since(now).unwrap_or_default();
    left - ANSWER_MARGIN.min(left / 4)
}

/// Runs `work` for at most `budget`; a timeout or a panic is an error like the work's own.
pub async fn within<T>(
    budget: Duration,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(budget, AssertUnwindSafe(work).catch_unwind()).await {
        Err(_) => Err(format!(
            "did not finish within {:.1} s, the invocation's time less the answer's",
            budget.as_secs_f64()
        )),
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(format!("panicked: {message}"))
        }
        Ok(Ok(result)) => result,
    }
}

/// PUTs `response` to the pre-signed `url`, retrying until it is taken or `deadline` passes.
/// The body is JSON without a content type: the URL's signature covers an empty one.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    response: &Response,
    deadline: SystemTime,
) -> Result<(), String> {
    let body = serde_json::to_vec(response).expect("a response serializes");
    let mut last = "no time left to send the answer".to_owned();
    for attempt in 0..ANSWER_ATTEMPTS {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left.is_zero() {
            break;
        }
        let sent = http
            .put(url)
            .timeout(left.min(ANSWER_ATTEMPT_TIMEOUT))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => return Ok(()),
            Ok(answer) => last = format!("the response URL answered {}", answer.status()),
            Err(e) => last = format!("the response URL could not be reached: {e}"),
        }
        tracing::warn!(attempt, error = %last, "answer not taken");
        let pause = Duration::from_millis(200 << attempt);
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(pause.min(left)).await;
    }
    Err(last)
}

/// `text` cut to at most `max` bytes, on a character boundary, marked as cut.
pub fn truncate(text: &str, max: usize) -> String {
    const MARK: &str = " [...]";
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_to_the_limit_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = truncate(&long, REASON_MAX_BYTES);
        assert!(cut.len() <= REASON_MAX_BYTES, "{}", cut.len());
        assert!(cut.ends_with("[...]"));
        assert_eq!(truncate("short", REASON_MAX_BYTES), "short");
    }

    #[test]
    fn the_work_keeps_a_margin_for_the_answer() {
        let now = SystemTime::now();
        assert_eq!(
            work_budget(now + Duration::from_secs(300), now),
            Duration::from_secs(290)
        );
        assert_eq!(
            work_budget(now + Duration::from_secs(8), now),
            Duration::from_secs(6)
        );
        assert_eq!(
            work_budget(now, now + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn a_panic_or_a_timeout_is_an_error_not_a_crash() {
        let panicked = within(Duration::from_secs(5), async {
            if true {
                panic!("boom in a migration");
            }
            Ok::<(), String>(())
        })
        .await;
        assert_eq!(panicked, Err("panicked: boom in a migration".to_owned()));

        let started = std::time::Instant::now();
        let slow = within(Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), String>(())
        })
        .await;
        assert!(slow.unwrap_err().starts_with("did not finish within 0.1 s"));
        assert!(started.elapsed() < Duration::from_secs(5));

        assert_eq!(within(Duration::from_secs(1), async { Ok(7) }).await, Ok(7));
    }

    #[test]
    fn the_embedded_migrations_are_the_folders() {
        let migrator = quote_pipeline::store::migrations();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sql")
            })
            .count();
        assert_eq!(migrator.iter().count(), files);
    }
}
