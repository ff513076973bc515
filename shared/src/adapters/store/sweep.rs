//! The statements behind [`ReconcileStore`]: the sweep that fails quotes out of attempts and
//! locks the stuck ones for another enqueue.

use sqlx::Postgres;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use quote_domain::ports::{
    ReconcilePolicy, ReconcileStore, Recorded, RepriceCursor, RepriceFilter, RepricePage,
    RequeueFilter, StoreError, StuckQuotes,
};

use super::batches::{count_into_batches, recorded};
use super::{PgError, PgStore};

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

/// The sweep's statements, failing with [`PgError`]; the port's impl below classifies it.
impl PgStore {
    async fn pg_fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<Recorded, PgError> {
        let statement = format!(
            "WITH failed AS ( \
                 UPDATE quotes SET status = 'failed', failure_reason = \
                     format('not scored after %s enqueue attempts', enqueue_attempts) \
                 WHERE id IN ( \
                     SELECT id FROM quotes \
                     WHERE status = 'pending_ml' AND enqueue_attempts >= $1 \
                         AND last_enqueued_at < now() - make_interval(secs => $2) \
                     ORDER BY last_enqueued_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING status, batch_id \
             ), {}",
            count_into_batches("failed")
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&statement)
            .persistent(false)
            .bind(policy.max_attempts)
            .bind(policy.min_age.as_secs_f64())
            .bind(policy.limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        recorded(&rows)
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

impl PgStore {
    async fn pg_purge_expired_keys(&self, limit: i64) -> Result<u64, PgError> {
        let mut tx = self.begin().await?;
        // Through the expiry index; keys another run is deleting are skipped, not waited for.
        let purged = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (user_id, key) IN ( \
                 SELECT user_id, key FROM idempotency_keys WHERE expires_at < now() \
                 ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .persistent(false)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(purged.rows_affected())
    }
}

impl PgStore {
    async fn pg_return_failed(&self, filter: &RequeueFilter) -> Result<u64, PgError> {
        let mut tx = self.begin().await?;
        // Due at once: the sweep sends quotes whose last enqueue is oldest first. Their
        // batches count them out of `failed` and are open again, so they report progress and
        // complete (and announce) anew; locked in id order, like every write's batches.
        let returned: i64 = sqlx::query_scalar(
            "WITH returned AS ( \
                 UPDATE quotes SET status = 'pending_ml', failure_reason = NULL, \
                     enqueue_attempts = 0, last_enqueued_at = '-infinity' \
                 WHERE id IN ( \
                     SELECT id FROM quotes \
                     WHERE status = 'failed' AND ($1::timestamptz IS NULL OR created_at >= $1) \
                         AND strpos(failure_reason, $2) > 0 \
                     ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING batch_id), \
             per_batch AS ( \
                 SELECT batch_id, count(*) AS failed FROM returned \
                 WHERE batch_id IS NOT NULL GROUP BY batch_id), \
             locked AS ( \
                 SELECT id FROM quote_batches WHERE id IN (SELECT batch_id FROM per_batch) \
                 ORDER BY id FOR UPDATE), \
             reopened AS ( \
                 UPDATE quote_batches b SET failed = b.failed - p.failed, completed_at = NULL, \
                     event_attempted_at = NULL, event_sent_at = NULL \
                 FROM per_batch p JOIN locked l ON l.id = p.batch_id \
                 WHERE b.id = p.batch_id) \
             SELECT count(*) FROM returned",
        )
        .persistent(false)
        .bind(filter.created_after)
        .bind(filter.reason_contains.as_deref().unwrap_or(""))
        .bind(filter.limit)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(returned as u64)
    }
}

impl PgStore {
    /// Through the primary key (time-ordered ids: the oldest quotes first), from the cursor
    /// on: each page starts where the last ended, and expired quotes are read and skipped
    /// (no index of valid prices: every scoring write would pay for it). A batch's quotes
    /// (at most 1,000) come as one range of the owner's index instead, found by the batch's
    /// owner and creation time.
    async fn pg_repriceable(&self, filter: &RepriceFilter) -> Result<RepricePage, PgError> {
        let mut tx = self.begin().await?;
        let started: DateTime<Utc> = match filter.after {
            Some(c) => c.started,
            None => {
                sqlx::query_scalar("SELECT now()")
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM quotes \
             WHERE status = 'scored' AND valid_until > now() AND scored_at < $1 \
                 AND ($2::uuid IS NULL OR id > $2) \
                 AND ($3::uuid IS NULL OR (batch_id = $3 \
                     AND user_id = (SELECT user_id FROM quote_batches WHERE id = $3) \
                     AND created_at = (SELECT created_at FROM quote_batches WHERE id = $3))) \
             ORDER BY id LIMIT $4",
        )
        .persistent(false)
        .bind(started)
        .bind(filter.after.map(|c| c.id))
        .bind(filter.batch)
        .bind(filter.limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // A full page may have more behind it; a short one ends the pass.
        let next = (ids.len() as i64 == filter.limit)
            .then(|| ids.last())
            .flatten()
            .map(|&id| RepriceCursor { started, id });
        Ok(RepricePage { ids, next })
    }
}

impl ReconcileStore for PgStore {
    type Stuck = PgStuckQuotes;

    async fn fail_exhausted(&self, policy: &ReconcilePolicy) -> Result<Recorded, StoreError> {
        Ok(self.pg_fail_exhausted(policy).await?)
    }

    async fn claim_stuck(&self, policy: &ReconcilePolicy) -> Result<PgStuckQuotes, StoreError> {
        Ok(self.pg_claim_stuck(policy).await?)
    }

    async fn purge_expired_keys(&self, limit: i64) -> Result<u64, StoreError> {
        Ok(self.pg_purge_expired_keys(limit).await?)
    }

    async fn purge_shadow_prices(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        Ok(self.pg_purge_shadow_prices(older_than, limit).await?)
    }

    async fn return_failed(&self, filter: &RequeueFilter) -> Result<u64, StoreError> {
        Ok(self.pg_return_failed(filter).await?)
    }

    async fn repriceable(&self, filter: &RepriceFilter) -> Result<RepricePage, StoreError> {
        Ok(self.pg_repriceable(filter).await?)
    }
}
