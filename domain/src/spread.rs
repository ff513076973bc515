//! Quotes spread over the whole valid domain: where clients may be, not only where the
//! generator draws.
//!
//! [`crate::generator`] draws a plausible book of business (revenues near a million, headcount
//! following revenue, young firms, cover suited to its type), and a model trained and measured
//! on it alone says nothing of the rest of what the API accepts. Here every field is drawn on
//! its own, so the combinations the generator never makes appear (a million employees and no
//! revenue, 50,000,000 of health cover for a firm founded today, a firm of 1800). Each numeric
//! field sits on its least and on its greatest bound one time in ten each (`EDGE_SHARE`), so
//! every corner of the bounds is represented; otherwise it is log-uniform across its range when
//! that spans orders of magnitude (cover, revenue, headcount), uniform for the applicant's age,
//! and for the founding date half uniform over the calendar and half log-uniform in the
//! business's age, where the premium changes fastest. The same seed gives the same quotes.

use chrono::{Days, NaiveDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::quote::{CoverageLevel, CoverageType, QuoteInput, limits};

/// The share of draws of each numeric field on each of its two bounds.
const EDGE_SHARE: f64 = 0.1;

/// `count` valid quotes spread over the domain, founded no later than `today`.
pub fn spread(count: u32, seed: u64, today: NaiveDate) -> Vec<QuoteInput> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| one(&mut rng, today)).collect()
}

fn one(rng: &mut ChaCha8Rng, today: NaiveDate) -> QuoteInput {
    let (y, m, d) = limits::FOUNDED_AT_MIN;
    let oldest = NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date");
    let span = (today - oldest).num_days().max(0);
    // Drawn in the order written: the same seed, the same quotes.
    QuoteInput {
        coverage_type: CoverageType::ALL[rng.random_range(0..CoverageType::ALL.len())],
        coverage_level: CoverageLevel::ALL[rng.random_range(0..CoverageLevel::ALL.len())],
        estimated_amount: log_uniform(rng, limits::ESTIMATED_AMOUNT),
        user_age: edge_or(rng, limits::USER_AGE, |rng, lo, hi| {
            rng.random_range(lo..=hi)
        }) as i32,
        // Revenue's least bound is 0, which no log-uniform draw reaches: from 1, 0 its edge.
        annual_revenue: edge_or(rng, limits::ANNUAL_REVENUE, |rng, _, hi| {
            log_uniform_in(rng, 1, hi)
        }),
        num_employees: log_uniform(rng, limits::NUM_EMPLOYEES) as i32,
        founded_at: {
            let days_old = edge_or(rng, 0..=span, |rng, _, hi| {
                if rng.random_bool(0.5) {
                    rng.random_range(0..=hi)
                } else {
                    log_uniform_in(rng, 1, hi.max(1)).min(hi)
                }
            });
            today
                .checked_sub_days(Days::new(days_old as u64))
                .expect("within the calendar")
        },
    }
}

/// A bound of `range`, each `EDGE_SHARE` of the time, else `draw(lo, hi)`.
fn edge_or(
    rng: &mut ChaCha8Rng,
    range: std::ops::RangeInclusive<i64>,
    draw: impl FnOnce(&mut ChaCha8Rng, i64, i64) -> i64,
) -> i64 {
    let (lo, hi) = (*range.start(), *range.end());
    let u: f64 = rng.random();
    if u < EDGE_SHARE {
        lo
    } else if u < 2.0 * EDGE_SHARE {
        hi
    } else {
        draw(rng, lo, hi)
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, range: std::ops::RangeInclusive<i64>) -> i64 {
    edge_or(rng, range, log_uniform_in)
}

/// A whole number log-uniform in `lo..=hi` (both at least 1).
fn log_uniform_in(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    let drawn = if b > a {
        rng.random_range(a..b).exp()
    } else {
        a.exp()
    };
    (drawn.round() as i64).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{GenerateParams, generate};
    use crate::quote::{Raw, validate};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    }

    #[test]
    fn same_seed_same_quotes_and_every_one_valid() {
        let quotes = spread(2000, 3, today());
        assert_eq!(quotes, spread(2000, 3, today()));
        assert_ne!(quotes, spread(2000, 4, today()));
        for input in quotes {
            let value = serde_json::to_value(&input).unwrap();
            let object = value.as_object().unwrap();
            let again = validate(
                |name| object.get(name).map_or(Raw::Missing, Raw::Json),
                today(),
            );
            assert_eq!(again, Ok(input));
        }
    }

    #[test]
    fn every_numeric_field_reaches_both_bounds_and_the_dates_span_1800_to_today() {
        let quotes = spread(2000, 5, today());
        type Field = (
            &'static str,
            fn(&QuoteInput) -> i64,
            std::ops::RangeInclusive<i64>,
        );
        let fields: [Field; 4] = [
            (
                "estimated_amount",
                |q| q.estimated_amount,
                limits::ESTIMATED_AMOUNT,
            ),
            ("user_age", |q| q.user_age.into(), limits::USER_AGE),
            (
                "annual_revenue",
                |q| q.annual_revenue,
                limits::ANNUAL_REVENUE,
            ),
            (
                "num_employees",
                |q| q.num_employees.into(),
                limits::NUM_EMPLOYEES,
            ),
        ];
        for (name, get, range) in fields {
            let at = |bound: i64| quotes.iter().filter(|q| get(q) == bound).count();
            // One in ten on each bound at least (a draw between them may round onto one).
            for bound in [*range.start(), *range.end()] {
                assert!(at(bound) >= 150, "{name} = {bound}: {}", at(bound));
            }
            // Between the bounds, every decade of a wide range is visited.
            let inner: Vec<i64> = quotes
                .iter()
                .map(get)
                .filter(|v| range.contains(v))
                .collect();
            let decade = |v: i64| (v.max(1) as f64).log10().floor() as i64;
            if *range.end() > 1000 {
                let decades: std::collections::HashSet<i64> =
                    inner.iter().map(|&v| decade(v)).collect();
                let all = decade(*range.start())..=decade(*range.end());
                assert!(
                    all.clone().all(|d| decades.contains(&d)),
                    "{name}: {decades:?}"
                );
            }
        }
        let oldest = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        assert!(quotes.iter().any(|q| q.founded_at == oldest));
        assert!(quotes.iter().any(|q| q.founded_at == today()));
        let young = quotes
            .iter()
            .filter(|q| (today() - q.founded_at).num_days() < 3653);
        assert!(young.count() > 400, "young firms well represented");
    }

    #[test]
    fn it_makes_combinations_the_generator_never_makes() {
        let unlike = |q: &QuoteInput| q.annual_revenue == 0 && q.num_employees > 1000;
        assert!(spread(2000, 6, today()).iter().any(unlike));
        assert!(
            !generate(&GenerateParams {
                seed: Some(6),
                ..GenerateParams::new(1000)
            })
            .iter()
            .any(unlike)
        );
    }
}
