//! The Postgres store: the quotes table is the pipeline's source of truth.
//!
//! Every batch is one statement: a whole batch is inserted through `UNNEST` of column arrays,
//! and scored through one `UPDATE ... FROM UNNEST` that only touches quotes still pending, so a
//! message delivered twice changes nothing the second time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::iam_auth::{IamDatabase, auth_token};
pub use quote_domain::ports::{
    Cursor, IdempotencyRecord, Inserted, ListFilter, MAX_PAGE_SIZE, Page, QuoteStore,
    ReconcilePolicy, ReconcileStore, Recorded, StoreError, StuckQuotes,
};
pub use quote_domain::pricing::Outcome;
use quote_domain::quote::{Pricing, Quote, QuoteInput, QuoteStatus};

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

/// The spans around the statements, by name: X-Ray draws each as a call to PostgreSQL.
pub const POSTGRES_INSERT: &str = "postgres.insert";
pub const POSTGRES_GET: &str = "postgres.get";
pub const POSTGRES_LIST: &str = "postgres.list";
pub const POSTGRES_PENDING: &str = "postgres.pending";
pub const POSTGRES_RECORD: &str = "postgres.record";

/// What this adapter's work fails with, told apart as a [`StoreError`] at the port: whether
/// Postgres is worth retrying is a Postgres detail, decided here and nowhere else.
#[derive(Debug)]
enum PgError {
    Sql(sqlx::Error),
    /// No IAM token could be signed (credentials or signing failed): a passing fault.
    Token(String),
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        PgError::Sql(e)
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        let e = match e {
            PgError::Token(reason) => return StoreError::Unavailable(reason.into()),
            PgError::Sql(e) => e,
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.into()),
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
                StoreError::Unavailable(e.into())
            }
            other => StoreError::Other(other.into()),
        }
    }
}

/// The quotes [`PgStore::claim_stuck`] locked, in the transaction that holds the locks.
pub struct PgStuckQuotes {
    tx: sqlx::Transaction<'static, Postgres>,
    ids: Vec<Uuid>,
}

impl StuckQuotes for PgStuckQuotes {
    fn ids(&self) -> &[Uuid] {
        &self.ids
    }

    async fn enqueued(self) -> Result<(), StoreError> {
        Ok(self.count_enqueue().await?)
    }
}

impl PgStuckQuotes {
    async fn count_enqueue(mut self) -> Result<(), PgError> {
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
                PgError::Token(reason) => sqlx::Error::Configuration(reason.into()),
            })
        })?;
        migrations().run(pool).await
    }
}

/// The sweep's statements, failing with [`PgError`]; the port's impl below classifies it.
impl PgStore {
    async fn pg_fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<u64, PgError> {
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

    async fn pg_claim_stuck(&self, policy: &ReconcilePolicy) -> Result<PgStuckQuotes, PgError> {
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
        Ok(PgStuckQuotes { tx, ids })
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
        created_at: row.try_get("created_at")?,
        pricing: pricing_from_columns(PricingColumns {
            status: parse_text(row, "status")?,
            premium: row.try_get("premium")?,
            confidence: row.try_get("confidence")?,
            model_version: row.try_get("model_version")?,
            scored_at: row.try_get("scored_at")?,
            failure_reason: row.try_get("failure_reason")?,
        })
        .map_err(|problem| sqlx::Error::ColumnDecode {
            index: "status".to_owned(),
            source: problem.into(),
        })?,
        enqueue_attempts: row.try_get("enqueue_attempts")?,
    })
}

/// A row's status and pricing columns, as read.
#[derive(Debug, Clone, PartialEq)]
struct PricingColumns {
    status: QuoteStatus,
    premium: Option<f64>,
    confidence: Option<f64>,
    model_version: Option<String>,
    scored_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
}

/// The [`Pricing`] a row's columns describe: a scored row has its four pricing columns and
/// no reason, a failed row its reason and no pricing, a pending row neither. The table's
/// CHECK constraints keep rows so, but a row is outside input: one that contradicts its
/// status is an error naming the columns, not a quote made up from part of it.
fn pricing_from_columns(columns: PricingColumns) -> Result<Pricing, String> {
    match columns {
        PricingColumns {
            status: QuoteStatus::PendingMl,
            premium: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            failure_reason: None,
        } => Ok(Pricing::Pending),
        PricingColumns {
            status: QuoteStatus::Scored,
            premium: Some(premium),
            confidence: Some(confidence),
            model_version: Some(model_version),
            scored_at: Some(scored_at),
            failure_reason: None,
        } => Ok(Pricing::Scored {
            premium,
            confidence,
            model_version,
            scored_at,
        }),
        PricingColumns {
            status: QuoteStatus::Failed,
            premium: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            failure_reason: Some(reason),
        } => Ok(Pricing::Failed { reason }),
        contradiction => {
            let expected = match contradiction.status {
                QuoteStatus::PendingMl => "no pricing column set",
                QuoteStatus::Scored => "only premium, confidence, model_version and scored_at set",
                QuoteStatus::Failed => "only failure_reason set",
            };
            let set: Vec<&str> = [
                ("premium", contradiction.premium.is_some()),
                ("confidence", contradiction.confidence.is_some()),
                ("model_version", contradiction.model_version.is_some()),
                ("scored_at", contradiction.scored_at.is_some()),
                ("failure_reason", contradiction.failure_reason.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, is_set)| is_set.then_some(name))
            .collect();
            Err(format!(
                "a `{}` quote must have {expected}, but has {}",
                contradiction.status,
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                },
            ))
        }
    }
}

