//! The statements behind [`QuoteStore`]: every batch is one statement, and a write is bounded
//! by its deadline.

use std::time::Instant;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use quote_domain::ports::{
    BatchProgress, Cursor, IdempotencyRecord, Inserted, ListFilter, MAX_PAGE_SIZE, Page,
    QuoteStore, Recorded, StoreError,
};
use quote_domain::pricing::{Outcome, Prediction};
use quote_domain::quote::{PriceRange, PriceRecord, Pricing, Quote, QuoteInput, QuoteStatus};

use super::batches::{count_into_batches, recorded};
use super::{PgError, PgStore, PriceColumns, commit_error};

/// The spans around the statements, by name: X-Ray draws each as a call to PostgreSQL.
pub const POSTGRES_INSERT: &str = "postgres.insert";
pub const POSTGRES_GET: &str = "postgres.get";
pub const POSTGRES_LIST: &str = "postgres.list";
pub const POSTGRES_PENDING: &str = "postgres.pending";
pub const POSTGRES_RECORD: &str = "postgres.record";
pub const POSTGRES_PRICED: &str = "postgres.priced";
pub const POSTGRES_REPRICE: &str = "postgres.reprice";
pub const POSTGRES_BATCH: &str = "postgres.batch";

const COLUMNS: &str = "id, user_id, coverage_type, coverage_level, estimated_amount, user_age, \
     annual_revenue, num_employees, founded_at, status, created_at, premium, premium_low, \
     premium_high, confidence, model_version, scored_at, valid_until, failure_reason, \
     enqueue_attempts";

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
            premium_low: row.try_get("premium_low")?,
            premium_high: row.try_get("premium_high")?,
            confidence: row.try_get("confidence")?,
            model_version: row.try_get("model_version")?,
            scored_at: row.try_get("scored_at")?,
            valid_until: row.try_get("valid_until")?,
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
    premium_low: Option<f64>,
    premium_high: Option<f64>,
    confidence: Option<f64>,
    model_version: Option<String>,
    scored_at: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
}

