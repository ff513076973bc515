//! The quote pipeline's library: the pipeline steps, the adapters and the platform code its
//! Lambda functions share, on top of the I/O-free domain in `quote_domain`.
//!
//! The domain's modules are re-exported under their old paths (`quote_pipeline::quote`, ...),
//! so code written against them before the split still compiles.
//!
//! - [`scoring`]: pending quotes to premiums, through a predictor.
//! - [`ml_engine`]: the predictor that calls the ML engine over HTTP.
//! - [`model`]: the engine's XGBoost model evaluated in process, bit-identical to the engine.
//! - [`store`]: the Postgres store.
//! - [`iam_auth`]: IAM database authentication tokens for RDS Proxy.
//! - [`reconcile`]: re-enqueueing or failing quotes left pending.
//! - [`queue`]: the SQS queue.
//! - [`config`]: configuration from the environment.
//! - [`ca_bundle`]: the system's root certificates, read from one file.
//! - [`telemetry`]: logging and tracing set-up.
//! - [`xray`]: spans as X-Ray subsegments.
//! - [`metrics`]: CloudWatch Embedded Metric Format.
//! - [`warm_up`]: the connections a function opens at start-up, bounded and never fatal.

pub mod budget;
pub mod ca_bundle;
pub mod config;
pub mod create;
pub mod iam_auth;
pub mod metrics;
pub mod ml_engine;
pub mod model;
pub mod queue;
pub mod reconcile;
pub mod scoring;
pub mod store;
pub mod telemetry;
pub mod warm_up;
pub mod xray;

pub use quote_domain::{features, generator, import, message, ports, pricing, quote, training};
