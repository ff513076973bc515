//! The measurements, one function per section, each adding its rows, budgets and JSON.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use generate::App as GenerateApp;
use lambda_runtime::LambdaEvent;
use quote_pipeline::aws::aws_sdk_config;
use quote_pipeline::config::{FromEnv, GenerateConfig, MlEngineConfig, ScoreConfig, ScoringMode};
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::queue::{QuoteMessage, SqsQueue};
use quote_pipeline::quote::Quote;
use quote_pipeline::scoring::Predictor;
use quote_pipeline::store::{PgStore, QuoteStore};
use serde_json::{Value, json};
use testkit::{TestEnv, lambda_context, sqs_endpoint};
use uuid::Uuid;

use crate::Res;
use crate::first_answer::first_answer;
use crate::lambda;
use crate::report::{Report, number, spread};
use crate::sqs_stand_in::SqsStandIn;
use crate::stats::{median, ms, percentile, summary};
use crate::svg::{Series, latency_plot};
use crate::timed::{Clock, Timed};

const FUNCTIONS: [&str; 3] = ["generate", "score", "reconcile"];
const COLD_RUNS: usize = 15;
/// (quotes per request, measured invocations); 5 more of each warm up first.
const WARM_SIZES: [(u32, usize); 3] = [(1, 200), (100, 100), (1000, 50)];
const WARM_UP: usize = 5;
const COPY_REPEATS: usize = 15;
const SCORED_QUOTES: usize = 5000;
/// (messages per SQS batch, quote ids per message).
const SCORE_BATCHES: [(usize, usize); 2] = [(1, 100), (10, 100)];
const MEMORY_EVENTS: usize = 20;
const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(root: PathBuf) -> Res<()> {
    let started = Instant::now();
    // First, before anything else in this process touches the SDK, TLS or the model.
    let init = init_costs(&root).await?;
    let mut report = Report::default();
    report
        .json
        .insert("date".into(), json!(Utc::now().to_rfc3339()));
    report
        .json
        .insert("uname".into(), json!(command_output("uname", &["-a"])));
    report.json.insert("cpu".into(), json!(cpu_model()));
    report.json.insert(
        "cpus".into(),
        json!(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        ),
    );
    report.json.insert(
        "git_commit".into(),
        json!(command_output(
            "git",
            &["-C", &root.display().to_string(), "rev-parse", "HEAD"]
        )),
    );
    let mut plot = Vec::new();

    for function in FUNCTIONS {
        let binary = lambda::binary(&root, function);
        if !binary.exists() {
            return Err(format!(
                "{} is missing: cargo build --release -p {function}",
                binary.display()
            )
            .into());
        }
    }
    let logs = root.join(".local");
    std::fs::create_dir_all(&logs)?;

    let env = TestEnv::new().await;
    first_answer(&root, &env, &logs, &mut report, &mut plot).await?;
    cold_start(&root, &env, &init, &logs, &mut report, &mut plot).await?;
    memory(&root, &env, &logs, &mut report).await?;
    warm_generate(&root, &mut report, &mut plot).await?;
    postgres_write(&mut report).await?;
    scoring(&root, &mut report, &mut plot).await?;
    zip_sizes(&root, &mut report)?;

    report.json.insert(
        "budgets".into(),
        Value::Array(report.budgets.iter().map(|b| b.to_json()).collect()),
    );
    report.json.insert(
        "bench_seconds".into(),
        json!(started.elapsed().as_secs_f64()),
    );
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("latest.json"),
        serde_json::to_string_pretty(&Value::Object(report.json.clone()))? + "\n",
    )?;
    std::fs::write(
        results.join("latency.svg"),
        latency_plot("Quote pipeline latency on this machine", &plot),
    )?;
    let table = report.render();
    std::fs::write(results.join("latest.txt"), &table)?;
    eprintln!("{table}");
    eprintln!(
        "Results: bench/results/latest.json, latest.txt, latency.svg ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the functions' `main` does before its first request for an event, each step timed
/// the first time it runs in this process.
async fn init_costs(root: &Path) -> Res<Vec<(&'static str, f64)>> {
    let mut costs = Vec::new();
    let t = Instant::now();
    quote_pipeline::telemetry::init();
    costs.push(("telemetry::init", ms(t.elapsed())));
    let t = Instant::now();
    let config = GenerateConfig::from_lookup(function_vars(
        "postgres://bench@127.0.0.1:5432/bench",
        "http://127.0.0.1:9324/q",
    ))?;
    costs.push(("GenerateConfig::from_env", ms(t.elapsed())));
    let t = Instant::now();
    let _store = PgStore::connect_lazy(&config.database)?;
    costs.push(("PgStore::connect_lazy", ms(t.elapsed())));
    let t = Instant::now();
    let sdk = aws_sdk_config().await;
    costs.push(("aws_sdk_config().await", ms(t.elapsed())));
    let t = Instant::now();
    let _queue = SqsQueue::new(&sdk, &config.queue);
    costs.push(("SqsQueue::new", ms(t.elapsed())));
    let t = Instant::now();
    let _engine = MlEngine::new(&engine_config(&config.database.url)?)?;
    costs.push(("MlEngine::new (reqwest)", ms(t.elapsed())));
    let t = Instant::now();
    let _model = EmbeddedModel::load(&root.join("ml-engine/model"))?;
    costs.push(("EmbeddedModel::load", ms(t.elapsed())));
    // What the SDK's HTTPS client and reqwest's verifier each do when built.
    let t = Instant::now();
    let roots = rustls_native_certs::load_native_certs();
    costs.push(("(within both clients: load_native_certs)", ms(t.elapsed())));
    if roots.certs.is_empty() {
        eprintln!("no system root certificates found: {:?}", roots.errors);
    }
    Ok(costs)
}

/// The variables a function reads, with only these set (defaults otherwise).
fn function_vars(database_url: &str, queue_url: &str) -> impl Fn(&str) -> Option<String> {
    let (database_url, queue_url, engine) =
        (database_url.to_owned(), queue_url.to_owned(), engine_url());
    move |name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "QUOTES_QUEUE_URL" => Some(queue_url.clone()),
        "ML_ENGINE_URL" => Some(engine.clone()),
        _ => None,
    }
}

