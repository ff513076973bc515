//! Every time budget of the functions, in one place: how long each outside call may take, and
//! how each function shares out the time before its invocation's deadline, so that a slow
//! dependency becomes a truthful answer (a 503, messages back on the queue) before Lambda
//! ends the invocation.
//!
//! - `generate`: a write must end by [`CREATE`]'s write deadline (its own bound, or the
//!   deadline less the enqueue's bound and the answer's margin, whichever is first); a write
//!   with too little time left is a 503 at once. Its reads fit whole.
//! - `score`: the predictor stops early enough to leave the final write its worst case.
//! - `reconcile`: its calls' worst cases add up inside its timeout.
//!
//! The tests below read `template.yaml` and the migrations, so a budget and where it is set
//! cannot drift apart, and check that each function's worst case fits its timeout.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::create;

/// Waiting for a pooled connection, connecting included, before answering 503
/// (`DB_ACQUIRE_TIMEOUT_MS`'s default).
pub const DB_ACQUIRE: Duration = Duration::from_millis(2000);

/// One statement, as the application role's `statement_timeout` (set by
/// `migrations/20261128000001_application_role.sql`, not sent by the client: RDS Proxy refuses
/// startup options).
pub const STATEMENT: Duration = Duration::from_secs(5);

/// How long RDS Proxy waits for a database connection (`ConnectionBorrowTimeout`), before a
/// transaction's first statement runs.
pub const PROXY_BORROW: Duration = Duration::from_secs(3);

/// One enqueue, retries included (the SQS adapter's own).
pub use crate::queue::ENQUEUE_TIMEOUT as ENQUEUE;

/// Publishing batch completion events (the EventBridge adapter's own): after the write, in
/// `score`'s last moments; what does not go out in time is retried by reconcile.
pub use crate::events::PUBLISH_TIMEOUT as EVENT_PUBLISH;

/// The AWS SDK's connection, per attempt and per operation timeouts.
pub const SQS_CONNECT: Duration = Duration::from_secs(1);
pub const SQS_ATTEMPT: Duration = Duration::from_secs(2);
pub const SQS_OPERATION: Duration = ENQUEUE;

/// Connecting to the ML engine, and the least time worth another call (the engine adapter's
/// own); each call's timeout is `ML_TIMEOUT_MS`.
pub use crate::ml_engine::{CONNECT_TIMEOUT as ENGINE_CONNECT, MIN_ATTEMPT as ENGINE_MIN_ATTEMPT};

/// Kept back from a deadline to answer: the response, the log and metrics lines, and the
/// difference between Lambda's clock and ours.
pub const ANSWER: Duration = Duration::from_secs(1);

/// One transaction of one statement at its worst: the pool's wait, the proxy's borrow, the
/// statement.
pub const ONE_STATEMENT: Duration = DB_ACQUIRE
    .saturating_add(PROXY_BORROW)
    .saturating_add(STATEMENT);

/// `generate`'s timeout (the template's), for a request that carries no invocation context.
pub const GENERATE_TIMEOUT: Duration = Duration::from_secs(15);

/// How `generate`'s writes share out its time: a write may take a one-statement write's
/// worst case (a keyed write, with two statements, is cut there), then the enqueue its bound,
/// then the answer its margin.
pub const CREATE: create::Budget = create::Budget {
    write: ONE_STATEMENT,
    enqueue: ENQUEUE,
    answer: ANSWER,
    least_write: Duration::from_millis(250),
};

/// Time `score` keeps back from its deadline for the final write of a batch's outcomes and
/// its answer: the write's worst case, one statement's transaction.
pub const SCORE_WRITE_RESERVE: Duration = ONE_STATEMENT.saturating_add(ANSWER);

