//! A stand-in for the X-Ray daemon that Lambda runs beside a traced function: what the
//! library's X-Ray layer sends, read back for the tests to check.

use std::net::{SocketAddr, UdpSocket};

use quote_pipeline::xray::DAEMON_HEADER;
use serde_json::Value;

/// A stand-in for the X-Ray daemon, for tests: a loopback port whose datagrams are read back
/// as documents, each checked for the daemon's header line.
pub struct DaemonStandIn {
    socket: UdpSocket,
}

impl DaemonStandIn {
    /// Waits up to `patience` for each datagram.
    pub fn start(patience: std::time::Duration) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port");
        socket
            .set_read_timeout(Some(patience))
            .expect("a read timeout");
        DaemonStandIn { socket }
    }

    pub fn address(&self) -> SocketAddr {
        self.socket.local_addr().expect("an address")
    }

    /// The next document sent, or `None` when none comes in time.
    pub fn next(&self) -> Option<Value> {
        let mut buffer = [0u8; 65536];
        let n = self.socket.recv(&mut buffer).ok()?;
        let datagram = std::str::from_utf8(&buffer[..n]).expect("a UTF-8 datagram");
        let (header, document) = datagram.split_once('\n').expect("a header line");
        assert_eq!(header, DAEMON_HEADER.trim_end());
        Some(serde_json::from_str(document).expect("a JSON document"))
    }

    /// Every document sent until none comes in time.
    pub fn all(&self) -> Vec<Value> {
        std::iter::from_fn(|| self.next()).collect()
    }
}
