use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quote_pipeline::config::{FromEnv, ScoreConfig, ScoringMode};
use quote_pipeline::events::EventBridgeBus;
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::model::EmbeddedModel;
use quote_pipeline::scoring::Predictor;
use quote_pipeline::store::PgStore;
use quote_pipeline::warm_up::{Target, warm_up};
use quote_pipeline::{aws, ca_bundle, telemetry};
use score::{App, handle};

fn main() -> Result<(), Error> {
    // SAFETY: the runtime, and with it every other thread, starts after this.
    unsafe { ca_bundle::name_bundle_file() };
    start()
}

#[tokio::main]
async fn start() -> Result<(), Error> {
    telemetry::init();
    let config = ScoreConfig::from_env()?;
    // Always loaded: score publishes batch events, and signs IAM tokens or engine requests
    // with the same credentials.
    let sdk = aws::aws_sdk_config().await;
    let store = PgStore::from_config(&config.database, Some(&sdk)).await?;
    let events = EventBridgeBus::new(&sdk, &config.event_bus);
    // A malformed model, live or shadow, stops the container here, not with a wrong premium
    // (or a silently missing shadow) later.
    let shadow = match &config.shadow_model_dir {
        Some(dir) => {
            let model = EmbeddedModel::load(dir)?;
            tracing::info!(model_version = %model.model_version(), "shadow model loaded");
            Some(model)
        }
        None => None,
    };
    match &config.scoring {
        ScoringMode::Engine(engine) => {
            run(App {
                store,
                predictor: MlEngine::new(engine, Some(&sdk))?,
                price_validity: config.price_validity,
                events,
                shadow,
            })
            .await
        }
        ScoringMode::Embedded { model_dir } => {
            let model = EmbeddedModel::load(model_dir)?;
            tracing::info!(model_version = %model.model_version(), "model loaded");
            run(App {
                store,
                predictor: model,
                price_validity: config.price_validity,
                events,
                shadow,
            })
            .await
        }
    }
}

async fn run<P: Predictor + 'static>(app: App<PgStore, P, EventBridgeBus>) -> Result<(), Error> {
    // The first batch's Postgres connection, opened during init; bounded, and never fatal (a
    // database down now sends the first batch's messages back to the queue). The ML engine's
    // client connects on its first call.
    warm_up(vec![Target::postgres(&app.store)]).await;
    let app = Arc::new(app);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(handle(&app, event).await) }
    }))
    .await
}
