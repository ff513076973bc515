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

use std::io::Write;

use chrono::NaiveDate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::features::{FEATURE_NAMES, features};
use crate::generator::{GenerateParams, generate};
use crate::quote::{CoverageLevel, CoverageType, QuoteInput};

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

/// Writes `rows` labelled rows as CSV: the features in [`FEATURE_NAMES`] order, then `premium`.
pub fn write_training_set(out: &mut impl Write, rows: u32, seed: u64) -> std::io::Result<()> {
    let created_on = training_date();
    let noise = LogNormal::new(0.0, 0.08).expect("finite parameters");
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let mut writer = csv::Writer::from_writer(out);
    let header = FEATURE_NAMES.iter().copied().chain(["premium"]);
    writer.write_record(header)?;
    for quote in generate(&GenerateParams {
        seed: Some(seed),
        ..GenerateParams::new(rows)
    }) {
        let premium = expected_premium(&quote, created_on) * noise.sample(&mut rng);
        let row = features(&quote, created_on).into_iter().chain([premium]);
        writer.write_record(row.map(|v| v.to_string()))?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_set_is_deterministic_and_uses_the_feature_function() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_training_set(&mut a, 200, 9).unwrap();
        write_training_set(&mut b, 200, 9).unwrap();
        assert_eq!(a, b);

        let text = String::from_utf8(a).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[..FEATURE_NAMES.len()], FEATURE_NAMES);
        assert_eq!(header.last(), Some(&"premium"));
        // The rows are exactly the serving features of the same generated quotes.
        let quotes = generate(&GenerateParams {
            seed: Some(9),
            ..GenerateParams::new(200)
        });
        for (line, quote) in lines.zip(&quotes) {
            let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            assert_eq!(
                cells[..FEATURE_NAMES.len()],
                features(quote, training_date())
            );
            let premium = *cells.last().unwrap();
            let expected = expected_premium(quote, training_date());
            assert!(premium > 0.6 * expected && premium < 1.6 * expected);
        }
    }
}