/// The [`Pricing`] a row's columns describe: a scored row has its four pricing columns (and,
/// unless an older deploy scored it, its range and validity) and no reason, a failed row its
/// reason and no pricing, a pending row neither. The table's CHECK constraints keep rows so,
/// but a row is outside input: one that contradicts its status is an error naming the
/// columns, not a quote made up from part of it.
fn pricing_from_columns(columns: PricingColumns) -> Result<Pricing, String> {
    match columns {
        PricingColumns {
            status: QuoteStatus::PendingMl,
            premium: None,
            premium_low: None,
            premium_high: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            valid_until: None,
            failure_reason: None,
        } => Ok(Pricing::Pending),
        PricingColumns {
            status: QuoteStatus::Scored,
            premium: Some(premium),
            premium_low,
            premium_high,
            confidence: Some(confidence),
            model_version: Some(model_version),
            scored_at: Some(scored_at),
            valid_until,
            failure_reason: None,
        } if premium_low.is_some() == premium_high.is_some() => Ok(Pricing::Scored {
            premium,
            range: premium_low
                .zip(premium_high)
                .map(|(low, high)| PriceRange { low, high }),
            confidence,
            model_version,
            scored_at,
            valid_until,
        }),
        PricingColumns {
            status: QuoteStatus::Failed,
            premium: None,
            premium_low: None,
            premium_high: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            valid_until: None,
            failure_reason: Some(reason),
        } => Ok(Pricing::Failed { reason }),
        contradiction => {
            let expected = match contradiction.status {
                QuoteStatus::PendingMl => "no pricing column set",
                QuoteStatus::Scored => {
                    "premium, confidence, model_version and scored_at set, both or neither of \
                     premium_low and premium_high, and no failure_reason"
                }
                QuoteStatus::Failed => "only failure_reason set",
            };
            let set: Vec<&str> = [
                ("premium", contradiction.premium.is_some()),
                ("premium_low", contradiction.premium_low.is_some()),
                ("premium_high", contradiction.premium_high.is_some()),
                ("confidence", contradiction.confidence.is_some()),
                ("model_version", contradiction.model_version.is_some()),
                ("scored_at", contradiction.scored_at.is_some()),
                ("valid_until", contradiction.valid_until.is_some()),
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
/// The batch's row goes in the same statement, first (a data-modifying `WITH`), so a write
/// costs no extra round trip for it. Every quote is written with the batch's owner and
/// creation time (the first quote's: a write's quotes are made together), which is how a
/// batch's quotes are found: one range of the owner's index.
async fn insert_quotes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    batch_id: Uuid,
    quotes: &[Quote],
) -> Result<(), PgError> {
    let Some(first) = quotes.first() else {
        return Ok(());
    };
    let column = |f: fn(&Quote) -> String| quotes.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
    let types = column(|q| q.input.coverage_type.as_str().to_owned());
    let levels = column(|q| q.input.coverage_level.as_str().to_owned());
    let amounts: Vec<i64> = quotes.iter().map(|q| q.input.estimated_amount).collect();
    let ages: Vec<i32> = quotes.iter().map(|q| q.input.user_age).collect();
    let revenues: Vec<i64> = quotes.iter().map(|q| q.input.annual_revenue).collect();
    let employees: Vec<i32> = quotes.iter().map(|q| q.input.num_employees).collect();
    let founded: Vec<NaiveDate> = quotes.iter().map(|q| q.input.founded_at).collect();
    let attempts: Vec<i32> = quotes.iter().map(|q| q.enqueue_attempts).collect();
    sqlx::query(
        "WITH batch AS ( \
             INSERT INTO quote_batches (id, user_id, size, created_at) \
             VALUES ($10, $11, $12, $13) \
         ) \
         INSERT INTO quotes (id, user_id, coverage_type, coverage_level, estimated_amount, \
             user_age, annual_revenue, num_employees, founded_at, created_at, enqueue_attempts, \
             last_enqueued_at, batch_id) \
         SELECT u.id, $11, u.coverage_type, u.coverage_level, u.estimated_amount, u.user_age, \
             u.annual_revenue, u.num_employees, u.founded_at, $13, u.enqueue_attempts, $13, $10 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::int[], \
             $6::bigint[], $7::int[], $8::date[], $9::int[]) AS u(id, coverage_type, \
             coverage_level, estimated_amount, user_age, annual_revenue, num_employees, \
             founded_at, enqueue_attempts)",
    )
    .persistent(false)
    .bind(ids)
    .bind(types)
    .bind(levels)
    .bind(amounts)
    .bind(ages)
    .bind(revenues)
    .bind(employees)
    .bind(founded)
    .bind(attempts)
    .bind(batch_id)
    .bind(&first.user_id)
    .bind(quotes.len() as i32)
    .bind(first.created_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// The quotes, and with a record the key claimed, in one transaction on `conn`: at most two
/// statements between `BEGIN` and `COMMIT` (claim the key, then insert the quotes or read the
/// key's kept answer). `committing` is set once the `COMMIT` is about to be sent: from then
/// on, a failure leaves the outcome unknown.
async fn write_quotes(
    conn: &mut PgConnection,
    batch_id: Uuid,
    quotes: &[Quote],
    idempotency: Option<&IdempotencyRecord>,
    committing: &mut bool,
) -> Result<Inserted, PgError> {
    let mut tx = conn.begin().await?;
    if let Some(record) = idempotency {
        // Claims the key, or takes over an expired claim, in one statement. A concurrent
        // request with the same key waits here for the first one to commit, then finds its
        // live row and claims nothing.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys \
                 (user_id, key, request_hash, status_code, response_body, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) \
             ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
                 status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, \
                 created_at = now(), expires_at = EXCLUDED.expires_at \
             WHERE idempotency_keys.expires_at < now()",
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
    }
    insert_quotes(&mut *tx, batch_id, quotes).await?;
    *committing = true;
    tx.commit().await.map_err(commit_error)?;
    Ok(Inserted::New)
}

/// The statements behind [`QuoteStore`], failing with [`PgError`]; the port's impl below
/// classifies it.
impl PgStore {
    /// The write, bounded by `deadline`: cut short, its connection is closed rather than
    /// reused mid-conversation, and the error says whether its `COMMIT` had been sent.
    async fn pg_insert(
        &self,
        batch_id: Uuid,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        deadline: Instant,
    ) -> Result<Inserted, PgError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let pool = self.ready().await?;
        let mut conn = tokio::time::timeout_at(deadline, pool.acquire())
            .await
            .map_err(|_| PgError::Deadline)??;
        let mut committing = false;
        let written = tokio::time::timeout_at(
            deadline,
            write_quotes(&mut conn, batch_id, quotes, idempotency, &mut committing),
        )
        .await;
        written.unwrap_or_else(|_| {
            drop(conn.detach());
            Err(if committing {
                PgError::CommitUnknown("no answer to COMMIT before the write's deadline".into())
            } else {
                PgError::Deadline
            })
        })
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
        if let Some(batch) = filter.batch {
            // One range of the owner's index: a batch's quotes share its creation time.
            query
                .push(" AND batch_id = ")
                .push_bind(batch)
                .push(" AND created_at = (SELECT created_at FROM quote_batches WHERE id = ")
                .push_bind(batch)
                .push(")");
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
        self.quotes_among(ids, "status = 'pending_ml'").await
    }

    /// The quotes among `ids` that meet `condition`, in one query.
    async fn quotes_among(&self, ids: &[Uuid], condition: &str) -> Result<Vec<Quote>, PgError> {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        query
            .push(COLUMNS)
            .push(" FROM quotes WHERE ")
            .push(condition)
            .push(" AND id = ANY(");
        query.push_bind(ids).push(")");
        let mut tx = self.begin().await?;
        let rows = query.build().persistent(false).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(quote_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    /// The quote and its superseded prices in one statement (one snapshot, so a re-price
    /// committing meanwhile cannot show a price both current and superseded): one row per
    /// superseded price, or one with none.
    async fn pg_get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, PgError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT q.*, h.model_version AS h_model_version, h.premium AS h_premium, \
                 h.premium_low AS h_premium_low, h.premium_high AS h_premium_high, \
                 h.confidence AS h_confidence, h.priced_at AS h_priced_at, \
                 h.valid_until AS h_valid_until, h.superseded_at AS h_superseded_at \
             FROM quotes q LEFT JOIN quote_prices h ON h.quote_id = q.id \
             WHERE q.id = $1 AND q.user_id = $2 \
             ORDER BY h.priced_at DESC, h.model_version DESC",
        )
        .persistent(false)
        .bind(id)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let quote = quote_from_row(first)?;
        let mut history = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(model_version) = row.try_get::<Option<String>, _>("h_model_version")? else {
                continue;
            };
            let low: Option<f64> = row.try_get("h_premium_low")?;
            let high: Option<f64> = row.try_get("h_premium_high")?;
            history.push(PriceRecord {
                model_version,
                premium: row.try_get("h_premium")?,
                range: low.zip(high).map(|(low, high)| PriceRange { low, high }),
                confidence: row.try_get("h_confidence")?,
                priced_at: row.try_get("h_priced_at")?,
                valid_until: row.try_get("h_valid_until")?,
                superseded_at: row.try_get("h_superseded_at")?,
            });
        }
        Ok(Some((quote, history)))
    }

    async fn pg_priced(&self, ids: &[Uuid]) -> Result<Vec<Quote>, PgError> {
        self.quotes_among(ids, "status = 'scored' AND valid_until > now()")
            .await
    }

    /// Two statements in one transaction. The first locks the quotes (in id order, so two
    /// re-prices of overlapping quotes cannot deadlock); the second, whose snapshot is taken
    /// once the locks are held, so it reads each quote's latest price, moves the current
    /// prices it replaces to `quote_prices` and writes the new ones. Without the lock, a
    /// concurrent re-price with another version could commit between the two and its price
    /// be overwritten without being kept.
    async fn pg_reprice(
        &self,
        predictions: &[Prediction],
        validity: Duration,
    ) -> Result<u64, PgError> {
        if predictions.is_empty() {
            return Ok(0);
        }
        let prices = PriceColumns::of(predictions);
        let mut tx = self.begin().await?;
        sqlx::query("SELECT 1 FROM quotes WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .persistent(false)
            .bind(&prices.ids)
            .execute(&mut *tx)
            .await?;
        let statement = sqlx::query_scalar(
            "WITH priced AS ( \
                 SELECT * FROM UNNEST($1::uuid[], $2::float8[], $3::float8[], $4::float8[], \
                     $5::float8[], $6::text[]) \
                     AS p(id, premium, premium_low, premium_high, confidence, model_version) \
             ), due AS ( \
                 SELECT q.id FROM quotes q JOIN priced p ON p.id = q.id \
                 WHERE q.status = 'scored' AND q.valid_until > now() \
                     AND q.model_version <> p.model_version \
                     AND NOT EXISTS (SELECT 1 FROM quote_prices h \
                         WHERE h.quote_id = q.id AND h.model_version = p.model_version) \
             ), superseded AS ( \
                 INSERT INTO quote_prices (quote_id, model_version, premium, premium_low, \
                     premium_high, confidence, priced_at, valid_until, superseded_at) \
                 SELECT q.id, q.model_version, q.premium, q.premium_low, q.premium_high, \
                     q.confidence, q.scored_at, q.valid_until, now() \
                 FROM quotes q JOIN due USING (id) \
             ), updated AS ( \
                 UPDATE quotes q SET premium = p.premium, premium_low = p.premium_low, \
                     premium_high = p.premium_high, confidence = p.confidence, \
                     model_version = p.model_version, scored_at = now(), \
                     valid_until = now() + make_interval(secs => $7) \
                 FROM priced p JOIN due USING (id) WHERE q.id = p.id \
                 RETURNING 1 \
             ) \
             SELECT count(*) FROM updated",
        )
        .persistent(false);
        let repriced: i64 = prices
            .bind(statement)
            .bind(validity.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(repriced as u64)
    }

    async fn pg_record(
        &self,
        outcomes: &[Outcome],
        validity: Duration,
    ) -> Result<Recorded, PgError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        let n = outcomes.len();
        let (mut ids, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut premiums, mut confidences) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut lows, mut highs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut versions, mut reasons) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for outcome in outcomes {
            match outcome {
                Outcome::Scored(p) => {
                    ids.push(p.quote_id);
                    statuses.push(QuoteStatus::Scored.as_str());
                    premiums.push(Some(p.premium));
                    lows.push(Some(p.premium_low));
                    highs.push(Some(p.premium_high));
                    confidences.push(Some(p.confidence));
                    versions.push(Some(&*p.model_version));
                    reasons.push(None);
                }
                Outcome::Failed { id, reason } => {
                    ids.push(*id);
                    statuses.push(QuoteStatus::Failed.as_str());
                    premiums.push(None);
                    lows.push(None);
                    highs.push(None);
                    confidences.push(None);
                    versions.push(None);
                    reasons.push(Some(reason.as_str()));
                }
            }
        }
        let statement = format!(
            "WITH outcome AS ( \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::float8[], \
                     $5::float8[], $6::float8[], $7::text[], $8::text[]) \
                     AS o(id, status, premium, premium_low, premium_high, confidence, \
                         model_version, failure_reason) \
             ), updated AS ( \
                 UPDATE quotes q SET status = o.status, premium = o.premium, \
                     premium_low = o.premium_low, premium_high = o.premium_high, \
                     confidence = o.confidence, model_version = o.model_version, \
                     scored_at = CASE WHEN o.status = 'scored' THEN now() END, \
                     valid_until = CASE WHEN o.status = 'scored' \
                         THEN now() + make_interval(secs => $9) END, \
                     failure_reason = o.failure_reason \
                 FROM outcome o WHERE q.id = o.id AND q.status = 'pending_ml' \
                 RETURNING q.status, q.batch_id \
             ), {}",
            count_into_batches("updated")
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&statement)
            .persistent(false)
            .bind(ids)
            .bind(statuses)
            .bind(premiums)
            .bind(lows)
            .bind(highs)
            .bind(confidences)
            .bind(versions)
            .bind(reasons)
            .bind(validity.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        recorded(&rows)
    }
}

impl QuoteStore for PgStore {
    #[tracing::instrument(name = POSTGRES_INSERT, skip_all, fields(quotes = quotes.len()), err(level = "warn"))]
    async fn insert(
        &self,
        batch_id: Uuid,
        quotes: &[Quote],
        idempotency: Option<&IdempotencyRecord>,
        deadline: Instant,
    ) -> Result<Inserted, StoreError> {
        Ok(self
            .pg_insert(batch_id, quotes, idempotency, deadline)
            .await?)
    }

    #[tracing::instrument(name = POSTGRES_BATCH, skip_all, err(level = "warn"))]
    async fn batch(&self, owner: &str, id: Uuid) -> Result<Option<BatchProgress>, StoreError> {
        Ok(self.pg_batch(owner, id).await?)
    }

    #[tracing::instrument(name = POSTGRES_GET, skip_all, err(level = "warn"))]
    async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Quote>, StoreError> {
        Ok(self.pg_get(owner, id).await?)
    }

    #[tracing::instrument(name = POSTGRES_LIST, skip_all, err(level = "warn"))]
    async fn list(&self, owner: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        Ok(self.pg_list(owner, filter).await?)
    }

    #[tracing::instrument(name = POSTGRES_GET, skip_all, fields(history = true), err(level = "warn"))]
    async fn get_with_history(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(Quote, Vec<PriceRecord>)>, StoreError> {
        Ok(self.pg_get_with_history(owner, id).await?)
    }

    #[tracing::instrument(name = POSTGRES_PENDING, skip_all, fields(ids = ids.len()), err(level = "warn"))]
    async fn pending(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Ok(self.pg_pending(ids).await?)
    }

    #[tracing::instrument(name = POSTGRES_PRICED, skip_all, fields(ids = ids.len()), err(level = "warn"))]
    async fn priced(&self, ids: &[Uuid]) -> Result<Vec<Quote>, StoreError> {
        Ok(self.pg_priced(ids).await?)
    }

    #[tracing::instrument(name = POSTGRES_REPRICE, skip_all, fields(predictions = predictions.len()), err(level = "warn"))]
    async fn reprice(
        &self,
        predictions: &[Prediction],
        validity: Duration,
    ) -> Result<u64, StoreError> {
        Ok(self.pg_reprice(predictions, validity).await?)
    }

    #[tracing::instrument(name = POSTGRES_RECORD, skip_all, fields(outcomes = outcomes.len()), err(level = "warn"))]
    async fn record(
        &self,
        outcomes: &[Outcome],
        validity: Duration,
    ) -> Result<Recorded, StoreError> {
        Ok(self.pg_record(outcomes, validity).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored() -> PricingColumns {
        PricingColumns {
            status: QuoteStatus::Scored,
            premium: Some(1234.5),
            premium_low: Some(1000.25),
            premium_high: Some(1500.0),
            confidence: Some(0.75),
            model_version: Some("xgb-0123456789ab".into()),
            scored_at: Some(scored_at()),
            valid_until: Some(scored_at() + chrono::Duration::days(30)),
            failure_reason: None,
        }
    }

    fn pending() -> PricingColumns {
        PricingColumns {
            status: QuoteStatus::PendingMl,
            premium: None,
            premium_low: None,
            premium_high: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            valid_until: None,
            failure_reason: None,
        }
    }

    fn scored_at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap()
    }

    #[test]
    fn consistent_columns_decode_to_their_pricing() {
        assert_eq!(pricing_from_columns(pending()), Ok(Pricing::Pending));
        assert_eq!(
            pricing_from_columns(scored()),
            Ok(Pricing::Scored {
                premium: 1234.5,
                range: Some(PriceRange {
                    low: 1000.25,
                    high: 1500.0
                }),
                confidence: 0.75,
                model_version: "xgb-0123456789ab".into(),
                scored_at: scored_at(),
                valid_until: Some(scored_at() + chrono::Duration::days(30)),
            })
        );
        // Scored by a deploy that kept no range and no validity.
        let legacy = PricingColumns {
            premium_low: None,
            premium_high: None,
            valid_until: None,
            ..scored()
        };
        assert_eq!(
            pricing_from_columns(legacy),
            Ok(Pricing::Scored {
                premium: 1234.5,
                range: None,
                confidence: 0.75,
                model_version: "xgb-0123456789ab".into(),
                scored_at: scored_at(),
                valid_until: None,
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
                "a `scored` quote must have premium, confidence, model_version and scored_at \
                 set, both or neither of premium_low and premium_high, and no failure_reason, \
                 but has premium_low, premium_high, confidence, model_version, scored_at, \
                 valid_until",
            ),
            (
                PricingColumns {
                    failure_reason: Some("refused".into()),
                    ..scored()
                },
                "a `scored` quote must have premium, confidence, model_version and scored_at \
                 set, both or neither of premium_low and premium_high, and no failure_reason, \
                 but has premium, premium_low, premium_high, confidence, model_version, \
                 scored_at, valid_until, failure_reason",
            ),
            (
                PricingColumns {
                    premium_high: None,
                    ..scored()
                },
                "a `scored` quote must have premium, confidence, model_version and scored_at \
                 set, both or neither of premium_low and premium_high, and no failure_reason, \
                 but has premium, premium_low, confidence, model_version, scored_at, \
                 valid_until",
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
                 premium_low, premium_high, confidence, model_version, scored_at, valid_until",
            ),
        ];
        for (columns, message) in cases {
            assert_eq!(pricing_from_columns(columns), Err(message.to_owned()));
        }
    }
}
