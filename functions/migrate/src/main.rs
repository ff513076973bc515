use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use migrate::{App, handle};
use quote_pipeline::aws;
use quote_pipeline::config::{DatabaseConfig, FromEnv};
use quote_pipeline::store::migrations;
use quote_pipeline::{ca_bundle, telemetry};

fn main() -> Result<(), Error> {
    // SAFETY: the runtime, and with it every other thread, starts after this.
    unsafe { ca_bundle::name_bundle_file() };
    start()
}

#[tokio::main]
async fn start() -> Result<(), Error> {
    telemetry::init();
    // A bad configuration is answered to CloudFormation as a failure of each event: a
    // function that does not start answers nothing, and the stack would wait an hour.
    let database = DatabaseConfig::from_env().map_err(|e| e.to_string());
    let sdk = match &database {
        Ok(db) => aws::sdk_for_database(db).await,
        Err(_) => None,
    };
    let app = Arc::new(App::new(database, sdk, migrations()));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move { handle(&app, event).await }
    }))
    .await
}
