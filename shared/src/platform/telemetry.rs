//! Telemetry, set up in one place: JSON log lines for CloudWatch, levels from the environment,
//! and spans for X-Ray when tracing is active.

use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::xray::XrayLayer;

/// `lambda_runtime`'s invocation span, which holds the request id of every log line.
const INVOCATION_SPAN: &str = "lambda_runtime::layers::trace=info";

/// Installs the process's subscriber: JSON lines carrying the current span (the runtime's
/// invocation span holds the request id), filtered by `RUST_LOG` (default `info`); sampled
/// invocations' spans go to the X-Ray daemon when Lambda names one.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests set up many handlers) keeps the first subscriber.
    let _ = subscriber(filter, XrayLayer::from_env(), std::io::stdout).try_init();
}

/// Logs to `writer` at the levels of `filter`, and X-Ray's spans at INFO whatever those are:
/// `RUST_LOG=warn` quiets the logs, not the traces, and keeps the request id on each line.
pub fn subscriber<W>(
    filter: EnvFilter,
    xray: Option<XrayLayer>,
    writer: W,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter.add_directive(INVOCATION_SPAN.parse().expect("a valid directive"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(xray.with_filter(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;
    use testkit::DaemonStandIn;

    #[test]
    fn a_quiet_log_level_keeps_the_request_id_and_the_traces() {
        let daemon = DaemonStandIn::start(std::time::Duration::from_secs(1));
        let xray = XrayLayer::new(daemon.address(), "test".into()).unwrap();
        let output = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = output.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = subscriber(EnvFilter::new("warn"), Some(xray), writer);
        tracing::subscriber::with_default(subscriber, || {
            let _in = tracing::info_span!(
                target: "lambda_runtime::layers::trace",
                "Lambda runtime invoke",
                requestId = "r1",
                xrayTraceId = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            )
            .entered();
            let _db = tracing::info_span!(crate::store::POSTGRES_INSERT).entered();
            tracing::info!("not at this level");
            tracing::warn!("kept");
        });

        let output = String::from_utf8(output.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = output
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{output}");
        assert_eq!(lines[0]["fields"]["message"], "kept");
        assert_eq!(lines[0]["span"]["requestId"], "r1");

        let names: Vec<Value> = daemon
            .all()
            .into_iter()
            .map(|d| d["name"].clone())
            .collect();
        assert_eq!(names, ["PostgreSQL", "## handler"]);
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