/// The engine client's configuration `score` reads, with defaults.
fn engine_config(database_url: &str) -> Res<MlEngineConfig> {
    match ScoreConfig::from_lookup(function_vars(database_url, ""))?.scoring {
        ScoringMode::Engine(engine) => Ok(engine),
        ScoringMode::Embedded { .. } => Err("ML_ENGINE_URL set, yet embedded mode".into()),
    }
}

fn engine_url() -> String {
    std::env::var("ML_ENGINE_URL").unwrap_or_else(|_| "http://127.0.0.1:8021".into())
}

/// The environment a function binary gets: what Lambda and `template.yaml` would give it,
/// pointed at the local services.
pub(crate) fn function_env(env: &TestEnv) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", env.database.url.clone()),
        ("QUOTES_QUEUE_URL", env.queue_url.clone()),
        ("AWS_ENDPOINT_URL_SQS", sqs_endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000".into()),
        ("ML_ENGINE_URL", engine_url()),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The score binary in embedded mode: the model from the engine's own files.
pub(crate) fn embedded_env(root: &Path, env: &TestEnv) -> Vec<(String, String)> {
    let mut vars = function_env(env);
    vars.retain(|(k, _)| k != "ML_ENGINE_URL");
    vars.push(("SCORING_MODE".into(), "embedded".into()));
    vars.push((
        "MODEL_DIR".into(),
        root.join("ml-engine/model").display().to_string(),
    ));
    vars
}

/// `n` new pending quotes of `owner`, written in batches of 1000; their ids.
pub(crate) async fn insert_pending(
    store: &impl QuoteStore,
    n: usize,
    owner: &str,
) -> Res<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let count = left.min(1000);
        let quotes = new_quotes(count, owner);
        store.insert(&quotes, None).await?;
        ids.extend(quotes.iter().map(|q| q.id));
        left -= count;
    }
    Ok(ids)
}

fn new_quotes(n: usize, owner: &str) -> Vec<Quote> {
    let now = Utc::now();
    generate(&GenerateParams::new(n as u32))
        .into_iter()
        .map(|input| Quote::new_pending(owner, input, now))
        .collect()
}

/// The SQS events Lambda would deliver for `ids`: messages of `per_message` ids, batches of
/// `per_batch` messages.
pub(crate) fn sqs_batches(ids: &[Uuid], per_message: usize, per_batch: usize) -> Vec<SqsEvent> {
    let records: Vec<SqsMessage> = ids
        .chunks(per_message)
        .map(|chunk| {
            let mut record = SqsMessage::default();
            record.message_id = Some(Uuid::now_v7().to_string());
            record.receipt_handle = Some(format!("bench-{}", Uuid::now_v7().simple()));
            record.body = Some(QuoteMessage::new(chunk.to_vec()).to_body());
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:quotes".into());
            record.aws_region = Some("us-east-1".into());
            record
        })
        .collect();
    records
        .chunks(per_batch)
        .map(|batch| {
            let mut event = SqsEvent::default();
            event.records = batch.to_vec();
            event
        })
        .collect()
}

