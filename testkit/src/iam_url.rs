//! A stand-in of a Lambda function URL with the `AWS_IAM` auth type in front of the real ML
//! engine: it checks each request's SigV4 signature (service `lambda`) against the
//! credentials it is given, answers 403 as Lambda does when it does not match, and passes the
//! others through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::Credentials;
use chrono::NaiveDateTime;
use quote_pipeline::request_signing::sign_request;

use crate::fault_proxy::forward;
use crate::http1::{listen_before, read_request};

pub struct IamFunctionUrl {
    pub url: String,
    accepted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IamFunctionUrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IamFunctionUrl {
    /// Listens on a free loopback port; accepts requests signed with `credentials` for
    /// `region` and forwards them to `upstream`, an `http://host:port` URL.
    pub async fn start(upstream: &str, credentials: Credentials, region: &str) -> Self {
        let (listener, url, upstream) = listen_before(upstream).await;
        let (accepted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counts = (Arc::clone(&accepted), Arc::clone(&refused));
        let region = region.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (credentials, region, upstream) =
                    (credentials.clone(), region.clone(), upstream.clone());
                let (accepted, refused) = (Arc::clone(&counts.0), Arc::clone(&counts.1));
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut client).await else {
                        return;
                    };
                    if signed_by(&head, &body, &credentials, &region) {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        forward(client, &upstream, &head, body).await;
                    } else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        use tokio::io::AsyncWriteExt;
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\
                                  content-length: 23\r\nconnection: close\r\n\r\n{\"Message\":\"Forbidden\"}",
                            )
                            .await;
                    }
                });
            }
        });
        IamFunctionUrl {
            url,
            accepted,
            refused,
            task,
        }
    }

    /// How many requests were signed as required, and how many were refused.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.accepted.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

/// Whether the request's `authorization` is the one `credentials` give for what arrived: its
/// method, path, signed headers and body, at its `x-amz-date`.
fn signed_by(head: &str, body: &[u8], credentials: &Credentials, region: &str) -> bool {
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (request_line.next(), request_line.next()) else {
        return false;
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(authorization), Some(date), Some(host)) = (
        header("authorization"),
        header("x-amz-date"),
        header("host"),
    ) else {
        return false;
    };
    let Ok(time) = NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ") else {
        return false;
    };
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return false;
    };
    // The headers it signed, but those the signer adds itself.
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    let mut builder = reqwest::Client::new()
        .request(method, format!("http://{host}{path}"))
        .body(body.to_vec());
    for name in signed.split(';') {
        if !name.starts_with("x-amz-") && name != "host" {
            builder = builder.header(name, header(name).unwrap_or_default());
        }
    }
    let Ok(mut expected) = builder.build() else {
        return false;
    };
    sign_request(&mut expected, credentials, region, time.and_utc().into()).is_ok()
        && expected.headers()["authorization"] == authorization
        && header("x-amz-security-token") == credentials.session_token()
}
