//! The quote pipeline's library: what its Lambda functions share, on top of the I/O-free domain
//! in `quote_domain`, in three layers, one folder each. A layer uses the ones below it, never
//! one above (`scripts/layers` checks it):
//!
//! - [`steps`], the pipeline's use cases, written against the domain's ports only:
//!   [`create`] (validated quotes to a stored, queued batch), [`scoring`] (pending quotes to
//!   premiums, through a predictor), [`shadow`] (a second model's prices of the quotes just
//!   scored, recorded and never shown) and [`reconcile`] (re-enqueueing or failing quotes left
//!   pending) and [`completion`] (a batch's completion event, once).
//! - [`adapters`], the ports made real: [`store`] (Postgres, with [`iam_auth`]'s tokens for
//!   RDS Proxy), [`queue`] (SQS), [`events`] (EventBridge), [`ml_engine`] (the engine over
//!   HTTP, its requests signed by [`request_signing`] for an IAM function URL) and [`model`]
//!   (the engine's XGBoost model in process, bit-identical to it).
//! - [`platform`], what runs a function: [`config`] (the environment, read into each
//!   function's settings), [`aws`] (the AWS SDK), [`budget`] (every time budget),
//!   [`ca_bundle`] (root certificates), [`telemetry`] and [`xray`] (logs and traces),
//!   [`metrics`] (CloudWatch Embedded Metric Format) and [`warm_up`] (the first connections,
//!   opened at start-up).
//!
//! Every module is also at the crate's root (`quote_pipeline::store`), as are the domain's
//! (`quote_pipeline::quote`), so a function names what it uses, not where it sits.

pub mod steps {
    pub mod completion;
    pub mod create;
    pub mod reconcile;
    pub mod scoring;
    pub mod shadow;
}

pub mod adapters {
    pub mod events;
    pub mod iam_auth;
    pub mod ml_engine;
    pub mod model;
    pub mod queue;
    pub mod request_signing;
    pub mod store;
}

pub mod platform {
    pub mod aws;
    pub mod budget;
    pub mod ca_bundle;
    pub mod config;
    pub mod metrics;
    pub mod telemetry;
    pub mod warm_up;
    pub mod xray;
}

pub use adapters::{events, iam_auth, ml_engine, model, queue, request_signing, store};
pub use platform::{aws, budget, ca_bundle, config, metrics, telemetry, warm_up, xray};
pub use quote_domain::{
    features, generator, import, message, money, ports, pricing, quote, spread, training,
};
pub use steps::{completion, create, reconcile, scoring, shadow};
