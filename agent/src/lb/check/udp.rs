//! UDP_CHECK: send `payload` on a connected UDP socket. Without `require_reply`, the
//! check passes unless an ICMP port unreachable comes back (ECONNREFUSED on the connected
//! socket) before the deadline; with it, a reply starting with the required bytes and
//! within `min_reply_length..=max_reply_length` must come.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::runner::Outcome;
use super::spec::{Target, UdpProbe};

/// Largest reply read.
const MAX_REPLY: usize = 65_536;

/// Why a UDP reply fails the probe (the checker's verdict detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Shorter than `min_reply_length` or longer than `max_reply_length`.
    #[error("reply length {0} out of range")]
    Length(usize),
    /// Does not start with `require_reply`.
    #[error("reply does not match require_reply")]
    Mismatch,
}

/// Whether a reply satisfies the probe (pure).
pub fn reply_ok(p: &UdpProbe, reply: &[u8]) -> Result<(), ReplyError> {
    if reply.len() < p.min_reply_length || reply.len() > p.max_reply_length {
        return Err(ReplyError::Length(reply.len()));
    }
    if let Some(want) = &p.require_reply {
        if !reply.starts_with(want) {
            return Err(ReplyError::Mismatch);
        }
    }
    Ok(())
}

async fn exchange(t: &Target, p: &UdpProbe, wait: Duration) -> io::Result<Option<Vec<u8>>> {
    let bind = t.bind.unwrap_or(match t.connect {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(t.connect).await?;
    sock.send(&p.payload).await?;
    let mut buf = vec![0u8; MAX_REPLY];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Err(_) => Ok(None),
        Ok(r) => {
            let n = r?;
            buf.truncate(n);
            Ok(Some(buf))
        }
    }
}

/// UDP_CHECK. Waits a little less than `timeout` for a reply or an ICMP error, so the
/// verdict comes before the attempt's deadline.
pub async fn probe(t: &Target, p: &UdpProbe, timeout: Duration) -> Outcome {
    let wait = timeout.mul_f64(0.9);
    match exchange(t, p, wait).await {
        Ok(Some(reply)) => match reply_ok(p, &reply) {
            Ok(()) => Outcome::up(format!("{} byte reply", reply.len())),
            Err(e) => Outcome::down(e.to_string()),
        },
        Ok(None) if p.require_reply.is_some() => Outcome::down("no reply"),
        Ok(None) => Outcome::up("no icmp error"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Outcome::down(format!("{}: port unreachable", t.connect))
        }
        Err(e) => Outcome::down(format!("{}: {e}", t.connect)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let mut p = UdpProbe {
            payload: vec![],
            require_reply: Some(b"OK".to_vec()),
            min_reply_length: 0,
            max_reply_length: 10,
        };
        assert!(reply_ok(&p, b"OK fine").is_ok());
        assert!(reply_ok(&p, b"NO").is_err());
        assert!(reply_ok(&p, b"OK but far too long").is_err());
        p.require_reply = None;
        p.min_reply_length = 3;
        assert!(reply_ok(&p, b"ab").is_err());
    }
}
