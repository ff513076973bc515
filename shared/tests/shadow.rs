//! The shadow step on in-memory fakes: what it records, what it counts as a failure, and that
//! none of it changes the live pass. What the SQL does (the key, redelivery, a refused write)
//! is tested against Postgres in `functions/score/tests/shadow.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quote_pipeline::features::Features;
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::ports::{ShadowStore, StoreError};
use quote_pipeline::pricing::{Outcome, Predicted, Prediction, Predictor};
use quote_pipeline::quote::{Pricing, Quote};
use quote_pipeline::scoring::score;
use quote_pipeline::shadow::shadow;
use testkit::MemoryStore;
use uuid::Uuid;

/// Prices the quotes, in the order asked, at `premiums`, under `version`; rejects those at
/// the positions in `reject`.
struct Model {
    version: &'static str,
    premiums: Vec<f64>,
    reject: Vec<usize>,
}

impl Model {
    fn new(version: &'static str, premiums: &[f64]) -> Self {
        Model {
            version,
            premiums: premiums.to_vec(),
            reject: Vec::new(),
        }
    }
}

impl Predictor for Model {
    async fn predict(&self, quotes: &[(Uuid, Features)], _deadline: Instant) -> Predicted {
        let version: Arc<str> = self.version.into();
        let mut predicted = Predicted::default();
        for (i, ((id, _), &premium)) in quotes.iter().zip(&self.premiums).enumerate() {
            if self.reject.contains(&i) {
                predicted
                    .rejected
                    .push((*id, "out of the model's domain".into()));
                continue;
            }
            predicted.predictions.push(Prediction {
                quote_id: *id,
                premium,
                premium_low: premium * 0.8,
                premium_high: premium * 1.25,
                confidence: 0.7,
                model_version: version.clone(),
            });
        }
        predicted
    }
}

/// A store whose every shadow write fails, as Postgres refusing it would.
struct RefusingStore;

impl ShadowStore for RefusingStore {
    async fn record_shadow(&self, _: &[Prediction]) -> Result<u64, StoreError> {
        Err(StoreError::Other("permission denied for table".into()))
    }
}

async fn pending_quotes(store: &MemoryStore, n: u32) -> Vec<Uuid> {
    use quote_pipeline::ports::QuoteStore as _;
    let quotes: Vec<Quote> = generate(&GenerateParams {
        seed: Some(5),
        ..GenerateParams::new(n)
    })
    .into_iter()
    .map(|input| Quote::new_pending("alice", input, chrono::Utc::now()))
    .collect();
    store
        .insert(Uuid::now_v7(), &quotes, None, later())
        .await
        .unwrap();
    quotes.iter().map(|q| q.id).collect()
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn items(ids: &[Uuid]) -> Vec<(Uuid, Features)> {
    ids.iter().map(|id| (*id, Features::default())).collect()
}

fn scored(id: Uuid, premium: f64) -> Outcome {
    Outcome::Scored(Prediction {
        quote_id: id,
        premium,
        premium_low: premium,
        premium_high: premium,
        confidence: 0.5,
        model_version: "xgb-live".into(),
    })
}

#[tokio::test]
async fn each_quote_the_live_model_scored_gets_one_shadow_price_and_its_difference() {
    let store = MemoryStore::default();
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let live = [
        scored(ids[0], 200.0),
        Outcome::Failed {
            id: ids[1],
            reason: "refused".into(),
        },
        scored(ids[2], 400.0),
    ];
    // The failed quote is not priced: the model sees the first and the last, in that order.
    let model = Model::new("xgb-shadow", &[250.0, 300.0]);
    let report = shadow(&store, &model, &items(&ids), &live, later()).await;
    assert_eq!((report.recorded, report.failures), (2, 0));
    assert_eq!(report.differences, [25.0, -25.0]);
    let mut written: Vec<(Uuid, f64, String)> = store
        .shadow_prices()
        .into_iter()
        .map(|(p, _)| (p.quote_id, p.premium, p.model_version.to_string()))
        .collect();
    written.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        written,
        [
            (ids[0], 250.0, "xgb-shadow".to_owned()),
            (ids[2], 300.0, "xgb-shadow".to_owned())
        ]
    );

    let again = shadow(&store, &model, &items(&ids), &live, later()).await;
    assert_eq!((again.recorded, again.failures), (0, 0), "once per version");
}

#[tokio::test]
async fn rejected_quotes_and_refused_shadow_premiums_are_failures_and_not_written() {
    let store = MemoryStore::default();
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let live: Vec<Outcome> = ids.iter().map(|id| scored(*id, 100.0)).collect();
    let model = Model {
        reject: vec![1],
        ..Model::new("xgb-shadow", &[110.0, 120.0, 0.0, f64::NAN])
    };
    let report = shadow(&store, &model, &items(&ids), &live, later()).await;
    assert_eq!((report.recorded, report.failures), (1, 3));
    assert_eq!(report.differences.len(), 1);
    assert!((report.differences[0] - 10.0).abs() < 1e-9);
    assert_eq!(store.shadow_prices().len(), 1);
}

#[tokio::test]
async fn a_failed_shadow_write_counts_every_price_as_a_failure_and_returns_no_error() {
    let ids: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    let live: Vec<Outcome> = ids.iter().map(|id| scored(*id, 100.0)).collect();
    let model = Model::new("xgb-shadow", &[100.0, 100.0]);
    let report = shadow(&RefusingStore, &model, &items(&ids), &live, later()).await;
    assert_eq!((report.recorded, report.failures), (0, 2));
    assert!(
        report.differences.is_empty(),
        "no difference of unwritten prices"
    );
}

#[tokio::test]
async fn scoring_with_a_shadow_gives_the_same_live_prices_as_without() {
    let live = Model::new("xgb-live", &[500.0, 600.0, 700.0]);
    let rejecting = Model {
        reject: vec![0, 1, 2],
        ..Model::new("xgb-shadow", &[1.0, 1.0, 1.0])
    };
    let mut prices = Vec::new();
    for shadow_model in [None, Some(&rejecting)] {
        let store = MemoryStore::default();
        let ids = pending_quotes(&store, 3).await;
        let report = score(
            &store,
            &live,
            shadow_model,
            &ids,
            later(),
            testkit::PRICE_VALIDITY,
        )
        .await
        .unwrap();
        assert_eq!((report.scored, report.failed), (3, 0));
        assert_eq!(
            report.shadow.map(|s| (s.recorded, s.failures)),
            shadow_model.map(|_| (0, 3))
        );
        prices.push(
            store
                .quotes()
                .into_iter()
                .map(|q| match q.pricing {
                    Pricing::Scored {
                        premium,
                        model_version,
                        ..
                    } => (premium, model_version),
                    other => panic!("not scored: {other:?}"),
                })
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(prices[0], prices[1]);
}

#[tokio::test]
async fn a_pass_past_its_deadline_leaves_the_shadow_out_and_counts_it() {
    let store = MemoryStore::default();
    let ids = pending_quotes(&store, 2).await;
    let live = Model::new("xgb-live", &[500.0, 600.0]);
    let shadow_model = Model::new("xgb-shadow", &[500.0, 600.0]);
    let report = score(
        &store,
        &live,
        Some(&shadow_model),
        &ids,
        Instant::now(),
        testkit::PRICE_VALIDITY,
    )
    .await
    .unwrap();
    assert_eq!(report.scored, 2);
    assert_eq!(
        report.shadow.map(|s| (s.recorded, s.failures)),
        Some((0, 2))
    );
    assert!(store.shadow_prices().is_empty());
}
