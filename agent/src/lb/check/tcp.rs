//! TCP_CHECK, and the TCP connect every TCP-based probe starts with (`bindto`,
//! `bind_port`). The caller bounds the time (`connect_timeout`).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

use super::runner::Outcome;
use super::spec::Target;

/// Connect to the target, from `bind` when set, with `TCP_NODELAY` (the TLS handshake
/// and the request go out without waiting for ACKs).
pub async fn connect(t: &Target) -> io::Result<TcpStream> {
    let s = connect_plain(t).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connect to the target, from `bind` when set; nothing else (TCP_CHECK sends nothing,
/// so it spares the `setsockopt`).
async fn connect_plain(t: &Target) -> io::Result<TcpStream> {
    let sock = match t.connect {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(b) = t.bind {
        if b.port() != 0 {
            sock.set_reuseaddr(true)?;
        }
        sock.bind(b)?;
    }
    sock.connect(t.connect).await
}

/// TCP_CHECK: up when the connection is accepted; it is closed at once.
pub async fn probe(t: &Target) -> Outcome {
    match connect_plain(t).await {
        Ok(_) => Outcome::up(format!("connected to {}", t.connect)),
        Err(e) => Outcome::down(format!("connect to {}: {e}", t.connect)),
    }
}
