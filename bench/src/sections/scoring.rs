//! Section 4: scoring throughput through `score::handle`, with the ML engine and embedded.

use testkit::MemoryEvents;

use super::*;

/// Section 4: Quotes per second from pending to scored through `score::handle`, one container
/// taking the batches one after the other, for each batch shape and predictor.
pub(super) async fn scoring(root: &Path, report: &mut Report, plot: &mut Vec<Series>) -> Res<()> {
    report.section(format!("4. Scoring throughput: {SCORED_QUOTES} pending quotes -> scored through score::handle (one container, batches in turn)"));
    let env = TestEnv::new().await;
    let engine_config = engine_config(&env.database.url)?;
    let store = PgStore::connect_lazy(&env.database)?;
    // Batch events go to an in-memory bus: the completion's statement is measured, the
    // emulator's PutEvents (not EventBridge's) is not.
    let engine = score::App {
        store: store.clone(),
        predictor: MlEngine::new(&engine_config, None)?,
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    };
    let embedded = score::App {
        store,
        predictor: EmbeddedModel::load(&root.join("ml-engine/model"))?,
        price_validity: PRICE_VALIDITY,
        events: MemoryEvents::default(),
        shadow: None,
    };
    let mut json = serde_json::Map::new();
    let (mut engine_best, mut embedded_best) = (0.0, 0.0_f64);
    for (messages, per_message) in SCORE_BATCHES {
        let shape = (messages, per_message);
        let measured = throughput(&env, &engine, messages, per_message).await?;
        let rate = record_throughput(report, &mut json, plot, "engine", shape, measured);
        engine_best = rate.max(engine_best);
        let measured = throughput(&env, &embedded, messages, per_message).await?;
        let rate = record_throughput(report, &mut json, plot, "embedded", shape, measured);
        embedded_best = rate.max(embedded_best);
    }
    for (predictor, best) in [("engine", engine_best), ("embedded", embedded_best)] {
        report.budget(
            format!("scoring throughput, {predictor} (best batch shape)"),
            best,
            10_000.0,
            "q/s",
            false,
        );
    }
    json.insert("quotes".into(), json!(SCORED_QUOTES));
    json.insert("ml_engine".into(), json!({"url": engine_url(), "chunk_size": engine_config.chunk_size, "concurrency": engine_config.concurrency}));
    report
        .json
        .insert("scoring_throughput".into(), Value::Object(json));
    Ok(())
}

/// One predictor's figures for one batch shape (messages, ids per message), in the table, the
/// JSON and the plot; returns its rate.
fn record_throughput(
    report: &mut Report,
    json: &mut serde_json::Map<String, Value>,
    plot: &mut Vec<Series>,
    predictor: &str,
    (messages, per_message): (usize, usize),
    (rate, latencies, database): (f64, Vec<f64>, Vec<f64>),
) -> f64 {
    report.row(
        format!("{predictor:<8} {messages:>2} msg x {per_message} ids"),
        format!("{rate:>6.0} quotes/s  per batch {}", spread(&latencies)),
    );
    report.row(
        "",
        format!(
            "of which Postgres (handler's DatabaseTime) p50 {} ms",
            number(median(&database))
        ),
    );
    json.insert(
        format!("{predictor} {messages} msg x {per_message} ids"),
        json!({"quotes_per_s": rate, "batch_ms": summary(&latencies), "postgres_ms": summary(&database)}),
    );
    plot.push(Series {
        label: format!("score batch {messages}x{per_message}, {predictor}"),
        samples: latencies,
    });
    rate
}

/// Scores `SCORED_QUOTES` new pending quotes; quotes per second and each batch's latency.
async fn throughput<P: Predictor>(
    env: &TestEnv,
    app: &score::App<PgStore, P, MemoryEvents>,
    messages: usize,
    per_message: usize,
) -> Res<(f64, Vec<f64>, Vec<f64>)> {
    let warm_up = insert_pending(&env.store, 200, "bench-score").await?;
    for event in sqs_batches(&warm_up, 100, 1) {
        score::handle(
            app,
            LambdaEvent::new(event, lambda_context(Duration::from_secs(60))),
        )
        .await;
    }
    let ids = insert_pending(&env.store, SCORED_QUOTES, "bench-score").await?;
    let events = sqs_batches(&ids, per_message, messages);
    let mut latencies = Vec::with_capacity(events.len());
    let mut database = Vec::with_capacity(events.len());
    let started = Instant::now();
    for event in events {
        let t = Instant::now();
        // What score::handle does, keeping the metrics to read the handler's DatabaseTime.
        let (response, metrics) = score::process(
            app,
            LambdaEvent::new(event, lambda_context(Duration::from_secs(60))),
        )
        .await;
        metrics.flush();
        latencies.push(ms(t.elapsed()));
        database.push(
            metrics.to_emf(0)["DatabaseTime"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        if !response.batch_item_failures.is_empty() {
            return Err(format!(
                "{} messages failed to score",
                response.batch_item_failures.len()
            )
            .into());
        }
    }
    let elapsed = started.elapsed();
    let scored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM quotes WHERE id = ANY($1) AND status = 'scored'")
            .bind(&ids)
            .fetch_one(&env.pool)
            .await?;
    if scored != ids.len() as i64 {
        return Err(format!("{scored} of {} quotes scored", ids.len()).into());
    }
    Ok((
        ids.len() as f64 / elapsed.as_secs_f64(),
        latencies,
        database,
    ))
}
