//! The quote: what a client asks to be priced, its validation, and its life cycle.
//!
//! Validation reads raw values (a JSON object's members or a CSV record's cells) and reports
//! every problem at once, each naming its field, so a client fixes a request in one round.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bounds a quote must respect. Amounts are whole currency units.
pub mod limits {
    use std::ops::RangeInclusive;

    pub const USER_AGE: RangeInclusive<i64> = 18..=85;
    pub const ESTIMATED_AMOUNT: RangeInclusive<i64> = 1_000..=50_000_000;
    pub const ANNUAL_REVENUE: RangeInclusive<i64> = 0..=100_000_000_000;
    pub const NUM_EMPLOYEES: RangeInclusive<i64> = 1..=1_000_000;
    /// The oldest founding date accepted.
    pub const FOUNDED_AT_MIN: (i32, u32, u32) = (1800, 1, 1);
    pub const USER_ID_MAX_LEN: usize = 256;
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("must be one of {}", [$($text),+].join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(CoverageType { Life => "life", Health => "health", Property => "property" });
string_enum!(CoverageLevel { Basic => "basic", Standard => "standard", Premium => "premium" });
string_enum!(
    /// `pending_ml` until the score step prices it (`scored`) or gives up on it (`failed`).
    QuoteStatus { PendingMl => "pending_ml", Scored => "scored", Failed => "failed" }
);

/// The facts a client supplies for one quote, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteInput {
    pub coverage_type: CoverageType,
    pub coverage_level: CoverageLevel,
    pub estimated_amount: i64,
    pub user_age: i32,
    pub annual_revenue: i64,
    pub num_employees: i32,
    pub founded_at: NaiveDate,
}

/// A stored quote. Not an API body: the API answers a view of it (`generate`'s `views.rs`),
/// so internal fields such as `enqueue_attempts` stay internal.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub id: Uuid,
    pub user_id: String,
    pub input: QuoteInput,
    pub created_at: DateTime<Utc>,
    /// Where the quote is in its life, with what that state has and nothing else.
    pub pricing: Pricing,
    pub enqueue_attempts: i32,
}

/// What pricing made of a quote: its status with the facts of that status, so a scored quote
/// always has its premium and a failed one its reason, and neither can have the other's.
#[derive(Debug, Clone, PartialEq)]
pub enum Pricing {
    /// Waiting for the score step (`pending_ml`).
    Pending,
    /// Priced by the model: the unrounded outputs, as audits need them (clients get
    /// [`Money`](crate::money::Money)).
    Scored {
        premium: f64,
        /// The 10-90% range around `premium`; `None` only for a quote scored before ranges
        /// were kept (or by an older deploy during a rollback).
        range: Option<PriceRange>,
        confidence: f64,
        model_version: String,
        scored_at: DateTime<Utc>,
        /// When the price stops being an offer; `None` only for a quote scored by an older
        /// deploy during a rollback.
        valid_until: Option<DateTime<Utc>>,
    },
    /// Given up on: the model refused it, or it stayed pending through every enqueue.
    Failed { reason: String },
}

/// The model's 10th and 90th percentile premiums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceRange {
    pub low: f64,
    pub high: f64,
}

/// One price a quote had: its current one, or one a re-price with another model superseded.
/// Unrounded, like [`Pricing::Scored`].
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRecord {
    pub model_version: String,
    pub premium: f64,
    pub range: Option<PriceRange>,
    pub confidence: f64,
    /// When the model gave it.
    pub priced_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// When a re-price replaced it; `None` for the current price.
    pub superseded_at: Option<DateTime<Utc>>,
}

impl Pricing {
    /// The current price as a record of the history, if the quote is scored.
    pub fn current_price(&self) -> Option<PriceRecord> {
        match self {
            Pricing::Scored {
                premium,
                range,
                confidence,
                model_version,
                scored_at,
                valid_until,
            } => Some(PriceRecord {
                model_version: model_version.clone(),
                premium: *premium,
                range: *range,
                confidence: *confidence,
                priced_at: *scored_at,
                valid_until: *valid_until,
                superseded_at: None,
            }),
            _ => None,
        }
    }

    pub fn status(&self) -> QuoteStatus {
        match self {
            Pricing::Pending => QuoteStatus::PendingMl,
            Pricing::Scored { .. } => QuoteStatus::Scored,
            Pricing::Failed { .. } => QuoteStatus::Failed,
        }
    }

