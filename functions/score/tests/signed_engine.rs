//! The real `score` binary configured as the template configures it for the engine the stack
//! deploys (`ML_ENGINE_AUTH=iam`, the role's credentials in the environment, as Lambda gives
//! them), in front of a stand-in of the engine's `AWS_IAM` function URL that refuses any
//! request not signed by those credentials: the batch is priced, every request signed.

use std::time::Duration;

use aws_credential_types::Credentials;
use quote_pipeline::quote::Pricing;
use quote_pipeline::store::QuoteStore;
use testkit::{IamFunctionUrl, RuntimeApi, TestEnv, UNSAMPLED_TRACE, engine_url, sqs_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_signs_its_requests_to_an_iam_function_url_with_the_roles_credentials() {
    let env = TestEnv::new().await;
    let (ids, messages) = env.queued_pending("signed", 30, 9).await;

    let (key, secret, token) = ("ASIAROLEEXAMPLE", "role-secret", "role-session-token");
    let credentials = Credentials::new(key, secret, Some(token.into()), None, "role");
    let url = IamFunctionUrl::start(&engine_url(), credentials, "eu-west-1").await;
    let mut runtime = RuntimeApi::start(
        vec![serde_json::to_value(sqs_event(&messages)).unwrap()],
        UNSAMPLED_TRACE,
    )
    .await;
    let mut child = runtime
        .command(env!("CARGO_BIN_EXE_score"), "score-signed")
        .env("DATABASE_URL", &env.database.url)
        .env("SCORING_MODE", "engine")
        .env("EVENT_BUS_NAME", "quotes")
        // The function URL's, with its trailing slash, as the template passes it.
        .env("ML_ENGINE_URL", format!("{}/", url.url))
        .env("ML_ENGINE_AUTH", "iam")
        .env("ML_CHUNK_SIZE", "10")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the score binary starts");
    let answer = runtime.answer(Duration::from_secs(30)).await;
    child.kill().await.unwrap();
    let answer = answer.expect("the function answers");
    // No failed message: every quote priced.
    assert_eq!(answer.body, r#"{"batchItemFailures":[]}"#, "{answer:?}");
    assert_eq!(
        url.counts(),
        (3, 0),
        "three chunks of 10, each signed as required"
    );
    for id in ids {
        let quote = env
            .store
            .get("signed", id)
            .await
            .unwrap()
            .expect("the quote");
        assert!(
            matches!(quote.pricing, Pricing::Scored { .. }),
            "{id}: {:?}",
            quote.pricing
        );
    }
}
