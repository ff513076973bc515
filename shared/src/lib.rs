//! The quote pipeline's library: the quote domain and the ports its Lambda functions share.
//!
//! - [`quote`]: a quote, its validation and its status.
//! - [`generator`]: realistic synthetic quotes.
//! - [`import`]: quotes from a CSV file.
//! - [`features`]: the model's features, computed here and nowhere else.
//! - [`scoring`]: pending quotes to premiums, through a predictor.
//! - [`ml_engine`]: the predictor that calls the ML engine over HTTP.
//! - [`model`]: the engine's XGBoost model evaluated in process, bit-identical to the engine.
//! - [`store`]: the Postgres store.
//! - [`iam_auth`]: IAM database authentication tokens for RDS Proxy.
//! - [`reconcile`]: re-enqueueing or failing quotes left pending.
//! - [`queue`]: the SQS queue and its message.
//! - [`config`]: configuration from the environment.
//! - [`ca_bundle`]: the system's root certificates, read from one file.
//! - [`telemetry`]: logging and tracing set-up.
//! - [`xray`]: spans as X-Ray subsegments.
//! - [`metrics`]: CloudWatch Embedded Metric Format.
//! - [`training`]: the labelled training set for the model.
//! - [`warm_up`]: the connections a function opens at start-up, bounded and never fatal.

pub mod ca_bundle;
pub mod config;
pub mod features;
pub mod generator;
pub mod iam_auth;
pub mod import;
pub mod metrics;
pub mod ml_engine;
pub mod model;
pub mod queue;
pub mod quote;
pub mod reconcile;
pub mod scoring;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod training;
pub mod warm_up;
pub mod xray;
