//! Pricing: what the model says of a quote, and what the score step makes of it.
//!
//! The model is behind a port, [`Predictor`], so the score step does not depend on how it is
//! served: over HTTP by the ML engine, or evaluated in process.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::features::Features;

/// One priced quote: the model's median premium and its 10-90% range, unrounded
/// (`premium_low <= premium <= premium_high`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub quote_id: Uuid,
    pub premium: f64,
    /// The 10th percentile premium.
    pub premium_low: f64,
    /// The 90th percentile premium.
    pub premium_high: f64,
    pub confidence: f64,
    pub model_version: Arc<str>,
}

/// What a predictor made of a set of quotes: each quote in exactly one list.
#[derive(Debug, Default)]
pub struct Predicted {
    pub predictions: Vec<Prediction>,
    /// Quotes the model refuses, with the reason: retrying would not help.
    pub rejected: Vec<(Uuid, String)>,
    /// Quotes not priced this time, for a passing reason (in `reason`).
    pub unavailable: Vec<Uuid>,
    pub reason: Option<String>,
    /// How long each call to the model took, and how many failed.
    pub call_times: Vec<Duration>,
    pub call_errors: u32,
    /// Of those, the answers no retry would change (their quotes are in `rejected`).
    pub permanent_errors: u32,
    /// Of those, the answers saying the model wants other features than `score` computes:
    /// version skew, an outage (their quotes are in `unavailable`).
    pub schema_mismatches: u32,
}

impl Predicted {
    pub fn merge(&mut self, other: Predicted) {
        self.predictions.extend(other.predictions);
        self.rejected.extend(other.rejected);
        self.unavailable.extend(other.unavailable);
        self.reason = self.reason.take().or(other.reason);
        self.call_times.extend(other.call_times);
        self.call_errors += other.call_errors;
        self.permanent_errors += other.permanent_errors;
        self.schema_mismatches += other.schema_mismatches;
    }
}

/// The model behind the score step: a port, so the step does not depend on how it is served.
pub trait Predictor: Send + Sync {
    /// Prices `quotes`, giving up on what it cannot price by `deadline`.
    fn predict(
        &self,
        quotes: &[(Uuid, Features)],
        deadline: Instant,
    ) -> impl Future<Output = Predicted> + Send;
}

/// What the score step decided for one quote.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Scored(Prediction),
    Failed { id: Uuid, reason: String },
}
