//! Shadow scoring: a second model, evaluated beside the live one, prices the quotes the live
//! one has just scored, from the same features, and its prices are recorded apart (the
//! [`ShadowStore`]), never as a quote's price, with how far each is from the live price. A
//! candidate model is so judged on live traffic before it goes live.
//!
//! Best effort: it runs after the live outcomes are written, and whatever goes wrong (the
//! model rejects a quote or prices it at a premium the live path would refuse, the write
//! fails) is logged and counted, never returned: the live outcome and the message's fate are
//! the same with or without a shadow.
//!
//! Re-price passes do not shadow. A quote's features are its input and its creation date,
//! neither of which changes, so the shadow's price of a quote re-priced is the one it had
//! when the quote was scored; and a re-price is an operator's bulk pass over old quotes, not
//! the live traffic a shadow is there to be judged on.

use std::collections::HashMap;
use std::time::Instant;

use tracing::Instrument;
use uuid::Uuid;

use quote_domain::features::Features;
use quote_domain::ports::ShadowStore;
use quote_domain::pricing::{Outcome, Predictor};

use crate::scoring::refusal;

/// What one shadow pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShadowReport {
    /// Shadow prices written (a quote already shadow-priced by the model is not written again).
    pub recorded: u64,
    /// Quotes the live model scored that got no shadow price: rejected or refused by the
    /// shadow model, not priced, or their write failed.
    pub failures: u64,
    /// Each quote's shadow median against its live one, in percent, where the write
    /// succeeded: see [`relative_difference`].
    pub differences: Vec<f64>,
}

/// How far `shadow` is from `live`, in percent of `live`, signed: positive where the shadow
/// model prices higher. `live` is a written premium, so positive and finite.
pub fn relative_difference(live: f64, shadow: f64) -> f64 {
    (shadow - live) / live * 100.0
}

/// Prices with `model` the quotes of `items` that `live` scored, and records those prices as
/// shadow prices.
pub async fn shadow<S: ShadowStore, P: Predictor>(
    store: &S,
    model: &P,
    items: &[(Uuid, Features)],
    live: &[Outcome],
    deadline: Instant,
) -> ShadowReport {
    let live: HashMap<Uuid, f64> = live
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Scored(p) => Some((p.quote_id, p.premium)),
            Outcome::Failed { .. } => None,
        })
        .collect();
    if live.is_empty() {
        return ShadowReport::default();
    }
    let items: Vec<(Uuid, Features)> = items
        .iter()
        .filter(|(id, _)| live.contains_key(id))
        .copied()
        .collect();
    let predicted = model
        .predict(&items, deadline)
        .instrument(tracing::info_span!("shadow_predict", quotes = items.len()))
        .await;
    let mut failures = (predicted.rejected.len() + predicted.unavailable.len()) as u64;
    for (id, reason) in &predicted.rejected {
        tracing::warn!(quote_id = %id, %reason, "the shadow model rejected a quote");
    }
    if let Some(reason) = &predicted.reason {
        tracing::warn!(quotes = predicted.unavailable.len(), %reason, "quotes left without a shadow price");
    }
    let mut differences = Vec::with_capacity(predicted.predictions.len());
    let mut prices = Vec::with_capacity(predicted.predictions.len());
    for prediction in predicted.predictions {
        if let Some(reason) = refusal(&prediction) {
            tracing::warn!(quote_id = %prediction.quote_id, %reason, "shadow premium refused");
            failures += 1;
            continue;
        }
        if let Some(&live) = live.get(&prediction.quote_id) {
            differences.push(relative_difference(live, prediction.premium));
        }
        prices.push(prediction);
    }
    match store.record_shadow(&prices).await {
        Ok(recorded) => ShadowReport {
            recorded,
            failures,
            differences,
        },
        Err(e) => {
            tracing::error!(error = %e, prices = prices.len(), "shadow prices not written; the live prices stand");
            ShadowReport {
                recorded: 0,
                failures: failures + prices.len() as u64,
                differences: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_signed_and_in_percent_of_the_live_price() {
        assert_eq!(relative_difference(200.0, 200.0), 0.0);
        assert_eq!(relative_difference(200.0, 250.0), 25.0);
        assert_eq!(relative_difference(200.0, 150.0), -25.0);
        assert_eq!(relative_difference(0.5, 1.5), 200.0);
    }
}
