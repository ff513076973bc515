//! The Postgres store: the quotes table is the pipeline's source of truth.
//!
//! Every batch is one statement: a whole batch is inserted through `UNNEST` of column arrays,
//! and scored through one `UPDATE ... FROM UNNEST` that only touches quotes still pending, so a
//! message delivered twice changes nothing the second time.
//!
//! In four parts: this module connects (the pool, the rules of a transaction pooler, RDS
//! Proxy's IAM tokens) and tells retryable failures from others, and a failed write from one
//! whose `COMMIT` went unanswered; `quotes` holds the statements behind [`QuoteStore`]
//! (re-pricing and the price history among them);
//! `batches` a batch's progress and those behind [`BatchStore`];
//! `sweep` those behind [`ReconcileStore`]; `shadow` those of shadow prices ([`ShadowStore`]).

mod batches;
mod quotes;
mod shadow;
mod sweep;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::query::QueryScalar;
use sqlx::{Connection, Postgres};
use uuid::Uuid;

use crate::iam_auth::{IamDatabase, auth_token};
pub use quote_domain::ports::{
    BatchProgress, BatchStore, CompletedBatch, Cursor, IdempotencyRecord, Inserted, ListFilter,
    MAX_PAGE_SIZE, Page, QuoteStore, ReconcilePolicy, ReconcileStore, Recorded, RepriceCursor,
    RepriceFilter, RepricePage, RequeueFilter, ShadowStore, StoreError, StuckQuotes,
};
pub use quote_domain::pricing::Outcome;
use quote_domain::pricing::Prediction;

pub use batches::POSTGRES_EVENTS_SENT;
pub use quotes::{
    POSTGRES_BATCH, POSTGRES_GET, POSTGRES_INSERT, POSTGRES_LIST, POSTGRES_PENDING,
    POSTGRES_PRICED, POSTGRES_RECORD, POSTGRES_REPRICE,
};
pub use shadow::POSTGRES_SHADOW;
pub use sweep::PgStuckQuotes;

/// Predictions as the column arrays of an `UNNEST($1::uuid[], $2::float8[], $3::float8[],
/// $4::float8[], $5::float8[], $6::text[])`: quote id, premium, low, high, confidence and model
/// version, the shape of every statement that writes prices by the batch.
struct PriceColumns<'a> {
    ids: Vec<Uuid>,
    premiums: Vec<f64>,
    lows: Vec<f64>,
    highs: Vec<f64>,
    confidences: Vec<f64>,
    versions: Vec<&'a str>,
}

impl<'a> PriceColumns<'a> {
    fn of(predictions: &'a [Prediction]) -> Self {
        PriceColumns {
            ids: predictions.iter().map(|p| p.quote_id).collect(),
            premiums: predictions.iter().map(|p| p.premium).collect(),
            lows: predictions.iter().map(|p| p.premium_low).collect(),
            highs: predictions.iter().map(|p| p.premium_high).collect(),
            confidences: predictions.iter().map(|p| p.confidence).collect(),
            versions: predictions.iter().map(|p| &*p.model_version).collect(),
        }
    }

    /// `query` with the columns bound as `$1` to `$6`.
    fn bind<'q, O>(
        &'q self,
        query: QueryScalar<'q, Postgres, O, PgArguments>,
    ) -> QueryScalar<'q, Postgres, O, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.premiums)
            .bind(&self.lows)
            .bind(&self.highs)
            .bind(&self.confidences)
            .bind(&self.versions)
    }
}

/// Where and how to connect: what `config` reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The connection string; with IAM authentication, one without a password.
    pub url: String,
    /// Connect to RDS Proxy with IAM tokens (`DB_IAM_AUTH=true`) rather than `DATABASE_URL`.
    pub iam: Option<IamDatabase>,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

/// What this adapter's work fails with, told apart as a [`StoreError`] at the port: whether
/// Postgres is worth retrying is a Postgres detail, decided here and nowhere else.
#[derive(Debug)]
enum PgError {
    Sql(sqlx::Error),
    /// No IAM token could be signed (credentials or signing failed): a passing fault.
    Token(String),
    /// The work's deadline came before its `COMMIT` was sent: nothing was written.
    Deadline,
    /// The `COMMIT` was sent and no answer came back (the connection broke, or the deadline
    /// came first): the transaction may have committed.
    CommitUnknown(String),
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        PgError::Sql(e)
    }
}

/// SQLSTATE classes of errors that pass, explained where they are told apart below.
const PASSING_CLASSES: [&str; 5] = ["08", "28", "40", "53", "57"];

/// An error of a `COMMIT` already sent: an error answer to it means Postgres rolled the
/// transaction back, so nothing was written; anything else (the connection lost or broken,
/// no answer in time, a connection failure or shutdown reported while committing) leaves the
/// outcome unknown.
fn commit_error(e: sqlx::Error) -> PgError {
    match &e {
        sqlx::Error::Database(db)
            if !db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57")) =>
        {
            PgError::Sql(e)
        }
        _ => PgError::CommitUnknown(e.to_string()),
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        let e = match e {
            PgError::Token(reason) => return StoreError::Unavailable(reason.into()),
            PgError::Deadline => {
                return StoreError::Unavailable(
                    "the database did not finish before the write's deadline".into(),
                );
            }
            PgError::CommitUnknown(reason) => return StoreError::OutcomeUnknown(reason.into()),
            PgError::Sql(e) => e,
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.into()),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| PASSING_CLASSES.iter().any(|class| c.starts_with(class))) =>
            {
                // Connection exceptions (08), a rejected or expired IAM token (28), deadlocks and
                // serialization failures (40), too many connections (53) and operator
                // intervention such as a shutdown or a statement timeout (57) all pass.
                StoreError::Unavailable(e.into())
            }
            other => StoreError::Other(other.into()),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// With IAM authentication: what the pool's password, a token, is signed from.
    iam: Option<Arc<IamSigner>>,
}

