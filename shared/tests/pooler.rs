//! The database as the deployed functions meet it: through a transaction pooler (RDS Proxy on
//! AWS, PgBouncer here, as strict about startup parameters), as the application role.
//!
//! Every integration test's store already goes this way; these tests pin down why that
//! matters: the pooler refuses what RDS Proxy refuses, so a connection option that creeps back
//! fails here, and the role's own settings and rights are what the migrations say.

use std::time::{Duration, Instant};

use quote_pipeline::config::DatabaseConfig;
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::quote::Quote;
use quote_pipeline::store::{
    ListFilter, PING_AFTER_IDLE, PgStore, QuoteStore, StoreError, for_pooler,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use testkit::TestEnv;

fn quotes(n: u32) -> Vec<Quote> {
    generate(&GenerateParams::new(n))
        .into_iter()
        .map(|input| Quote::new_pending("ann", input, chrono::Utc::now()))
        .collect()
}

/// A write's deadline well past anything these tests wait for.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn pooler_options(env: &TestEnv) -> PgConnectOptions {
    env.database.url.parse().expect("a valid pooler URL")
}

#[tokio::test]
async fn the_stores_connections_pass_a_pooler_as_strict_as_rds_proxy() {
    let env = TestEnv::new().await;
    env.store
        .insert(uuid::Uuid::now_v7(), &quotes(3), None, later())
        .await
        .expect("an insert through the pooler");
    let mut conn = for_pooler(pooler_options(&env))
        .connect()
        .await
        .expect("the store's options are accepted");
    let mut tx = conn.begin().await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(user, "quote_app");
}

#[tokio::test]
async fn the_pooler_refuses_startup_options_as_rds_proxy_does() {
    let env = TestEnv::new().await;
    for options in [
        for_pooler(pooler_options(&env)).options([("statement_timeout", "5s")]),
        // sqlx's default: it sends extra_float_digits, which the pooler does not track.
        pooler_options(&env),
    ] {
        let refused = options.connect().await.expect_err("the pooler refuses it");
        assert!(
            refused
                .to_string()
                .contains("unsupported startup parameter"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn the_application_role_has_a_statement_timeout_without_sending_one() {
    let env = TestEnv::new().await;
    let mut tx = env.store.pool().begin().await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(timeout, "5s");

    // A statement stuck behind another transaction's lock fails in time, as a 503 would.
    let mut owner = env.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *owner)
        .await
        .unwrap();
    let started = Instant::now();
    let stuck = env
        .store
        .insert(uuid::Uuid::now_v7(), &quotes(1), None, later())
        .await;
    assert!(
        matches!(stuck, Err(StoreError::Unavailable(_))),
        "{stuck:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    owner.rollback().await.unwrap();
}

#[tokio::test]
async fn the_application_role_cannot_create_or_drop_tables() {
    let env = TestEnv::new().await;
    let mut conn = for_pooler(pooler_options(&env)).connect().await.unwrap();
    for ddl in [
        "CREATE TABLE mischief (id int)",
        "DROP TABLE quotes",
        "ALTER TABLE quotes ADD COLUMN mischief int",
        "TRUNCATE quotes",
        "SELECT count(*) FROM _sqlx_migrations",
    ] {
        // Each in a transaction of its own, as every statement through the pooler.
        let mut tx = conn.begin().await.unwrap();
        let denied = sqlx::query(ddl)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .expect_err("the application role may not");
        tx.rollback().await.unwrap();
        let code = denied
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        // Insufficient privilege, or "must be owner": both 42501.
        assert_eq!(code.as_deref(), Some("42501"), "{ddl}: {denied}");
    }
    conn.close().await.unwrap();
}

/// Many clients sharing the pooler's server connections, as Lambda containers share the
/// proxy's: a named prepared statement left on a server connection, or a statement whose
/// `Parse` and `Execute` land on two of them, fails here.
#[tokio::test]
async fn the_store_leaves_no_session_state_on_shared_server_connections() {
    let env = TestEnv::new().await;
    let stores: Vec<PgStore> = (0..4)
        .map(|_| PgStore::connect_lazy(&env.database).unwrap())
        .collect();
    let rounds = stores.iter().flat_map(|store| {
        (0..20).map(move |round| async move {
            let batch = quotes(5);
            store
                .insert(uuid::Uuid::now_v7(), &batch, None, later())
                .await?;
            store.get("ann", batch[0].id).await?;
            store.pending(&[batch[0].id, batch[1].id]).await?;
            let filter = ListFilter {
                limit: 10 + round,
                ..ListFilter::default()
            };
            store.list("ann", &filter).await
        })
    });
    for result in futures::future::join_all(rounds).await {
        result.expect("every statement runs whole on one server connection");
    }
}

/// A pooled connection closed under the pool while it sat idle (a frozen container's, which
/// the proxy dropped) fails its ping before its next use and is replaced: the call succeeds.
/// Straight on Postgres, whose side of the connection the test closes.
#[tokio::test]
async fn a_connection_closed_while_it_sat_idle_is_replaced_before_its_next_use() {
    let env = TestEnv::new().await;
    let owner = env.pool.connect_options();
    let config = DatabaseConfig {
        url: format!(
            "postgres://quote_app@{}:{}/{}",
            owner.get_host(),
            owner.get_port(),
            owner.get_database().expect("the test database")
        ),
        max_connections: 1,
        ..env.database.clone()
    };
    let store = PgStore::connect_lazy(&config).unwrap();
    store
        .list("ann", &ListFilter::default())
        .await
        .expect("a first call opens the connection");
    let closed: i64 = sqlx::query_scalar(
        "WITH app AS MATERIALIZED ( \
             SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = 'quote_app') \
         SELECT count(*) FROM app WHERE pg_terminate_backend(pid)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(closed, 1);
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    store
        .list("ann", &ListFilter::default())
        .await
        .expect("the closed connection is replaced before use");
}
