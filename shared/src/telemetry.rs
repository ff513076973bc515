//! Telemetry, set up in one place: JSON log lines for CloudWatch, levels from the environment.

use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber: JSON lines carrying the current span (the runtime's
/// invocation span holds the request id), filtered by `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests set up many handlers) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .try_init();
}
