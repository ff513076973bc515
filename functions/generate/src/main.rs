use std::sync::Arc;

use generate::explain::Explainer;
use generate::{App, handle};
use lambda_http::{Error, Request, service_fn};
use quote_pipeline::aws::aws_sdk_config;
use quote_pipeline::config::{FromEnv, GenerateConfig};
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::store::PgStore;
use quote_pipeline::warm_up::{Target, warm_up};
use quote_pipeline::{ca_bundle, telemetry};

fn main() -> Result<(), Error> {
    // SAFETY: the runtime, and with it every other thread, starts after this.
    unsafe { ca_bundle::name_bundle_file() };
    start()
}

#[tokio::main]
async fn start() -> Result<(), Error> {
    telemetry::init();
    let config = GenerateConfig::from_env()?;
    let sdk = aws_sdk_config().await;
    let app = Arc::new(App {
        store: PgStore::from_config(&config.database, Some(&sdk)).await?,
        queue: SqsQueue::new(&sdk, &config.queue),
        idempotency_ttl: config.idempotency_ttl,
        explainer: Explainer::new(config.model_dir),
    });
    // The first request's connections, opened while Lambda's init runs at full CPU; bounded,
    // and never fatal (a database down now is the first request's 503).
    warm_up(vec![Target::postgres(&app.store), Target::sqs(&app.queue)]).await;
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(handle(&app, request).await) }
    }))
    .await
}