    /// Whether the price has expired at `now`: it holds up to, not at, `valid_until`. `None`
    /// when there is no price, or no validity was recorded with it.
    pub fn expired(&self, now: DateTime<Utc>) -> Option<bool> {
        match self {
            Pricing::Scored {
                valid_until: Some(valid_until),
                ..
            } => Some(now >= *valid_until),
            _ => None,
        }
    }
}

impl Quote {
    /// A new quote waiting to be scored. Its UUIDv7 id is made here, so a bulk insert needs no
    /// round trip for ids and ids sort by creation time.
    pub fn new_pending(user_id: &str, input: QuoteInput, now: DateTime<Utc>) -> Self {
        Quote {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            input,
            created_at: now,
            pricing: Pricing::Pending,
            // The write is followed at once by the first enqueue.
            enqueue_attempts: 1,
        }
    }

    pub fn status(&self) -> QuoteStatus {
        self.pricing.status()
    }
}

/// One problem with one field of a request (or one cell of a CSV line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A raw value of one field, before validation.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Missing,
    /// A CSV cell: numbers arrive as text.
    Text(&'a str),
    /// A JSON member: numbers must be JSON numbers.
    Json(&'a serde_json::Value),
}

/// The names of the fields of [`QuoteInput`], in the order a CSV import expects them.
pub const INPUT_FIELDS: [&str; 7] = [
    "coverage_type",
    "coverage_level",
    "estimated_amount",
    "user_age",
    "annual_revenue",
    "num_employees",
    "founded_at",
];

/// Validates one quote's fields; `today` bounds the founding date.
pub fn validate<'a>(
    field: impl Fn(&str) -> Raw<'a>,
    today: NaiveDate,
) -> Result<QuoteInput, Vec<FieldError>> {
    let mut errors = Vec::new();
    let coverage_type = check(
        &mut errors,
        "coverage_type",
        parse_enum(field("coverage_type")),
    );
    let coverage_level = check(
        &mut errors,
        "coverage_level",
        parse_enum(field("coverage_level")),
    );
    let estimated_amount = check(
        &mut errors,
        "estimated_amount",
        parse_int(field("estimated_amount"), limits::ESTIMATED_AMOUNT),
    );
    let user_age = check(
        &mut errors,
        "user_age",
        parse_int(field("user_age"), limits::USER_AGE),
    );
    let annual_revenue = check(
        &mut errors,
        "annual_revenue",
        parse_int(field("annual_revenue"), limits::ANNUAL_REVENUE),
    );
    let num_employees = check(
        &mut errors,
        "num_employees",
        parse_int(field("num_employees"), limits::NUM_EMPLOYEES),
    );
    let founded_at = check(
        &mut errors,
        "founded_at",
        parse_founded_at(field("founded_at"), today),
    );
    match (
        coverage_type,
        coverage_level,
        estimated_amount,
        user_age,
        annual_revenue,
        num_employees,
        founded_at,
    ) {
        (Some(ct), Some(cl), Some(amount), Some(age), Some(revenue), Some(employees), Some(f))
            if errors.is_empty() =>
        {
            Ok(QuoteInput {
                coverage_type: ct,
                coverage_level: cl,
                estimated_amount: amount,
                // The ranges above fit in i32.
                user_age: age as i32,
                annual_revenue: revenue,
                num_employees: employees as i32,
                founded_at: f,
            })
        }
        _ => Err(errors),
    }
}

/// Validates a JSON object as one quote, rejecting members that are not quote fields.
pub fn validate_json(
    object: &serde_json::Map<String, serde_json::Value>,
    today: NaiveDate,
) -> Result<QuoteInput, Vec<FieldError>> {
    let unknown: Vec<FieldError> = object
        .keys()
        .filter(|key| !INPUT_FIELDS.contains(&key.as_str()))
        .map(|key| FieldError::new(key.as_str(), "is not a quote field"))
        .collect();
    let result = validate(
        |name| object.get(name).map_or(Raw::Missing, Raw::Json),
        today,
    );
    match (result, unknown.is_empty()) {
        (Ok(input), true) => Ok(input),
        (Ok(_), false) => Err(unknown),
        (Err(mut errors), _) => {
            errors.extend(unknown);
            Err(errors)
        }
    }
}

fn check<T>(errors: &mut Vec<FieldError>, name: &str, result: Result<T, String>) -> Option<T> {
    result
        .map_err(|message| errors.push(FieldError::new(name, message)))
        .ok()
}

