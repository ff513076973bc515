//! What the API answers: the response bodies, built here and nowhere else.

use chrono::{DateTime, Utc};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use quote_pipeline::money::{CURRENCY, Money};
use quote_pipeline::ports::BatchProgress;
use quote_pipeline::quote::{PriceRecord, Pricing, Quote, QuoteInput, QuoteStatus};
use serde::Serialize;
use uuid::Uuid;

/// The 202 of a write: its batch and the new quotes' ids, on their way to scoring.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub batch_id: Uuid,
    pub ids: Vec<Uuid>,
    pub count: usize,
    pub status: QuoteStatus,
}

impl Accepted {
    pub fn new(batch_id: Uuid, ids: &[Uuid]) -> Self {
        Accepted {
            batch_id,
            ids: ids.to_vec(),
            count: ids.len(),
            status: QuoteStatus::PendingMl,
        }
    }
}

/// A quote as its owner sees it: `openapi.yaml`'s `Quote`. The record's internal fields
/// (`enqueue_attempts`) are not in it; its [`Pricing`] is flattened back to the documented
/// members: a status, and `null` for whatever that status does not have. Prices are
/// [`Money`], rounded to cents here from the model's unrounded output that the store keeps.
#[derive(Debug, Serialize)]
pub struct QuoteView<'q> {
    pub id: Uuid,
    pub user_id: &'q str,
    #[serde(flatten)]
    pub input: &'q QuoteInput,
    pub status: QuoteStatus,
    pub created_at: DateTime<Utc>,
    pub premium: Option<Money>,
    pub premium_low: Option<Money>,
    pub premium_high: Option<Money>,
    pub currency: Option<&'static str>,
    pub confidence: Option<f64>,
    pub model_version: Option<&'q str>,
    pub scored_at: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub price_expired: Option<bool>,
    pub failure_reason: Option<&'q str>,
}

impl<'q> QuoteView<'q> {
    /// The quote as seen at `now`, which tells whether its price has expired.
    pub fn at(quote: &'q Quote, now: DateTime<Utc>) -> Self {
        let mut view = QuoteView {
            id: quote.id,
            user_id: &quote.user_id,
            input: &quote.input,
            status: quote.status(),
            created_at: quote.created_at,
            premium: None,
            premium_low: None,
            premium_high: None,
            currency: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            valid_until: None,
            price_expired: quote.pricing.expired(now),
            failure_reason: None,
        };
        // The model's premiums are finite and far below Money's bound of 92 trillion; one that
        // were not would be answered as null rather than as a made-up amount.
        let money = |amount: f64| Money::from_f64(amount).ok();
        match &quote.pricing {
            Pricing::Pending => {}
            Pricing::Scored {
                premium,
                range,
                confidence,
                model_version,
                scored_at,
                valid_until,
            } => {
                view.premium = money(*premium);
                view.premium_low = range.and_then(|r| money(r.low));
                view.premium_high = range.and_then(|r| money(r.high));
                view.currency = Some(CURRENCY);
                view.confidence = Some(*confidence);
                view.model_version = Some(model_version);
                view.scored_at = Some(*scored_at);
                view.valid_until = *valid_until;
            }
            Pricing::Failed { reason } => view.failure_reason = Some(reason),
        }
        view
    }
}

/// One price of a quote's history: `openapi.yaml`'s `Price`, its money as the quote's.
#[derive(Debug, Serialize)]
pub struct PriceView<'q> {
    pub model_version: &'q str,
    pub premium: Option<Money>,
    pub premium_low: Option<Money>,
    pub premium_high: Option<Money>,
    pub currency: &'static str,
    pub confidence: f64,
    pub priced_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// When a re-price replaced it; `null` for the current price.
    pub superseded_at: Option<DateTime<Utc>>,
}

impl<'q> From<&'q PriceRecord> for PriceView<'q> {
    fn from(price: &'q PriceRecord) -> Self {
        let money = |amount: f64| Money::from_f64(amount).ok();
        PriceView {
            model_version: &price.model_version,
            premium: money(price.premium),
            premium_low: price.range.and_then(|r| money(r.low)),
            premium_high: price.range.and_then(|r| money(r.high)),
            currency: CURRENCY,
            confidence: price.confidence,
            priced_at: price.priced_at,
            valid_until: price.valid_until,
            superseded_at: price.superseded_at,
        }
    }
}

/// A batch's progress: `openapi.yaml`'s `Batch`. `finished` once no quote is pending and the
/// batch was marked completed (when its completion event is sent), `finished_at` then.
#[derive(Debug, Serialize)]
pub struct BatchView {
    pub batch_id: Uuid,
    pub size: u32,
    pub counts: BatchCounts,
    pub finished: bool,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A batch's quotes by status.
#[derive(Debug, Serialize)]
pub struct BatchCounts {
    pub pending_ml: u32,
    pub scored: u32,
    pub failed: u32,
}

impl From<&BatchProgress> for BatchView {
    fn from(batch: &BatchProgress) -> Self {
        BatchView {
            batch_id: batch.id,
            size: batch.size,
            counts: BatchCounts {
                pending_ml: batch.pending,
                scored: batch.scored,
                failed: batch.failed,
            },
            finished: batch.completed_at.is_some(),
            created_at: batch.created_at,
            finished_at: batch.completed_at,
        }
    }
}

/// A page of quotes, newest first, and where the next page starts.
#[derive(Debug, Serialize)]
pub struct QuotePage<'q> {
    pub quotes: Vec<QuoteView<'q>>,
    pub next_cursor: Option<String>,
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_text(
        status,
        serde_json::to_string(value).expect("a response always serializes"),
    )
}

