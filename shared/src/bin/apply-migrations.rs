//! Applies the migrations in `migrations/` to the configured database: `DATABASE_URL`
//! locally, or RDS Proxy with an IAM token (`DB_IAM_AUTH=true`, `DB_HOST`, `DB_NAME`,
//! `DB_USER`, `AWS_REGION`) on AWS.

use quote_pipeline::aws;
use quote_pipeline::config::{DatabaseConfig, FromEnv};
use quote_pipeline::store::PgStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = DatabaseConfig::from_env()?;
    let sdk = aws::sdk_for_database(&database).await;
    PgStore::from_config(&database, sdk.as_ref())
        .await?
        .migrate()
        .await?;
    Ok(())
}
