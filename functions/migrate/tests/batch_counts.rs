//! Migration `20261129000005_batch_counts_kept_by_the_writes` on a database that already has
//! batches: open ones get the counts of their quotes, one left ended but never completed is
//! completed with its event due, and the table refuses counts that disagree with completion.

mod support;

use support::{Database, real_migrator};

const VERSION: i64 = 20261129000005;

/// A batch's scored, failed, whether completed, and whether its event is due at once.
type BatchColumns = (i32, i32, bool, bool);

/// Batches 1 (open: one quote scored, one pending), 2 (both quotes failed, never completed)
/// and 3 (completed, one quote scored), written by the schema just before the migration.
async fn batches_from_before() -> Database {
    let database = Database::just_before(VERSION).await;
    let quote = |n: u32, batch: u32, status: &str| {
        let pricing = match status {
            "scored" => {
                "660.25, 600, 700, 0.75, 'xgb-0123456789ab', now(), now() + interval '1 day', NULL"
            }
            "failed" => "NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'refused'",
            _ => "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        };
        format!(
            "('00000000-0000-7000-8000-00000000000{n}', 'ann', 'life', 'basic', 5000, 30, 0, 1, \
              '2020-01-02', '{status}', now(), now(), {pricing}, \
              '00000000-0000-7000-9000-00000000000{batch}')"
        )
    };
    sqlx::raw_sql(&format!(
        "INSERT INTO quote_batches (id, user_id, size, created_at, completed_at, scored, failed, \
             event_attempted_at, event_sent_at) VALUES \
         ('00000000-0000-7000-9000-000000000001', 'ann', 2, now(), NULL, NULL, NULL, NULL, NULL), \
         ('00000000-0000-7000-9000-000000000002', 'ann', 2, now(), NULL, NULL, NULL, NULL, NULL), \
         ('00000000-0000-7000-9000-000000000003', 'ann', 1, now(), now(), 1, 0, now(), now()); \
         INSERT INTO quotes (id, user_id, coverage_type, coverage_level, estimated_amount, \
             user_age, annual_revenue, num_employees, founded_at, status, created_at, \
             last_enqueued_at, premium, premium_low, premium_high, confidence, model_version, \
             scored_at, valid_until, failure_reason, batch_id) VALUES {}, {}, {}, {}, {}",
        quote(1, 1, "scored"),
        quote(2, 1, "pending_ml"),
        quote(3, 2, "failed"),
        quote(4, 2, "failed"),
        quote(5, 3, "scored"),
    ))
    .execute(&database.pool)
    .await
    .expect("batches of the older schema insert");
    real_migrator()
        .await
        .run(&database.pool)
        .await
        .expect("the rest of the migrations apply");
    database
}

#[tokio::test]
async fn open_batches_get_their_counts_and_one_ended_but_never_completed_is_completed() {
    let database = batches_from_before().await;
    let rows: Vec<BatchColumns> = sqlx::query_as(
        "SELECT scored, failed, completed_at IS NOT NULL, \
             coalesce(event_attempted_at < now() - interval '1 day', false) \
         FROM quote_batches ORDER BY id",
    )
    .fetch_all(&database.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (1, 0, false, false),
            (0, 2, true, true),
            (1, 0, true, false)
        ]
    );
}

#[tokio::test]
async fn counts_that_disagree_with_completion_are_refused() {
    let database = batches_from_before().await;
    let refused = [
        ("scored = 2, failed = 1", "quote_batches_counts_within_size"),
        (
            "scored = 1, failed = 1",
            "quote_batches_completed_when_counted",
        ),
        (
            "completed_at = now()",
            "quote_batches_completed_when_counted",
        ),
    ];
    for (set, constraint) in refused {
        let error = sqlx::raw_sql(&format!(
            "UPDATE quote_batches SET {set} WHERE id = '00000000-0000-7000-9000-000000000001'"
        ))
        .execute(&database.pool)
        .await
        .expect_err(set);
        let error = error.as_database_error().expect("a database error");
        assert_eq!(error.constraint(), Some(constraint), "{set}: {error}");
    }
}
