//! The `score` function: prices the quotes named by a batch of SQS messages.
//!
//! A message that cannot be read fails alone. The quotes of all the others are scored
//! together (one query, one predictor pass, one update), and the answer is an SQS partial
//! batch response naming exactly the messages that did not finish, so only they come back.
//! The write completes the batches whose last quotes it ended; once it is committed, their
//! `QuoteBatchCompleted` events are published (`quote_pipeline::completion`); an event not
//! published (a failure or a crash after the write) is published by reconcile.
//!
//! Messages marked as a re-price (an operator's, sent by reconcile) name scored quotes: they
//! are priced in a pass of their own (`scoring::reprice`), which completes no batch.
//!
//! With a shadow model (`SHADOW_MODEL_DIR`), always evaluated in process whatever the live
//! model's mode, the quotes scored are priced by it too and its prices recorded apart, never
//! shown (`quote_pipeline::shadow`); its failures are counted, and change no answer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use quote_pipeline::budget;
use quote_pipeline::completion;
use quote_pipeline::events::EventPublisher;
use quote_pipeline::metrics::{self, Count, Metrics, Percentage, Time};
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::queue::QuoteMessage;
use quote_pipeline::scoring::{self, Predictor};
use quote_pipeline::store::{BatchStore, QuoteStore, ShadowStore};
use uuid::Uuid;

/// EMF takes at most 100 values of one metric in a document.
const MAX_METRIC_VALUES: usize = 100;

/// The function's clients, built once per container, and how long a price holds.
pub struct App<S, P, E> {
    pub store: S,
    pub predictor: P,
    pub price_validity: Duration,
    /// Where batch completion events go.
    pub events: E,
    /// The shadow model, if any: its prices are recorded, never shown.
    pub shadow: Option<EmbeddedModel>,
}

/// Handles one batch and writes its metrics to the log.
pub async fn handle<S: QuoteStore + BatchStore + ShadowStore, P: Predictor, E: EventPublisher>(
    app: &App<S, P, E>,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let (response, metrics) = process(app, event).await;
    metrics.flush();
    response
}

