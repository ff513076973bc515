//! The quote domain, with no I/O: what a quote is and how it is priced, and the ports through
//! which the pipeline steps reach the world. Its manifest lists no database, AWS, HTTP or
//! async-runtime crate, so nothing here can depend back on the adapters.
//!
//! - [`quote`]: a quote, its validation and its status.
//! - [`generator`]: realistic synthetic quotes.
//! - [`spread`]: quotes spread over the whole valid domain, for training and measuring the model.
//! - [`import`]: quotes from a CSV file.
//! - [`features`]: the model's features, computed here and nowhere else.
//! - [`training`]: the labelled training set for the model.
//! - [`pricing`]: predictions, the predictor port, and what the score step decides.
//! - [`money`]: prices as clients see them, rounded to cents in one place.
//! - [`message`]: the queue message that carries quote ids to the score step.
//! - [`ports`]: the store and the queue the pipeline steps need, and their errors.

pub mod features;
pub mod generator;
pub mod import;
pub mod message;
pub mod money;
pub mod ports;
pub mod pricing;
pub mod quote;
pub mod spread;
pub mod training;
