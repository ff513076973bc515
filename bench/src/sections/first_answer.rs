//! Section 0, the headline: the cold start a user feels. From spawning a function's release
//! binary (under the Runtime API stand-in) to its first answer: `generate` answering a
//! `generate-batch` of 10 (init, one write, one enqueue) and `score` (embedded, the template's
//! default) pricing a batch of 10 quotes (init, one read, the model, one write). Postgres is
//! reached over TLS (`sslmode=require`), as the functions reach RDS Proxy on AWS; SQS is a
//! stand-in that answers at once ([`SqsStandIn`]), so the emulator's own time is not in the
//! figure. The binaries built from the commit before the cold-start work (`BENCH_BEFORE_BIN_DIR`,
//! built by `scripts/bench` in a worktree of its own) run in the same rounds, taking turns with
//! today's, so both meet the same load on the machine. A few more runs of each, sampled for
//! X-Ray, time the first invocation's spans.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use testkit::DaemonStandIn;
use testkit::{TestEnv, admin_database_url};

use crate::Res;
use crate::lambda;
use crate::report::{Report, number};
use crate::sections::{
    check_answer, embedded_env, function_env, generate_event, insert_pending, sqs_batches,
};
use crate::sqs_stand_in::SqsStandIn;
use crate::stats::{median, ms, percentile, summary};
use crate::svg::Series;

/// Fresh processes per function and build.
pub const RUNS: usize = 15;
/// Sampled runs per function and build, for the spans of the first invocation.
const TRACED_RUNS: usize = 5;
/// Quotes per first request: a generate-batch of 10, a score batch of one message of 10 ids.
const QUOTES: usize = 10;

struct Build {
    label: String,
    dir: PathBuf,
    commit: String,
    database_url: String,
}

/// Today's binaries, and the earlier ones when `scripts/bench` built them, both straight on
/// Postgres over TLS; then today's through the test environment's pooler (PgBouncer in
/// transaction mode, TLS required, as RDS Proxy is on AWS) when it has one: the earlier build
/// cannot use it (its start-up options are refused), so this row has no "before".
fn builds(root: &Path, env: &TestEnv) -> Vec<Build> {
    let direct = tls_url(env);
    let mut builds = Vec::new();
    if let Some(dir) = std::env::var_os("BENCH_BEFORE_BIN_DIR").map(PathBuf::from) {
        if ["generate", "score"].iter().all(|f| dir.join(f).exists()) {
            builds.push(Build {
                label: "before".into(),
                dir,
                commit: std::env::var("BENCH_BEFORE_COMMIT").unwrap_or_default(),
                database_url: direct.clone(),
            });
        } else {
            eprintln!(
                "BENCH_BEFORE_BIN_DIR={} has no generate and score binaries: today's only",
                dir.display()
            );
        }
    }
    let after = Build {
        label: "after".into(),
        dir: lambda::binary(root, "generate")
            .parent()
            .expect("a folder")
            .to_path_buf(),
        commit: super::command_output(
            "git",
            &["-C", &root.display().to_string(), "rev-parse", "HEAD"],
        ),
        database_url: direct.clone(),
    };
    let pooled = env.database.url.contains("sslmode=")
        && host_and_port(&env.database.url) != host_and_port(&direct);
    let through_pooler = pooled.then(|| Build {
        label: "after, through PgBouncer".into(),
        database_url: env.database.url.clone(),
        dir: after.dir.clone(),
        commit: after.commit.clone(),
    });
    builds.push(after);
    builds.extend(through_pooler);
    builds
}