/// The instant an invocation must be done by, from the deadline Lambda sends (epoch
/// milliseconds; `cargo lambda watch` sends the function's timeout itself, a value no epoch
/// deadline can be, before 2001).
pub fn invocation_deadline(deadline_ms: u64) -> Instant {
    const EPOCH_2001_MS: u64 = 978_307_200_000;
    let remaining = if deadline_ms < EPOCH_2001_MS {
        Duration::from_millis(deadline_ms)
    } else {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    Instant::now() + remaining
}

/// When `score`'s predictor must be done, in an invocation ending at `deadline`: early enough
/// to leave [`SCORE_WRITE_RESERVE`] for the write, or a quarter of the time left when there
/// is less than four times that (a short test invocation still predicts).
pub fn score_predictor_deadline(deadline: Instant, now: Instant) -> Instant {
    let left = deadline.saturating_duration_since(now);
    now + left.saturating_sub(SCORE_WRITE_RESERVE.min(left / 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../template.yaml");

    /// Room kept between a function's worst case and its timeout.
    const MARGIN: Duration = Duration::from_millis(500);

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

    fn timeout_of(function: &str) -> Duration {
        Duration::from_secs(template_number(&format!("  {function}:\n"), "Timeout:"))
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
        assert!(SQS_CONNECT < SQS_ATTEMPT && SQS_ATTEMPT < ENQUEUE && SQS_OPERATION <= ENQUEUE);
    }

    #[test]
    fn generates_worst_case_fits_its_timeout() {
        let timeout = timeout_of("GenerateFunction");
        assert_eq!(timeout, GENERATE_TIMEOUT);
        // A write cut at its bound, the enqueue at its own, then the answer.
        let write = CREATE.write + CREATE.enqueue + CREATE.answer;
        assert!(write + MARGIN <= timeout, "a write's worst case {write:?}");
        // A read: one statement, then the answer.
        let read = ONE_STATEMENT + ANSWER;
        assert!(read + MARGIN <= timeout, "a read's worst case {read:?}");
        // Whenever it starts, a write ends early enough for the enqueue and the answer.
        let deadline = Instant::now() + timeout;
        for started in [
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(10),
        ] {
            let now = deadline - timeout + started;
            if let Some(until) = CREATE.write_deadline(deadline, now) {
                assert!(until + ENQUEUE + ANSWER <= deadline, "started {started:?}");
                assert!(until <= now + CREATE.write);
            }
        }
    }

    #[test]
    fn a_write_with_too_little_time_left_is_not_started() {
        let now = Instant::now();
        let short = now + ENQUEUE + ANSWER + CREATE.least_write / 2;
        assert_eq!(CREATE.write_deadline(short, now), None);
        let enough = now + ENQUEUE + ANSWER + Duration::from_secs(2);
        assert_eq!(
            CREATE.write_deadline(enough, now),
            Some(now + Duration::from_secs(2))
        );
    }

    #[test]
    fn scores_write_reserve_covers_its_writes_worst_case() {
        let timeout = timeout_of("ScoreFunction");
        assert!(SCORE_WRITE_RESERVE >= DB_ACQUIRE + PROXY_BORROW + STATEMENT + ANSWER);
        // The batch's read, then prediction until the reserve, then the write: at the
        // template's timeout the whole reserve is kept.
        assert!(ONE_STATEMENT + SCORE_WRITE_RESERVE + MARGIN <= timeout);
        assert!(SCORE_WRITE_RESERVE <= timeout / 4);
        let now = Instant::now();
        let predictor = score_predictor_deadline(now + timeout, now);
        assert_eq!(now + timeout - predictor, SCORE_WRITE_RESERVE);
    }

    #[test]
    fn reconciles_worst_case_fits_its_timeout() {
        let timeout = timeout_of("ReconcileFunction");
        // Fail the exhausted, claim the stuck, enqueue them, count the enqueue (in the claim's
        // transaction: no new connection or borrow), purge the expired keys.
        let sweep = ONE_STATEMENT + ONE_STATEMENT + ENQUEUE + STATEMENT + ONE_STATEMENT + ANSWER;
        assert!(sweep + MARGIN <= timeout, "a sweep's worst case {sweep:?}");
    }

    #[test]
    fn a_lambda_deadline_is_read_as_epoch_milliseconds_and_cargo_lambdas_as_a_duration() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = invocation_deadline(now_ms + 10_000).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(9500) && left <= Duration::from_secs(10),
            "{left:?}"
        );
        let past = invocation_deadline(now_ms - 1000).saturating_duration_since(Instant::now());
        assert_eq!(past, Duration::ZERO);
        let watch = invocation_deadline(600_000).saturating_duration_since(Instant::now());
        assert!(watch > Duration::from_secs(590), "{watch:?}");
    }

    #[test]
    fn a_short_score_invocation_keeps_a_quarter_for_the_write() {
        let now = Instant::now();
        let predictor = score_predictor_deadline(now + Duration::from_secs(10), now);
        assert_eq!(predictor - now, Duration::from_millis(7500));
        assert_eq!(score_predictor_deadline(now, now), now);
    }
}
