//! The Postgres store: the quotes table is the pipeline's source of truth.
//!
//! Every batch is one statement: a whole batch is inserted through `UNNEST` of column arrays,
//! and scored through one `UPDATE ... FROM UNNEST` that only touches quotes still pending, so a
//! message delivered twice changes nothing the second time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::iam_auth::{IamDatabase, auth_token};
use crate::quote::{CoverageType, Quote, QuoteInput, QuoteStatus};
use crate::scoring::Prediction;

/// The largest page a list may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres could not be reached, or did not answer in time: worth retrying later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| {
                    ["08", "28", "40", "53", "57"]
                        .iter()
                        .any(|class| c.starts_with(class))
                }) =>
            {
                // Connection exceptions (08), a rejected or expired IAM token (28), deadlocks and
                // serialization failures (40), too many connections (53) and operator
                // intervention such as a shutdown or a statement timeout (57) all pass.
                StoreError::Unavailable(e)
            }
            other => StoreError::Other(other),
        }
    }
}

/// Which of an owner's quotes to list, and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub status: Option<QuoteStatus>,
    pub coverage_type: Option<CoverageType>,
    /// Resume after this position (exclusive), newest first.
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// A position in an owner's quotes, newest first: the last quote of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque token: microseconds since the epoch and the id.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (micros, id) = token.split_once('.')?;
        // Cursors come from real creation times: nothing before 1970 (nor before Postgres's
        // earliest timestamp, which a forged one could ask for).
        let micros: i64 = micros.parse().ok().filter(|m| *m >= 0)?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub quotes: Vec<Quote>,
    pub next: Option<Cursor>,
}

/// The store the functions need: a port, so the domain does not depend on Postgres itself.
pub trait QuoteStore: Send + Sync {
    /// Writes a batch of new quotes in one statement; all or nothing. With an idempotency
    /// record, the key is claimed in the same transaction, and a key already claimed writes
    /// nothing and answers what its first request was answered.
    fn insert(
        &self,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
    ) -> impl Future<Output = Result<Inserted, StoreError>> + Send;
    /// One quote, if it exists and belongs to `owner`.
    fn get(
        &self,
        owner: &str,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Quote>, StoreError>> + Send;
    /// One page of `owner`'s quotes, newest first.
    fn list(
        &self,
        owner: &str,
        filter: &ListFilter,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
    /// The quotes among `ids` that are still `pending_ml`, in one query.
    fn pending(&self, ids: &[Uuid]) -> impl Future<Output = Result<Vec<Quote>, StoreError>> + Send;
    /// Writes every outcome in one statement, to quotes still `pending_ml` only; returns how
    /// many quotes became scored and failed.
    fn record(
        &self,
        outcomes: &[Outcome],
    ) -> impl Future<Output = Result<(u64, u64), StoreError>> + Send;
}

/// When a pending quote counts as stuck, and when reconcile gives up on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcilePolicy {
    /// Time since the last enqueue after which a pending quote is sent again.
    pub min_age: Duration,
    /// Enqueues after which a quote still pending is failed.
    pub max_attempts: i32,
    /// The most quotes one run touches.
    pub limit: i64,
}

/// Pending quotes locked for re-enqueueing; dropping this without [`StuckQuotes::enqueued`]
/// releases them untouched.
pub struct StuckQuotes {
    tx: sqlx::Transaction<'static, Postgres>,
    pub ids: Vec<Uuid>,
}

impl StuckQuotes {
    /// Counts the enqueue and releases the quotes.
    pub async fn enqueued(mut self) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE quotes SET enqueue_attempts = enqueue_attempts + 1, last_enqueued_at = now() \
             WHERE id = ANY($1)",
        )
        .persistent(false)
        .bind(&self.ids)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// A write request's idempotency key, and the answer to keep for its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub owner: String,
    pub key: String,
    /// A digest of the request: a repeat must be the same request.
    pub request_hash: [u8; 32],
    pub status_code: u16,
    pub response_body: String,
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// The key was used before by the same request: this was its answer.
    Replay {
        status_code: u16,
        response_body: String,
    },
    /// The key was used before by a different request.
    KeyReused,
}

/// What the score step decided for one quote.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Scored(Prediction),
    Failed { id: Uuid, reason: String },
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

fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        // Closed by us before RDS Proxy closes them: it drops a client connection idle for
        // its IdleClientTimeout (the template's 30 minutes) and any connection after 24 hours.
        // One closed while the container was frozen fails the ping before its next use and
        // is replaced.
        .idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(1800))
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
        let options: PgConnectOptions = config.url.parse().map_err(StoreError::Other)?;
        let options = for_pooler(options);
        Ok(PgStore {
            pool: pool_options(config).connect_lazy_with(options),
            iam: None,
        })
    }

    /// The store `config` asks for: a plain connection string, or RDS Proxy with IAM tokens
    /// signed by the AWS SDK's credentials (the function's role on Lambda): those of `sdk`, so
    /// that a function which has loaded the SDK's configuration does not load it twice, or
    /// else loaded here, only in IAM mode.
    pub async fn from_config(
        config: &DatabaseConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, StoreError> {
        let Some(database) = &config.iam else {
            return Self::connect_lazy(config);
        };
        let loaded;
        let sdk = match sdk {
            Some(sdk) => sdk,
            None => {
                loaded = crate::queue::aws_sdk_config().await;
                &loaded
            }
        };
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            StoreError::Other(sqlx::Error::Configuration(
                "no AWS credentials to sign IAM tokens with".into(),
            ))
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
    async fn ready(&self) -> Result<&PgPool, StoreError> {
        let Some(signer) = &self.iam else {
            return Ok(&self.pool);
        };
        let due = signer
            .signed_at
            .lock()
            .expect("no poisoned lock")
            .is_none_or(|at| at.elapsed().map_or(true, |age| age > TOKEN_REFRESH));
        if due {
            let unavailable =
                |e: String| StoreError::Unavailable(sqlx::Error::Configuration(e.into()));
            let credentials = signer
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let token = auth_token(&signer.database, &credentials, SystemTime::now())
                .map_err(|e| unavailable(e.to_string()))?;
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
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        Ok(self.ready().await?.begin().await?)
    }

    /// Fails the quotes that stayed pending through `max_attempts` enqueues, the last one at
    /// least `min_age` ago; at most `limit` of them. Returns how many.
    pub async fn fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let failed = sqlx::query(
            "UPDATE quotes SET status = 'failed', \
                 failure_reason = format('not scored after %s enqueue attempts', enqueue_attempts) \
             WHERE id IN ( \
                 SELECT id FROM quotes \
                 WHERE status = 'pending_ml' AND enqueue_attempts >= $1 \
                     AND last_enqueued_at < now() - make_interval(secs => $2) \
                 ORDER BY last_enqueued_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .persistent(false)
        .bind(policy.max_attempts)
        .bind(policy.min_age.as_secs_f64())
        .bind(policy.limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(failed.rows_affected())
    }

    /// Locks the pending quotes due for another enqueue (at most `limit`, oldest first), and
    /// skips those another run holds, so two runs never send the same quote.
    pub async fn claim_stuck(&self, policy: &ReconcilePolicy) -> Result<StuckQuotes, StoreError> {
        let mut tx = self.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM quotes \
             WHERE status = 'pending_ml' AND enqueue_attempts < $1 \
                 AND last_enqueued_at < now() - make_interval(secs => $2) \
             ORDER BY last_enqueued_at LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .persistent(false)
        .bind(policy.max_attempts)
        .bind(policy.min_age.as_secs_f64())
        .bind(policy.limit)
        .fetch_all(&mut *tx)
        .await?;
        Ok(StuckQuotes { tx, ids })
    }

    /// Applies the migrations in `migrations/` directly, as their owner (a direct connection:
    /// sqlx's advisory lock around the run is session state).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let pool = self.ready().await.map_err(|e| {
            sqlx::migrate::MigrateError::Execute(match e {
                StoreError::Unavailable(e) | StoreError::Other(e) => e,
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

const COLUMNS: &str = "id, user_id, coverage_type, coverage_level, estimated_amount, user_age, \
     annual_revenue, num_employees, founded_at, status, created_at, premium, confidence, \
     model_version, scored_at, failure_reason, enqueue_attempts";

fn parse_text<T: std::str::FromStr<Err = String>>(row: &PgRow, column: &str) -> sqlx::Result<T> {
    let text: &str = row.try_get(column)?;
    text.parse().map_err(|e: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    })
}

pub(crate) fn quote_from_row(row: &PgRow) -> sqlx::Result<Quote> {
    Ok(Quote {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        input: QuoteInput {
            coverage_type: parse_text(row, "coverage_type")?,
            coverage_level: parse_text(row, "coverage_level")?,
            estimated_amount: row.try_get("estimated_amount")?,
            user_age: row.try_get("user_age")?,
            annual_revenue: row.try_get("annual_revenue")?,
            num_employees: row.try_get("num_employees")?,
            founded_at: row.try_get("founded_at")?,
        },
        status: parse_text(row, "status")?,
        created_at: row.try_get("created_at")?,
        premium: row.try_get("premium")?,
        confidence: row.try_get("confidence")?,
        model_version: row.try_get("model_version")?,
        scored_at: row.try_get("scored_at")?,
        failure_reason: row.try_get("failure_reason")?,
        enqueue_attempts: row.try_get("enqueue_attempts")?,
    })
}

/// One statement for a whole batch: each column goes as one array through `UNNEST`.
async fn insert_quotes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    quotes: &[Quote],
) -> Result<(), StoreError> {
    let column = |f: fn(&Quote) -> String| quotes.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
    let owners = column(|q| q.user_id.clone());
    let types = column(|q| q.input.coverage_type.as_str().to_owned());
    let levels = column(|q| q.input.coverage_level.as_str().to_owned());
    let amounts: Vec<i64> = quotes.iter().map(|q| q.input.estimated_amount).collect();
    let ages: Vec<i32> = quotes.iter().map(|q| q.input.user_age).collect();
    let revenues: Vec<i64> = quotes.iter().map(|q| q.input.annual_revenue).collect();
    let employees: Vec<i32> = quotes.iter().map(|q| q.input.num_employees).collect();
    let founded: Vec<NaiveDate> = quotes.iter().map(|q| q.input.founded_at).collect();
    let created: Vec<DateTime<Utc>> = quotes.iter().map(|q| q.created_at).collect();
    let attempts: Vec<i32> = quotes.iter().map(|q| q.enqueue_attempts).collect();
    sqlx::query(
        "INSERT INTO quotes (id, user_id, coverage_type, coverage_level, estimated_amount, \
             user_age, annual_revenue, num_employees, founded_at, created_at, enqueue_attempts, \
             last_enqueued_at) \
         SELECT u.*, u.created_at FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[], $6::int[], $7::bigint[], $8::int[], $9::date[], $10::timestamptz[], \
             $11::int[]) AS u(id, user_id, coverage_type, coverage_level, estimated_amount, \
             user_age, annual_revenue, num_employees, founded_at, created_at, enqueue_attempts)",
    )
    .persistent(false)
    .bind(ids)
    .bind(owners)
    .bind(types)
    .bind(levels)
    .bind(amounts)
    .bind(ages)
    .bind(revenues)
    .bind(employees)
    .bind(founded)
    .bind(created)
    .bind(attempts)
    .execute(executor)
    .await?;
    Ok(())
}

impl QuoteStore for PgStore {
    #[tracing::instrument(name = "postgres.insert", skip_all, fields(quotes = quotes.len()), err(level = "warn"))]
    async fn insert(
        &self,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.begin().await?;
        let Some(record) = idempotency else {
            insert_quotes(&mut *tx, quotes).await?;
            tx.commit().await?;
            return Ok(Inserted::New);
        };
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at < now()",
        )
        .persistent(false)
        .bind(&record.owner)
        .bind(&record.key)
        .execute(&mut *tx)
        .await?;
        // A concurrent request with the same key waits here for the first one to commit,
        // then finds its row.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys \
                 (user_id, key, request_hash, status_code, response_body, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) \
             ON CONFLICT (user_id, key) DO NOTHING",
        )
        .persistent(false)
        .bind(&record.owner)
        .bind(&record.key)
        .bind(record.request_hash.as_slice())
        .bind(record.status_code as i16)
        .bind(&record.response_body)
        .bind(record.ttl.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            let (hash, status, body): (Vec<u8>, i16, String) = sqlx::query_as(
                "SELECT request_hash, status_code, response_body FROM idempotency_keys \
                 WHERE user_id = $1 AND key = $2",
            )
            .persistent(false)
            .bind(&record.owner)
            .bind(&record.key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(if hash == record.request_hash {
                Inserted::Replay {
                    status_code: status as u16,
                    response_body: body,
                }
            } else {
                Inserted::KeyReused
            });
        }
        insert_quotes(&mut *tx, quotes).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    #[tracing::instrument(name = "postgres.get", skip_all, err(level = "warn"))]
    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query.push(COLUMNS).push(" FROM quotes WHERE id = ");
        query.push_bind(id).push(" AND user_id = ").push_bind(owner);
        let mut tx = self.begin().await?;
        let row = query
            .build()
            .persistent(false)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(quote_from_row).transpose()?)
    }

    #[tracing::instrument(name = "postgres.list", skip_all, err(level = "warn"))]
    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.clamp(1, MAX_PAGE_SIZE);
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query
            .push(COLUMNS)
            .push(" FROM quotes WHERE user_id = ")
            .push_bind(owner);
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(coverage_type) = filter.coverage_type {
            query
                .push(" AND coverage_type = ")
                .push_bind(coverage_type.as_str());
        }
        if let Some(after) = filter.after {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(after.created_at);
            query.push(", ").push_bind(after.id).push(")");
        }
        // One row more than asked tells whether another page follows.
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit + 1);
        let mut tx = self.begin().await?;
        let rows = query.build().persistent(false).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut quotes = rows
            .iter()
            .map(quote_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?;
        let next = if quotes.len() as i64 > limit {
            quotes.truncate(limit as usize);
            quotes.last().map(|q| Cursor {
                created_at: q.created_at,
                id: q.id,
            })
        } else {
            None
        };
        Ok(Page { quotes, next })
    }

    #[tracing::instrument(name = "postgres.pending", skip_all, fields(ids = ids.len()), err(level = "warn"))]
    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query
            .push(COLUMNS)
            .push(" FROM quotes WHERE status = 'pending_ml' AND id = ANY(");
        query.push_bind(ids).push(")");
        let mut tx = self.begin().await?;
        let rows = query.build().persistent(false).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(quote_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    #[tracing::instrument(name = "postgres.record", skip_all, fields(outcomes = outcomes.len()), err(level = "warn"))]
    async fn record(&self, outcomes: &[Outcome]) -> Result<(u64, u64), StoreError> {
        if outcomes.is_empty() {
            return Ok((0, 0));
        }
        let n = outcomes.len();
        let (mut ids, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut premiums, mut confidences) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut versions, mut reasons) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for outcome in outcomes {
            match outcome {
                Outcome::Scored(p) => {
                    ids.push(p.quote_id);
                    statuses.push(QuoteStatus::Scored.as_str());
                    premiums.push(Some(p.premium));
                    confidences.push(Some(p.confidence));
                    versions.push(Some(&*p.model_version));
                    reasons.push(None);
                }
                Outcome::Failed { id, reason } => {
                    ids.push(*id);
                    statuses.push(QuoteStatus::Failed.as_str());
                    premiums.push(None);
                    confidences.push(None);
                    versions.push(None);
                    reasons.push(Some(reason.as_str()));
                }
            }
        }
        let mut tx = self.begin().await?;
        let (scored, failed): (i64, i64) = sqlx::query_as(
            "WITH outcome AS ( \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::float8[], \
                     $5::text[], $6::text[]) \
                     AS o(id, status, premium, confidence, model_version, failure_reason) \
             ), updated AS ( \
                 UPDATE quotes q SET status = o.status, premium = o.premium, \
                     confidence = o.confidence, model_version = o.model_version, \
                     scored_at = CASE WHEN o.status = 'scored' THEN now() END, \
                     failure_reason = o.failure_reason \
                 FROM outcome o WHERE q.id = o.id AND q.status = 'pending_ml' \
                 RETURNING q.status \
             ) \
             SELECT count(*) FILTER (WHERE status = 'scored'), \
                    count(*) FILTER (WHERE status = 'failed') FROM updated",
        )
        .persistent(false)
        .bind(ids)
        .bind(statuses)
        .bind(premiums)
        .bind(confidences)
        .bind(versions)
        .bind(reasons)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((scored as u64, failed as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x",
            "1.",
            ".abc",
            "12.not-a-uuid",
            "99999999999999999999.0",
            "-250000000000000000.0190b5d200007000800000000000000",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
