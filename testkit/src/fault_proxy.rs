//! Faults in front of the real ML engine, for the fault matrix and the scoring tests.

use crate::http1::{listen_before, read_request};

/// How the [`FaultProxy`] treats the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass requests through to the real engine.
    None,
    /// Close the connection without an answer, as a crashed engine would.
    Down,
    /// Answer 500.
    Error500,
    /// Never answer, so the client's timeout fires.
    Hang,
    /// Make a feature non-numeric in the quotes whose id ends in an even hex digit before
    /// passing the request on, so the real engine rejects those quotes for their values.
    BadFeatureOfEvenIds,
    /// Drop a feature from every quote before passing the request on, as an engine serving a
    /// model that wants a feature `score` does not send would see it: version skew.
    SkewedFeatureNames,
    /// Pass requests through after this many milliseconds.
    Delay(u64),
    /// Answer 413, as an engine does to a batch over its limit: an answer no retry changes.
    TooLarge,
    /// Answer 500 to every other request and hang on every fourth, pass the rest through.
    Flaky,
}

/// A TCP proxy in front of the real ML engine that injects faults: every request goes through
/// a connection of its own (`Connection: close`), so a change of fault applies at once.
pub struct FaultProxy {
    pub url: String,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, an `http://host:port` URL.
    pub async fn start(upstream: &str) -> Self {
        let (listener, url, upstream) = listen_before(upstream).await;
        let fault = std::sync::Arc::new(std::sync::Mutex::new(Fault::None));
        let shared = fault.clone();
        let task = tokio::spawn(async move {
            let mut served = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                let current = match *shared.lock().expect("no poisoned lock") {
                    Fault::Flaky if served % 4 == 3 => Fault::Hang,
                    Fault::Flaky if served % 2 == 1 => Fault::Error500,
                    Fault::Flaky => Fault::None,
                    other => other,
                };
                served += 1;
                tokio::spawn(proxy_one(client, upstream.clone(), current));
            }
        });
        FaultProxy { url, fault, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("no poisoned lock") = fault;
    }
}

async fn proxy_one(mut client: tokio::net::TcpStream, upstream: String, fault: Fault) {
    use tokio::io::AsyncWriteExt;
    let Some((head, mut body)) = read_request(&mut client).await else {
        return;
    };
    let reply = |status: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfault"
        )
    };
    match fault {
        Fault::Down => return,
        Fault::Error500 => {
            let _ = client
                .write_all(reply("500 Internal Server Error").as_bytes())
                .await;
            return;
        }
        Fault::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return;
        }
        Fault::TooLarge => {
            let _ = client
                .write_all(reply("413 Payload Too Large").as_bytes())
                .await;
            return;
        }
        Fault::BadFeatureOfEvenIds | Fault::SkewedFeatureNames => {
            if let Ok(serde_json::Value::Array(mut items)) = serde_json::from_slice(&body) {
                for item in &mut items {
                    let even = item["quote_id"]
                        .as_str()
                        .and_then(|id| id.chars().last())
                        .and_then(|c| c.to_digit(16))
                        .is_some_and(|d| d % 2 == 0);
                    let Some(features) = item["features"].as_object_mut() else {
                        continue;
                    };
                    if fault == Fault::SkewedFeatureNames {
                        features.remove("risk_score");
                    } else if even {
                        features.insert("risk_score".into(), "n/a".into());
                    }
                }
                body = serde_json::to_vec(&items).expect("serializable");
            }
        }
        Fault::Delay(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        Fault::None | Fault::Flaky => {}
    }
    forward(client, &upstream, &head, body).await;
}

/// Sends the request (`head` and `body`) to `upstream` on a connection of its own, and its
/// answer back to `client`.
pub(crate) async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    head: &str,
    body: Vec<u8>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let head: String = head
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            !lower.starts_with("content-length:")
                && !lower.starts_with("connection:")
                && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let request = format!(
        "{head}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if server.write_all(request.as_bytes()).await.is_err() || server.write_all(&body).await.is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    if server.read_to_end(&mut answer).await.is_ok() {
        let _ = client.write_all(&answer).await;
    }
}
