//! The custom resource as CloudFormation drives it: the real `migrate` binary under a local
//! stand-in of the Lambda Runtime API, fed the events of `events/migrate/`, answering a local
//! stand-in of the pre-signed response URL, against Postgres through PgBouncer (transaction
//! pooling) as the owner, as through RDS Proxy on AWS. The cases that need other migrations
//! than the embedded ones (a broken one, a slow one) or another response URL behaviour call the
//! library's handler with a migrator read from a folder of the test's own: the binary has no
//! switch to point it elsewhere, on purpose.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use lambda_runtime::{Diagnostic, LambdaEvent};
use migrate::{App, PHYSICAL_RESOURCE_ID, REASON_MAX_BYTES, Response, handle};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use support::{
    Database, Put, ResponseUrl, event, function_timeout, migrations_with, real_migrator,
};
use testkit::{RuntimeAnswer, RuntimeApi, UNSAMPLED_TRACE, lambda_context};

/// The `migrate` binary serving `events` through a Runtime API stand-in, its database
/// configuration from `env`.
struct Function {
    runtime: RuntimeApi,
    child: tokio::process::Child,
}

impl Function {
    async fn start(events: Vec<Value>, env: &[(&str, &str)]) -> Self {
        let runtime = RuntimeApi::start(events, UNSAMPLED_TRACE).await;
        // A clean environment: the test command's own DATABASE_URL must not leak in.
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "migrate-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the migrate binary starts");
        Function { runtime, child }
    }

    /// The next invocation's result, and what it PUT to the response URL.
    async fn answer(&mut self, responses: &mut ResponseUrl) -> (RuntimeAnswer, Put) {
        let put = responses
            .next(Duration::from_secs(60))
            .await
            .expect("the function answers the response URL");
        let answer = self
            .runtime
            .answer(Duration::from_secs(60))
            .await
            .expect("the invocation ends");
        assert_answered_in_time(&answer, &put);
        (answer, put)
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The answer reached the response URL as CloudFormation needs it, and within the function's
/// timeout (and before the invocation's deadline, 30 s in the stand-in).
fn assert_answered_in_time(answer: &RuntimeAnswer, put: &Put) {
    let took = put.at.duration_since(answer.asked_at);
    assert!(took < function_timeout(), "answered after {took:?}");
    assert!(took < Duration::from_secs(30), "answered after {took:?}");
    assert!(
        put.at <= answer.answered_at,
        "the answer is sent before returning"
    );
    assert_put_is_what_the_presigned_url_takes(put);
}

fn assert_put_is_what_the_presigned_url_takes(put: &Put) {
    assert_eq!(put.method, "PUT");
    assert!(
        put.path
            .starts_with("/cloudformation-custom-resource-response/")
    );
    // The URL's signature covers an empty content type: any other is refused by S3.
    assert_eq!(put.header("content-type"), None, "{:?}", put.headers);
    let size = serde_json::to_vec(&put.body).unwrap().len();
    assert!(size < 4096, "CloudFormation takes at most 4 KB, not {size}");
}

/// The library's handler, as the runtime calls it with `event` and `budget` left.
async fn invoke(app: &App, event: Value, budget: Duration) -> Result<Response, Diagnostic> {
    handle(app, LambdaEvent::new(event, lambda_context(budget))).await
}

fn status(put: &Put) -> &str {
    put.body["Status"].as_str().unwrap_or_default()
}

fn reason(put: &Put) -> &str {
    put.body["Reason"].as_str().unwrap_or_default()
}

fn versions(migrator: &Migrator) -> Vec<i64> {
    migrator.iter().map(|m| m.version).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_applies_every_migration_once_and_a_repeat_applies_nothing() {
    let database = Database::empty().await;
    let all = versions(&real_migrator().await);
    let mut responses = ResponseUrl::start(0).await;
    let create = event("create", &responses.url("create"));
    let update = event("update", &responses.url("update"));
    let pooler = database.owner_through_pooler();
    let mut function = Function::start(
        vec![create.clone(), update.clone()],
        &[("DATABASE_URL", &pooler)],
    )
    .await;

    let (answer, put) = function.answer(&mut responses).await;
    assert!(!answer.error, "{}", answer.body);
    assert_eq!(status(&put), "SUCCESS", "{}", put.body);
    assert_eq!(put.body["PhysicalResourceId"], PHYSICAL_RESOURCE_ID);
    for key in ["RequestId", "StackId", "LogicalResourceId"] {
        assert_eq!(put.body[key], create[key], "{key}");
    }
    assert_eq!(put.body["Data"]["Applied"], all.len().to_string());
    assert_eq!(
        put.body["Data"]["LatestVersion"],
        all.last().unwrap().to_string()
    );
    let once: Vec<(i64, i64)> = all.iter().map(|v| (*v, 1)).collect();
    assert_eq!(database.applied().await, once, "every migration, once");
    assert!(database.has_table("quotes").await);
    assert!(database.has_table("idempotency_keys").await);
    let app_can_write: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('quote_app', 'quotes', 'INSERT') \
            AND has_table_privilege('quote_app', 'idempotency_keys', 'DELETE')",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert!(
        app_can_write,
        "the migrations grant the application role its rights"
    );

    // The next deploy, with nothing new: nothing applied, the same resource.
    let schema = database.schema().await;
    let (answer, put) = function.answer(&mut responses).await;
    assert!(!answer.error, "{}", answer.body);
    assert_eq!(status(&put), "SUCCESS", "{}", put.body);
    assert_eq!(put.body["PhysicalResourceId"], update["PhysicalResourceId"]);
    assert_eq!(put.body["Data"]["Applied"], "0");
    assert_eq!(database.applied().await, once);
    assert_eq!(database.schema().await, schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_applies_only_the_new_migrations() {
    let all = versions(&real_migrator().await);
    assert!(all.len() >= 2, "the test needs an old and a new migration");
    let database = Database::with_first(1).await;
    let mut responses = ResponseUrl::start(0).await;
    let mut update = event("update", &responses.url("update"));
    update["PhysicalResourceId"] = "the-id-created-before".into();
    let pooler = database.owner_through_pooler();
    let mut function = Function::start(vec![update], &[("DATABASE_URL", &pooler)]).await;

    let (answer, put) = function.answer(&mut responses).await;
    assert!(!answer.error, "{}", answer.body);
    assert_eq!(status(&put), "SUCCESS", "{}", put.body);
    assert_eq!(put.body["PhysicalResourceId"], "the-id-created-before");
    let new: Vec<String> = all[1..].iter().map(i64::to_string).collect();
    assert_eq!(put.body["Data"]["Applied"], new.len().to_string());
    assert_eq!(put.body["Data"]["AppliedVersions"], new.join(","));
    let once: Vec<(i64, i64)> = all.iter().map(|v| (*v, 1)).collect();
    assert_eq!(database.applied().await, once);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_answers_success_and_touches_nothing() {
    let all = versions(&real_migrator().await);
    let database = Database::with_first(all.len()).await;
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, response_body, \
             expires_at) VALUES ('alice', 'k1', '\\x00', 202, '{}', now() + interval '1 day')",
    )
    .execute(&database.pool)
    .await
    .unwrap();
    let schema = database.schema().await;
    let mut responses = ResponseUrl::start(0).await;
    let delete = event("delete", &responses.url("delete"));
    let pooler = database.owner_through_pooler();
    let mut function = Function::start(vec![delete.clone()], &[("DATABASE_URL", &pooler)]).await;

    let (answer, put) = function.answer(&mut responses).await;
    assert!(!answer.error, "{}", answer.body);
    assert_eq!(status(&put), "SUCCESS", "{}", put.body);
    assert_eq!(put.body["PhysicalResourceId"], delete["PhysicalResourceId"]);
    assert_eq!(database.schema().await, schema);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the data stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_and_a_bad_configuration_answer_failed() {
    let database = Database::empty().await;
    let mut responses = ResponseUrl::start(0).await;
    let no_properties = json!({
        "RequestType": "Create", "ResponseURL": responses.url("no-properties"),
        "RequestId": "r-1", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "LogicalResourceId": "DatabaseSchema"
    });
    let unknown_type = {
        let mut e = event("create", &responses.url("unknown-type"));
        e["RequestType"] = "Explode".into();
        e
    };
    let no_url = json!({"RequestType": "Delete", "RequestId": "r-3"});
    let pooler = database.owner_through_pooler();
    let mut function = Function::start(
        vec![no_properties, no_url, unknown_type],
        &[("DATABASE_URL", &pooler)],
    )
    .await;

    let (answer, put) = function.answer(&mut responses).await;
    assert!(!answer.error, "answered at the URL: {}", answer.body);
    assert_eq!(status(&put), "FAILED");
    assert!(
        reason(&put).starts_with("malformed custom resource event"),
        "{}",
        put.body
    );
    assert_eq!(put.body["RequestId"], "r-1");
    assert_eq!(put.body["PhysicalResourceId"], PHYSICAL_RESOURCE_ID);

    // Nobody to answer: an invocation error, and the function goes on to the next event.
    let answer = function
        .runtime
        .answer(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(answer.error, "{}", answer.body);
    assert!(answer.body.contains("NoResponseUrl"), "{}", answer.body);

    let (_, put) = function.answer(&mut responses).await;
    assert_eq!(status(&put), "FAILED");
    assert!(reason(&put).contains("Explode"), "{}", put.body);
    assert!(
        database.applied_table_absent().await,
        "nothing was migrated"
    );

    // A function that cannot read its configuration still answers, rather than failing to
    // start and leaving the stack waiting for an hour.
    let create = event("create", &responses.url("misconfigured"));
    let mut function = Function::start(vec![create], &[("DB_IAM_AUTH", "maybe")]).await;
    let (_, put) = function.answer(&mut responses).await;
    assert_eq!(status(&put), "FAILED");
    assert!(
        reason(&put).contains("the function is misconfigured")
            && reason(&put).contains("DB_IAM_AUTH"),
        "{}",
        put.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_answers_failed_with_its_name_and_error_and_keeps_the_schema() {
    let all = versions(&real_migrator().await);
    let database = Database::with_first(1).await;
    let folder = migrations_with(&[(
        "29991231000000_broken_step.sql",
        "CREATE TABLE broken_marker (id integer);\nALTER TABLE no_such_table ADD COLUMN x integer;\n",
    )]);
    let broken = Migrator::new(folder.as_path()).await.unwrap();
    let app = App::new(Ok(database.config()), None, broken);
    let mut responses = ResponseUrl::start(0).await;
    let update = event("update", &responses.url("broken"));

    let started = Instant::now();
    let response = invoke(&app, update.clone(), Duration::from_secs(30))
        .await
        .expect("the answer is delivered");
    let put = responses.next(Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_put_is_what_the_presigned_url_takes(&put);
    assert_eq!(status(&put), "FAILED", "{}", put.body);
    assert_eq!(put.body["Reason"], json!(response.reason));
    let reason = reason(&put);
    assert!(
        reason.starts_with("migration 29991231000000 (broken step) failed: "),
        "{reason}"
    );
    assert!(
        reason.contains("\"no_such_table\" does not exist"),
        "{reason}"
    );
    assert!(reason.contains("SQLSTATE 42P01"), "{reason}");
    assert!(reason.len() <= REASON_MAX_BYTES);
    assert_eq!(put.body["PhysicalResourceId"], update["PhysicalResourceId"]);

    // The migrations before it are applied, each once; the broken one left nothing behind.
    let once: Vec<(i64, i64)> = all.iter().map(|v| (*v, 1)).collect();
    assert_eq!(database.applied().await, once);
    assert!(database.has_table("quotes").await);
    assert!(!database.has_table("broken_marker").await);

    // The fixed deploy (the real migrations) then succeeds with nothing left to apply.
    let app = App::new(Ok(database.config()), None, real_migrator().await);
    invoke(
        &app,
        event("update", &responses.url("fixed")),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let put = responses.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status(&put), "SUCCESS", "{}", put.body);
    assert_eq!(put.body["Data"]["Applied"], "0");
    std::fs::remove_dir_all(folder).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_outlasts_the_invocation_answers_failed_before_the_deadline() {
    let all = versions(&real_migrator().await);
    let database = Database::with_first(all.len()).await;
    let folder = migrations_with(&[("29991231000000_slow.sql", "SELECT pg_sleep(20);\n")]);
    let app = App::new(
        Ok(database.config()),
        None,
        Migrator::new(folder.as_path()).await.unwrap(),
    );
    let mut responses = ResponseUrl::start(0).await;
    let budget = Duration::from_secs(4);

    let started = Instant::now();
    invoke(&app, event("update", &responses.url("slow")), budget)
        .await
        .expect("the answer is delivered");
    let put = responses.next(Duration::from_secs(1)).await.unwrap();
    assert!(started.elapsed() < budget, "{:?}", started.elapsed());
    assert_eq!(status(&put), "FAILED", "{}", put.body);
    assert!(
        reason(&put).starts_with("did not finish within 3.0 s"),
        "{}",
        put.body
    );
    std::fs::remove_dir_all(folder).unwrap();
}

#[tokio::test]
async fn the_answer_is_retried_until_taken_and_given_up_at_the_deadline() {
    // Delete needs no database: the configuration points nowhere.
    let app = App::new(Err("unused".into()), None, real_migrator().await);
    let mut responses = ResponseUrl::start(2).await;
    invoke(
        &app,
        event("delete", &responses.url("flaky")),
        Duration::from_secs(20),
    )
    .await
    .expect("taken at the third try");
    for _ in 0..3 {
        let put = responses.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(status(&put), "SUCCESS");
    }

    let mut responses = ResponseUrl::start(usize::MAX).await;
    let started = Instant::now();
    let error = invoke(
        &app,
        event("delete", &responses.url("down")),
        Duration::from_secs(2),
    )
    .await
    .expect_err("never taken");
    assert_eq!(error.error_type, "AnswerNotDelivered");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(responses.next(Duration::from_millis(10)).await.is_some());
}
