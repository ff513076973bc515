//! The measurements, one function per section, each adding its rows, budgets and JSON.
//! The shared pieces (the functions' environment, events and quotes) are here; each section is
//! a file of its own, numbered as in `main.rs`.

mod cold_start;
mod first_answer;
mod memory;
mod postgres_write;
mod scoring;
mod warm_generate;
mod zip_sizes;

use cold_start::cold_start;
use first_answer::first_answer;
use memory::memory;
use postgres_write::postgres_write;
use scoring::scoring;
use warm_generate::warm_generate;
use zip_sizes::zip_sizes;

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
use testkit::{PRICE_VALIDITY, TestEnv, lambda_context, sqs_endpoint};
use uuid::Uuid;

use crate::Res;
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
    // `BENCH_SECTIONS=scoring,warm_generate` runs those alone (names as the functions'
    // below), to compare two builds in alternated runs; its results are `partial.*`.
    let only = std::env::var("BENCH_SECTIONS").ok();
    let run = |section: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|s| s.trim() == section))
    };
    if run("first_answer") {
        first_answer(&root, &env, &logs, &mut report, &mut plot).await?;
    }
    if run("cold_start") {
        cold_start(&root, &env, &init, &logs, &mut report, &mut plot).await?;
    }
    if run("memory") {
        memory(&root, &env, &logs, &mut report).await?;
    }
    if run("warm_generate") {
        warm_generate(&root, &mut report, &mut plot).await?;
    }
    if run("postgres_write") {
        postgres_write(&mut report).await?;
    }
    if run("scoring") {
        scoring(&root, &mut report, &mut plot).await?;
    }
    if run("zip_sizes") {
        zip_sizes(&root, &mut report)?;
    }

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
    let (name, svg) = match only {
        Some(_) => ("partial", "partial"),
        None => ("latest", "latency"),
    };
    std::fs::write(
        results.join(format!("{name}.json")),
        serde_json::to_string_pretty(&Value::Object(report.json.clone()))? + "\n",
    )?;
    std::fs::write(
        results.join(format!("{svg}.svg")),
        latency_plot("Quote pipeline latency on this machine", &plot),
    )?;
    let table = report.render();
    std::fs::write(results.join(format!("{name}.txt")), &table)?;
    eprintln!("{table}");
    eprintln!(
        "Results: bench/results/{name}.json, {name}.txt, {svg}.svg ({:.0} s)",
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
    let _engine = MlEngine::new(&engine_config(&config.database.url)?, None)?;
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
        "EVENT_BUS_NAME" => Some("default".into()),
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
        // The emulator's default bus: batch events are published, no rule reads them.
        ("AWS_ENDPOINT_URL_EVENTBRIDGE", sqs_endpoint()),
        ("EVENT_BUS_NAME", "default".into()),
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
        store
            .insert(
                Uuid::now_v7(),
                &quotes,
                None,
                Instant::now() + Duration::from_secs(30),
            )
            .await?;
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

pub(crate) fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
