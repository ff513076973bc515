//! A function's release binary run as Lambda runs it: a fresh process polling a stand-in of the
//! Runtime API ([`RuntimeApi`]) for its events, with only the environment Lambda would give it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::DaemonStandIn;
use testkit::{RuntimeAnswer, RuntimeApi, UNSAMPLED_TRACE};

use crate::Res;

/// What one process did with its events.
pub struct Run {
    /// Just before the process was spawned.
    pub spawned_at: Instant,
    pub answers: Vec<RuntimeAnswer>,
    /// Peak resident memory (`VmHWM`), read after the last answer, before the process is killed.
    pub peak_rss_kib: u64,
    /// With a daemon stand-in: the X-Ray documents of the (sampled) invocations, up to the
    /// last one's `## handler` subsegment.
    pub subsegments: Vec<Value>,
}

impl Run {
    pub fn first(&self) -> &RuntimeAnswer {
        &self.answers[0]
    }
}

/// The function's release binary (`BENCH_BIN_DIR` names another folder, to try the bench out
/// on other builds).
pub fn binary(root: &Path, function: &str) -> PathBuf {
    std::env::var_os("BENCH_BIN_DIR")
        .map_or_else(|| root.join("target/release"), PathBuf::from)
        .join(function)
}

/// A sampled trace header, as Lambda sends when X-Ray samples the invocation.
const SAMPLED_TRACE: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// Spawns `binary` with exactly `env` (plus the Runtime API variables), serves it `events` one
/// by one, waits for every answer (each within `within`), then reads its peak memory and kills
/// it. An invocation error or a missing answer is an error, with the end of the process's
/// stderr. With `daemon`, every invocation is sampled for X-Ray, its spans sent to the daemon
/// stand-in (in place of the environment's `AWS_XRAY_DAEMON_ADDRESS`) and read back before the
/// process is killed.
pub async fn run(
    binary: &Path,
    function: &str,
    env: &[(String, String)],
    events: Vec<Value>,
    within: Duration,
    stderr_log: &Path,
    daemon: Option<&DaemonStandIn>,
) -> Res<Run> {
    let count = events.len();
    let trace = if daemon.is_some() {
        SAMPLED_TRACE
    } else {
        UNSAMPLED_TRACE
    };
    let mut runtime = RuntimeApi::start(events, trace).await;
    let stderr = std::fs::File::create(stderr_log)?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_size(function))
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdin(Stdio::null())
        // Lambda sends stdout to its log agent; here it is thrown away.
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    if let Some(daemon) = daemon {
        command.env("AWS_XRAY_DAEMON_ADDRESS", daemon.address().to_string());
    }
    let spawned_at = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id().ok_or("the process has no id")?;
    let mut answers = Vec::with_capacity(count);
    for i in 0..count {
        let Some(answer) = runtime.answer(within).await else {
            let _ = child.kill().await;
            return Err(format!(
                "{function}: no answer to event {} of {count} within {within:?}; stderr ({}): {}",
                i + 1,
                stderr_log.display(),
                tail(stderr_log)
            )
            .into());
        };
        if answer.error {
            let _ = child.kill().await;
            return Err(format!("{function}: invocation error: {}", answer.body).into());
        }
        answers.push(answer);
    }
    let peak_rss_kib = vm_hwm_kib(pid)?;
    let mut subsegments = Vec::new();
    if let Some(daemon) = daemon {
        // The invocation's own subsegment is sent after its answer is posted.
        while !subsegments
            .iter()
            .any(|d: &Value| d["name"] == "## handler")
        {
            let Some(document) = tokio::task::block_in_place(|| daemon.next()) else {
                break;
            };
            subsegments.push(document);
        }
    }
    child.kill().await?;
    Ok(Run {
        spawned_at,
        answers,
        peak_rss_kib,
        subsegments,
    })
}

/// The memory size `template.yaml` gives each function (the runtime only reports it).
fn memory_size(function: &str) -> &'static str {
    if function == "score" { "1024" } else { "256" }
}

/// `VmHWM` (peak resident set size) of a live process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status").into())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
