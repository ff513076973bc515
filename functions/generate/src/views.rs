//! What the API answers: the response bodies, built here and nowhere else.

use chrono::{DateTime, Utc};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use quote_pipeline::ports::BatchProgress;
use quote_pipeline::quote::{Pricing, Quote, QuoteInput, QuoteStatus};
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
/// members: a status, and `null` for whatever that status does not have.
#[derive(Debug, Serialize)]
pub struct QuoteView<'q> {
    pub id: Uuid,
    pub user_id: &'q str,
    #[serde(flatten)]
    pub input: &'q QuoteInput,
    pub status: QuoteStatus,
    pub created_at: DateTime<Utc>,
    pub premium: Option<f64>,
    pub confidence: Option<f64>,
    pub model_version: Option<&'q str>,
    pub scored_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<&'q str>,
}

impl<'q> From<&'q Quote> for QuoteView<'q> {
    fn from(quote: &'q Quote) -> Self {
        let mut view = QuoteView {
            id: quote.id,
            user_id: &quote.user_id,
            input: &quote.input,
            status: quote.status(),
            created_at: quote.created_at,
            premium: None,
            confidence: None,
            model_version: None,
            scored_at: None,
            failure_reason: None,
        };
        match &quote.pricing {
            Pricing::Pending => {}
            Pricing::Scored {
                premium,
                confidence,
                model_version,
                scored_at,
            } => {
                view.premium = Some(*premium);
                view.confidence = Some(*confidence);
                view.model_version = Some(model_version);
                view.scored_at = Some(*scored_at);
            }
            Pricing::Failed { reason } => view.failure_reason = Some(reason),
        }
        view
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
    use quote_pipeline::quote::{CoverageLevel, CoverageType};
    use serde_json::json;

    use super::*;

    #[test]
    fn a_quote_is_answered_with_the_documented_fields_only() {
        let created_at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let mut quote = Quote::new_pending(
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
        );
        quote.pricing = Pricing::Scored {
            premium: 1234.5,
            confidence: 0.75,
            model_version: "xgb-0123456789ab".into(),
            scored_at: created_at,
        };
        quote.enqueue_attempts = 3;
        assert_eq!(
            serde_json::to_value(QuoteView::from(&quote)).unwrap(),
            json!({
                "id": quote.id, "user_id": "ann", "coverage_type": "life",
                "coverage_level": "basic", "estimated_amount": 5000, "user_age": 30,
                "annual_revenue": 0, "num_employees": 1, "founded_at": "2020-01-02",
                "status": "scored", "created_at": "2026-05-28T20:26:40Z", "premium": 1234.5,
                "confidence": 0.75, "model_version": "xgb-0123456789ab",
                "scored_at": "2026-05-28T20:26:40Z", "failure_reason": null
            })
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
        const PRICING: [&str; 6] = [
            "status",
            "premium",
            "confidence",
            "model_version",
            "scored_at",
            "failure_reason",
        ];
        let pricing = |quote: &Quote| {
            let mut view = serde_json::to_value(QuoteView::from(quote)).unwrap();
            let members = view.as_object_mut().unwrap();
            members.retain(|name, _| PRICING.contains(&name.as_str()));
            view
        };
        assert_eq!(
            pricing(&quote),
            json!({
                "status": "pending_ml", "premium": null, "confidence": null,
                "model_version": null, "scored_at": null, "failure_reason": null
            })
        );
        quote.pricing = Pricing::Failed {
            reason: "refused".into(),
        };
        assert_eq!(
            pricing(&quote),
            json!({
                "status": "failed", "premium": null, "confidence": null,
                "model_version": null, "scored_at": null, "failure_reason": "refused"
            })
        );
    }
}
