//! Scoring: from pending quote ids to premiums written back.
//!
//! One query loads the quotes of a whole batch that are still pending, the predictor prices
//! them, and one `UPDATE` writes every result, touching only quotes still `pending_ml`. A quote
//! that is no longer pending (scored by an earlier delivery) or does not exist is done; a
//! quote the predictor rejects as invalid becomes `failed` with the reason; a quote the
//! predictor could not reach is left pending and reported, so its message comes back.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use uuid::Uuid;

use crate::features::{Features, features};
use crate::model::EmbeddedModel;
use crate::store::{Outcome, QuoteStore, StoreError};

/// One priced quote.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub quote_id: Uuid,
    pub premium: f64,
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
}

impl Predicted {
    pub fn merge(&mut self, other: Predicted) {
        self.predictions.extend(other.predictions);
        self.rejected.extend(other.rejected);
        self.unavailable.extend(other.unavailable);
        self.reason = self.reason.take().or(other.reason);
        self.call_times.extend(other.call_times);
        self.call_errors += other.call_errors;
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

/// The model evaluated in process: no call can fail, so every quote is priced.
impl Predictor for EmbeddedModel {
    async fn predict(&self, quotes: &[(Uuid, Features)], _deadline: Instant) -> Predicted {
        let predictions = quotes
            .iter()
            .map(|(quote_id, features)| {
                let (premium, confidence) = EmbeddedModel::predict(self, features);
                Prediction {
                    quote_id: *quote_id,
                    premium: premium.into(),
                    confidence: confidence.into(),
                    model_version: Arc::clone(self.model_version()),
                }
            })
            .collect();
        Predicted {
            predictions,
            ..Predicted::default()
        }
    }
}

/// What one scoring pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub scored: u64,
    pub failed: u64,
    /// Quotes still pending that must be tried again.
    pub unfinished: HashSet<Uuid>,
    pub database_time: Duration,
    pub call_times: Vec<Duration>,
    pub call_errors: u32,
}

/// Scores the still-pending quotes among `ids`.
pub async fn score<S: QuoteStore, P: Predictor>(
    store: &S,
    predictor: &P,
    ids: &[Uuid],
    deadline: Instant,
) -> Result<Report, StoreError> {
    let started = Instant::now();
    let quotes = store.pending(ids).await?;
    let mut database_time = started.elapsed();
    if quotes.is_empty() {
        return Ok(Report {
            database_time,
            ..Report::default()
        });
    }
    let items: Vec<(Uuid, Features)> = quotes
        .iter()
        .map(|q| (q.id, features(&q.input, q.created_at.date_naive())))
        .collect();
    let predicted = predictor
        .predict(&items, deadline)
        .instrument(tracing::info_span!("predict", quotes = items.len()))
        .await;
    if let Some(reason) = &predicted.reason {
        tracing::warn!(quotes = predicted.unavailable.len(), %reason, "quotes left pending");
    }
    let outcomes: Vec<Outcome> = predicted
        .predictions
        .into_iter()
        .map(Outcome::Scored)
        .chain(
            predicted
                .rejected
                .into_iter()
                .map(|(id, reason)| Outcome::Failed { id, reason }),
        )
        .collect();
    let started = Instant::now();
    let (scored, failed) = store.record(&outcomes).await?;
    database_time += started.elapsed();
    Ok(Report {
        scored,
        failed,
        unfinished: predicted.unavailable.into_iter().collect(),
        database_time,
        call_times: predicted.call_times,
        call_errors: predicted.call_errors,
    })
}
