//! The labelled training set: generated quotes, their features from [`crate::features`], and a
//! synthetic "true premium" to learn.
//!
//! The true annual premium is a plausible actuarial formula with multiplicative noise:
//!
//! ```text
//! premium = (150 + rate(type) * amount * level * age * size * youth * leverage) * noise
//!   rate:     life 0.004, health 0.015, property 0.006 per unit of cover
//!   level:    basic 0.85, standard 1.0, premium 1.3
//!   age:      life exp(0.04 (age - 40)); health 1 + 0.025 max(age - 30, 0);
//!             property 1 + 0.002 |age - 45|
//!   size:     1 + 0.5 / (1 + ln(1 + employees))      small firms cost more
//!   youth:    1 + 0.6 exp(-business_age_years / 5)   young firms cost more
//!   leverage: 1 + 0.1 min(ln(1 + cover / revenue), 3)
//!   noise:    log-normal, median 1, sigma 0.08
//! ```
//!
//! The quotes are the generator's and others spread over the whole valid domain
//! ([`crate::spread`]): a model of the generator's alone prices the rest of the API's domain
//! badly (its median off by half over the domain, and some valid quotes priced at 0).

use std::io::Write;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::features::{FEATURE_NAMES, features};
use crate::generator::{GenerateParams, generate};
use crate::quote::{CoverageLevel, CoverageType, QuoteInput};
use crate::spread::spread;

/// The date training quotes are taken to be created on.
pub fn training_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid constant date")
}

/// The noiseless premium of the formula above.
pub fn expected_premium(q: &QuoteInput, created_on: NaiveDate) -> f64 {
    let age = f64::from(q.user_age);
    let amount = q.estimated_amount as f64;
    let rate = match q.coverage_type {
        CoverageType::Life => 0.004,
        CoverageType::Health => 0.015,
        CoverageType::Property => 0.006,
    };
    let level = match q.coverage_level {
        CoverageLevel::Basic => 0.85,
        CoverageLevel::Standard => 1.0,
        CoverageLevel::Premium => 1.3,
    };
    let age_factor = match q.coverage_type {
        CoverageType::Life => (0.04 * (age - 40.0)).exp(),
        CoverageType::Health => 1.0 + 0.025 * (age - 30.0).max(0.0),
        CoverageType::Property => 1.0 + 0.002 * (age - 45.0).abs(),
    };
    let size = 1.0 + 0.5 / (1.0 + f64::from(q.num_employees).ln_1p());
    let business_age = (created_on - q.founded_at).num_days().max(0) as f64 / 365.25;
    let youth = 1.0 + 0.6 * (-business_age / 5.0).exp();
    let leverage = 1.0
        + 0.1
            * (amount / (q.annual_revenue as f64).max(1.0))
                .ln_1p()
                .min(3.0);
    150.0 + rate * amount * level * age_factor * size * youth * leverage
}

/// What the training and evaluation sets hold: generated quotes, quotes spread over the
/// domain, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSize {
    /// Quotes drawn like the generator's ([`crate::generator`]).
    pub generated: u32,
    /// Quotes spread over the whole valid domain ([`crate::spread`]).
    pub spread: u32,
}

/// The quotes of a set: `generated` from the generator with `seed`, then `spread` spread over
/// the domain from another seed derived from it, each labelled with its set's name.
fn quotes_of(size: SetSize, seed: u64) -> Vec<(&'static str, QuoteInput)> {
    let generated = generate(&GenerateParams {
        seed: Some(seed),
        ..GenerateParams::new(size.generated)
    });
    let spread = spread(size.spread, seed.wrapping_add(2), training_date());
    let named = |name| move |q| (name, q);
    generated
        .into_iter()
        .map(named("generated"))
        .chain(spread.into_iter().map(named("spread")))
        .collect()
}

/// The noise of the formula above, drawn from the stream of `seed + 1`.
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let noise = LogNormal::new(0.0, NOISE_SIGMA).expect("finite parameters");
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    move || noise.sample(&mut rng)
}

/// The noise's sigma on the log scale: the premium's own spread, which the model's 10-90%
/// range should cover 80% of.
pub const NOISE_SIGMA: f64 = 0.08;

