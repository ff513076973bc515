//! `GET /quotes/{id}?explain=true`: why a scored quote has its median premium, computed on
//! request from the model embedded beside the binary (each feature's TreeSHAP contribution,
//! `quote_pipeline::model`'s `explain`, the engine's `pred_contribs` to the bit).
//!
//! The model is read on the first explanation asked for, not at init: a container that only
//! writes and reads quotes never pays for it, and a model missing from the package fails the
//! explanations alone (a 503 naming the file), never the rest of the API.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use quote_pipeline::features::{FEATURE_NAMES, features};
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::quote::{Pricing, Quote};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

/// The embedded model, loaded once per container on first use.
pub struct Explainer {
    model_dir: PathBuf,
    model: OnceLock<Result<EmbeddedModel, String>>,
}

/// `explanation` in a quote's answer: `openapi.yaml`'s `Explanation`.
#[derive(Debug, Serialize)]
pub struct ExplanationView {
    /// What `base` and the contributions measure: `premium` (USD, added up) or `ln(premium)`
    /// (each contribution a factor `exp(c)` of the premium).
    pub units: &'static str,
    pub base: f64,
    /// Largest effect first.
    pub contributions: Vec<Contribution>,
}

#[derive(Debug, Serialize)]
pub struct Contribution {
    pub feature: &'static str,
    /// The feature's value for this quote, as the model reads it.
    pub value: f64,
    pub contribution: f64,
}

impl Explainer {
    /// Explanations from the model in `model_dir` (`model.bin` or `model.json`, with
    /// `metadata.json`), read when the first one is asked for.
    pub fn new(model_dir: PathBuf) -> Self {
        Explainer {
            model_dir,
            model: OnceLock::new(),
        }
    }

    fn model(&self) -> Result<&EmbeddedModel, ApiError> {
        self.model
            .get_or_init(|| {
                let started = Instant::now();
                let loaded = EmbeddedModel::load(&self.model_dir).map_err(|e| e.to_string());
                match &loaded {
                    Ok(model) => tracing::info!(
                        model_version = %model.model_version(),
                        load_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "model loaded for explanations"
                    ),
                    Err(problem) => {
                        tracing::error!(%problem, "the model for explanations cannot be loaded")
                    }
                }
                loaded
            })
            .as_ref()
            .map_err(|problem| {
                ApiError::new(
                    ErrorCode::ExplanationsUnavailable,
                    format!("explanations are unavailable: {problem}"),
                )
            })
    }

    /// The explanation of a scored quote priced by the loaded model; a 409 for a quote without
    /// a price or priced by another model version, whose contributions this model cannot give.
    pub fn explain(&self, quote: &Quote) -> Result<ExplanationView, ApiError> {
        let priced_by = match &quote.pricing {
            Pricing::Scored { model_version, .. } => model_version,
            Pricing::Pending => {
                return Err(ApiError::new(
                    ErrorCode::NotScored,
                    "the quote is pending_ml: it has no price to explain yet",
                ));
            }
            Pricing::Failed { reason } => {
                return Err(ApiError::new(
                    ErrorCode::NotScored,
                    format!("the quote failed ({reason}): it has no price to explain"),
                ));
            }
        };
        let model = self.model()?;
        if **model.model_version() != **priced_by {
            return Err(ApiError::new(
                ErrorCode::ModelVersionMismatch,
                format!(
                    "the quote was priced by model {priced_by}, and this service explains with \
                     model {}: its price cannot be explained",
                    model.model_version()
                ),
            ));
        }
        let x = features(&quote.input, quote.created_at.date_naive());
        let explanation = model.explain(&x);
        let mut contributions: Vec<Contribution> = FEATURE_NAMES
            .iter()
            .zip(x)
            .zip(explanation.contributions)
            .map(|((&feature, value), c)| Contribution {
                feature,
                value,
                contribution: c.into(),
            })
            .collect();
        // Stable: features of equal effect keep the model's order.
        contributions.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        Ok(ExplanationView {
            units: explanation.units.name(),
            base: explanation.base.into(),
            contributions,
        })
    }
}
