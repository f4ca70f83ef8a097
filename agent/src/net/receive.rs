//! The receive edge: datagrams off a VRRP socket, decoded into [`RxMsg`]s for the engine.
//!
//! Two paths share [`decode`]: a task per socket ([`task`]) that waits for datagrams and
//! sends them down a channel, and [`drain`], which the engine calls before it acts on a
//! protocol deadline, so that an advert already queued in the socket is fed before a
//! Master_Down expiry it would have cancelled (after a scheduling stall both are ready at
//! once). The engine is the only reader besides the task, on the same thread, so a
//! datagram is read exactly once.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::socket::{RecvInfo, VrrpSocket, RECV_BUF_LEN};
use crate::vrrp::packet::{parse_ipv4, Advert, ChecksumMode, DecodeError, Received, RxMeta};

/// One received datagram, decoded.
#[derive(Debug)]
pub struct RxMsg {
    /// Index of the socket in the engine's table.
    pub sock: usize,
    /// The VRID byte, if the packet was long enough to carry one.
    pub vrid: Option<u8>,
    /// Sender.
    pub src: IpAddr,
    /// The decode result.
    pub result: Result<Received, DecodeError>,
}

/// Decode one datagram as `recv` left it in `buf` (IPv4: with its header).
pub fn decode(sock: usize, info: &RecvInfo, buf: &[u8], checksum: ChecksumMode) -> RxMsg {
    let data = &buf[..info.len.min(buf.len())];
    let meta = info.meta();
    let (payload, meta) = match info.src {
        IpAddr::V4(_) => match parse_ipv4(data) {
            Ok((h, p)) => (
                p,
                RxMeta {
                    src: IpAddr::V4(h.src),
                    dst: IpAddr::V4(h.dst),
                    ttl: h.ttl,
                    ifindex: meta.ifindex,
                },
            ),
            Err(e) => {
                return RxMsg {
                    sock,
                    vrid: None,
                    src: info.src,
                    result: Err(e),
                }
            }
        },
        IpAddr::V6(_) => (data, meta),
    };
    let vrid = payload.get(1).copied();
    let result = Advert::decode(payload, &meta, checksum).map(|advert| Received { meta, advert });
    RxMsg {
        sock,
        vrid,
        src: info.src,
        result,
    }
}

/// Receive task of one socket: decode every datagram and hand it to the engine; ends
/// when the engine's end of the channel is gone.
pub async fn task(
    idx: usize,
    sock: Arc<VrrpSocket>,
    checksum: ChecksumMode,
    tx: mpsc::Sender<RxMsg>,
) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        let info = match sock.recv(&mut buf).await {
            Ok(i) => i,
            // One unreadable datagram (shorter than an IPv4 header): skip it at once, so
            // a stream of them cannot slow the receive path.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => {
                warn!(error = %e, "VRRP receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if tx.send(decode(idx, &info, &buf, checksum)).await.is_err() {
            return;
        }
    }
}

/// Every datagram queued on `sock` now, decoded, at most `max` (so a flood cannot hold
/// the engine here; the task reads the rest).
pub fn drain(
    idx: usize,
    sock: &VrrpSocket,
    checksum: ChecksumMode,
    buf: &mut [u8],
    max: usize,
) -> Vec<RxMsg> {
    let mut out = Vec::new();
    for _ in 0..max {
        match sock.try_recv(buf) {
            Ok(Some(info)) => out.push(decode(idx, &info, buf, checksum)),
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        }
    }
    out
}