/// One statement for a whole batch: each column goes as one array through `UNNEST`.
async fn insert_quotes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    quotes: &[Quote],
) -> Result<(), PgError> {
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

/// The statements behind [`QuoteStore`], failing with [`PgError`]; the port's impl below
/// classifies it.
impl PgStore {
    async fn pg_insert(
        &self,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Inserted, PgError> {
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

    async fn pg_get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, PgError> {
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

    async fn pg_list(&self, owner: &str, filter: &ListFilter) -> Result<Page, PgError> {
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

    async fn pg_pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, PgError> {
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

    async fn pg_record(&self, outcomes: &[Outcome]) -> Result<Recorded, PgError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
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
        Ok(Recorded {
            scored: scored as u64,
            failed: failed as u64,
        })
    }
}

impl QuoteStore for PgStore {
    #[tracing::instrument(name = POSTGRES_INSERT, skip_all, fields(quotes = quotes.len()), err(level = "warn"))]
    async fn insert(
        &self,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Inserted, StoreError> {
        Ok(self.pg_insert(quotes, idempotency).await?)
    }

    #[tracing::instrument(name = POSTGRES_GET, skip_all, err(level = "warn"))]
    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        Ok(self.pg_get(owner, id).await?)
    }

    #[tracing::instrument(name = POSTGRES_LIST, skip_all, err(level = "warn"))]
    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        Ok(self.pg_list(owner, filter).await?)
    }

    #[tracing::instrument(name = POSTGRES_PENDING, skip_all, fields(ids = ids.len()), err(level = "warn"))]
    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Ok(self.pg_pending(ids).await?)
    }

    #[tracing::instrument(name = POSTGRES_RECORD, skip_all, fields(outcomes = outcomes.len()), err(level = "warn"))]
    async fn record(&self, outcomes: &[Outcome]) -> Result<Recorded, StoreError> {
        Ok(self.pg_record(outcomes).await?)
    }
}

impl ReconcileStore for PgStore {
    type Stuck = PgStuckQuotes;

    async fn fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<u64, StoreError> {
        Ok(self.pg_fail_exhausted(policy).await?)
    }

    async fn claim_stuck(&self, policy: &ReconcilePolicy) -> Result<PgStuckQuotes, StoreError> {
        Ok(self.pg_claim_stuck(policy).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored() -> PricingColumns {
        PricingColumns {
            status: QuoteStatus::Scored,
            premium: Some(1234.5),
            confidence: Some(0.75),
            model_version: Some("xgb-0123456789ab".into()),
            scored_at: Some(DateTime::from_timestamp(1_780_000_000, 0).unwrap()),
            failure_reason: None,
        }
    }

    fn pending() -> PricingColumns {
        PricingColumns {
            status: QuoteStatus::PendingMl,
            premium: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            failure_reason: None,
        }
    }

    #[test]
    fn consistent_columns_decode_to_their_pricing() {
        assert_eq!(pricing_from_columns(pending()), Ok(Pricing::Pending));
        assert_eq!(
            pricing_from_columns(scored()),
            Ok(Pricing::Scored {
                premium: 1234.5,
                confidence: 0.75,
                model_version: "xgb-0123456789ab".into(),
                scored_at: DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
            })
        );
        let failed = PricingColumns {
            status: QuoteStatus::Failed,
            failure_reason: Some("refused".into()),
            ..pending()
        };
        assert_eq!(
            pricing_from_columns(failed),
            Ok(Pricing::Failed {
                reason: "refused".into()
            })
        );
    }

    #[test]
    fn contradicting_columns_are_an_error_naming_them() {
        let cases = [
            (
                PricingColumns {
                    premium: None,
                    ..scored()
                },
                "a `scored` quote must have only premium, confidence, model_version and \
                 scored_at set, but has confidence, model_version, scored_at",
            ),
            (
                PricingColumns {
                    failure_reason: Some("refused".into()),
                    ..scored()
                },
                "a `scored` quote must have only premium, confidence, model_version and \
                 scored_at set, but has premium, confidence, model_version, scored_at, \
                 failure_reason",
            ),
            (
                PricingColumns {
                    status: QuoteStatus::Failed,
                    ..pending()
                },
                "a `failed` quote must have only failure_reason set, but has none",
            ),
            (
                PricingColumns {
                    status: QuoteStatus::PendingMl,
                    ..scored()
                },
                "a `pending_ml` quote must have no pricing column set, but has premium, \
                 confidence, model_version, scored_at",
            ),
        ];
        for (columns, message) in cases {
            assert_eq!(pricing_from_columns(columns), Err(message.to_owned()));
        }
    }
}
