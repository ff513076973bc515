//! The Postgres store: the quotes table is the pipeline's source of truth.
//!
//! Every batch is one statement: a whole batch is inserted through `UNNEST` of column arrays,
//! and scored through one `UPDATE ... FROM UNNEST` that only touches quotes still pending, so a
//! message delivered twice changes nothing the second time.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::config::DatabaseConfig;
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
                if db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")) =>
            {
                // Class 57 (operator intervention: shutdown, statement timeout) and class 08
                // (connection exception) pass once the server is back.
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
        format!("{}.{}", self.created_at.timestamp_micros(), self.id.simple())
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (micros, id) = token.split_once('.')?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
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
    /// Writes a batch of new quotes in one statement; all or nothing.
    fn insert(&self, quotes: &[Quote]) -> impl Future<Output = Result<(), StoreError>> + Send;
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
    fn record(&self, outcomes: &[Outcome]) -> impl Future<Output = Result<(u64, u64), StoreError>> + Send;
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
}

impl PgStore {
    /// Builds the pool without connecting: a cold start does not wait on Postgres, and a
    /// database outage at start-up is a per-request 503, not a crashed container.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_lazy(&config.url)
            .map_err(StoreError::Other)?;
        Ok(PgStore { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        PgStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations in `migrations/`, the schema's single history.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("../migrations").run(&self.pool).await
    }
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

impl QuoteStore for PgStore {
    async fn insert(&self, quotes: &[Quote]) -> Result<(), StoreError> {
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
                 user_age, annual_revenue, num_employees, founded_at, created_at, enqueue_attempts) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                 $6::int[], $7::bigint[], $8::int[], $9::date[], $10::timestamptz[], $11::int[])",
        )
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query.push(COLUMNS).push(" FROM quotes WHERE id = ");
        query.push_bind(id).push(" AND user_id = ").push_bind(owner);
        let row = query.build().fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(quote_from_row).transpose()?)
    }

    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.clamp(1, MAX_PAGE_SIZE);
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query.push(COLUMNS).push(" FROM quotes WHERE user_id = ").push_bind(owner);
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(coverage_type) = filter.coverage_type {
            query.push(" AND coverage_type = ").push_bind(coverage_type.as_str());
        }
        if let Some(after) = filter.after {
            query.push(" AND (created_at, id) < (").push_bind(after.created_at);
            query.push(", ").push_bind(after.id).push(")");
        }
        // One row more than asked tells whether another page follows.
        query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut quotes = rows.iter().map(quote_from_row).collect::<sqlx::Result<Vec<_>>>()?;
        let next = if quotes.len() as i64 > limit {
            quotes.truncate(limit as usize);
            quotes.last().map(|q| Cursor { created_at: q.created_at, id: q.id })
        } else {
            None
        };
        Ok(Page { quotes, next })
    }

    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query.push(COLUMNS).push(" FROM quotes WHERE status = 'pending_ml' AND id = ANY(");
        query.push_bind(ids).push(")");
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(quote_from_row).collect::<sqlx::Result<Vec<_>>>()?)
    }

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
                    versions.push(Some(p.model_version.as_str()));
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
        .bind(ids)
        .bind(statuses)
        .bind(premiums)
        .bind(confidences)
        .bind(versions)
        .bind(reasons)
        .fetch_one(&self.pool)
        .await?;
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
        for bad in ["", "x", "1.", ".abc", "12.not-a-uuid", "99999999999999999999.0"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
