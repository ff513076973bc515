//! An SQS endpoint that answers at once: the AWS JSON protocol (`X-Amz-Target:
//! AmazonSQS.<operation>`) over plain HTTP/1.1 with keep-alive. `SendMessageBatch` answers every
//! entry as sent, `GetQueueAttributes` answers a queue ARN, anything else `{}`. It keeps the
//! emulator's own time (tens of milliseconds a call here, nothing a function does) out of the
//! cold-start figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct SqsStandIn {
    pub endpoint: String,
    sent_batches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SqsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SqsStandIn {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let sent_batches = Arc::new(AtomicU64::new(0));
        let counter = sent_batches.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, counter.clone()));
            }
        });
        Ok(SqsStandIn {
            endpoint,
            sent_batches,
            task,
        })
    }

    /// A queue URL on this endpoint.
    pub fn queue_url(&self) -> String {
        format!("{}/123456789012/quotes", self.endpoint)
    }

    /// A function's environment `vars` pointed at this endpoint and queue, and at
    /// `database_url` when given.
    pub fn serving(
        &self,
        mut vars: Vec<(String, String)>,
        database_url: Option<&str>,
    ) -> Vec<(String, String)> {
        for (key, value) in &mut vars {
            match (key.as_str(), database_url) {
                ("DATABASE_URL", Some(url)) => *value = url.to_owned(),
                ("AWS_ENDPOINT_URL_SQS", _) => *value = self.endpoint.clone(),
                ("QUOTES_QUEUE_URL", _) => *value = self.queue_url(),
                _ => {}
            }
        }
        vars
    }

    /// `SendMessageBatch` calls answered so far.
    pub fn sent_batches(&self) -> u64 {
        self.sent_batches.load(Ordering::Relaxed)
    }
}

async fn serve(mut stream: TcpStream, sent_batches: Arc<AtomicU64>) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let Some((target, body)) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let answer = match target.rsplit('.').next().unwrap_or_default() {
            "SendMessageBatch" => {
                sent_batches.fetch_add(1, Ordering::Relaxed);
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let successful: Vec<Value> = request["Entries"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|entry| {
                        json!({"Id": entry["Id"], "MessageId": uuid::Uuid::now_v7().to_string(),
                               "MD5OfMessageBody": "00000000000000000000000000000000"})
                    })
                    .collect();
                json!({"Successful": successful, "Failed": []})
            }
            "GetQueueAttributes" => {
                json!({"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:quotes"}})
            }
            _ => json!({}),
        }
        .to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
             x-amzn-requestid: {}\r\ncontent-length: {}\r\n\r\n{answer}",
            uuid::Uuid::now_v7(),
            answer.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One request: its `X-Amz-Target` and its body; `None` when the client closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let header = |name: &str| {
                head.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let target = header("x-amz-target").unwrap_or_default();
            while buffer.len() < end + 4 + length {
                if read_more(stream, buffer).await == 0 {
                    return None;
                }
            }
            let body = buffer[end + 4..end + 4 + length].to_vec();
            buffer.drain(..end + 4 + length);
            return Some((target, body));
        }
        if read_more(stream, buffer).await == 0 {
            return None;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}
