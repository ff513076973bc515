//! Scoring: from pending quote ids to premiums written back.
//!
//! One query loads the quotes of a whole batch that are still pending, the predictor prices
//! them, and one statement writes every result, touching only quotes still `pending_ml`, and
//! counts them into their batches, completing those whose last quotes it ended. A quote
//! that is no longer pending (scored by an earlier delivery) or does not exist is done; a
//! quote the predictor rejects as invalid becomes `failed` with the reason; a quote the
//! predictor could not reach is left pending and reported, so its message comes back.
//!
//! No price at or below 0, or not finite, is ever written: whatever the model, such a
//! prediction fails its quote with the price as the reason and is counted
//! (`Report::refused_premiums`), since a client holding a premium of 0 is worse off than one
//! told its quote could not be priced.
//!
//! [`reprice`] prices scored quotes again, with whatever model the predictor runs now (an
//! operator's re-price, through the same queue): the same features and predictor, but it
//! writes only the new prices, where the quote has no price of that model version yet, and
//! keeps the one each replaces. A quote it cannot price keeps its current price: a re-price
//! never fails a scored quote.
//!
//! With a shadow model, [`score`] then has it price the quotes just scored, from the same
//! features, as shadow prices no client sees (`crate::shadow`); without one, nothing more is
//! done or allocated.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::Instrument;
use uuid::Uuid;

use quote_domain::features::{Features, features};
use quote_domain::ports::{CompletedBatch, QuoteStore, Recorded, ShadowStore, StoreError};
pub use quote_domain::pricing::{Outcome, Predicted, Prediction, Predictor};

use crate::shadow::{self, ShadowReport};

/// What one scoring pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub scored: u64,
    pub failed: u64,
    /// Quotes still pending that must be tried again.
    pub unfinished: HashSet<Uuid>,
    pub database_time: Duration,
    /// Pricing the whole batch, in either mode; none when no quote was pending.
    pub pricing_time: Option<Duration>,
    pub call_times: Vec<Duration>,
    pub call_errors: u32,
    /// Engine answers no retry would change; their quotes are among `failed`.
    pub permanent_errors: u32,
    /// Engine answers saying it serves another model; their quotes are among `unfinished`.
    pub schema_mismatches: u32,
    /// Predictions refused for a premium at or below 0 or not finite; their quotes are among
    /// `failed`.
    pub refused_premiums: u64,
    /// The batches this pass completed (its write ended their last quotes), for their events.
    pub completed: Vec<CompletedBatch>,
    /// Re-price passes: quotes given a new current price.
    pub repriced: u64,
    /// Re-price passes: quotes the model rejected or priced at a refused premium; they keep
    /// their current price.
    pub reprices_failed: u64,
    /// The shadow model's pass, when there is one and the live pass scored a quote.
    pub shadow: Option<ShadowReport>,
}

/// Scores the still-pending quotes among `ids`; each price is valid for `validity` from its
/// scoring. Then, with a `shadow` model and the predictor's `deadline` not passed, records
/// the shadow's prices of the quotes scored; its failures are in the report, never returned.
pub async fn score<S: QuoteStore + ShadowStore, P: Predictor, Sh: Predictor>(
    store: &S,
    predictor: &P,
    shadow: Option<&Sh>,
    ids: &[Uuid],
    deadline: Instant,
    validity: Duration,
) -> Result<Report, StoreError> {
    let started = Instant::now();
    let quotes = store.pending(ids).await?;
    let database_time = started.elapsed();
    let Some((mut report, outcomes, items)) = price(predictor, &quotes, deadline).await else {
        return Ok(Report {
            database_time,
            ..Report::default()
        });
    };
    let started = Instant::now();
    let Recorded {
        scored,
        failed,
        completed,
    } = store.record(&outcomes, validity).await?;
    report.database_time = database_time + started.elapsed();
    let shadow = match shadow {
        // A pass out of time leaves what is left of it to its batches' events.
        Some(_) if Instant::now() > deadline => Some(ShadowReport {
            failures: scored_outcomes(&outcomes),
            ..ShadowReport::default()
        }),
        Some(model) => Some(shadow::shadow(store, model, &items, &outcomes, deadline).await),
        None => None,
    };
    Ok(Report {
        scored,
        failed,
        completed,
        shadow,
        ..report
    })
}

