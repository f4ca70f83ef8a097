//! DNS_CHECK: one query over UDP (RFC 1035 §4), success when a reply with our id, no
//! error and at least one answer comes back. The message code is pure and bounded.

use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;

use super::runner::Outcome;
use super::spec::{DnsProbe, Target};

/// Largest reply read (EDNS-less DNS over UDP is at most 512 bytes; allow more).
const MAX_REPLY: usize = 4096;

/// Why a name cannot be queried or a reply is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    /// A label is empty or longer than 63 bytes, or the name is over 255 bytes.
    #[error("bad query name '{0}'")]
    BadName(String),
    /// Shorter than a header.
    #[error("reply shorter than 12 bytes")]
    Short,
    /// Not an answer to our query.
    #[error("reply id {got} does not match {want}")]
    WrongId {
        /// Expected id.
        want: u16,
        /// Received id.
        got: u16,
    },
    /// QR bit not set.
    #[error("not a response")]
    NotResponse,
    /// RCODE is not NOERROR.
    #[error("rcode {0}")]
    Rcode(u8),
    /// ANCOUNT is 0.
    #[error("no answer")]
    NoAnswer,
}

/// Encode a standard query (RD set, class IN) for `name` and `qtype`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut total = 1;
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            let len = label.len();
            if len == 0 || len > 63 {
                return Err(DnsError::BadName(name.to_owned()));
            }
            total += len + 1;
            q.push(len as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    if total > 255 {
        return Err(DnsError::BadName(name.to_owned()));
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Check a reply's header against our query id (RFC 1035 §4.1.1). Returns ANCOUNT.
pub fn check_reply(id: u16, reply: &[u8]) -> Result<u16, DnsError> {
    let h = reply.get(..12).ok_or(DnsError::Short)?;
    let be = |i: usize| {
        u16::from_be_bytes([
            h.get(i).copied().unwrap_or(0),
            h.get(i + 1).copied().unwrap_or(0),
        ])
    };
    let got = be(0);
    if got != id {
        return Err(DnsError::WrongId { want: id, got });
    }
    let flags = be(2);
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotResponse);
    }
    let rcode = (flags & 0x000f) as u8;
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    match be(6) {
        0 => Err(DnsError::NoAnswer),
        n => Ok(n),
    }
}

fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u16
}

async fn query(t: &Target, p: &DnsProbe, timeout: Duration) -> io::Result<Result<u16, DnsError>> {
    let bind = t.bind.unwrap_or(match t.connect {
        std::net::SocketAddr::V4(_) => "0.0.0.0:0".parse().map_err(io::Error::other)?,
        std::net::SocketAddr::V6(_) => "[::]:0".parse().map_err(io::Error::other)?,
    });
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(t.connect).await?;
    let id = random_id();
    let q = encode_query(id, &p.name, p.qtype).map_err(io::Error::other)?;
    sock.send(&q).await?;
    let mut buf = vec![0u8; MAX_REPLY];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
        match check_reply(id, buf.get(..n).unwrap_or_default()) {
            // A stray datagram: keep waiting for ours.
            Err(DnsError::WrongId { .. } | DnsError::Short) => continue,
            r => return Ok(r),
        }
    }
}

/// DNS_CHECK.
pub async fn probe(t: &Target, p: &DnsProbe, timeout: Duration) -> Outcome {
    match query(t, p, timeout).await {
        Ok(Ok(n)) => Outcome::up(format!("{n} answer(s) for {}", p.name)),
        Ok(Err(e)) => Outcome::down(format!("dns {}: {e}", p.name)),
        Err(e) => Outcome::down(format!("dns {} to {}: {e}", p.name, t.connect)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        let q = encode_query(0x1234, "example.com", 1).unwrap();
        assert_eq!(
            q,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
        );
        let root = encode_query(1, ".", 6).unwrap();
        assert_eq!(&root[12..], b"\x00\x00\x06\x00\x01");
        assert!(encode_query(1, "a..b", 1).is_err());
        assert!(encode_query(1, &"a".repeat(64), 1).is_err());
        assert!(encode_query(1, &["abcdefgh"; 40].join("."), 1).is_err());
    }

    #[test]
    fn replies() {
        let mut r = encode_query(7, "example.com", 1).unwrap();
        assert_eq!(check_reply(7, &r), Err(DnsError::NotResponse));
        r[2] |= 0x80;
        assert_eq!(check_reply(7, &r), Err(DnsError::NoAnswer));
        r[7] = 1;
        assert_eq!(check_reply(7, &r), Ok(1));
        assert!(matches!(check_reply(8, &r), Err(DnsError::WrongId { .. })));
        r[3] |= 3;
        assert_eq!(check_reply(7, &r), Err(DnsError::Rcode(3)));
        assert_eq!(check_reply(7, &r[..5]), Err(DnsError::Short));
    }
}
