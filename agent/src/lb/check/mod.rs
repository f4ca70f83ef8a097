//! Health checkers (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, DNS_CHECK, PING_CHECK,
//! UDP_CHECK). CONTRACT shared with the virtual-server runtime:
//! - [`RsKey`] names a real server of a virtual server;
//! - every checker is a task that sends [`CheckEvent`] on state changes (and the first
//!   result), never blocking the sender.

pub mod dns;
pub mod http;
pub mod misc;
pub mod ping;
pub mod reply;
pub mod runner;
pub mod spec;
pub mod tcp;
pub mod udp;

pub use runner::spawn;
pub use spec::CheckerSpec;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A real server within a virtual server: `(vs, rs address, rs port)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RsKey {
    /// The virtual server, as keepalived names it ("192.0.2.10:80/TCP", "fwmark 1");
    /// shared by every real server and checker of it.
    pub vs: Arc<str>,
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (0 for fwmark services without a port).
    pub port: u16,
}

/// One checker's verdict changed (or its first result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvent {
    /// Which real server.
    pub rs: RsKey,
    /// Which checker of it (index in the real server's checker list).
    pub checker: usize,
    /// Kind, for logs ("HTTP_GET").
    pub kind: &'static str,
    /// Passing now.
    pub up: bool,
    /// Why, one line ("connect timeout after 5s", "status 503", "digest mismatch").
    pub detail: String,
    /// Duration of the check that decided.
    pub latency: Duration,
}