pub fn json_text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use quote_pipeline::quote::{CoverageLevel, CoverageType, PriceRange};
    use serde_json::json;

    use super::*;

    fn life_quote(created_at: DateTime<Utc>) -> Quote {
        Quote::new_pending(
            "ann",
            QuoteInput {
                coverage_type: CoverageType::Life,
                coverage_level: CoverageLevel::Basic,
                estimated_amount: 5000,
                user_age: 30,
                annual_revenue: 0,
                num_employees: 1,
                founded_at: NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
            },
            created_at,
        )
    }

    #[test]
    fn a_quote_is_answered_with_the_documented_fields_only() {
        let created_at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let mut quote = life_quote(created_at);
        let valid_until = created_at + chrono::Duration::days(30);
        quote.pricing = Pricing::Scored {
            premium: 660.1643676757812,
            range: Some(PriceRange {
                low: 512.125,
                high: 801.0049,
            }),
            confidence: 0.75,
            model_version: "xgb-0123456789ab".into(),
            scored_at: created_at,
            valid_until: Some(valid_until),
        };
        quote.enqueue_attempts = 3;
        assert_eq!(
            serde_json::to_value(QuoteView::at(&quote, created_at)).unwrap(),
            json!({
                "id": quote.id, "user_id": "ann", "coverage_type": "life",
                "coverage_level": "basic", "estimated_amount": 5000, "user_age": 30,
                "annual_revenue": 0, "num_employees": 1, "founded_at": "2020-01-02",
                "status": "scored", "created_at": "2026-05-28T20:26:40Z",
                "premium": "660.16", "premium_low": "512.13", "premium_high": "801.00",
                "currency": "USD", "confidence": 0.75, "model_version": "xgb-0123456789ab",
                "scored_at": "2026-05-28T20:26:40Z", "valid_until": "2026-06-27T20:26:40Z",
                "price_expired": false, "failure_reason": null
            })
        );
        let later = serde_json::to_value(QuoteView::at(&quote, valid_until)).unwrap();
        assert_eq!(later["price_expired"], true);
    }

    #[test]
    fn a_quote_scored_before_ranges_and_validity_were_kept_answers_null_for_them() {
        let created_at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let mut quote = life_quote(created_at);
        quote.pricing = Pricing::Scored {
            premium: 1234.5,
            range: None,
            confidence: 0.75,
            model_version: "xgb-0123456789ab".into(),
            scored_at: created_at,
            valid_until: None,
        };
        let view = serde_json::to_value(QuoteView::at(&quote, created_at)).unwrap();
        assert_eq!(
            [
                "premium",
                "premium_low",
                "premium_high",
                "currency",
                "valid_until",
                "price_expired"
            ]
            .map(|name| view[name].clone()),
            [
                json!("1234.50"),
                json!(null),
                json!(null),
                json!("USD"),
                json!(null),
                json!(null)
            ]
        );
    }

    #[test]
    fn a_pending_or_failed_quote_answers_null_for_what_it_lacks() {
        let mut quote = Quote::new_pending(
            "ann",
            QuoteInput {
                coverage_type: CoverageType::Health,
                coverage_level: CoverageLevel::Premium,
                estimated_amount: 5000,
                user_age: 30,
                annual_revenue: 0,
                num_employees: 1,
                founded_at: NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
            },
            DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
        );
        const PRICING: [&str; 11] = [
            "status",
            "premium",
            "premium_low",
            "premium_high",
            "currency",
            "confidence",
            "model_version",
            "scored_at",
            "valid_until",
            "price_expired",
            "failure_reason",
        ];
        let pricing = |quote: &Quote| {
            let mut view = serde_json::to_value(QuoteView::at(quote, Utc::now())).unwrap();
            let members = view.as_object_mut().unwrap();
            members.retain(|name, _| PRICING.contains(&name.as_str()));
            view
        };
        assert_eq!(
            pricing(&quote),
            json!({
                "status": "pending_ml", "premium": null, "premium_low": null,
                "premium_high": null, "currency": null, "confidence": null,
                "model_version": null, "scored_at": null, "valid_until": null,
                "price_expired": null, "failure_reason": null
            })
        );
        quote.pricing = Pricing::Failed {
            reason: "refused".into(),
        };
        assert_eq!(
            pricing(&quote),
            json!({
                "status": "failed", "premium": null, "premium_low": null,
                "premium_high": null, "currency": null, "confidence": null,
                "model_version": null, "scored_at": null, "valid_until": null,
                "price_expired": null, "failure_reason": "refused"
            })
        );
    }
}