fn host_and_port(url: &str) -> &str {
    url.split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// The test database straight on Postgres (not through a pooler, which the earlier build's
/// start-up options do not pass), over TLS, as its owner.
fn tls_url(env: &TestEnv) -> String {
    let name = env
        .database
        .url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("a database name");
    let admin = admin_database_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("a database URL ends with its name");
    format!("{base}/{name}?sslmode=require")
}

#[derive(Default)]
struct Samples {
    init: Vec<f64>,
    first_answer: Vec<f64>,
    invocation: Vec<f64>,
}

pub async fn first_answer(
    root: &Path,
    env: &TestEnv,
    logs: &Path,
    report: &mut Report,
    plot: &mut Vec<Series>,
) -> Res<()> {
    let builds = builds(root, env);
    report.section(format!(
        "0. The cold start a user feels: spawn -> first answer, Postgres over TLS, SQS a stand-in answering at once (median of {RUNS} fresh processes)"
    ));
    let sqs = SqsStandIn::start().await?;
    let with_services = |vars, url: &str| sqs.serving(vars, Some(url));
    let generate_vars: Vec<_> = builds
        .iter()
        .map(|b| with_services(function_env(env), &b.database_url))
        .collect();
    let score_vars: Vec<_> = builds
        .iter()
        .map(|b| with_services(embedded_env(root, env), &b.database_url))
        .collect();
    let generate_event = generate_event(root, Some(json!({ "count": QUOTES })))?;
    let ids = insert_pending(
        &env.store,
        (RUNS + TRACED_RUNS) * builds.len() * QUOTES,
        "bench-first-answer",
    )
    .await?;
    let mut score_events = sqs_batches(&ids, QUOTES, 1).into_iter();
    let variants = [
        ("generate", "generate-batch of 10"),
        ("score", "embedded, 1 message of 10 ids"),
    ];
    let mut samples: Vec<Vec<Samples>> = variants
        .iter()
        .map(|_| builds.iter().map(|_| Samples::default()).collect())
        .collect();
    // One fresh process of `function` from build `b`, its first answer checked.
    let mut first_run = async |function: &str, b: usize, daemon: Option<&DaemonStandIn>| {
        let (event, vars) = match function {
            "generate" => (generate_event.clone(), &generate_vars[b]),
            _ => (
                serde_json::to_value(score_events.next().expect("an event per run"))?,
                &score_vars[b],
            ),
        };
        let run = lambda::run(
            &builds[b].dir.join(function),
            function,
            vars,
            vec![event],
            Duration::from_secs(30),
            &logs.join(format!("bench-first-answer-{function}-{b}.stderr.log")),
            daemon,
        )
        .await?;
        check_answer(function, &run.first().body)?;
        Res::Ok(run)
    };
    let batches_before = sqs.sent_batches();
    for round in 0..RUNS {
        for (v, (function, _)) in variants.iter().enumerate() {
            // Each build goes first in every other round.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..builds.len()).collect()
            } else {
                (0..builds.len()).rev().collect()
            };
            for b in order {
                let run = first_run(function, b, None).await?;
                let first = run.first();
                let s = &mut samples[v][b];
                s.init
                    .push(ms(first.asked_at.saturating_duration_since(run.spawned_at)));
                s.first_answer.push(ms(first
                    .answered_at
                    .saturating_duration_since(run.spawned_at)));
                s.invocation.push(ms(first
                    .answered_at
                    .saturating_duration_since(first.asked_at)));
            }
        }
    }
    let batches = sqs.sent_batches() - batches_before;
    if batches < (RUNS * builds.len()) as u64 {
        return Err(format!(
            "the SQS stand-in answered {batches} SendMessageBatch calls for {} generate runs",
            RUNS * builds.len()
        )
        .into());
    }

    // The spans of the first invocation, from sampled runs.
    let mut spans: Vec<Vec<Vec<Map<String, Value>>>> = variants
        .iter()
        .map(|_| builds.iter().map(|_| Vec::new()).collect())
        .collect();
    let daemon = DaemonStandIn::start(Duration::from_secs(2));
    for _ in 0..TRACED_RUNS {
        for (v, (function, _)) in variants.iter().enumerate() {
            for (b, spans) in spans[v].iter_mut().enumerate() {
                let run = first_run(function, b, Some(&daemon)).await?;
                spans.push(span_times(&run.subsegments));
            }
        }
    }

    let mut json = Map::new();
    json.insert(
        "method".into(),
        json!({
            "runs": RUNS, "traced_runs": TRACED_RUNS,
            "postgres": "before and after: the local Postgres directly, sslmode=require (TLS 1.3), a fresh backend per process; 'after, through PgBouncer': the test environment's pooler (transaction mode, TLS required, the application role), warm backends, as RDS Proxy",
            "sqs": "a local stand-in answering SendMessageBatch at once (not the emulator, not subtracted)",
            "init": "spawn -> the runtime's first request for an event",
            "first_answer": "spawn -> the first invocation's answer posted",
            "invocation": "first request for an event -> its answer",
            "order": "before and after take turns in every round, each first in every other round",
        }),
    );
    json.insert(
        "builds".into(),
        Value::Array(
            builds
                .iter()
                .map(|b| {
                    json!({"label": b.label, "commit": b.commit, "dir": b.dir,
                           "database": host_and_port(&b.database_url)})
                })
                .collect(),
        ),
    );
    for (v, (function, what)) in variants.iter().enumerate() {
        let mut by_build = Map::new();
        for (b, build) in builds.iter().enumerate() {
            let s = &samples[v][b];
            report.row(
                format!("{function} ({what}), {}", build.label),
                format!(
                    "first answer {} ms (min {}, max {}) = init {} ms + first invocation {} ms",
                    number(median(&s.first_answer)),
                    number(percentile(&s.first_answer, 0.0)),
                    number(percentile(&s.first_answer, 100.0)),
                    number(median(&s.init)),
                    number(median(&s.invocation)),
                ),
            );
            let span = span_medians(&spans[v][b]);
            report.row(
                "",
                format!(
                    "first invocation's spans (median of {TRACED_RUNS} sampled): {}",
                    span.iter()
                        .map(|(k, v)| format!("{k} {} ms", number(v.as_f64().unwrap_or(f64::NAN))))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            by_build.insert(
                build.label.clone(),
                json!({
                    "commit": build.commit,
                    "first_answer_ms": summary(&s.first_answer), "init_ms": summary(&s.init),
                    "invocation_ms": summary(&s.invocation),
                    "samples_first_answer_ms": s.first_answer, "samples_init_ms": s.init,
                    "samples_invocation_ms": s.invocation,
                    "first_invocation_spans_median_ms": span,
                    "first_invocation_spans_ms": spans[v][b],
                }),
            );
            plot.push(Series {
                label: format!("cold start {function} -> 1st answer ({})", build.label),
                samples: s.first_answer.clone(),
            });
        }
        json.insert(function.to_string(), Value::Object(by_build));
    }
    // The budgets are checked on the path the functions take on AWS, through a pooler (RDS
    // Proxy answers a new client without forking a Postgres backend, as PgBouncer does), when
    // the test environment has one; else on today's build straight on Postgres.
    let budgeted = builds
        .iter()
        .position(|b| b.label == "after, through PgBouncer")
        .or_else(|| builds.iter().position(|b| b.label == "after"))
        .expect("today's build");
    let path = &builds[budgeted].label;
    report.budget(
        format!("user-felt cold start: generate(10), spawn -> first answer ({path})"),
        median(&samples[0][budgeted].first_answer),
        25.0,
        "ms",
        true,
    );
    for (v, (function, _)) in variants.iter().enumerate() {
        report.budget(
            format!("user-felt cold start: {function}, init ({path})"),
            median(&samples[v][budgeted].init),
            10.0,
            "ms",
            true,
        );
    }
    report
        .json
        .insert("user_felt_cold_start".into(), Value::Object(json));
    Ok(())
}

/// Milliseconds of the invocation's subsegment (`handler`) and of each kind of call in it
/// (`PostgreSQL insert`, `SQS`, ...), summed when one occurs twice, and what is left of the
/// handler (`rest`: the time outside those calls).
fn span_times(subsegments: &[Value]) -> Map<String, Value> {
    let duration = |d: &Value| {
        (d["end_time"].as_f64().unwrap_or(f64::NAN) - d["start_time"].as_f64().unwrap_or(f64::NAN))
            * 1e3
    };
    let mut times = Map::new();
    let mut calls = 0.0;
    for d in subsegments {
        let name = d["name"].as_str().unwrap_or_default();
        if name == "## handler" {
            times.insert("handler".into(), json!(duration(d)));
            continue;
        }
        let label = match d["annotations"]["operation"].as_str() {
            Some(operation) => format!("{name} {operation}"),
            None => name.to_owned(),
        };
        let t = duration(d);
        // Calls out of the process; spans of its own (which may hold them) are not summed.
        if ["PostgreSQL", "SQS", "ml-engine"].contains(&name) {
            calls += t;
        }
        let sum = times.get(&label).and_then(Value::as_f64).unwrap_or(0.0) + t;
        times.insert(label, json!(sum));
    }
    if let Some(handler) = times.get("handler").and_then(Value::as_f64) {
        times.insert("rest".into(), json!(handler - calls));
    }
    times
}

/// The median of each span over the runs.
fn span_medians(runs: &[Map<String, Value>]) -> Map<String, Value> {
    let mut keys: Vec<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.get(k)?.as_f64()).collect();
            (k.clone(), json!(median(&values)))
        })
        .collect()
}