/// The sample API Gateway v2 event of `POST /quotes/generate-batch` (the caller is its JWT
/// `sub`), with `body` in place of its own when given.
pub(crate) fn generate_event(root: &Path, body: Option<Value>) -> Res<Value> {
    let text = std::fs::read_to_string(root.join("events/generate/202-generate-batch.json"))?;
    let mut event: Value = serde_json::from_str(&text)?;
    if let Some(body) = body {
        event["body"] = Value::String(body.to_string());
    }
    Ok(event)
}

/// Checks that an answer is what a healthy invocation of `function` answers.
pub(crate) fn check_answer(function: &str, body: &str) -> Res<()> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("{function} answered non-JSON ({e}): {body}"))?;
    let ok = match function {
        "generate" => value["statusCode"] == 202,
        "score" => value["batchItemFailures"]
            .as_array()
            .is_some_and(Vec::is_empty),
        _ => value.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{function} answered {body}").into())
    }
}

/// Section 1: from spawning the release binary to its first request for an event, and to its first
/// answer, `COLD_RUNS` times each, the functions taking turns.
async fn cold_start(
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

/// Section 5: Peak resident memory of each binary through `MEMORY_EVENTS` heavy events.
async fn memory(root: &Path, env: &TestEnv, logs: &Path, report: &mut Report) -> Res<()> {
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

/// Section 2: `generate::handle` in process, as the function's `main` builds it, around store and
/// queue clients that time their own calls.
async fn warm_generate(root: &Path, report: &mut Report, plot: &mut Vec<Series>) -> Res<()> {
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

/// Section 3: `QuoteStore::insert` of 1000 quotes beside psql's `\copy` of 1000 rows of the same
/// shape, taking turns, each timed by itself (psql's `\timing`).
async fn postgres_write(report: &mut Report) -> Res<()> {
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
        store.insert(&quotes, None).await?;
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

/// Section 4: Quotes per second from pending to scored through `score::handle`, one container
/// taking the batches one after the other, for each batch shape and predictor.
async fn scoring(root: &Path, report: &mut Report, plot: &mut Vec<Series>) -> Res<()> {
    report.section(format!("4. Scoring throughput: {SCORED_QUOTES} pending quotes -> scored through score::handle (one container, batches in turn)"));
    let env = TestEnv::new().await;
    let engine_config = engine_config(&env.database.url)?;
    let store = PgStore::connect_lazy(&env.database)?;
    let engine = score::App {
        store: store.clone(),
        predictor: MlEngine::new(&engine_config)?,
    };
    let embedded = score::App {
        store,
        predictor: EmbeddedModel::load(&root.join("ml-engine/model"))?,
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
    app: &score::App<PgStore, P>,
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

/// Section 6: Each function's deployment zip: `scripts/package`'s when there is one, else the
/// x86-64 release binary zipped here.
fn zip_sizes(root: &Path, report: &mut Report) -> Res<()> {
    report.section("6. Deployment zip sizes");
    let mut json = serde_json::Map::new();
    for function in FUNCTIONS {
        let packaged = root.join(format!("target/lambda/{function}/bootstrap.zip"));
        let (zip, source) = if packaged.exists() {
            let age = std::fs::metadata(&packaged)?
                .modified()?
                .elapsed()
                .unwrap_or_default();
            (
                packaged,
                format!(
                    "scripts/package's zip, built {} min ago",
                    age.as_secs() / 60
                ),
            )
        } else {
            let out = root.join(format!("target/bench/{function}-bootstrap.zip"));
            zip_binary(&lambda::binary(root, function), &out)?;
            (
                out,
                "no target/lambda zip: target/release binary zipped here (deflate level 9, x86-64)"
                    .into(),
            )
        };
        let bytes = std::fs::metadata(&zip)?.len();
        let mib = bytes as f64 / MIB;
        let binary = std::fs::metadata(lambda::binary(root, function))?.len() as f64 / MIB;
        report.row(
            function,
            format!(
                "{} MiB  ({source}; x86-64 release binary {} MiB)",
                number(mib),
                number(binary)
            ),
        );
        json.insert(
            function.into(),
            json!({"zip_bytes": bytes, "zip_mib": mib, "zip": zip.strip_prefix(root).unwrap_or(&zip), "source": source, "release_binary_mib": binary}),
        );
        report.budget(format!("zip size: {function}"), mib, 5.0, "MiB", true);
    }
    report.json.insert("zip_sizes".into(), Value::Object(json));
    Ok(())
}

/// Zips `binary` as `bootstrap` at maximum compression, with Python's zipfile.
fn zip_binary(binary: &Path, out: &Path) -> Res<()> {
    std::fs::create_dir_all(out.parent().expect("a folder"))?;
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    z.write(sys.argv[1], 'bootstrap')",
        ])
        .arg(binary)
        .arg(out)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("zipping {} failed", binary.display()).into())
    }
}

pub(crate) fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}
