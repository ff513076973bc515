//! Telemetry, set up in one place: JSON log lines for CloudWatch, levels from the environment,
//! and spans for X-Ray when tracing is active.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::xray::XrayLayer;

/// Installs the process's subscriber: JSON lines carrying the current span (the runtime's
/// invocation span holds the request id), filtered by `RUST_LOG` (default `info`); sampled
/// invocations' spans go to the X-Ray daemon when Lambda names one.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false);
    // A second call (tests set up many handlers) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(XrayLayer::from_env())
        .try_init();
}
