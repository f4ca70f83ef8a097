//! PING_CHECK: one ICMP echo (RFC 792) or ICMPv6 echo (RFC 4443 §4.1) to the real
//! server; up when the matching echo reply arrives before the deadline.
//!
//! The socket is an unprivileged "ping" datagram socket when the kernel allows it
//! (`net.ipv4.ping_group_range`), else a raw socket (we run as root). On a ping socket
//! the kernel owns the identifier; on a raw socket we match it ourselves, and IPv4 raw
//! reads carry the IP header, which is skipped. Message code is pure and bounded.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::runner::Outcome;
use super::spec::Target;

/// ICMP echo request / reply types.
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// RFC 1071 Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request (type per family, checksum filled for IPv4; the kernel fills the
/// ICMPv6 one).
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    if !v6 {
        let c = checksum(&m);
        if let Some(s) = m.get_mut(2..4) {
            s.copy_from_slice(&c.to_be_bytes());
        }
    }
    m
}

/// Whether `pkt` is the echo reply to our request. `ip_header`: the read starts with an
/// IPv4 header (raw IPv4 sockets). `id`: checked when `Some` (raw sockets).
pub fn is_our_reply(
    v6: bool,
    ip_header: bool,
    pkt: &[u8],
    id: Option<u16>,
    seq: u16,
    payload: &[u8],
) -> bool {
    let icmp = if ip_header {
        let ihl = pkt.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        if ihl < 20 {
            return false;
        }
        match pkt.get(ihl..) {
            Some(p) => p,
            None => return false,
        }
    } else {
        pkt
    };
    let want_type = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    let (Some(&ty), Some(idb), Some(sb), Some(data)) =
        (icmp.first(), icmp.get(4..6), icmp.get(6..8), icmp.get(8..))
    else {
        return false;
    };
    ty == want_type
        && id.is_none_or(|i| idb == i.to_be_bytes())
        && sb == seq.to_be_bytes()
        && data == payload
}

fn open(ip: IpAddr) -> io::Result<(Socket, bool)> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(_) => Ok((Socket::new(domain, Type::RAW, Some(proto))?, true)),
    }
}

fn token() -> (u16, u16, [u8; 16]) {
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    let mut h = s.build_hasher();
    h.write_u8(1);
    let a = h.finish();
    h.write_u8(2);
    let b = h.finish();
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&a.to_be_bytes());
    p[8..].copy_from_slice(&b.to_be_bytes());
    ((a >> 16) as u16, a as u16, p)
}

async fn ping(t: &Target, timeout: Duration) -> io::Result<()> {
    let ip = t.connect.ip();
    let v6 = ip.is_ipv6();
    let (sock, raw) = open(ip)?;
    if let Some(b) = t.bind {
        sock.bind(&SocketAddr::new(b.ip(), 0).into())?;
    }
    sock.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))?;
    let (id, seq, payload) = token();
    let req = echo_request(v6, id, seq, &payload);
    sock.send_to(&req, SocketAddr::new(ip, 0)).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo reply"))??;
        if from.ip() != ip {
            continue;
        }
        let pkt = buf.get(..n).unwrap_or_default();
        if is_our_reply(v6, raw && !v6, pkt, raw.then_some(id), seq, &payload) {
            return Ok(());
        }
    }
}

/// PING_CHECK.
pub async fn probe(t: &Target, timeout: Duration) -> Outcome {
    match ping(t, timeout).await {
        Ok(()) => Outcome::up(format!("echo reply from {}", t.connect.ip())),
        Err(e) => Outcome::down(format!("ping {}: {e}", t.connect.ip())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_reply_matching() {
        let req = echo_request(false, 0x1234, 7, b"hi");
        assert_eq!(checksum(&req), 0, "a message with its checksum sums to 0");
        let mut reply = req.clone();
        reply[0] = ECHO_REPLY_V4;
        assert!(is_our_reply(false, false, &reply, Some(0x1234), 7, b"hi"));
        assert!(!is_our_reply(false, false, &reply, Some(0x1235), 7, b"hi"));
        assert!(!is_our_reply(false, false, &reply, None, 8, b"hi"));
        assert!(!is_our_reply(false, false, &req, None, 7, b"hi"));
        let mut with_ip = vec![0x45; 20];
        with_ip.extend_from_slice(&reply);
        assert!(is_our_reply(false, true, &with_ip, Some(0x1234), 7, b"hi"));
        assert!(!is_our_reply(false, true, &[0x4f, 0, 0], None, 7, b"hi"));
        assert!(!is_our_reply(true, false, &[], None, 7, b""));
    }
}
