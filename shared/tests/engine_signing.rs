//! `score`'s engine client in front of an `AWS_IAM` function URL (testkit's stand-in, which
//! checks each signature against what arrived, before the real ML engine): signed with the
//! right credentials its quotes are priced; refused, they stay pending for a retry rather than
//! fail.

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use quote_pipeline::config::{MlEngineAuth, MlEngineConfig};
use quote_pipeline::features::{Features, features};
use quote_pipeline::generator::{GenerateParams, generate};
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::pricing::{Predicted, Predictor};
use testkit::{IamFunctionUrl, engine_url};
use uuid::Uuid;

const REGION: &str = "eu-west-1";

fn role_credentials(secret: &str) -> Credentials {
    Credentials::new(
        "ASIAEXAMPLE",
        secret,
        Some("role-session-token".into()),
        None,
        "test",
    )
}

fn engine(url: &str, credentials: Credentials) -> MlEngine {
    let sdk = aws_config::SdkConfig::builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    let config = MlEngineConfig {
        url: url.into(),
        chunk_size: 10,
        concurrency: 2,
        timeout_ms: 5_000,
        auth: MlEngineAuth::Iam {
            region: REGION.into(),
        },
    };
    MlEngine::new(&config, Some(&sdk)).unwrap()
}

fn quotes(count: u32) -> Vec<(Uuid, Features)> {
    let today = chrono::Utc::now().date_naive();
    generate(&GenerateParams {
        seed: Some(3),
        ..GenerateParams::new(count)
    })
    .iter()
    .map(|input| (Uuid::now_v7(), features(input, today)))
    .collect()
}

/// `count` quotes priced within `within` through a function URL that takes the secret
/// "the-secret", by a client signing with `secret`; and the URL's (accepted, refused) counts.
async fn predict_through_the_url(
    secret: &str,
    count: u32,
    within: Duration,
) -> (Predicted, (usize, usize)) {
    let url = IamFunctionUrl::start(&engine_url(), role_credentials("the-secret"), REGION).await;
    let outcome = engine(&url.url, role_credentials(secret))
        .predict(&quotes(count), Instant::now() + within)
        .await;
    (outcome, url.counts())
}

#[tokio::test]
async fn signed_requests_reach_the_engine_and_are_priced() {
    let (outcome, counts) =
        predict_through_the_url("the-secret", 25, Duration::from_secs(20)).await;
    assert_eq!(outcome.predictions.len(), 25, "{:?}", outcome.reason);
    assert_eq!(counts, (3, 0), "three chunks, each signed as required");
}

#[tokio::test]
async fn a_refused_signature_leaves_the_quotes_pending_for_a_retry() {
    let (outcome, (accepted, refused)) =
        predict_through_the_url("another-secret", 5, Duration::from_secs(2)).await;
    assert!(outcome.predictions.is_empty() && outcome.rejected.is_empty());
    assert_eq!(outcome.unavailable.len(), 5);
    assert_eq!(outcome.permanent_errors, 0);
    assert!(outcome.reason.unwrap().contains("403"));
    assert!(accepted == 0 && refused >= 2, "retried: {refused} refused");
}