/// Signs the pool's tokens, a new one before the last expires.
struct IamSigner {
    database: IamDatabase,
    credentials: SharedCredentialsProvider,
    options: PgConnectOptions,
    /// Wall-clock time, as the token's own expiry: a frozen container's pause counts.
    signed_at: Mutex<Option<SystemTime>>,
}

/// A pooled connection idle longer than this is pinged before it is lent. One that sat (in a
/// frozen container, or through a proxy's failover) may have been closed under us, and a
/// failed ping replaces it; one handed back moments ago is lent as it is, which saves
/// back-to-back work a round trip per transaction (a scoring pass makes two transactions).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        // Closed by us before RDS Proxy closes them: it drops a client connection idle for
        // its IdleClientTimeout (the template's 30 minutes) and any connection after 24 hours.
        .idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(1800))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// What every connection sends, made for a transaction pooler (RDS Proxy on AWS, PgBouncer
/// locally). The startup packet carries only what poolers track (user, database, `DateStyle`,
/// `client_encoding`, `TimeZone`): no `options` (RDS Proxy refuses the connection: "Feature not
/// supported: RDS Proxy currently doesn't support command-line options") and no
/// `extra_float_digits`, which PgBouncer does not track (values come back in binary anyway).
/// The statement timeout is the application role's default instead, set by a migration.
/// Unnamed statements only: a named prepared statement is session state, which pins an RDS
/// Proxy connection and does not survive a transaction in PgBouncer's pool.
pub fn for_pooler(options: PgConnectOptions) -> PgConnectOptions {
    options.extra_float_digits(None).statement_cache_capacity(0)
}

/// A token is re-signed this long after the last, well inside its 15 minutes.
const TOKEN_REFRESH: Duration = Duration::from_secs(600);

impl PgStore {
    /// Builds the pool without connecting: a cold start does not wait on Postgres, and a
    /// database outage at start-up is a per-request 503, not a crashed container.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Other(e.into()))?;
        let options = for_pooler(options);
        Ok(PgStore {
            pool: pool_options(config).connect_lazy_with(options),
            iam: None,
        })
    }

    /// The store `config` asks for: a plain connection string, or RDS Proxy with IAM tokens
    /// signed by the credentials of `sdk` (the function's role on Lambda), which IAM mode
    /// needs (`aws::sdk_for_database` loads it only then).
    pub async fn from_config(
        config: &DatabaseConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, StoreError> {
        let Some(database) = &config.iam else {
            return Self::connect_lazy(config);
        };
        let credentials = sdk
            .and_then(|sdk| sdk.credentials_provider())
            .ok_or_else(|| {
                StoreError::Other("no AWS credentials to sign IAM tokens with".into())
            })?;
        // The proxy requires TLS; its certificate is checked against the host name.
        let options = for_pooler(
            PgConnectOptions::new()
                .host(&database.host)
                .port(database.port)
                .database(&database.name)
                .username(&database.user)
                .ssl_mode(PgSslMode::VerifyFull),
        );
        let signer = IamSigner {
            database: database.clone(),
            credentials,
            options: options.clone(),
            signed_at: Mutex::new(None),
        };
        let store = PgStore {
            pool: pool_options(config).connect_lazy_with(options),
            iam: Some(Arc::new(signer)),
        };
        store.ready().await?;
        Ok(store)
    }

    pub fn from_pool(pool: PgPool) -> Self {
        PgStore { pool, iam: None }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, its IAM token re-signed first if it is due.
    async fn ready(&self) -> Result<&PgPool, PgError> {
        let Some(signer) = &self.iam else {
            return Ok(&self.pool);
        };
        let due = signer
            .signed_at
            .lock()
            .expect("no poisoned lock")
            .is_none_or(|at| at.elapsed().map_or(true, |age| age > TOKEN_REFRESH));
        if due {
            let credentials = signer
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| PgError::Token(e.to_string()))?;
            let token = auth_token(&signer.database, &credentials, SystemTime::now())
                .map_err(|e| PgError::Token(e.to_string()))?;
            self.pool
                .set_connect_options(signer.options.clone().password(&token));
            *signer.signed_at.lock().expect("no poisoned lock") = Some(SystemTime::now());
        }
        Ok(&self.pool)
    }

    /// A transaction on a pooled connection. Every statement runs inside one, even alone:
    /// sqlx sends a statement's `Parse` and its `Bind`/`Execute` in two round trips, each ending
    /// in `Sync`, and a transaction pooler may hand the second to another server connection
    /// unless a transaction holds it.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, PgError> {
        Ok(self.ready().await?.begin().await?)
    }

    /// Applies the migrations in `migrations/` directly, as their owner (a direct connection:
    /// sqlx's advisory lock around the run is session state).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let pool = self.ready().await.map_err(|e| {
            sqlx::migrate::MigrateError::Execute(match e {
                PgError::Sql(e) => e,
                other => sqlx::Error::Configuration(StoreError::from(other).to_string().into()),
            })
        })?;
        migrations().run(pool).await
    }
}

/// The migrations in `migrations/`, embedded: the schema's single history, and the set a
/// deploy applies is the set its code was built with (`build.rs` rebuilds when one is added).
pub fn migrations() -> sqlx::migrate::Migrator {
    sqlx::migrate!("../migrations")
}
