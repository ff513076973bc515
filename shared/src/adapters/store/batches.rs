//! The statements behind a batch's progress and its completion: [`QuoteStore::batch`], the
//! counting that every write ending quotes does ([`count_into_batches`]) and [`BatchStore`],
//! the outbox of completion events.
//!
//! A batch keeps its own counts of scored and failed quotes, added to by the statement that
//! ends them, which completes the batch when they reach its size. So progress is one row by
//! its key, and completion costs the scoring write no statement or round trip of its own; two
//! writers ending a batch's last quotes at once queue on its row, each adds to the newest
//! counts, and only one finds them at the size: one event per batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use quote_domain::ports::{BatchProgress, BatchStore, CompletedBatch, Recorded, StoreError};

use super::{PgError, PgStore};

/// The span around recording that events were sent, by name: X-Ray draws it as a call to
/// PostgreSQL.
pub const POSTGRES_EVENTS_SENT: &str = "postgres.events_sent";

/// A batch and its counts.
#[derive(FromRow)]
struct ProgressRow {
    size: i32,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    scored: i32,
    failed: i32,
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

/// The statement's end for a write that ended quotes: `ended`, a CTE of the rows it changed
/// (`status`, `batch_id`), is counted into their batches, which are locked in id order (two
/// writes spanning the same batches never deadlock on them); those it brings to their size
/// are completed, their first event try counted from now (the caller is about to send it).
/// Selects the write's totals and, one row each, the batches it completed (a row of nulls
/// with the totals when it completed none).
pub(super) fn count_into_batches(ended: &str) -> String {
    format!(
        "per_batch AS ( \
             SELECT batch_id, count(*) FILTER (WHERE status = 'scored') AS scored, \
                 count(*) FILTER (WHERE status = 'failed') AS failed \
             FROM {ended} WHERE batch_id IS NOT NULL GROUP BY batch_id \
         ), locked AS ( \
             SELECT id FROM quote_batches WHERE id IN (SELECT batch_id FROM per_batch) \
             ORDER BY id FOR UPDATE \
         ), counted AS ( \
             UPDATE quote_batches b SET scored = b.scored + p.scored, \
                 failed = b.failed + p.failed, \
                 completed_at = CASE WHEN b.scored + p.scored + b.failed + p.failed = b.size \
                     THEN now() END, \
                 event_attempted_at = CASE WHEN b.scored + p.scored + b.failed + p.failed = b.size \
                     THEN now() END \
             FROM per_batch p JOIN locked l ON l.id = p.batch_id \
             WHERE b.id = p.batch_id \
             RETURNING b.id, b.user_id, b.size, b.scored, b.failed, b.created_at, b.completed_at \
         ) \
         SELECT t.total_scored, t.total_failed, c.* FROM ( \
             SELECT count(*) FILTER (WHERE status = 'scored') AS total_scored, \
                 count(*) FILTER (WHERE status = 'failed') AS total_failed FROM {ended} \
         ) t LEFT JOIN counted c ON c.completed_at IS NOT NULL"
    )
}

/// The rows [`count_into_batches`] selects, as what the write changed.
pub(super) fn recorded(rows: &[PgRow]) -> Result<Recorded, PgError> {
    let mut recorded = Recorded::default();
    for row in rows {
        let (scored, failed): (i64, i64) =
            (row.try_get("total_scored")?, row.try_get("total_failed")?);
        (recorded.scored, recorded.failed) = (scored as u64, failed as u64);
        if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
            recorded.completed.push(CompletedRow::from_row(row)?.into());
        }
    }
    Ok(recorded)
}

impl PgStore {
    pub(super) async fn pg_batch(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<BatchProgress>, PgError> {
        let mut tx = self.begin().await?;
        let row: Option<ProgressRow> = sqlx::query_as(
            "SELECT size, created_at, completed_at, scored, failed FROM quote_batches \
             WHERE id = $1 AND user_id = $2",
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
            pending: (row.size - row.scored - row.failed) as u32,
            scored: row.scored as u32,
            failed: row.failed as u32,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }))
    }

    /// One statement: counts from the quotes themselves, for batches the counting writes
    /// left behind (their counts drifted: written by a deploy before the counting, or by
    /// hand). Safe beside a counting write: that write's quotes stay pending to this
    /// statement's snapshot until it commits, and by then it has counted them.
    async fn pg_complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, PgError> {
        let mut tx = self.begin().await?;
        // Through the partial index of open batches, the oldest first; a batch's quotes are
        // one range of the owner's index (they share its owner and creation time), searched
        // for a pending one, and counted only for a batch that completes.
        let rows: Vec<CompletedRow> = sqlx::query_as(
            "WITH overdue AS ( \
                 SELECT id FROM quote_batches b \
                 WHERE completed_at IS NULL AND created_at < now() - make_interval(secs => $1) \
                     AND NOT EXISTS (SELECT 1 FROM quotes q \
                                     WHERE q.user_id = b.user_id AND q.created_at = b.created_at \
                                         AND q.batch_id = b.id AND q.status = 'pending_ml') \
                 ORDER BY created_at LIMIT $2 \
             ) \
             UPDATE quote_batches b SET completed_at = now(), event_attempted_at = now(), \
                 scored = (SELECT count(*) FROM quotes q \
                           WHERE q.user_id = b.user_id AND q.created_at = b.created_at \
                               AND q.batch_id = b.id AND q.status = 'scored'), \
                 failed = (SELECT count(*) FROM quotes q \
                           WHERE q.user_id = b.user_id AND q.created_at = b.created_at \
                               AND q.batch_id = b.id AND q.status = 'failed') \
             FROM overdue o WHERE b.id = o.id AND b.completed_at IS NULL \
             RETURNING b.id, b.user_id, b.size, b.scored, b.failed, b.created_at, b.completed_at",
        )
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
        // One simple-protocol message, one round trip rather than BEGIN, Parse, Execute and
        // COMMIT after every scoring pass that completes a batch: a lone statement in one
        // message is its own transaction, whole on one server connection of a pooler. The
        // ids are inlined, as a `Uuid` prints: hex digits and dashes only.
        let ids = batch_ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::raw_sql(&format!(
            "UPDATE quote_batches SET event_sent_at = now() \
             WHERE id IN ({ids}) AND event_sent_at IS NULL"
        ))
        .execute(self.ready().await?)
        .await?;
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
    async fn complete_overdue(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<CompletedBatch>, StoreError> {
        Ok(self.pg_complete_overdue(older_than, limit).await?)
    }

    #[tracing::instrument(name = POSTGRES_EVENTS_SENT, skip_all, fields(batches = batch_ids.len()), err(level = "warn"))]
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
