//! The model's features: the one place they are computed.
//!
//! The training set (`training-data`) and the score step both call [`features`], so training
//! and serving cannot drift apart. Every feature depends only on the quote's own facts and its
//! creation date, never on the clock, so a quote scored twice gets the same features.
//!
//! | feature | definition |
//! |---|---|
//! | `user_age` | applicant age in years |
//! | `age_group` | 0: 18-24, 1: 25-34, 2: 35-44, 3: 45-54, 4: 55-64, 5: 65 and over |
//! | `log_annual_revenue` | ln(1 + annual revenue) |
//! | `num_employees` | headcount |
//! | `revenue_per_employee` | annual revenue / headcount |
//! | `coverage_to_revenue` | coverage amount / max(annual revenue, 1) |
//! | `business_age_years` | days from founding to the quote's creation date / 365.25 |
//! | `normalized_amount` | coverage amount / [`AMOUNT_SCALE`] (50,000,000) |
//! | `risk_score` | [`risk_score`], in [0, 1] |
//! | `coverage_life`, `coverage_health`, `coverage_property` | one-hot coverage type |
//! | `coverage_level` | 0: basic, 1: standard, 2: premium |

use chrono::NaiveDate;

use crate::quote::{CoverageLevel, CoverageType, QuoteInput};

/// The scale of `normalized_amount`: the features' own constant, not the API's limit on
/// `estimated_amount`. It has the value that limit had (50,000,000) when the model was
/// trained, so the trained model's inputs are unchanged; it stays fixed if the limit changes,
/// since changing it changes every quote's input to the model and needs a retrained model.
pub const AMOUNT_SCALE: f64 = 50_000_000.0;

/// Feature names in the order of [`features`]'s output: the engine checks them by name.
pub const FEATURE_NAMES: [&str; 13] = [
    "user_age",
    "age_group",
    "log_annual_revenue",
    "num_employees",
    "revenue_per_employee",
    "coverage_to_revenue",
    "business_age_years",
    "normalized_amount",
    "risk_score",
    "coverage_life",
    "coverage_health",
    "coverage_property",
    "coverage_level",
];

pub type Features = [f64; FEATURE_NAMES.len()];

/// The features of one quote created on `created_on`.
pub fn features(q: &QuoteInput, created_on: NaiveDate) -> Features {
    let age = f64::from(q.user_age);
    let revenue = q.annual_revenue as f64;
    let employees = f64::from(q.num_employees);
    let amount = q.estimated_amount as f64;
    let business_age = business_age_years(q.founded_at, created_on);
    let coverage_to_revenue = amount / revenue.max(1.0);
    let one_hot = |t: CoverageType| if q.coverage_type == t { 1.0 } else { 0.0 };
    [
        age,
        age_group(q.user_age),
        revenue.ln_1p(),
        employees,
        revenue / employees,
        coverage_to_revenue,
        business_age,
        amount / AMOUNT_SCALE,
        risk_score(age, employees, business_age, coverage_to_revenue),
        one_hot(CoverageType::Life),
        one_hot(CoverageType::Health),
        one_hot(CoverageType::Property),
        match q.coverage_level {
            CoverageLevel::Basic => 0.0,
            CoverageLevel::Standard => 1.0,
            CoverageLevel::Premium => 2.0,
        },
    ]
}

fn age_group(age: i32) -> f64 {
    match age {
        ..25 => 0.0,
        25..35 => 1.0,
        35..45 => 2.0,
        45..55 => 3.0,
        55..65 => 4.0,
        _ => 5.0,
    }
}

fn business_age_years(founded_at: NaiveDate, created_on: NaiveDate) -> f64 {
    ((created_on - founded_at).num_days().max(0) as f64) / 365.25
}

/// A heuristic underwriting risk in [0, 1]: the weighted mean of four risks, each in [0, 1]:
/// distance of the applicant's age from 40 (0.3), a small headcount (0.2), a young business
/// (0.25), and cover that is large beside revenue (0.25).
pub fn risk_score(age: f64, employees: f64, business_age: f64, coverage_to_revenue: f64) -> f64 {
    let age_risk = ((age - 40.0).abs() / 45.0).min(1.0);
    let size_risk = 1.0 / (1.0 + employees.log10());
    let youth_risk = 1.0 / (1.0 + business_age);
    let leverage_risk = (coverage_to_revenue / 10.0).min(1.0);
    0.3 * age_risk + 0.2 * size_risk + 0.25 * youth_risk + 0.25 * leverage_risk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{GenerateParams, generate};

    #[test]
    fn features_are_finite_and_risk_is_bounded() {
        let created = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let params = GenerateParams {
            seed: Some(5),
            ..GenerateParams::new(1000)
        };
        for q in generate(&params) {
            let f = features(&q, created);
            assert!(f.iter().all(|v| v.is_finite()), "{q:?} -> {f:?}");
            assert!((0.0..=1.0).contains(&f[8]));
            assert_eq!(f[9] + f[10] + f[11], 1.0);
        }
    }

    #[test]
    fn zero_revenue_and_same_day_founding_are_defined() {
        let q = QuoteInput {
            coverage_type: CoverageType::Property,
            coverage_level: CoverageLevel::Premium,
            estimated_amount: 1000,
            user_age: 18,
            annual_revenue: 0,
            num_employees: 1,
            founded_at: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        };
        let f = features(&q, q.founded_at);
        assert_eq!(
            f[..8],
            [18.0, 0.0, 0.0, 1.0, 0.0, 1000.0, 0.0, 1000.0 / 50_000_000.0]
        );
        assert_eq!(f[12], 2.0);
    }
}
