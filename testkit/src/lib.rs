//! The test kit: what the workspace's tests and the benchmark need around the code under test,
//! kept out of the library so that no function ships it.
//!
//! Only a dev-dependency of the library and the functions (and a dependency of `bench`, a
//! development tool that is never deployed): `cargo tree -e normal -p generate` lists no
//! `testkit`.
//!
//! - [`api`]: requests to `generate` and its answers.
//! - [`env`]: a database and a queue of its own per test, on the real local services.
//! - [`events`]: SQS, API Gateway and invocation-context events, as Lambda builds them.
//! - [`fakes`]: in-memory stand-ins for the ports, for tests that need no real service.
//! - [`fault_proxy`]: faults injected in front of the real ML engine.
//! - [`pg_proxy`]: faults injected in the Postgres protocol, in front of PgBouncer.
//! - [`iam_url`]: an `AWS_IAM` function URL in front of the real ML engine, checking signatures.
//! - [`runtime_api`]: the Lambda Runtime API, for running a real function binary.
//! - [`xray_daemon`]: the X-Ray daemon, to read back the traces sent to it.

pub mod api;
pub mod env;
pub mod events;
pub mod fakes;
pub mod fault_proxy;
mod http1;
pub mod iam_url;
pub mod pg_proxy;
pub mod runtime_api;
pub mod xray_daemon;

pub use env::{
    TestBus, TestEnv, admin_database_url, emulator_sdk_config, engine_client, engine_url,
    pooler_url, sqs_endpoint, trained_model, trained_model_dir,
};
pub use events::{http_event, lambda_context, sqs_event};
pub use fakes::{MemoryEvents, MemoryQueue, MemoryStore};
pub use fault_proxy::{Fault, FaultProxy};
pub use iam_url::IamFunctionUrl;
pub use pg_proxy::{PgFault, PgFaultProxy};
pub use runtime_api::{RuntimeAnswer, RuntimeApi, UNSAMPLED_TRACE};
pub use xray_daemon::DaemonStandIn;

/// How long a price holds when `PRICE_VALIDITY_DAYS` is not set: what tests give `score`.
pub const PRICE_VALIDITY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// How long shadow prices are kept when `SHADOW_RETENTION_DAYS` is not set: what tests give
/// reconcile.
pub const SHADOW_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
