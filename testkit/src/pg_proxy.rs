//! Faults in the Postgres protocol, between a test's store and PgBouncer: a database that stops
//! answering, a connection lost before a statement, and a `COMMIT` that lands while its answer
//! is lost.
//!
//! The store connects to the proxy without TLS ([`PgFaultProxy::url`]), so the proxy reads
//! each message; the proxy speaks TLS to PgBouncer, which requires it, as RDS Proxy does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// How the [`PgFaultProxy`] treats what clients send from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFault {
    /// Pass everything through.
    None,
    /// Take every message and pass none on: a database that stopped answering.
    Stall,
    /// Close the connection when the client sends a statement (a `Parse`), before it reaches
    /// the database: a write lost before its `COMMIT`.
    CutBeforeStatement,
    /// Pass the client's `COMMIT` on, let the database answer it, and close the connection
    /// without passing the answer back: a commit that lands, its answer lost.
    CutAfterCommit,
}

/// A TCP proxy in front of PgBouncer that injects [`PgFault`]s.
pub struct PgFaultProxy {
    pub port: u16,
    fault: Arc<Mutex<PgFault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PgFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

impl PgFaultProxy {
    /// Listens on a free loopback port and forwards to the pooler at `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let fault = Arc::new(Mutex::new(PgFault::None));
        let shared = fault.clone();
        let upstream = upstream.to_owned();
        let tls = tls_connector();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, tls, fault) = (upstream.clone(), tls.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, tls, fault).await;
                });
            }
        });
        PgFaultProxy { port, fault, task }
    }

    pub fn set(&self, fault: PgFault) {
        *self.fault.lock().expect("no poisoned lock") = fault;
    }

    /// The URL of database `name` through the proxy as `user`, in plain text to the proxy.
    pub fn url(&self, name: &str, user: &str) -> String {
        format!(
            "postgres://{user}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    fn current(fault: &Mutex<PgFault>) -> PgFault {
        *fault.lock().expect("no poisoned lock")
    }
}

/// One client connection: its startup passed on over TLS, then each message either way, the
/// fault applied to each message the client sends.
async fn serve(
    client: TcpStream,
    upstream: &str,
    tls: TlsConnector,
    fault: Arc<Mutex<PgFault>>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let (mut from_client, mut to_client) = client.into_split();
    let startup = read_startup(&mut from_client, &mut to_client).await?;
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    server.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    server.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(std::io::Error::other("the pooler refused TLS"));
    }
    let name = ServerName::try_from("localhost").expect("a valid name");
    let server = tls.connect(name, server).await?;
    let (mut from_server, mut to_server) = tokio::io::split(server);
    to_server.write_all(&startup).await?;
    to_server.flush().await?;
    // Set once a COMMIT was passed on to be cut: the server's answers are then dropped.
    let cutting = AtomicBool::new(false);
    let upward = async {
        loop {
            let message = read_message(&mut from_client).await?;
            match PgFaultProxy::current(&fault) {
                PgFault::Stall => continue,
                PgFault::CutBeforeStatement if message[0] == b'P' => return Ok(()),
                PgFault::CutAfterCommit if message[0] == b'Q' && is_commit(&message) => {
                    cutting.store(true, Ordering::SeqCst);
                }
                _ => {}
            }
            to_server.write_all(&message).await?;
            to_server.flush().await?;
        }
    };
    let downward = async {
        loop {
            let message = read_message(&mut from_server).await?;
            if cutting.load(Ordering::SeqCst) {
                // The COMMIT's answer ends with ReadyForQuery: the commit is done; the client
                // never learns it.
                if message[0] == b'Z' {
                    return Ok(());
                }
                continue;
            }
            to_client.write_all(&message).await?;
        }
    };
    // Whichever side ends first ends the connection: both sockets close.
    tokio::select! {
        result = upward => result,
        result = downward => result,
    }
}

/// The client's startup message (after answering an `SSLRequest`, if it sends one, with "no").
async fn read_startup(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<Vec<u8>> {
    loop {
        let mut length = [0u8; 4];
        from.read_exact(&mut length).await?;
        let length = u32::from_be_bytes(length) as usize;
        let mut message = vec![0u8; length];
        message[..4].copy_from_slice(&(length as u32).to_be_bytes());
        from.read_exact(&mut message[4..]).await?;
        if message == SSL_REQUEST {
            to.write_all(b"N").await?;
            continue;
        }
        return Ok(message);
    }
}

/// One typed message: its type byte, length and body, as sent.
async fn read_message(from: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    from.read_exact(&mut head).await?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut message = Vec::with_capacity(1 + length);
    message.extend_from_slice(&head);
    message.resize(1 + length.max(4), 0);
    from.read_exact(&mut message[5..]).await?;
    Ok(message)
}

/// A simple `Query` whose text is `COMMIT` (how sqlx ends a transaction).
fn is_commit(message: &[u8]) -> bool {
    message[5..]
        .strip_suffix(&[0])
        .is_some_and(|query| query.trim_ascii().eq_ignore_ascii_case(b"COMMIT"))
}

/// TLS to the local pooler, whose certificate is the machine's self-signed one: not checked
/// (the proxy is a test's own, on loopback).
fn tls_connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the provider's protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