fn text<'a>(raw: Raw<'a>) -> Result<&'a str, String> {
    match raw {
        Raw::Missing => Err("is required".into()),
        Raw::Text(s) if s.trim().is_empty() => Err("is required".into()),
        Raw::Text(s) => Ok(s.trim()),
        Raw::Json(serde_json::Value::String(s)) => Ok(s),
        Raw::Json(serde_json::Value::Null) => Err("is required".into()),
        Raw::Json(_) => Err("must be a string".into()),
    }
}

fn parse_enum<T: FromStr<Err = String>>(raw: Raw<'_>) -> Result<T, String> {
    text(raw)?.parse()
}

fn parse_int(raw: Raw<'_>, range: RangeInclusive<i64>) -> Result<i64, String> {
    let out_of_range = || {
        format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let value = match raw {
        Raw::Missing | Raw::Json(serde_json::Value::Null) => return Err("is required".into()),
        Raw::Text(s) if s.trim().is_empty() => return Err("is required".into()),
        Raw::Text(s) => s.trim().parse::<i64>().map_err(|_| out_of_range())?,
        Raw::Json(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(out_of_range)?,
        Raw::Json(_) => return Err("must be a number".into()),
    };
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range())
    }
}

fn parse_founded_at(raw: Raw<'_>, today: NaiveDate) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(text(raw)?, "%Y-%m-%d")
        .map_err(|_| "must be a date written YYYY-MM-DD".to_string())?;
    let (y, m, d) = limits::FOUNDED_AT_MIN;
    let earliest = NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date");
    if date > today {
        Err("must not be in the future".into())
    } else if date < earliest {
        Err(format!("must not be before {earliest}"))
    } else {
        Ok(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({
            "coverage_type": "life", "coverage_level": "standard", "estimated_amount": 250000,
            "user_age": 40, "annual_revenue": 1200000, "num_employees": 12,
            "founded_at": "2015-03-01"
        })
    }

    #[test]
    fn accepts_a_good_quote() {
        let input = validate_json(good().as_object().unwrap(), today()).unwrap();
        assert_eq!(input.coverage_type, CoverageType::Life);
        assert_eq!(input.num_employees, 12);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let body = json!({
            "coverage_type": "pet", "coverage_level": 3, "estimated_amount": 10.5,
            "user_age": 17, "annual_revenue": -1, "num_employees": 0,
            "founded_at": "2999-01-01", "colour": "red"
        });
        let errors = validate_json(body.as_object().unwrap(), today()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "coverage_type",
                "coverage_level",
                "estimated_amount",
                "user_age",
                "annual_revenue",
                "num_employees",
                "founded_at",
                "colour"
            ]
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let errors = validate_json(&serde_json::Map::new(), today()).unwrap_err();
        assert_eq!(errors.len(), INPUT_FIELDS.len());
        assert!(errors.iter().all(|e| e.message == "is required"));
    }

    #[test]
    fn csv_cells_parse_as_text() {
        let cells = ["health", "basic", "5000", "30", "0", "1", "2026-06-01"];
        let input = validate(
            |name| {
                let i = INPUT_FIELDS.iter().position(|f| *f == name).unwrap();
                Raw::Text(cells[i])
            },
            today(),
        )
        .unwrap();
        assert_eq!(input.annual_revenue, 0);
        assert_eq!(input.founded_at, today());
    }

    #[test]
    fn a_price_holds_until_its_valid_until_and_not_at_it() {
        let valid_until = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let scored = |valid_until: Option<DateTime<Utc>>| Pricing::Scored {
            premium: 100.0,
            range: Some(PriceRange {
                low: 90.0,
                high: 110.0,
            }),
            confidence: 0.9,
            model_version: "xgb-0123456789ab".into(),
            scored_at: DateTime::from_timestamp(1_777_000_000, 0).unwrap(),
            valid_until,
        };
        let second = chrono::Duration::seconds(1);
        let priced = scored(Some(valid_until));
        assert_eq!(priced.expired(valid_until - second), Some(false));
        assert_eq!(priced.expired(valid_until), Some(true));
        assert_eq!(priced.expired(valid_until + second), Some(true));
        assert_eq!(scored(None).expired(valid_until), None);
        assert_eq!(Pricing::Pending.expired(valid_until), None);
    }
}
