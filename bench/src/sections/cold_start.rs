//! Section 1: cold start of each release binary under a stand-in of the Lambda Runtime API.

use super::*;

/// Section 1: from spawning the release binary to its first request for an event, and to its first
/// answer, `COLD_RUNS` times each, the functions taking turns.
pub(super) async fn cold_start(
    root: &Path,
    env: &TestEnv,
    init: &[(&str, f64)],
    logs: &Path,
    report: &mut Report,
    plot: &mut Vec<Series>,
) -> Res<()> {
    report.section(format!("1. Cold start: spawn -> first request for an event / -> first answer (median of {COLD_RUNS}; the test environment's Postgres, SQS the stand-in)"));
    // SQS is the stand-in that answers at once, here too: the warm-up in each function's init
    // waits on the queue's endpoint, and the emulator's time (5-10 ms a call) is not the
    // function's.
    let sqs = SqsStandIn::start().await?;
    let vars = sqs.serving(function_env(env), None);
    let embedded = sqs.serving(embedded_env(root, env), None);
    let generate_event = generate_event(root, None)?;
    // Each score run prices 100 quotes of its own: 10 messages of 10 ids.
    let ids = insert_pending(&env.store, COLD_RUNS * 100, "bench-cold").await?;
    let mut score_events = sqs_batches(&ids, 10, 10).into_iter();
    let mut embedded_events = {
        let ids = insert_pending(&env.store, COLD_RUNS * 100, "bench-cold").await?;
        sqs_batches(&ids, 10, 10).into_iter()
    };
    let variants = ["generate", "score", "score (embedded)", "reconcile"];
    let mut to_ask: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut to_answer: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..COLD_RUNS {
        for (i, variant) in variants.iter().enumerate() {
            let function = variant.split(' ').next().expect("a name");
            let (event, vars) = match *variant {
                "generate" => (generate_event.clone(), &vars),
                "score" => (
                    serde_json::to_value(score_events.next().expect("an event per run"))?,
                    &vars,
                ),
                "score (embedded)" => (
                    serde_json::to_value(embedded_events.next().expect("an event per run"))?,
                    &embedded,
                ),
                _ => (json!({}), &vars),
            };
            let log = logs.join(format!("bench-{function}.stderr.log"));
            let run = lambda::run(
                &lambda::binary(root, function),
                function,
                vars,
                vec![event],
                Duration::from_secs(30),
                &log,
                None,
            )
            .await?;
            check_answer(function, &run.first().body)?;
            to_ask[i].push(ms(run
                .first()
                .asked_at
                .saturating_duration_since(run.spawned_at)));
            to_answer[i].push(ms(run
                .first()
                .answered_at
                .saturating_duration_since(run.spawned_at)));
            rss[i].push(run.peak_rss_kib as f64 / 1024.0);
        }
    }
    // The floor: spawning a process that does nothing.
    let mut floor = Vec::new();
    for _ in 0..COLD_RUNS {
        let t = Instant::now();
        tokio::process::Command::new("/bin/true").status().await?;
        floor.push(ms(t.elapsed()));
    }
    let mut json = serde_json::Map::new();
    for (i, variant) in variants.iter().enumerate() {
        report.row(
            variant.to_string(),
            format!(
                "first request {} ms (min {}, max {}), first answer {} ms, RSS after one event {} MiB",
                number(median(&to_ask[i])),
                number(percentile(&to_ask[i], 0.0)),
                number(percentile(&to_ask[i], 100.0)),
                number(median(&to_answer[i])),
                number(median(&rss[i])),
            ),
        );
        json.insert(
            variant.to_string(),
            json!({
                "to_first_request_ms": summary(&to_ask[i]), "to_first_answer_ms": summary(&to_answer[i]),
                "samples_to_first_request_ms": to_ask[i], "samples_to_first_answer_ms": to_answer[i],
                "peak_rss_mib_after_one_event": median(&rss[i]),
            }),
        );
        report.budget(
            format!("cold start to first request: {variant}"),
            median(&to_ask[i]),
            10.0,
            "ms",
            true,
        );
        plot.push(Series {
            label: format!("cold start {variant} -> 1st request"),
            samples: to_ask[i].clone(),
        });
    }
    report.row(
        "spawn floor: /bin/true to exit",
        format!("{} ms", number(median(&floor))),
    );
    report.row(
        "init steps of main()",
        "each timed at its first call in a fresh process (the bench's own, at its start)",
    );
    for (step, cost) in init {
        report.row(format!("  {step}"), format!("{} ms", number(*cost)));
    }
    json.insert("process_spawn_floor_ms".into(), summary(&floor));
    json.insert(
        "init_steps_in_process_ms".into(),
        Value::Object(
            init.iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        ),
    );
    report.json.insert("cold_start".into(), Value::Object(json));
    Ok(())
}
