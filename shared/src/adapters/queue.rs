//! The SQS queue of quote ids waiting to be scored: the adapter of the `QuoteQueue` port,
//! sending the messages of `quote_domain::message`.
//!
//! Ids travel in chunks (`QUEUE_IDS_PER_MESSAGE` per message) through `SendMessageBatch`: at
//! most ten entries and [`MAX_BATCH_BYTES`] per call, calls in flight together. SQS answers 200
//! even when some entries fail, so each answer's failures are retried by themselves, and an
//! entry that still fails is an error the caller sees.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::{StreamExt, TryStreamExt, stream};
use rand::RngExt;
use uuid::Uuid;

pub use quote_domain::message::{MAX_IDS_PER_MESSAGE, MESSAGE_VERSION, MessageError, QuoteMessage};
pub use quote_domain::ports::{QueueError, QuoteQueue};

/// SQS's limit on the entries of one `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's limit on the summed bodies of one `SendMessageBatch`.
const MAX_BATCH_BYTES: usize = 256 * 1024;
const SEND_ATTEMPTS: u32 = 4;
const CALLS_IN_FLIGHT: usize = 8;

/// The queue and how many ids go in a message: what `config` reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub url: String,
    pub ids_per_message: usize,
}

/// The most one enqueue may take, retries included (`budget::ENQUEUE`): `generate`'s write
/// ends early enough to leave it whole, so a slow queue is a 503 naming the saved ids; it
/// also bounds how long reconcile holds its row locks.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(3);

/// The span around a send, by name: X-Ray draws it as a call to SQS.
pub const SQS_ENQUEUE: &str = "sqs.enqueue";

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    ids_per_message: usize,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, config: &QueueConfig) -> Self {
        SqsQueue {
            client: Client::new(sdk),
            queue_url: config.url.clone(),
            ids_per_message: config.ids_per_message.clamp(1, MAX_IDS_PER_MESSAGE),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one batch, retrying only the entries SQS reported as failed.
    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        let total = bodies.len();
        let mut pending: Vec<(String, String)> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| (i.to_string(), body))
            .collect();
        let mut reason = String::new();
        for attempt in 0..SEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match sent {
                Ok(output) => {
                    let failed = output.failed();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    reason = failed
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join("; ");
                    pending.retain(|(id, _)| failed.iter().any(|f| f.id() == id));
                }
                Err(e) => reason = aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            }
            tracing::warn!(attempt, failed = pending.len(), %reason, "SendMessageBatch incomplete");
        }
        Err(QueueError {
            failed: pending.len(),
            total,
            reason,
        })
    }
}

/// Exponential backoff with full jitter, from 25 ms.
fn backoff(attempt: u32) -> Duration {
    let cap = 25u64 << attempt.min(6);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// Splits message bodies into `SendMessageBatch` calls within SQS's entry and size limits.
fn batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for body in bodies {
        match out.last_mut() {
            Some(batch)
                if batch.len() < MAX_BATCH_ENTRIES && bytes + body.len() <= MAX_BATCH_BYTES =>
            {
                bytes += body.len();
                batch.push(body);
            }
            _ => {
                bytes = body.len();
                out.push(vec![body]);
            }
        }
    }
    out
}

impl QuoteQueue for SqsQueue {
    #[tracing::instrument(
        name = SQS_ENQUEUE,
        skip_all,
        fields(quotes = ids.len(), operation = "SendMessageBatch"),
        err(level = "warn")
    )]
    async fn enqueue(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        self.send(ids, QuoteMessage::new).await
    }

    #[tracing::instrument(
        name = SQS_ENQUEUE,
        skip_all,
        fields(quotes = ids.len(), operation = "SendMessageBatch", reprice = true),
        err(level = "warn")
    )]
    async fn enqueue_reprice(&self, ids: &[Uuid]) -> Result<usize, QueueError> {
        self.send(ids, QuoteMessage::reprice).await
    }
}

impl SqsQueue {
    /// Sends `ids` in chunks, each chunk's body made by `message`.
    async fn send(
        &self,
        ids: &[Uuid],
        message: fn(Vec<Uuid>) -> QuoteMessage,
    ) -> Result<usize, QueueError> {
        let bodies: Vec<String> = ids
            .chunks(self.ids_per_message)
            .map(|chunk| message(chunk.to_vec()).to_body())
            .collect();
        let messages = bodies.len();
        let sends = stream::iter(batches(bodies))
            .map(|batch| self.send_batch(batch))
            .buffer_unordered(CALLS_IN_FLIGHT)
            .map_err(|e| QueueError {
                total: messages,
                ..e
            })
            .try_collect::<Vec<()>>();
        match tokio::time::timeout(ENQUEUE_TIMEOUT, sends).await {
            Ok(sent) => sent.map(|_| messages),
            Err(_) => Err(QueueError {
                failed: messages,
                total: messages,
                reason: format!("SQS did not answer within {:?}", ENQUEUE_TIMEOUT),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_entry_and_size_limits() {
        let small = vec!["x".repeat(100); 25];
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big = vec!["x".repeat(100 * 1024); 5];
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
