//! The init phase's warm-up: before its first event, a function opens the connections its first
//! request will need (the pool's first Postgres connection, TLS and authentication included, and
//! the SQS client's HTTPS connection), all at once, under one time bound, and never fails because
//! of them.
//!
//! Lambda runs a function's start-up at full CPU before it hands over the first event, so work
//! done here is work the first caller does not wait for. A dependency that is down or slow costs
//! at most [`BOUND`] here; the first request then meets it itself and answers as it would have
//! without a warm-up (a 503 from `generate`, messages back on the queue from `score`). Nothing
//! here is an error: each outcome is logged, at `warn` when it failed.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::queue::SqsQueue;
use crate::store::PgStore;

/// The most the warm-up adds to a cold start, whatever its dependencies do. A TLS connection
/// through RDS Proxy with an IAM token takes tens of milliseconds, an SQS connection less; one
/// second leaves room for a slow moment and stays a tenth of Lambda's 10 s init limit. A
/// dependency that is only slow is met again, with the request's own timeouts, by the first
/// request.
pub const BOUND: Duration = Duration::from_secs(1);

/// One connection to open: its name, for the log, and the attempt.
pub struct Target<'a> {
    pub name: &'static str,
    attempt: Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>,
}

impl<'a> Target<'a> {
    /// Any attempt: `Ok` when the connection is open and kept for the first request.
    pub fn new(
        name: &'static str,
        attempt: impl Future<Output = Result<(), String>> + Send + 'a,
    ) -> Self {
        Target {
            name,
            attempt: Box::pin(attempt),
        }
    }

    /// The store's first connection: acquired from the pool (so through its TLS handshake and
    /// authentication) and returned to it at once, where the first query finds it.
    pub fn postgres(store: &'a PgStore) -> Self {
        Self::new("postgres", async move {
            store
                .pool()
                .acquire()
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// The SQS client's connection, through one `GetQueueAttributes` of the function's queue.
    /// Any answer of the service counts, a refusal included (`AccessDenied` where the role may
    /// not read attributes): the connection is open and signed requests reach SQS.
    pub fn sqs(queue: &'a SqsQueue) -> Self {
        Self::new("sqs", async move {
            let answer = queue
                .client()
                .get_queue_attributes()
                .queue_url(queue.url())
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await;
            match answer {
                Ok(_) | Err(SdkError::ServiceError(_)) => Ok(()),
                Err(e) => Err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
            }
        })
    }
}

/// What became of one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ready(Duration),
    Failed(String),
    /// Still connecting when the bound ran out; the attempt was dropped.
    TimedOut,
}

/// Opens every target at once and waits at most `bound` for all of them; returns each target's
/// outcome, in order. Never fails.
pub async fn warm_up_within(
    bound: Duration,
    targets: Vec<Target<'_>>,
) -> Vec<(&'static str, Outcome)> {
    let started = Instant::now();
    let names: Vec<&'static str> = targets.iter().map(|t| t.name).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; targets.len()];
    {
        let attempts = targets
            .into_iter()
            .enumerate()
            .map(|(i, target)| async move {
                let result = target.attempt.await;
                (i, result, started.elapsed())
            });
        let mut attempts: futures::stream::FuturesUnordered<_> = attempts.collect();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            use futures::StreamExt;
            match tokio::time::timeout_at(deadline, attempts.next()).await {
                Ok(Some((i, result, took))) => {
                    outcomes[i] = Some(match result {
                        Ok(()) => Outcome::Ready(took),
                        Err(e) => Outcome::Failed(e),
                    });
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let outcomes: Vec<(&'static str, Outcome)> = names
        .into_iter()
        .zip(outcomes)
        .map(|(name, outcome)| (name, outcome.unwrap_or(Outcome::TimedOut)))
        .collect();
    for (dependency, outcome) in &outcomes {
        match outcome {
            Outcome::Ready(took) => {
                let ms = took.as_secs_f64() * 1e3;
                tracing::info!(dependency, ms, "warm-up: connected");
            }
            Outcome::Failed(error) => {
                tracing::warn!(dependency, %error, "warm-up: cannot connect; the first request will try again");
            }
            Outcome::TimedOut => {
                let bound_ms = bound.as_millis() as u64;
                tracing::warn!(
                    dependency,
                    bound_ms,
                    "warm-up: not connected within the bound; the first request will try again"
                );
            }
        }
    }
    outcomes
}

/// [`warm_up_within`] the [`BOUND`].
pub async fn warm_up(targets: Vec<Target<'_>>) -> Vec<(&'static str, Outcome)> {
    warm_up_within(BOUND, targets).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_outcome_is_reported_and_the_bound_holds() {
        let started = Instant::now();
        let outcomes = warm_up_within(
            Duration::from_millis(200),
            vec![
                Target::new("ready", async { Ok(()) }),
                Target::new("failed", async { Err("refused".to_owned()) }),
                Target::new("hung", std::future::pending()),
            ],
        )
        .await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
        assert!(matches!(outcomes[0], ("ready", Outcome::Ready(_))));
        assert_eq!(outcomes[1], ("failed", Outcome::Failed("refused".into())));
        assert_eq!(outcomes[2], ("hung", Outcome::TimedOut));
    }

    #[tokio::test]
    async fn nothing_to_wait_for_returns_at_once() {
        let started = Instant::now();
        let outcomes = warm_up_within(
            Duration::from_secs(5),
            vec![Target::new("ready", async { Ok(()) })],
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(outcomes[0], ("ready", Outcome::Ready(_))));
    }
}