/// How many of `outcomes` are prices.
fn scored_outcomes(outcomes: &[Outcome]) -> u64 {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Scored(_)))
        .count() as u64
}

/// Prices again the quotes among `ids` that are scored and whose price still holds; each new
/// price is valid for `validity` from its writing. Writes only where the quote has no price
/// of the predictor's model version yet; completes no batch.
pub async fn reprice<S: QuoteStore, P: Predictor>(
    store: &S,
    predictor: &P,
    ids: &[Uuid],
    deadline: Instant,
    validity: Duration,
) -> Result<Report, StoreError> {
    let started = Instant::now();
    let quotes = store.priced(ids).await?;
    let database_time = started.elapsed();
    let Some((mut report, outcomes, _)) = price(predictor, &quotes, deadline).await else {
        return Ok(Report {
            database_time,
            ..Report::default()
        });
    };
    let mut predictions = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match outcome {
            Outcome::Scored(prediction) => predictions.push(prediction),
            Outcome::Failed { id, reason } => {
                tracing::warn!(quote_id = %id, %reason, "re-price failed; the quote keeps its price");
                report.reprices_failed += 1;
            }
        }
    }
    let started = Instant::now();
    report.repriced = store.reprice(&predictions, validity).await?;
    report.database_time = database_time + started.elapsed();
    Ok(report)
}

/// Prices `quotes`: each ends as an outcome (priced, or failed with the reason) or among the
/// report's `unfinished`; the features priced come back too, for a shadow. `None` when there
/// is nothing to price.
async fn price<P: Predictor>(
    predictor: &P,
    quotes: &[quote_domain::quote::Quote],
    deadline: Instant,
) -> Option<(Report, Vec<Outcome>, Vec<(Uuid, Features)>)> {
    if quotes.is_empty() {
        return None;
    }
    let items: Vec<(Uuid, Features)> = quotes
        .iter()
        .map(|q| (q.id, features(&q.input, q.created_at.date_naive())))
        .collect();
    let pricing_started = Instant::now();
    let predicted = predictor
        .predict(&items, deadline)
        .instrument(tracing::info_span!("predict", quotes = items.len()))
        .await;
    let pricing_time = pricing_started.elapsed();
    if let Some(reason) = &predicted.reason {
        tracing::warn!(quotes = predicted.unavailable.len(), %reason, "quotes left unpriced");
    }
    let mut refused_premiums = 0;
    let outcomes: Vec<Outcome> = predicted
        .predictions
        .into_iter()
        .map(|prediction| match refusal(&prediction) {
            None => Outcome::Scored(prediction),
            Some(reason) => {
                tracing::error!(quote_id = %prediction.quote_id, %reason, "premium refused");
                refused_premiums += 1;
                Outcome::Failed {
                    id: prediction.quote_id,
                    reason,
                }
            }
        })
        .chain(
            predicted
                .rejected
                .into_iter()
                .map(|(id, reason)| Outcome::Failed { id, reason }),
        )
        .collect();
    let report = Report {
        unfinished: predicted.unavailable.into_iter().collect(),
        pricing_time: Some(pricing_time),
        call_times: predicted.call_times,
        call_errors: predicted.call_errors,
        permanent_errors: predicted.permanent_errors,
        schema_mismatches: predicted.schema_mismatches,
        refused_premiums,
        ..Report::default()
    };
    Some((report, outcomes, items))
}

/// Why a prediction's premium may not be written, if it may not: at or below 0, or not finite.
pub(crate) fn refusal(prediction: &Prediction) -> Option<String> {
    let premium = prediction.premium;
    (!(premium.is_finite() && premium > 0.0)).then(|| {
        format!(
            "model {} priced it at {premium}, not a positive finite premium; no price was written",
            prediction.model_version
        )
    })
}
