//! Migration `20261129000001_price_range_and_validity` on a database that already has quotes:
//! what it does to them, what the code of the deploy before it can still write, and what the
//! table refuses from now on.

mod support;

use support::{Database, real_migrator};

const VERSION: i64 = 20261129000001;

/// A quote's status, premium_low, premium_high and valid_until (UTC, to the second).
type PriceColumns = (String, Option<f64>, Option<f64>, Option<String>);

/// A database migrated up to just before the price range, with one quote of each status.
async fn quotes_from_before() -> Database {
    let database = Database::just_before(VERSION).await;
    sqlx::raw_sql(
        "INSERT INTO quotes (id, user_id, coverage_type, coverage_level, estimated_amount, \
             user_age, annual_revenue, num_employees, founded_at, status, created_at, \
             last_enqueued_at, premium, confidence, model_version, scored_at, failure_reason) \
         VALUES \
         ('00000000-0000-7000-8000-000000000001', 'ann', 'life', 'basic', 5000, 30, 0, 1, \
          '2020-01-02', 'scored', '2026-11-01T10:00:00Z', '2026-11-01T10:00:00Z', 660.25, 0.75, \
          'xgb-0123456789ab', '2026-11-01T10:00:01Z', NULL), \
         ('00000000-0000-7000-8000-000000000002', 'ann', 'life', 'basic', 5000, 30, 0, 1, \
          '2020-01-02', 'failed', '2026-11-01T10:00:00Z', '2026-11-01T10:00:00Z', NULL, NULL, \
          NULL, NULL, 'refused'), \
         ('00000000-0000-7000-8000-000000000003', 'ann', 'life', 'basic', 5000, 30, 0, 1, \
          '2020-01-02', 'pending_ml', '2026-11-01T10:00:00Z', '2026-11-01T10:00:00Z', NULL, \
          NULL, NULL, NULL, NULL)",
    )
    .execute(&database.pool)
    .await
    .expect("quotes of the older schema insert");
    real_migrator()
        .await
        .run(&database.pool)
        .await
        .expect("the rest of the migrations apply");
    database
}

#[tokio::test]
async fn a_quote_scored_before_keeps_no_range_and_gets_the_default_validity() {
    let database = quotes_from_before().await;
    let rows: Vec<PriceColumns> = sqlx::query_as(
        "SELECT status, premium_low, premium_high, \
             to_char(valid_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') \
         FROM quotes ORDER BY id",
    )
    .fetch_all(&database.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                "scored".into(),
                None,
                None,
                Some("2026-12-01 10:00:01".into())
            ),
            ("failed".into(), None, None, None),
            ("pending_ml".into(), None, None, None),
        ]
    );
}

#[tokio::test]
async fn the_previous_deploys_score_can_still_write_and_ranges_must_hold_their_median() {
    let database = quotes_from_before().await;
    let pending = "id = '00000000-0000-7000-8000-000000000003'";
    // What the code before this migration writes, as after a rollback: no range, no validity.
    sqlx::raw_sql(&format!(
        "UPDATE quotes SET status = 'scored', premium = 10, confidence = 0.5, \
             model_version = 'xgb-0123456789ab', scored_at = now() WHERE {pending}"
    ))
    .execute(&database.pool)
    .await
    .expect("a score without range or validity is still accepted");

    let refused = [
        ("premium_low = 11, premium_high = 12", "quotes_price_range"),
        ("premium_low = 5, premium_high = 9", "quotes_price_range"),
        ("premium_low = -1, premium_high = 12", "quotes_price_range"),
        (
            "premium_low = 5, premium_high = 'NaN'",
            "quotes_price_range",
        ),
        (
            "premium_low = 5, premium_high = 'Infinity'",
            "quotes_price_range",
        ),
        ("premium_low = 5", "quotes_price_range"),
        ("valid_until = scored_at", "quotes_validity"),
    ];
    for (set, constraint) in refused {
        let error = sqlx::raw_sql(&format!("UPDATE quotes SET {set} WHERE {pending}"))
            .execute(&database.pool)
            .await
            .expect_err(set);
        let error = error.as_database_error().expect("a database error");
        assert_eq!(error.constraint(), Some(constraint), "{set}: {error}");
    }
    sqlx::raw_sql(&format!(
        "UPDATE quotes SET premium_low = 10, premium_high = 10, \
             valid_until = scored_at + interval '1 day' WHERE {pending}"
    ))
    .execute(&database.pool)
    .await
    .expect("a range of one point holds its median");
    // A validity needs a score.
    let error = sqlx::raw_sql(
        "UPDATE quotes SET valid_until = now() \
         WHERE id = '00000000-0000-7000-8000-000000000002'",
    )
    .execute(&database.pool)
    .await
    .unwrap_err();
    assert_eq!(
        error.as_database_error().and_then(|e| e.constraint()),
        Some("quotes_validity")
    );
}