/// Handles one batch; returns the partial batch response and the invocation's metrics.
pub async fn process<S: QuoteStore + BatchStore + ShadowStore, P: Predictor, E: EventPublisher>(
    app: &App<S, P, E>,
    event: LambdaEvent<SqsEvent>,
) -> (SqsBatchResponse, Metrics) {
    let mut metrics = Metrics::for_function("score");
    let cold_start = metrics::cold_start();
    metrics
        .property("requestId", event.context.request_id.as_str())
        .cold_start(cold_start);
    metrics.count(Count::BatchSize, event.payload.records.len() as u64);
    // The predictor stops early enough to leave the final write its worst case.
    let deadline = budget::score_predictor_deadline(
        budget::invocation_deadline(event.context.deadline),
        Instant::now(),
    );
    tracing::debug!(
        budget_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
        "batch received"
    );
    let mut failed: Vec<String> = Vec::new();
    let mut messages: Vec<(String, Vec<Uuid>)> = Vec::new();
    let mut reprices: Vec<(String, Vec<Uuid>)> = Vec::new();
    for record in event.payload.records {
        let Some(id) = record.message_id else {
            // Nothing to report a record without an id by; it cannot be retried alone.
            tracing::error!("SQS record without a message id skipped");
            continue;
        };
        match QuoteMessage::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(message) if message.reprice => reprices.push((id, message.quote_ids)),
            Ok(message) => messages.push((id, message.quote_ids)),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "unreadable message");
                failed.push(id);
            }
        }
    }
    // A batch of re-prices alone has no pending quotes to look for.
    if !messages.is_empty() || reprices.is_empty() {
        let ids = distinct_ids(&messages);
        let scored = scoring::score(
            &app.store,
            &app.predictor,
            app.shadow.as_ref(),
            &ids,
            deadline,
            app.price_validity,
        )
        .await;
        let scored = match scored {
            Ok(report) => completion::publish(&app.store, &app.events, &report.completed)
                .await
                .map(|completion| (report, completion)),
            Err(e) => Err(e),
        };
        match scored {
            Ok((report, completion)) => {
                metrics
                    .count(Count::QuotesScored, report.scored)
                    .count(Count::QuotesFailed, report.failed)
                    .count(Count::MlEngineErrors, report.call_errors.into())
                    .count(
                        Count::MlEnginePermanentErrors,
                        report.permanent_errors.into(),
                    )
                    .count(
                        Count::MlEngineSchemaMismatches,
                        report.schema_mismatches.into(),
                    )
                    .count(Count::PremiumsRefused, report.refused_premiums)
                    .count(Count::BatchesCompleted, completion.completed)
                    .count(Count::BatchEventsPublished, completion.published)
                    .count(
                        Count::BatchEventPublishFailures,
                        completion.publish_failures,
                    )
                    .time(Time::DatabaseTime, report.database_time);
                if let Some(pricing) = report.pricing_time {
                    metrics.time(Time::PricingTime, pricing);
                }
                for call in report.call_times.iter().take(MAX_METRIC_VALUES) {
                    metrics.time(Time::MlEngineLatency, *call);
                }
                if let Some(shadow) = &report.shadow {
                    metrics
                        .count(Count::ShadowPricesRecorded, shadow.recorded)
                        .count(Count::ShadowFailures, shadow.failures);
                    for difference in shadow.differences.iter().take(MAX_METRIC_VALUES) {
                        metrics.percent(Percentage::ShadowPriceDifference, *difference);
                    }
                }
                tracing::info!(
                    cold_start,
                    messages = messages.len(),
                    quotes = ids.len(),
                    scored = report.scored,
                    failed = report.failed,
                    unfinished = report.unfinished.len(),
                    "batch scored"
                );
                failed.extend(
                    messages
                        .into_iter()
                        .filter(|(_, ids)| ids.iter().any(|id| report.unfinished.contains(id)))
                        .map(|(message_id, _)| message_id),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "scoring or batch completion failed; every message will come back");
                failed.extend(messages.into_iter().map(|(message_id, _)| message_id));
            }
        }
    }
    if !reprices.is_empty() {
        let ids = distinct_ids(&reprices);
        let repriced = scoring::reprice(
            &app.store,
            &app.predictor,
            &ids,
            deadline,
            app.price_validity,
        )
        .await;
        match repriced {
            Ok(report) => {
                metrics
                    .count(Count::QuotesRepriced, report.repriced)
                    .count(Count::RepricesFailed, report.reprices_failed)
                    .count(Count::PremiumsRefused, report.refused_premiums)
                    .count(Count::MlEngineErrors, report.call_errors.into())
                    .count(
                        Count::MlEnginePermanentErrors,
                        report.permanent_errors.into(),
                    )
                    .count(
                        Count::MlEngineSchemaMismatches,
                        report.schema_mismatches.into(),
                    )
                    .time(Time::DatabaseTime, report.database_time);
                tracing::info!(
                    messages = reprices.len(),
                    quotes = ids.len(),
                    repriced = report.repriced,
                    failed = report.reprices_failed,
                    unfinished = report.unfinished.len(),
                    "re-price scored"
                );
                failed.extend(
                    reprices
                        .into_iter()
                        .filter(|(_, ids)| ids.iter().any(|id| report.unfinished.contains(id)))
                        .map(|(message_id, _)| message_id),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "re-pricing failed; its messages will come back");
                failed.extend(reprices.into_iter().map(|(message_id, _)| message_id));
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    (response, metrics)
}

/// The distinct quote ids of `messages`.
fn distinct_ids(messages: &[(String, Vec<Uuid>)]) -> Vec<Uuid> {
    messages
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prices every quote at the premium its index names, in the order asked.
    struct FixedPremiums(Vec<f64>);

    impl Predictor for FixedPremiums {
        async fn predict(
            &self,
            quotes: &[(Uuid, quote_pipeline::features::Features)],
            _deadline: Instant,
        ) -> scoring::Predicted {
            scoring::Predicted {
                predictions: quotes
                    .iter()
                    .zip(&self.0)
                    .map(|((quote_id, _), &premium)| scoring::Prediction {
                        quote_id: *quote_id,
                        premium,
                        premium_low: premium,
                        premium_high: premium,
                        confidence: 0.5,
                        model_version: "xgb-test".into(),
                    })
                    .collect(),
                ..scoring::Predicted::default()
            }
        }
    }

    #[tokio::test]
    async fn a_premium_at_or_below_zero_or_not_finite_is_never_written_but_fails_its_quote() {
        use quote_pipeline::quote::{Pricing, Quote};
        use quote_pipeline::store::QuoteStore as _;

        let store = testkit::MemoryStore::default();
        let quotes: Vec<Quote> =
            quote_pipeline::generator::generate(&quote_pipeline::generator::GenerateParams {
                seed: Some(1),
                ..quote_pipeline::generator::GenerateParams::new(5)
            })
            .into_iter()
            .map(|input| Quote::new_pending("alice", input, chrono::Utc::now()))
            .collect();
        store
            .insert(
                Uuid::now_v7(),
                &quotes,
                None,
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .unwrap();
        // `pending` answers in insertion order, so the premiums go to the quotes in order.
        let premiums = vec![812.5, 0.0, -3.0, f64::NAN, f64::INFINITY];
        let app = App {
            store: store.clone(),
            predictor: FixedPremiums(premiums.clone()),
            price_validity: testkit::PRICE_VALIDITY,
            events: testkit::MemoryEvents::default(),
            shadow: None,
        };
        let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
        let message = aws_sdk_sqs::types::Message::builder()
            .message_id("m-1")
            .body(quote_pipeline::queue::QuoteMessage::new(ids).to_body())
            .build();
        let event = LambdaEvent::new(
            testkit::sqs_event(&[message]),
            testkit::lambda_context(Duration::from_secs(30)),
        );
        let (response, metrics) = process(&app, event).await;

        assert!(
            response.batch_item_failures.is_empty(),
            "every quote is done"
        );
        let stored = store.quotes();
        assert!(matches!(stored[0].pricing, Pricing::Scored { premium, .. } if premium == 812.5));
        for (quote, premium) in stored[1..].iter().zip(&premiums[1..]) {
            let Pricing::Failed { reason } = &quote.pricing else {
                panic!("{premium} was written: {:?}", quote.pricing);
            };
            assert_eq!(
                reason,
                &format!(
                    "model xgb-test priced it at {premium}, not a positive finite premium; \
                     no price was written"
                )
            );
        }
        let emf = metrics.to_emf(0);
        assert_eq!(emf["PremiumsRefused"], 4.0);
        assert_eq!(
            (emf["QuotesScored"].clone(), emf["QuotesFailed"].clone()),
            (1.0.into(), 4.0.into())
        );
    }

    #[tokio::test]
    async fn a_reprice_gives_the_new_price_once_and_a_refused_one_keeps_the_price_it_had() {
        use quote_pipeline::quote::{Pricing, Quote};
        use quote_pipeline::store::{Outcome, QuoteStore as _};

        let store = testkit::MemoryStore::default();
        let quotes: Vec<Quote> =
            quote_pipeline::generator::generate(&quote_pipeline::generator::GenerateParams {
                seed: Some(2),
                ..quote_pipeline::generator::GenerateParams::new(2)
            })
            .into_iter()
            .map(|input| Quote::new_pending("alice", input, chrono::Utc::now()))
            .collect();
        let batch = Uuid::now_v7();
        store
            .insert(
                batch,
                &quotes,
                None,
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .unwrap();
        let old: Vec<Outcome> = quotes
            .iter()
            .map(|q| {
                Outcome::Scored(scoring::Prediction {
                    quote_id: q.id,
                    premium: 500.0,
                    premium_low: 400.0,
                    premium_high: 600.0,
                    confidence: 0.8,
                    model_version: "xgb-old".into(),
                })
            })
            .collect();
        store.record(&old, testkit::PRICE_VALIDITY).await.unwrap();
        let ids: Vec<Uuid> = quotes.iter().map(|q| q.id).collect();
        // The first quote is priced 812.5 by the new model, the second 0: refused.
        let app = App {
            store: store.clone(),
            predictor: FixedPremiums(vec![812.5, 0.0]),
            price_validity: testkit::PRICE_VALIDITY,
            events: testkit::MemoryEvents::default(),
            shadow: None,
        };
        let reprice = || {
            let message = aws_sdk_sqs::types::Message::builder()
                .message_id("m-1")
                .body(quote_pipeline::queue::QuoteMessage::reprice(ids.clone()).to_body())
                .build();
            LambdaEvent::new(
                testkit::sqs_event(&[message]),
                testkit::lambda_context(Duration::from_secs(30)),
            )
        };
        let (response, metrics) = process(&app, reprice()).await;
        assert!(response.batch_item_failures.is_empty());
        let emf = metrics.to_emf(0);
        assert_eq!(
            (
                &emf["QuotesRepriced"],
                &emf["RepricesFailed"],
                &emf["PremiumsRefused"]
            ),
            (&1.0.into(), &1.0.into(), &1.0.into())
        );
        assert!(
            emf.get("QuotesFailed").is_none(),
            "a re-price fails no quote"
        );
        let priced = |i: usize| match store.quotes()[i].pricing.clone() {
            Pricing::Scored {
                premium,
                model_version,
                ..
            } => (premium, model_version),
            other => panic!("not scored: {other:?}"),
        };
        assert_eq!(priced(0), (812.5, "xgb-test".to_owned()));
        assert_eq!(
            priced(1),
            (500.0, "xgb-old".to_owned()),
            "the refused one keeps its price"
        );
        let (_, history) = store
            .get_with_history("alice", ids[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            history
                .iter()
                .map(|h| (h.model_version.as_str(), h.premium))
                .collect::<Vec<_>>(),
            [("xgb-old", 500.0)]
        );

        let (_, metrics) = process(&app, reprice()).await;
        assert_eq!(metrics.to_emf(0)["QuotesRepriced"], 0.0, "once per version");
        assert_eq!(priced(0), (812.5, "xgb-test".to_owned()));
        assert!(
            app.events.published().is_empty(),
            "no batch completed again"
        );
    }
}
