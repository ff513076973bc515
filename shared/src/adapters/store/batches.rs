//! The statements behind a batch's progress and its completion: [`QuoteStore::batch`] and
//! [`BatchStore`].
//!
//! Every one reads a batch's quotes through the `(batch_id, status)` index (at most 1,000 of
//! them), never the owner's other quotes. A batch is completed by one `UPDATE` that finds it
//! not completed and with no quote pending: two callers that finish the last quotes at once
//! both run it after their outcomes are committed, and the row lock lets one of them set
//! `completed_at`; the other, waiting on that lock, re-reads the row, finds it completed and
//! changes nothing. So each batch is returned, and its event sent, by one caller.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use quote_domain::ports::{BatchProgress, BatchStore, CompletedBatch, StoreError};

use super::{PgError, PgStore};

/// The spans around the completion statements, by name: X-Ray draws each as a call to
/// PostgreSQL.
pub const POSTGRES_COMPLETE: &str = "postgres.complete";

/// A batch and its quotes counted by status.
#[derive(FromRow)]
struct ProgressRow {
    size: i32,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    pending: i64,
    scored: i64,
    failed: i64,
}

/// What a completed batch's row answers: the event's content.
#[derive(FromRow)]
struct CompletedRow {
    id: Uuid,
    user_id: String,
    size: i32,
    scored: i32,
    failed: i32,
    created_at: DateTime<Utc>,
    completed_at: DateTime<Utc>,
}

impl From<CompletedRow> for CompletedBatch {
    fn from(row: CompletedRow) -> Self {
        CompletedBatch {
            id: row.id,
            owner: row.user_id,
            size: row.size as u32,
            scored: row.scored as u32,
            failed: row.failed as u32,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

/// The statement that completes, among the batches `candidates` selects (a `batch_id`
/// column), those not completed with no quote pending: one index probe each, the counts taken
/// only for a batch that completes. Its first event try is counted from now: the caller is
/// about to send it.
fn complete(candidates: &str) -> String {
    format!(
        "WITH candidates AS ({candidates}) \
         UPDATE quote_batches b SET completed_at = now(), event_attempted_at = now(), \
             scored = (SELECT count(*) FROM quotes q \
                       WHERE q.batch_id = b.id AND q.status = 'scored'), \
             failed = (SELECT count(*) FROM quotes q \
                       WHERE q.batch_id = b.id AND q.status = 'failed') \
         FROM candidates t \
         WHERE b.id = t.batch_id AND b.completed_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM quotes q \
                             WHERE q.batch_id = b.id AND q.status = 'pending_ml') \
         RETURNING b.id, b.user_id, b.size, b.scored, b.failed, b.created_at, b.completed_at"
    )
}

impl PgStore {
    pub(super) async fn pg_batch(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<BatchProgress>, PgError> {
        let mut tx = self.begin().await?;
        // The counts in the same statement as the batch, and only for its owner's batch.
        let row: Option<ProgressRow> = sqlx::query_as(
            "SELECT b.size, b.created_at, b.completed_at, \
                 count(q.status) FILTER (WHERE q.status = 'pending_ml') AS pending, \
                 count(q.status) FILTER (WHERE q.status = 'scored') AS scored, \
                 count(q.status) FILTER (WHERE q.status = 'failed') AS failed \
             FROM quote_batches b LEFT JOIN quotes q ON q.batch_id = b.id \
             WHERE b.id = $1 AND b.user_id = $2 \
             GROUP BY b.id",
        )
        .persistent(false)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(|row| BatchProgress {
            id,
            size: row.size as u32,
            pending: row.pending as u32,
            scored: row.scored as u32,
            failed: row.failed as u32,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }))
    }

    async fn pg_complete_batches(
        &self,
        batch_ids: &[Uuid],
    ) -> Result<Vec<CompletedBatch>, PgError> {
        if batch_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Every scoring pass runs this, so it is one simple-protocol message: one round trip,
        // and atomic under transaction pooling (an implicit transaction), where a bound
        // statement needs BEGIN, its parse, its execution and COMMIT. The ids are inlined,
        // which is safe: a UUID prints as hex digits and dashes only.
        let ids: Vec<String> = batch_ids.iter().map(Uuid::to_string).collect();
        let statement = complete(&format!(
            "SELECT unnest('{{{}}}'::uuid[]) AS batch_id",
            ids.join(",")
        ));
        let rows = sqlx::raw_sql(&statement)
            .fetch_all(self.ready().await?)
            .await?;
        rows.iter()
            .map(|row| Ok(CompletedRow::from_row(row)?.into()))
            .collect()
    }

    async fn pg_complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, PgError> {
        let mut tx = self.begin().await?;
        // Through the partial index of open batches, the oldest first.
        let rows: Vec<CompletedRow> = sqlx::query_as(&complete(
            "SELECT id AS batch_id FROM quote_batches \
             WHERE completed_at IS NULL AND created_at < now() - make_interval(secs => $1) \
             ORDER BY created_at LIMIT $2",
        ))
        .persistent(false)
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(CompletedBatch::from).collect())
    }

    async fn pg_events_sent(&self, batch_ids: &[Uuid]) -> Result<(), PgError> {
        if batch_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE quote_batches SET event_sent_at = now() \
             WHERE id = ANY($1) AND event_sent_at IS NULL",
        )
        .persistent(false)
        .bind(batch_ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pg_claim_unsent_events(
        &self,
        retry_after: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, PgError> {
        let mut tx = self.begin().await?;
        // Through the partial index of unsent events; rows another run is claiming are
        // skipped, and the new try time keeps them from the next run until `retry_after`.
        let rows: Vec<CompletedRow> = sqlx::query_as(
            "UPDATE quote_batches SET event_attempted_at = now() \
             WHERE id IN ( \
                 SELECT id FROM quote_batches \
                 WHERE completed_at IS NOT NULL AND event_sent_at IS NULL \
                     AND event_attempted_at < now() - make_interval(secs => $1) \
                 ORDER BY event_attempted_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, user_id, size, scored, failed, created_at, completed_at",
        )
        .persistent(false)
        .bind(retry_after.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(CompletedBatch::from).collect())
    }
}

impl BatchStore for PgStore {
    #[tracing::instrument(name = POSTGRES_COMPLETE, skip_all, fields(batches = batch_ids.len()), err(level = "warn"))]
    async fn complete_batches(
        &self,
        batch_ids: &[Uuid],
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        Ok(self.pg_complete_batches(batch_ids).await?)
    }

    #[tracing::instrument(name = POSTGRES_COMPLETE, skip_all, err(level = "warn"))]
    async fn complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        Ok(self.pg_complete_overdue(older_than, limit).await?)
    }

    async fn events_sent(&self, batch_ids: &[Uuid]) -> Result<(), StoreError> {
        Ok(self.pg_events_sent(batch_ids).await?)
    }

    async fn claim_unsent_events(
        &self,
        retry_after: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        Ok(self.pg_claim_unsent_events(retry_after, limit).await?)
    }
}
