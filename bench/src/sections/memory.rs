//! Section 5: peak resident memory of each binary under a run of heavy events.

use super::*;

/// Section 5: Peak resident memory of each binary through `MEMORY_EVENTS` heavy events.
pub(super) async fn memory(
    root: &Path,
    env: &TestEnv,
    logs: &Path,
    report: &mut Report,
) -> Res<()> {
    report.section(format!(
        "5. Peak resident memory (VmHWM) through {MEMORY_EVENTS} heavy events"
    ));
    let vars = function_env(env);
    let mut json = serde_json::Map::new();

    let event = generate_event(root, Some(json!({"count": 1000})))?;
    let run = lambda::run(
        &lambda::binary(root, "generate"),
        "generate",
        &vars,
        vec![event; MEMORY_EVENTS],
        Duration::from_secs(60),
        &logs.join("bench-generate.stderr.log"),
        None,
    )
    .await?;
    for answer in &run.answers {
        check_answer("generate", &answer.body)?;
    }
    record_memory(
        report,
        &mut json,
        "generate",
        "generate-batch of 1000",
        run.peak_rss_kib,
    );

    for (variant, vars) in [
        ("score", vars.clone()),
        ("score (embedded)", embedded_env(root, env)),
    ] {
        let ids = insert_pending(&env.store, MEMORY_EVENTS * 1000, "bench-memory").await?;
        let events = sqs_batches(&ids, 100, 10)
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let run = lambda::run(
            &lambda::binary(root, "score"),
            "score",
            &vars,
            events,
            Duration::from_secs(60),
            &logs.join("bench-score.stderr.log"),
            None,
        )
        .await?;
        for answer in &run.answers {
            check_answer("score", &answer.body)?;
        }
        record_memory(
            report,
            &mut json,
            variant,
            "batches of 10 messages x 100 ids",
            run.peak_rss_kib,
        );
    }

    // Every quote generate wrote above is still pending: with a one-second age limit each run
    // re-enqueues up to 1000 of them.
    let mut vars = vars;
    vars.push(("RECONCILE_MIN_AGE_SECS".into(), "1".into()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = lambda::run(
        &lambda::binary(root, "reconcile"),
        "reconcile",
        &vars,
        vec![json!({}); MEMORY_EVENTS],
        Duration::from_secs(60),
        &logs.join("bench-reconcile.stderr.log"),
        None,
    )
    .await?;
    let reenqueued: u64 = run
        .answers
        .iter()
        .map(|a| {
            serde_json::from_str::<Value>(&a.body)
                .ok()
                .and_then(|v| v["reenqueued"].as_u64())
                .unwrap_or(0)
        })
        .sum();
    record_memory(
        report,
        &mut json,
        "reconcile",
        &format!("sweeps re-enqueueing up to 1000 stuck quotes ({reenqueued} in all)"),
        run.peak_rss_kib,
    );
    report
        .json
        .insert("peak_memory".into(), Value::Object(json));
    Ok(())
}

fn record_memory(
    report: &mut Report,
    json: &mut serde_json::Map<String, Value>,
    variant: &str,
    load: &str,
    kib: u64,
) {
    let mib = kib as f64 / 1024.0;
    report.row(
        variant,
        format!("{} MiB  ({MEMORY_EVENTS} x {load})", number(mib)),
    );
    json.insert(
        variant.into(),
        json!({"peak_rss_mib": mib, "load": format!("{MEMORY_EVENTS} x {load}")}),
    );
    report.budget(format!("peak memory: {variant}"), mib, 25.0, "MiB", true);
}
