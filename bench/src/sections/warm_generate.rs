//! Section 2: warm `POST /quotes/generate-batch` through `generate::handle`.

use super::*;

/// Section 2: `generate::handle` in process, as the function's `main` builds it, around store and
/// queue clients that time their own calls.
pub(super) async fn warm_generate(
    root: &Path,
    report: &mut Report,
    plot: &mut Vec<Series>,
) -> Res<()> {
    report.section("2. Warm POST /quotes/generate-batch through generate::handle (in process)");
    report.row(
        "method",
        "total = one handle() call; Postgres, SQS = time inside its own",
    );
    report.row(
        "",
        "QuoteStore::insert / QuoteQueue::enqueue (timing wrappers round the real clients)",
    );
    let env = TestEnv::new().await;
    let config = GenerateConfig::from_lookup(function_vars(&env.database.url, &env.queue_url))?;
    let (pg, sqs) = (Clock::default(), Clock::default());
    let app = GenerateApp {
        store: Timed {
            inner: PgStore::connect_lazy(&config.database)?,
            clock: pg.clone(),
        },
        queue: Timed {
            inner: SqsQueue::new(&aws_sdk_config().await, &config.queue),
            clock: sqs.clone(),
        },
        idempotency_ttl: config.idempotency_ttl,
        explainer: generate::explain::Explainer::new(config.model_dir),
    };
    let mut json = serde_json::Map::new();
    for (count, runs) in WARM_SIZES {
        let event = generate_event(root, Some(json!({"count": count})))?.to_string();
        let (mut total, mut db, mut queue, mut own, mut rest) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..WARM_UP + runs {
            let request = lambda_http::request::from_str(&event)?;
            pg.take();
            sqs.take();
            let started = Instant::now();
            let response = generate::handle(&app, request).await;
            let elapsed = started.elapsed();
            if response.status() != 202 {
                return Err(format!(
                    "generate-batch {count} answered {}: {:?}",
                    response.status(),
                    response.body()
                )
                .into());
            }
            let (p, q) = (pg.take(), sqs.take());
            if i >= WARM_UP {
                total.push(ms(elapsed));
                db.push(ms(p));
                queue.push(ms(q));
                own.push(ms(elapsed.saturating_sub(q)));
                rest.push(ms(elapsed.saturating_sub(q).saturating_sub(p)));
            }
        }
        report.row(format!("{count} quotes x{runs}: total"), spread(&total));
        report.row(format!("{count} quotes: Postgres"), spread(&db));
        report.row(format!("{count} quotes: SQS (emulator)"), spread(&queue));
        report.row(format!("{count} quotes: total - SQS"), spread(&own));
        report.row(
            format!("{count} quotes: rest (total - Postgres - SQS)"),
            spread(&rest),
        );
        if count == 1000 {
            report.budget(
                "warm generate-batch 1000 p50, total - SQS",
                median(&own),
                25.0,
                "ms",
                true,
            );
        }
        json.insert(
            count.to_string(),
            json!({
                "invocations": runs, "warm_up": WARM_UP,
                "total_ms": summary(&total), "postgres_ms": summary(&db), "sqs_ms": summary(&queue),
                "total_minus_sqs_ms": summary(&own), "rest_ms": summary(&rest), "samples_total_ms": total,
                "samples_postgres_ms": db, "samples_sqs_ms": queue,
            }),
        );
        plot.push(Series {
            label: format!("warm generate-batch {count}: total"),
            samples: total,
        });
        plot.push(Series {
            label: format!("warm generate-batch {count}: total - SQS"),
            samples: own,
        });
    }
    report
        .json
        .insert("warm_generate_batch".into(), Value::Object(json));
    Ok(())
}
