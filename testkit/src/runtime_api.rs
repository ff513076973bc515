//! The Lambda Runtime API, served locally, so a real function binary runs as on Lambda.

use uuid::Uuid;

use crate::http1::read_request;

/// A local stand-in for the Lambda Runtime API: a function binary started with
/// `AWS_LAMBDA_RUNTIME_API` pointing here polls it for events and posts its answers, as on
/// Lambda. Each event is served once, in order; then `next` waits for ever.
pub struct RuntimeApi {
    pub address: String,
    answers: tokio::sync::mpsc::UnboundedReceiver<RuntimeAnswer>,
    task: tokio::task::JoinHandle<()>,
}

/// What the function posted for one invocation, and when its request for the event came.
#[derive(Debug, Clone)]
pub struct RuntimeAnswer {
    pub request_id: String,
    pub error: bool,
    pub body: String,
    pub asked_at: std::time::Instant,
    pub answered_at: std::time::Instant,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A trace header Lambda sends when the invocation is not sampled for X-Ray.
pub const UNSAMPLED_TRACE: &str = "Root=1-00000000-000000000000000000000000;Sampled=0";

impl RuntimeApi {
    /// The function `binary` (a path), to be spawned with what Lambda sets in its environment:
    /// this Runtime API, the function's name, memory size and version.
    pub fn command(&self, binary: &str, function_name: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .kill_on_drop(true);
        command
    }

    /// Serves `events`, each with `trace_header` as its `Lambda-Runtime-Trace-Id`.
    pub async fn start(events: Vec<serde_json::Value>, trace_header: &str) -> Self {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("an address").to_string();
        let (sender, answers) = tokio::sync::mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(
            events
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let asked = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let trace_header: Arc<str> = trace_header.into();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (queue, asked, sender) = (queue.clone(), asked.clone(), sender.clone());
                let trace_header = trace_header.clone();
                tokio::spawn(async move {
                    serve_runtime(stream, queue, asked, sender, &trace_header).await
                });
            }
        });
        RuntimeApi {
            address,
            answers,
            task,
        }
    }

    /// The next answer the function posts.
    pub async fn answer(&mut self, within: std::time::Duration) -> Option<RuntimeAnswer> {
        tokio::time::timeout(within, self.answers.recv())
            .await
            .ok()
            .flatten()
    }
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

async fn serve_runtime(
    mut stream: tokio::net::TcpStream,
    queue: Shared<std::collections::VecDeque<serde_json::Value>>,
    asked: Shared<std::collections::HashMap<String, std::time::Instant>>,
    answers: tokio::sync::mpsc::UnboundedSender<RuntimeAnswer>,
    trace_header: &str,
) {
    use tokio::io::AsyncWriteExt;
    // The runtime's client keeps its connection: serve requests until it closes.
    while let Some((head, body)) = read_request(&mut stream).await {
        let line = head.lines().next().unwrap_or_default().to_owned();
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let reply = if path.ends_with("/invocation/next") {
            let next = queue.lock().expect("no poisoned lock").pop_front();
            let Some(event) = next else {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return;
            };
            let request_id = Uuid::now_v7().to_string();
            asked
                .lock()
                .expect("no poisoned lock")
                .insert(request_id.clone(), std::time::Instant::now());
            let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(30);
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            let body = event.to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {request_id}\r\n\
                 lambda-runtime-deadline-ms: {deadline_ms}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:local\r\n\
                 lambda-runtime-trace-id: {trace_header}\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let mut parts = path.trim_start_matches('/').split('/');
            let request_id = parts.nth(3).unwrap_or_default().to_owned();
            let error = path.ends_with("/error");
            let asked_at = asked
                .lock()
                .expect("no poisoned lock")
                .remove(&request_id)
                .unwrap_or_else(std::time::Instant::now);
            let _ = answers.send(RuntimeAnswer {
                request_id,
                error,
                body: String::from_utf8_lossy(&body).into_owned(),
                asked_at,
                answered_at: std::time::Instant::now(),
            });
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".to_owned()
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
