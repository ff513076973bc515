//! The AWS SDK, set up once per container: the clients of the adapters (SQS) and the
//! credentials that sign RDS Proxy's IAM tokens and the ML engine's requests come from it.

use crate::budget;
use crate::store::DatabaseConfig;

/// The AWS SDK's configuration for this process: the standard environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL_SQS` for the emulator), with the behavior version pinned and short
/// timeouts, since a Lambda invocation cannot wait long on a hung connection.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(budget::SQS_CONNECT)
        .operation_attempt_timeout(budget::SQS_ATTEMPT)
        .operation_timeout(budget::SQS_OPERATION)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
        .timeout_config(timeouts)
        .load()
        .await
}

/// The SDK's configuration where `database` needs it to sign IAM tokens, else none: a function
/// that calls no other AWS service does not load it.
pub async fn sdk_for_database(database: &DatabaseConfig) -> Option<aws_config::SdkConfig> {
    match database.iam {
        Some(_) => Some(aws_sdk_config().await),
        None => None,
    }
}
