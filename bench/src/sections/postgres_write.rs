//! Section 3: the bulk INSERT of 1000 quotes beside a plain `COPY` of the same rows.

use super::*;

/// Section 3: `QuoteStore::insert` of 1000 quotes beside psql's `\copy` of 1000 rows of the same
/// shape, taking turns, each timed by itself (psql's `\timing`).
pub(super) async fn postgres_write(report: &mut Report) -> Res<()> {
    report.section(format!(
        "3. Postgres write of 1000 quotes (median of {COPY_REPEATS}, taking turns)"
    ));
    let env = TestEnv::new().await;
    let store = PgStore::connect_lazy(&env.database)?;
    insert_pending(&store, 2000, "bench-warm-up").await?;
    let dir = std::env::temp_dir().join(format!("quote-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut insert, mut copy) = (Vec::new(), Vec::new());
    for i in 0..COPY_REPEATS {
        let quotes = new_quotes(1000, "bench-write");
        let started = Instant::now();
        store
            .insert(
                Uuid::now_v7(),
                &quotes,
                None,
                started + Duration::from_secs(30),
            )
            .await?;
        insert.push(ms(started.elapsed()));

        let file = dir.join(format!("quotes-{i}.csv"));
        std::fs::write(&file, csv(&new_quotes(1000, "bench-write")))?;
        copy.push(psql_copy(&env.database.url, &file).await?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let copied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM quotes WHERE user_id = 'bench-write'")
            .fetch_one(&env.pool)
            .await?;
    if copied != 2 * (COPY_REPEATS as i64) * 1000 {
        return Err(format!(
            "expected {} rows written, found {copied}",
            2 * COPY_REPEATS * 1000
        )
        .into());
    }
    let ratio = median(&insert) / median(&copy);
    report.row("QuoteStore::insert (UNNEST bulk INSERT)", spread(&insert));
    report.row("plain COPY (psql \\copy, \\timing)", spread(&copy));
    report.row("ratio of medians", format!("{ratio:.2} x"));
    report.budget("Postgres write 1000 / plain COPY", ratio, 1.5, "x", true);
    report.json.insert(
        "postgres_write_1000".into(),
        json!({
            "insert_ms": summary(&insert), "copy_ms": summary(&copy), "ratio_of_medians": ratio,
            "samples_insert_ms": insert, "samples_copy_ms": copy,
            "copy_method": "psql \\timing of \\copy quotes (...) FROM file WITH (FORMAT csv), one psql per repeat",
        }),
    );
    Ok(())
}

const COPY_COLUMNS: &str = "id, user_id, coverage_type, coverage_level, estimated_amount, user_age, \
     annual_revenue, num_employees, founded_at, created_at, enqueue_attempts, last_enqueued_at";

/// The rows `QuoteStore::insert` writes, as CSV in `COPY_COLUMNS` order.
fn csv(quotes: &[Quote]) -> String {
    let mut out = String::with_capacity(quotes.len() * 160);
    for q in quotes {
        let created = q.created_at.to_rfc3339();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            q.id,
            q.user_id,
            q.input.coverage_type.as_str(),
            q.input.coverage_level.as_str(),
            q.input.estimated_amount,
            q.input.user_age,
            q.input.annual_revenue,
            q.input.num_employees,
            q.input.founded_at,
            created,
            q.enqueue_attempts,
            created
        ));
    }
    out
}

/// psql's own measure of one `\copy` of `file` into quotes, in milliseconds.
async fn psql_copy(database_url: &str, file: &Path) -> Res<f64> {
    let copy = format!(
        "\\copy quotes ({COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
        file.display()
    );
    let output = tokio::process::Command::new("psql")
        .args([
            database_url,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "\\timing on",
            "-c",
            &copy,
        ])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "psql \\copy failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Time: "))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("no \\timing line in psql's output: {stdout}").into())
}
