//! Every time budget of the functions, in one place: how long each outside call may take, so
//! that a slow dependency becomes a clean answer (a 503, messages back on the queue) rather
//! than a timed-out invocation. Their worst case does not yet add up inside `generate`'s
//! timeout (see the README's "Database faults"). The tests below read
//! `template.yaml` and the migrations, so a budget and where it is set cannot drift apart.

use std::time::Duration;

/// Waiting for a pooled connection before answering 503 (`DB_ACQUIRE_TIMEOUT_MS`'s default).
pub const DB_ACQUIRE: Duration = Duration::from_millis(3000);

/// One statement, as the application role's `statement_timeout` (set by
/// `migrations/20261128000001_application_role.sql`, not sent by the client: RDS Proxy refuses
/// startup options).
pub const STATEMENT: Duration = Duration::from_secs(5);

/// How long RDS Proxy waits for a database connection (`ConnectionBorrowTimeout`).
pub const PROXY_BORROW: Duration = Duration::from_secs(5);

/// One enqueue, retries included (the SQS adapter's own).
pub use crate::queue::ENQUEUE_TIMEOUT as ENQUEUE;

/// Publishing batch completion events (the EventBridge adapter's own): after the write, in
/// `score`'s last moments; what does not go out in time is retried by reconcile.
pub use crate::events::PUBLISH_TIMEOUT as EVENT_PUBLISH;

/// The AWS SDK's connection, per attempt and per operation timeouts.
pub const SQS_CONNECT: Duration = Duration::from_secs(2);
pub const SQS_ATTEMPT: Duration = Duration::from_secs(5);
pub const SQS_OPERATION: Duration = Duration::from_secs(12);

/// Connecting to the ML engine, and the least time worth another call (the engine adapter's
/// own); each call's timeout is `ML_TIMEOUT_MS`.
pub use crate::ml_engine::{CONNECT_TIMEOUT as ENGINE_CONNECT, MIN_ATTEMPT as ENGINE_MIN_ATTEMPT};

/// Time `score` keeps back from its deadline for the final write of a batch's outcomes.
pub const SCORE_WRITE_RESERVE: Duration = Duration::from_millis(1500);

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../template.yaml");

    /// The number after `key` on the first line holding it after `anchor`.
    fn template_number(anchor: &str, key: &str) -> u64 {
        let from = TEMPLATE
            .find(anchor)
            .unwrap_or_else(|| panic!("{anchor} in the template"));
        TEMPLATE[from..]
            .lines()
            .find_map(|line| line.trim().strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} after {anchor}"))
    }

    #[test]
    fn the_statement_timeout_is_the_one_the_migration_gives_the_application_role() {
        let migration = include_str!("../../../migrations/20261128000001_application_role.sql");
        let set = format!(
            "statement_timeout = %L',\n                   current_database(), '{}s'",
            STATEMENT.as_secs()
        );
        assert!(
            migration.contains(&set),
            "the migration sets {}s",
            STATEMENT.as_secs()
        );
    }

    #[test]
    fn an_unsent_event_is_retried_only_once_score_can_no_longer_be_sending_it() {
        let score_timeout = template_number("  ScoreFunction:", "Timeout:");
        assert!(
            crate::completion::EVENT_RETRY_AFTER.as_secs() > score_timeout,
            "a retry could race the first publish of a score invocation still running"
        );
    }

    #[test]
    fn the_proxy_borrow_timeout_is_the_templates() {
        assert_eq!(
            template_number(
                "ConnectionPoolConfigurationInfo",
                "ConnectionBorrowTimeout:"
            ),
            PROXY_BORROW.as_secs()
        );
    }

    #[test]
    fn an_sqs_operation_fits_its_enqueue_budget_per_attempt() {
        assert!(SQS_CONNECT < SQS_ATTEMPT && SQS_ATTEMPT < ENQUEUE);
    }
}
