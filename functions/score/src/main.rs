use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quote_pipeline::config::Config;
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::store::PgStore;
use quote_pipeline::telemetry;
use score::{App, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let app = Arc::new(App {
        store: PgStore::connect_lazy(&config.database)?,
        predictor: MlEngine::new(&config.ml_engine)?,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(handle(&app, event).await) }
    }))
    .await
}
