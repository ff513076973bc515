//! Synthetic quotes that look like a real book of business.
//!
//! Revenues are log-normal, headcount follows revenue through a log-normal revenue per
//! employee, business ages are skewed young, and coverage amounts depend on the coverage type
//! (property cover scales with the business). The same seed gives the same quotes: a seeded
//! ChaCha8 stream, and founding dates anchored to a fixed date rather than today.

use chrono::{Days, NaiveDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde_json::{Map, Value};

use crate::quote::{CoverageLevel, CoverageType, FieldError, QuoteInput, limits};

pub const MAX_COUNT: u32 = 1000;

/// What a client may ask of a generated batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub count: u32,
    pub seed: Option<u64>,
    pub coverage_type: Option<CoverageType>,
    pub coverage_level: Option<CoverageLevel>,
    pub amount_min: i64,
    pub amount_max: i64,
}

impl GenerateParams {
    pub fn new(count: u32) -> Self {
        GenerateParams {
            count,
            seed: None,
            coverage_type: None,
            coverage_level: None,
            amount_min: *limits::ESTIMATED_AMOUNT.start(),
            amount_max: *limits::ESTIMATED_AMOUNT.end(),
        }
    }

    /// Reads a generate-batch request body, naming every field at fault.
    pub fn from_json(object: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        const FIELDS: [&str; 6] = [
            "count",
            "seed",
            "coverage_type",
            "coverage_level",
            "amount_min",
            "amount_max",
        ];
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|key| !FIELDS.contains(&key.as_str()))
            .map(|key| FieldError::new(key.as_str(), "is not a generation parameter"))
            .collect();
        let mut params = GenerateParams::new(0);
        let whole = |name: &str, min: i64, max: i64| -> Result<Option<i64>, FieldError> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                    _ => Err(FieldError::new(
                        name,
                        format!("must be a whole number from {min} to {max}"),
                    )),
                },
                Some(_) => Err(FieldError::new(name, "must be a number")),
            }
        };
        match whole("count", 1, MAX_COUNT.into()) {
            Ok(Some(count)) => params.count = count as u32,
            Ok(None) => errors.push(FieldError::new("count", "is required")),
            Err(e) => errors.push(e),
        }
        match object.get("seed") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() => params.seed = n.as_u64(),
            Some(_) => errors.push(FieldError::new(
                "seed",
                format!("must be a whole number from 0 to {}", u64::MAX),
            )),
        }
        let (lo, hi) = (
            *limits::ESTIMATED_AMOUNT.start(),
            *limits::ESTIMATED_AMOUNT.end(),
        );
        for (name, slot) in [
            ("amount_min", &mut params.amount_min),
            ("amount_max", &mut params.amount_max),
        ] {
            match whole(name, lo, hi) {
                Ok(Some(v)) => *slot = v,
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if params.amount_min > params.amount_max {
            errors.push(FieldError::new(
                "amount_max",
                "must not be below amount_min",
            ));
        }
        for name in ["coverage_type", "coverage_level"] {
            let parsed = match object.get(name) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    errors.push(FieldError::new(name, "must be a string"));
                    continue;
                }
            };
            let result = if name == "coverage_type" {
                parsed.parse().map(|v| params.coverage_type = Some(v))
            } else {
                parsed.parse().map(|v| params.coverage_level = Some(v))
            };
            if let Err(message) = result {
                errors.push(FieldError::new(name, message));
            }
        }
        if errors.is_empty() {
            Ok(params)
        } else {
            Err(errors)
        }
    }
}

/// The date generated founding dates count back from, so a seed means the same quotes on
/// every day.
fn anchor_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid constant date")
}

/// Generates `params.count` quotes; every one passes [`crate::quote::validate`].
pub fn generate(params: &GenerateParams) -> Vec<QuoteInput> {
    let mut rng = match params.seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed),
        None => ChaCha8Rng::from_rng(&mut rand::rng()),
    };
    (0..params.count).map(|_| one(&mut rng, params)).collect()
}

fn log_normal(median: f64, sigma: f64) -> LogNormal<f64> {
    LogNormal::new(median.ln(), sigma).expect("finite parameters")
}

