use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use quote_pipeline::aws::aws_sdk_config;
use quote_pipeline::config::{FromEnv, ReconcileConfig};
use quote_pipeline::events::EventBridgeBus;
use quote_pipeline::queue::SqsQueue;
use quote_pipeline::store::PgStore;
use quote_pipeline::warm_up::{Target, warm_up};
use quote_pipeline::{ca_bundle, telemetry};
use reconcile::{App, handle};

fn main() -> Result<(), Error> {
    // SAFETY: the runtime, and with it every other thread, starts after this.
    unsafe { ca_bundle::name_bundle_file() };
    start()
}

#[tokio::main]
async fn start() -> Result<(), Error> {
    telemetry::init();
    let config = ReconcileConfig::from_env()?;
    let sdk = aws_sdk_config().await;
    let app = Arc::new(App {
        store: PgStore::from_config(&config.database, Some(&sdk)).await?,
        queue: SqsQueue::new(&sdk, &config.queue),
        events: EventBridgeBus::new(&sdk, &config.event_bus),
        policy: config.policy,
    });
    // The sweep's connections, opened during init; bounded, and never fatal.
    warm_up(vec![Target::postgres(&app.store), Target::sqs(&app.queue)]).await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move { handle(&app, event).await }
    }))
    .await
}
