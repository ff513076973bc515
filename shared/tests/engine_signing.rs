//! `score`'s requests to an engine behind an `AWS_IAM` function URL, as they reach the wire: a
//! local listener takes the request the engine client sends and checks that its signature
//! covers exactly what arrived (method, path, host and port, content type, body).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use chrono::NaiveDateTime;
use quote_pipeline::config::{MlEngineAuth, MlEngineConfig};
use quote_pipeline::ml_engine::MlEngine;
use quote_pipeline::pricing::Predictor;
use quote_pipeline::request_signing::sign_request;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Takes one request, answers it with a 413 (an answer the client does not retry).
async fn receive_one(listener: TcpListener) -> Received {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed before the request's head");
        bytes.extend_from_slice(&buffer[..n]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, path) = (request_line.next().unwrap(), request_line.next().unwrap());
    let headers: HashMap<String, String> = lines
        .map(|line| line.split_once(": ").unwrap())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = bytes[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buffer).await.unwrap();
        body.extend_from_slice(&buffer[..n]);
    }
    socket
        .write_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await
        .unwrap();
    Received {
        method: method.into(),
        path: path.into(),
        headers,
        body,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn requests_to_an_iam_function_url_are_signed_over_what_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(receive_one(listener));
    let credentials = Credentials::new(
        "ASIAEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("role-session-token".into()),
        Some(SystemTime::now() + Duration::from_secs(3600)),
        "test",
    );
    let sdk = aws_config::SdkConfig::builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
        .build();
    let config = MlEngineConfig {
        url,
        chunk_size: 10,
        concurrency: 1,
        timeout_ms: 5_000,
        auth: MlEngineAuth::Iam {
            region: "eu-west-1".into(),
        },
    };
    let engine = MlEngine::new(&config, Some(&sdk)).unwrap();
    let quote = Uuid::now_v7();
    let deadline = Instant::now() + Duration::from_secs(10);
    let outcome = engine.predict(&[(quote, [1.0; 13])], deadline).await;
    assert_eq!(outcome.permanent_errors, 1, "the 413 came back");

    let received = server.await.unwrap();
    assert_eq!(
        (received.method.as_str(), received.path.as_str()),
        ("POST", "/predict/batch")
    );
    let header = |name: &str| received.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("x-amz-security-token"), "role-session-token");
    assert_eq!(
        header("x-amz-content-sha256"),
        hex(&Sha256::digest(&received.body))
    );
    let authorization = header("authorization");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/")
            && authorization.contains("/eu-west-1/lambda/aws4_request")
            && authorization.contains(
                "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
        "{authorization}"
    );

    // Signing what arrived, at the time it says, gives the signature it carries.
    let time = NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let mut arrived = reqwest::Client::new()
        .post(format!("http://{}{}", header("host"), received.path))
        .header("content-type", header("content-type"))
        .body(received.body.clone())
        .build()
        .unwrap();
    sign_request(&mut arrived, &credentials, "eu-west-1", time.into()).unwrap();
    assert_eq!(
        arrived.headers()["authorization"].to_str().unwrap(),
        authorization
    );
}
