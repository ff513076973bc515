//! The statements of shadow prices: `score` writes them beside the quotes (never into them),
//! reconcile's sweep deletes those past their retention.

use std::time::Duration;

use quote_domain::ports::{ShadowStore, StoreError};
use quote_domain::pricing::Prediction;

use super::{PgError, PgStore, PriceColumns};

/// The span around the write, by name: X-Ray draws it as a call to PostgreSQL.
pub const POSTGRES_SHADOW: &str = "postgres.shadow";

impl PgStore {
    async fn pg_record_shadow(&self, predictions: &[Prediction]) -> Result<u64, PgError> {
        if predictions.is_empty() {
            return Ok(0);
        }
        let prices = PriceColumns::of(predictions);
        let mut tx = self.begin().await?;
        // A price already there (a message delivered again, two deliveries at once) is kept:
        // the same model prices the same features the same.
        let statement = sqlx::query_scalar(
            "WITH written AS ( \
                 INSERT INTO quote_shadow_prices (quote_id, premium, premium_low, premium_high, \
                     confidence, model_version) \
                 SELECT * FROM UNNEST($1::uuid[], $2::float8[], $3::float8[], $4::float8[], \
                     $5::float8[], $6::text[]) \
                 ON CONFLICT (quote_id, model_version) DO NOTHING \
                 RETURNING 1) \
             SELECT count(*) FROM written",
        )
        .persistent(false);
        let written: i64 = prices.bind(statement).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(written as u64)
    }

    /// Through `quote_shadow_prices_by_age`. No `FOR UPDATE SKIP LOCKED`, which would need
    /// `UPDATE` on a table the application only appends to: a run at the same time waits
    /// for the rows the other deletes, and finds them gone.
    pub(super) async fn pg_purge_shadow_prices(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<u64, PgError> {
        let mut tx = self.begin().await?;
        let purged = sqlx::query(
            "DELETE FROM quote_shadow_prices WHERE (quote_id, model_version) IN ( \
                 SELECT quote_id, model_version FROM quote_shadow_prices \
                 WHERE priced_at < now() - make_interval(secs => $1) \
                 ORDER BY priced_at LIMIT $2)",
        )
        .persistent(false)
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(purged.rows_affected())
    }
}

impl ShadowStore for PgStore {
    #[tracing::instrument(name = POSTGRES_SHADOW, skip_all, fields(predictions = predictions.len()), err(level = "warn"))]
    async fn record_shadow(&self, predictions: &[Prediction]) -> Result<u64, StoreError> {
        Ok(self.pg_record_shadow(predictions).await?)
    }
}