/// Writes the training set as CSV: the features in [`FEATURE_NAMES`] order, then `premium`,
/// the noisy truth. Generated quotes first, then those spread over the domain, so the model
/// learns both where the book of business is and everywhere a client may send a quote.
pub fn write_training_set(out: &mut impl Write, size: SetSize, seed: u64) -> std::io::Result<()> {
    let created_on = training_date();
    let mut noise = noise(seed);
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(FEATURE_NAMES.iter().copied().chain(["premium"]))?;
    for (_, quote) in quotes_of(size, seed) {
        let premium = expected_premium(&quote, created_on) * noise();
        let row = features(&quote, created_on).into_iter().chain([premium]);
        writer.write_record(row.map(|v| v.to_string()))?;
    }
    writer.flush()
}

/// Writes an evaluation set as CSV for `ml-engine/evaluate.py`: `set` (`generated` or
/// `spread`), the features, `expected_premium` (the noiseless truth) and `premium` (the noisy
/// truth, as a training row would have it). Drawn like the training set; from another seed,
/// its quotes are held out.
pub fn write_evaluation_set(out: &mut impl Write, size: SetSize, seed: u64) -> std::io::Result<()> {
    let created_on = training_date();
    let mut noise = noise(seed);
    let mut writer = csv::Writer::from_writer(out);
    let header = ["set"]
        .into_iter()
        .chain(FEATURE_NAMES)
        .chain(["expected_premium", "premium"]);
    writer.write_record(header)?;
    for (set, quote) in quotes_of(size, seed) {
        let expected = expected_premium(&quote, created_on);
        let values = features(&quote, created_on)
            .into_iter()
            .chain([expected, expected * noise()]);
        writer.write_record(
            [set.to_owned()]
                .into_iter()
                .chain(values.map(|v| v.to_string())),
        )?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: SetSize = SetSize {
        generated: 200,
        spread: 100,
    };

    /// The quotes a set of [`SIZE`] holds: the generator's, then those spread over the domain.
    fn expected_quotes(seed: u64) -> Vec<QuoteInput> {
        let mut quotes = generate(&GenerateParams {
            seed: Some(seed),
            ..GenerateParams::new(SIZE.generated)
        });
        quotes.extend(spread(SIZE.spread, seed + 2, training_date()));
        quotes
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split(',').collect()
    }

    #[test]
    fn the_training_set_is_deterministic_and_uses_the_feature_function() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_training_set(&mut a, SIZE, 9).unwrap();
        write_training_set(&mut b, SIZE, 9).unwrap();
        assert_eq!(a, b);

        let text = String::from_utf8(a).unwrap();
        let mut lines = text.lines();
        let header = cells(lines.next().unwrap());
        assert_eq!(header[..FEATURE_NAMES.len()], FEATURE_NAMES);
        assert_eq!(header.last(), Some(&"premium"));
        // The rows are exactly the serving features of the same quotes.
        let quotes = expected_quotes(9);
        assert_eq!(text.lines().count(), 1 + quotes.len());
        for (line, quote) in lines.zip(&quotes) {
            let cells: Vec<f64> = cells(line).iter().map(|c| c.parse().unwrap()).collect();
            assert_eq!(
                cells[..FEATURE_NAMES.len()],
                features(quote, training_date())
            );
            let premium = *cells.last().unwrap();
            let expected = expected_premium(quote, training_date());
            assert!(premium > 0.6 * expected && premium < 1.6 * expected);
        }
    }

    #[test]
    fn the_evaluation_set_names_its_quotes_sets_and_holds_both_truths() {
        let mut a = Vec::new();
        write_evaluation_set(&mut a, SIZE, 30).unwrap();
        let mut b = Vec::new();
        write_evaluation_set(&mut b, SIZE, 30).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let mut lines = text.lines();
        let header = cells(lines.next().unwrap());
        assert_eq!(header[0], "set");
        assert_eq!(header[1..=FEATURE_NAMES.len()], FEATURE_NAMES);
        assert_eq!(
            header[FEATURE_NAMES.len() + 1..],
            ["expected_premium", "premium"]
        );
        let quotes = expected_quotes(30);
        assert_eq!(text.lines().count(), 1 + quotes.len());
        for (i, (line, quote)) in lines.zip(&quotes).enumerate() {
            let cells = cells(line);
            let set = if i < SIZE.generated as usize {
                "generated"
            } else {
                "spread"
            };
            assert_eq!(cells[0], set);
            let numbers: Vec<f64> = cells[1..].iter().map(|c| c.parse().unwrap()).collect();
            assert_eq!(
                numbers[..FEATURE_NAMES.len()],
                features(quote, training_date())
            );
            let [expected, noisy] = numbers[FEATURE_NAMES.len()..] else {
                panic!("two truths");
            };
            assert_eq!(expected, expected_premium(quote, training_date()));
            assert!(noisy > 0.6 * expected && noisy < 1.6 * expected);
        }
    }
}