fn one(rng: &mut ChaCha8Rng, params: &GenerateParams) -> QuoteInput {
    let coverage_type = params
        .coverage_type
        .unwrap_or_else(|| match rng.random_range(0..100) {
            0..35 => CoverageType::Life,
            35..70 => CoverageType::Health,
            _ => CoverageType::Property,
        });
    let coverage_level = params
        .coverage_level
        .unwrap_or_else(|| match rng.random_range(0..100) {
            0..40 => CoverageLevel::Basic,
            40..80 => CoverageLevel::Standard,
            _ => CoverageLevel::Premium,
        });
    let age: f64 = Normal::new(44.0, 12.0)
        .expect("finite parameters")
        .sample(rng);
    let user_age = clamp(age.round() as i64, limits::USER_AGE) as i32;

    let revenue = log_normal(800_000.0, 1.3).sample(rng);
    let annual_revenue = clamp(revenue.round() as i64, limits::ANNUAL_REVENUE);
    let per_employee = log_normal(120_000.0, 0.5).sample(rng);
    let num_employees = clamp(
        (revenue / per_employee).round() as i64,
        limits::NUM_EMPLOYEES,
    ) as i32;

    let business_years = log_normal(8.0, 0.9).sample(rng).min(150.0);
    let founded_at = anchor_date()
        .checked_sub_days(Days::new((business_years * 365.25) as u64))
        .expect("within the calendar");

    let amount = match coverage_type {
        CoverageType::Life => log_normal(500_000.0, 0.8).sample(rng),
        CoverageType::Health => log_normal(100_000.0, 0.6).sample(rng),
        CoverageType::Property => revenue.max(50_000.0) * log_normal(0.8, 0.7).sample(rng),
    };
    let estimated_amount = within(rng, amount, params.amount_min, params.amount_max);

    QuoteInput {
        coverage_type,
        coverage_level,
        estimated_amount,
        user_age,
        annual_revenue,
        num_employees,
        founded_at,
    }
}

fn clamp(value: i64, range: std::ops::RangeInclusive<i64>) -> i64 {
    value.clamp(*range.start(), *range.end())
}

/// Rounds an amount to a thousand and keeps it in the requested range; an amount the
/// distribution put outside it is drawn log-uniformly inside, so a narrow range is not piled
/// up on its bounds.
fn within(rng: &mut ChaCha8Rng, amount: f64, min: i64, max: i64) -> i64 {
    let rounded = ((amount / 1000.0).round() as i64) * 1000;
    if (min..=max).contains(&rounded) {
        return rounded;
    }
    let (lo, hi) = ((min as f64).ln(), (max as f64).ln());
    let drawn = if hi > lo {
        rng.random_range(lo..hi).exp().round() as i64
    } else {
        min
    };
    drawn.clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::{Raw, validate};
    use serde_json::json;

    fn seeded(count: u32, seed: u64) -> GenerateParams {
        GenerateParams {
            seed: Some(seed),
            ..GenerateParams::new(count)
        }
    }

    #[test]
    fn same_seed_same_quotes() {
        assert_eq!(generate(&seeded(50, 7)), generate(&seeded(50, 7)));
        assert_ne!(generate(&seeded(50, 7)), generate(&seeded(50, 8)));
    }

    #[test]
    fn every_generated_quote_is_valid() {
        let today = chrono::Utc::now().date_naive();
        for input in generate(&seeded(MAX_COUNT, 1)) {
            let value = serde_json::to_value(&input).unwrap();
            let object = value.as_object().unwrap();
            let again = validate(
                |name| object.get(name).map_or(Raw::Missing, Raw::Json),
                today,
            );
            assert_eq!(again, Ok(input));
        }
    }

    #[test]
    fn pinned_parameters_hold() {
        let params = GenerateParams {
            coverage_type: Some(CoverageType::Property),
            coverage_level: Some(CoverageLevel::Premium),
            amount_min: 200_000,
            amount_max: 300_000,
            ..seeded(500, 3)
        };
        for q in generate(&params) {
            assert_eq!(q.coverage_type, CoverageType::Property);
            assert_eq!(q.coverage_level, CoverageLevel::Premium);
            assert!(
                (200_000..=300_000).contains(&q.estimated_amount),
                "{}",
                q.estimated_amount
            );
        }
    }

    #[test]
    fn revenues_are_skewed_and_headcount_follows_revenue() {
        let quotes = generate(&seeded(MAX_COUNT, 11));
        let mut revenues: Vec<i64> = quotes.iter().map(|q| q.annual_revenue).collect();
        revenues.sort_unstable();
        let median = revenues[revenues.len() / 2] as f64;
        let mean = revenues.iter().sum::<i64>() as f64 / revenues.len() as f64;
        assert!(
            mean > 1.5 * median,
            "log-normal revenues have a long right tail"
        );
        let big = quotes.iter().filter(|q| q.annual_revenue > 5_000_000);
        let small = quotes.iter().filter(|q| q.annual_revenue < 200_000);
        let avg = |it: &mut dyn Iterator<Item = &QuoteInput>| {
            let v: Vec<f64> = it.map(|q| q.num_employees as f64).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(avg(&mut big.into_iter()) > 5.0 * avg(&mut small.into_iter()));
    }

    #[test]
    fn params_name_each_bad_field() {
        let body = json!({"count": 0, "seed": -1, "coverage_type": "pet", "amount_min": 5, "x": 1});
        let errors = GenerateParams::from_json(body.as_object().unwrap()).unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["amount_min", "count", "coverage_type", "seed", "x"]
        );
        for count in [json!(1001), json!(2.5), json!("3")] {
            let errors = GenerateParams::from_json(json!({"count": count}).as_object().unwrap());
            assert_eq!(errors.unwrap_err()[0].field, "count");
        }
        let ok = GenerateParams::from_json(json!({"count": 1000, "seed": 9}).as_object().unwrap());
        assert_eq!(ok.unwrap().count, 1000);
    }
}
