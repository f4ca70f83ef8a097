//! The raw VRRP socket: one per (interface, address family), protocol 112.
//!
//! What lives here: opening and configuring the socket (multicast group, TTL / hop limit
//! 255, bound to the interface, `IP_MULTICAST_ALL` off, packet info on), a non-blocking
//! `send_to` that pins the source address, and an async `recv` that reports source,
//! destination, TTL / hop limit and the receiving interface. What does not: the VRRP
//! codec (vrrp/packet.rs) and any decision about a packet.
//!
//! Source address. keepalived binds its *send* socket to the primary address so the v3
//! checksum's pseudo-header source is known. Binding a raw IPv4 socket to a unicast
//! address also filters *receive* to that destination, which would drop 224.0.0.18, so
//! one socket here does not bind: every datagram carries an `IP_PKTINFO` /
//! `IPV6_PKTINFO` control message with the chosen source and the interface, and the
//! multicast interface option names the same source. The kernel then uses exactly that
//! source (or fails the send), which is what the checksum was computed over.
//!
//! Checksums: the kernel neither fills nor checks the VRRP checksum (no `IPV6_CHECKSUM`),
//! so a bad checksum reaches the codec and is counted there.

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, MsgHdr, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::vrrp::packet::{RxMeta, IPPROTO_VRRP};

/// The IPv4 VRRP multicast group (RFC 5798 §5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 VRRP multicast group (RFC 5798 §5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// A receive buffer this large never truncates a VRRP packet (255 IPv6 addresses plus
/// an IPv4 header with options).
pub const RECV_BUF_LEN: usize = 8192;
/// TTL / hop limit every VRRP packet is sent with and must arrive with (RFC 5798 §5.1.1.3).
pub const VRRP_TTL: u8 = 255;

/// Whether the socket joins the VRRP multicast group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Join 224.0.0.18 / ff02::12 on the interface (the default VRRP transport).
    Multicast,
    /// Unicast peers only (keepalived's `unicast_peer`): no group is joined.
    Unicast,
}

/// What `recv` learned about one datagram besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvInfo {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address (the group, or our unicast address).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub ttl: u8,
    /// Interface the datagram arrived on.
    pub ifindex: u32,
    /// Bytes written to the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer (it was cut at `len`).
    pub truncated: bool,
}

impl RecvInfo {
    /// The metadata the codec and the instance take.
    pub fn meta(&self) -> RxMeta {
        RxMeta {
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            ifindex: self.ifindex,
        }
    }
}

/// A raw VRRP socket bound to one interface and one address family.
///
/// What `recv` puts in the buffer differs per family, as the kernel hands it out:
/// - IPv4: the whole IP datagram, IPv4 header (with options) first; `parse_ipv4`
///   strips it. `ttl` and `dst` are also read from that header.
/// - IPv6: the VRRP message only (raw IPv6 sockets never see the IPv6 header); `ttl` is
///   the hop limit from `IPV6_HOPLIMIT`, `dst` comes from `IPV6_PKTINFO`.
#[derive(Debug)]
pub struct VrrpSocket {
    /// The registered socket; tokio tells us when it is readable.
    fd: AsyncFd<Socket>,
    /// Interface the socket is bound to and sends on.
    ifindex: u32,
    /// Source address put on every datagram (primary address or `unicast_src_ip`).
    src: IpAddr,
}

impl VrrpSocket {
    /// Open a socket on `ifindex` sending from `src` (its family picks IPv4 or IPv6).
    ///
    /// Must be called inside a tokio runtime. Needs CAP_NET_RAW.
    pub fn open(ifindex: u32, src: IpAddr, mode: Mode) -> io::Result<Self> {
        let index = NonZeroU32::new(ifindex)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ifindex 0"))?;
        let domain = match src {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let sock = Socket::new(
            domain,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        match src {
            IpAddr::V4(src4) => {
                // SO_BINDTOIFINDEX: only this interface's traffic, so two instances on
                // two interfaces (or a veth pair in one host) never see each other's.
                sock.bind_device_by_index_v4(Some(index))?;
                // On by default: a raw socket would get every group anyone joined.
                sock.set_multicast_all_v4(false)?;
                if mode == Mode::Multicast {
                    sock.join_multicast_v4_n(
                        &VRRP_GROUP_V4,
                        &InterfaceIndexOrAddress::Index(ifindex),
                    )?;
                }
                // The default multicast TTL is 1, which receivers must drop (§5.1.1.3).
                sock.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
                sock.set_ttl_v4(u32::from(VRRP_TTL))?;
                sock.set_multicast_loop_v4(false)?;
                // Outgoing multicast interface and source; without it sends fail with
                // "network is unreachable".
                let mreqn = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr {
                        s_addr: u32::from_ne_bytes(src4.octets()),
                    },
                    imr_ifindex: ifindex_c(ifindex)?,
                };
                setsockopt(&sock, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)?;
                setsockopt(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, &1_i32)?;
            }
            IpAddr::V6(_) => {
                sock.bind_device_by_index_v6(Some(index))?;
                // IPV6_MULTICAST_ALL exists since Linux 4.20; older kernels lack it.
                if let Err(e) = sock.set_multicast_all_v6(false) {
                    if e.raw_os_error() != Some(libc::ENOPROTOOPT) {
                        return Err(e);
                    }
                }
                if mode == Mode::Multicast {
                    sock.join_multicast_v6(&VRRP_GROUP_V6, ifindex)?;
                }
                sock.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
                sock.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
                sock.set_multicast_if_v6(ifindex)?;
                sock.set_multicast_loop_v6(false)?;
                setsockopt(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &1_i32)?;
                sock.set_recv_hoplimit_v6(true)?;
            }
        }
        let fd = register(sock)?;
        Ok(Self { fd, ifindex, src })
    }

    /// The interface this socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The source address every datagram is sent from.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    /// Wait for one datagram; see the type's doc for what lands in `buf`.
    ///
    /// An `InvalidData` error concerns that one datagram (e.g. an IPv4 datagram shorter
    /// than its header): count it and call again, the socket stays usable.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<RecvInfo> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_once(fd.get_ref().as_raw_fd(), buf, self.src)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// One datagram if one is queued now, without waiting (`None`: the queue is empty).
    /// The engine drains every socket this way before acting on a protocol deadline.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<RecvInfo>> {
        match recv_once(self.fd.get_ref().as_raw_fd(), buf, self.src) {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one VRRP message (no IP header: the kernel builds it) to `dst`, which is the
    /// group or a unicast peer. Never blocks: a full socket buffer is `WouldBlock`.
    pub fn send_to(&self, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        let sock = self.fd.get_ref();
        let (addr, control) = match (self.src, dst) {
            (IpAddr::V4(src), IpAddr::V4(_)) => {
                let mut data = [0u8; size_of::<libc::in_pktinfo>()];
                data[..4].copy_from_slice(&ifindex_c(self.ifindex)?.to_ne_bytes());
                // ipi_spec_dst: the source address the kernel puts in the header.
                data[4..8].copy_from_slice(&src.octets());
                (
                    SockAddr::from(SocketAddr::new(dst, 0)),
                    cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &data),
                )
            }
            (IpAddr::V6(src), IpAddr::V6(dst6)) => {
                let mut data = [0u8; size_of::<libc::in6_pktinfo>()];
                data[..16].copy_from_slice(&src.octets());
                data[16..20].copy_from_slice(&self.ifindex.to_ne_bytes());
                // The scope id matters for link-local and ff02:: destinations.
                let sa = std::net::SocketAddrV6::new(dst6, 0, 0, self.ifindex);
                (
                    SockAddr::from(sa),
                    cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &data),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "destination family differs from the socket's",
                ))
            }
        };
        let bufs = [io::IoSlice::new(payload)];
        let msg = MsgHdr::new()
            .with_addr(&addr)
            .with_buffers(&bufs)
            .with_control(&control);
        let sent = sock.sendmsg(&msg, 0)?;
        if sent != payload.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }
}

/// Register a socket with the tokio reactor (the non-deprecated `AsyncFd` API).
#[allow(unsafe_code)]
fn register(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor: it is open, it is closed only when the
    // `Socket` drops (which the `AsyncFd` owns and drops last), and `as_raw_fd` always
    // returns that same descriptor. That is exactly `register`'s contract.
    let fd = unsafe { AsyncFd::register(sock) }?;
    Ok(fd)
}

/// Set an option whose value is a plain C struct or integer.
#[allow(unsafe_code)]
pub(crate) fn setsockopt<T: Copy>(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
    // SAFETY: `value` points to `size_of::<T>()` readable bytes that live across the
    // call; the kernel only reads `len` bytes from it and `sock` is an open descriptor.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ifindex_c(ifindex: u32) -> io::Result<libc::c_int> {
    libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))
}

/// Header length of a control message, rounded as `CMSG_ALIGN` does.
const CMSG_HDR: usize = cmsg_align(size_of::<libc::cmsghdr>());

const fn cmsg_align(len: usize) -> usize {
    let a = size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// Build one control message (`CMSG_SPACE` bytes) by hand, without pointer arithmetic.
fn cmsg(level: libc::c_int, kind: libc::c_int, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; CMSG_HDR + cmsg_align(data.len())];
    let len = CMSG_HDR + data.len(); // CMSG_LEN
    let off_len = offset_of!(libc::cmsghdr, cmsg_len);
    // glibc: cmsg_len is a size_t.
    out[off_len..off_len + size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    let off_level = offset_of!(libc::cmsghdr, cmsg_level);
    out[off_level..off_level + 4].copy_from_slice(&level.to_ne_bytes());
    let off_type = offset_of!(libc::cmsghdr, cmsg_type);
    out[off_type..off_type + 4].copy_from_slice(&kind.to_ne_bytes());
    out[CMSG_HDR..CMSG_HDR + data.len()].copy_from_slice(data);
    out
}

/// Walk a received control buffer: yields (level, type, data). Bounds-checked.
fn cmsgs(buf: &[u8]) -> impl Iterator<Item = (libc::c_int, libc::c_int, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let hdr = buf.get(pos..pos.checked_add(CMSG_HDR)?)?;
        let off_len = offset_of!(libc::cmsghdr, cmsg_len);
        let len = usize::from_ne_bytes(
            hdr.get(off_len..off_len + size_of::<usize>())?
                .try_into()
                .ok()?,
        );
        let off_level = offset_of!(libc::cmsghdr, cmsg_level);
        let level = i32::from_ne_bytes(hdr.get(off_level..off_level + 4)?.try_into().ok()?);
        let off_type = offset_of!(libc::cmsghdr, cmsg_type);
        let kind = i32::from_ne_bytes(hdr.get(off_type..off_type + 4)?.try_into().ok()?);
        let data_len = len.checked_sub(CMSG_HDR)?;
        let data = buf.get(pos + CMSG_HDR..pos + CMSG_HDR + data_len)?;
        pos = pos.checked_add(cmsg_align(len))?;
        Some((level, kind, data))
    })
}

/// One non-blocking `recvmsg`; `WouldBlock` when the queue is empty.
fn recv_once(fd: RawFd, buf: &mut [u8], local: IpAddr) -> io::Result<RecvInfo> {
    let mut control = [0u8; 256];
    let raw = raw_recvmsg(fd, buf, &mut control)?;
    let ctrl = control.get(..raw.control_len).unwrap_or(&control);
    let len = raw.len.min(buf.len());
    let data = &buf[..len];
    match (local, raw.src) {
        (IpAddr::V4(_), _) => {
            let mut ifindex = 0u32;
            let mut dst = None;
            for (level, kind, d) in cmsgs(ctrl) {
                if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && d.len() >= 12 {
                    ifindex = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
                    dst = Some(Ipv4Addr::new(d[8], d[9], d[10], d[11]));
                }
            }
            // The IPv4 header is in the buffer: its TTL, source and destination are the
            // ones on the wire.
            if data.len() < 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short ipv4 header",
                ));
            }
            let src = Ipv4Addr::new(data[12], data[13], data[14], data[15]);
            let hdr_dst = Ipv4Addr::new(data[16], data[17], data[18], data[19]);
            Ok(RecvInfo {
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst.unwrap_or(hdr_dst)),
                ttl: data[8],
                ifindex,
                len,
                truncated: raw.len > buf.len(),
            })
        }
        (IpAddr::V6(_), src) => {
            let mut ifindex = 0u32;
            let mut dst = None;
            let mut ttl = None;
            for (level, kind, d) in cmsgs(ctrl) {
                if level != libc::IPPROTO_IPV6 {
                    continue;
                }
                if kind == libc::IPV6_PKTINFO && d.len() >= 20 {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&d[..16]);
                    dst = Some(Ipv6Addr::from(a));
                    ifindex = u32::from_ne_bytes([d[16], d[17], d[18], d[19]]);
                } else if kind == libc::IPV6_HOPLIMIT && d.len() >= 4 {
                    let hl = i32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
                    ttl = u8::try_from(hl).ok();
                }
            }
            let (Some(IpAddr::V6(src)), Some(dst), Some(ttl)) = (src, dst, ttl) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "ipv6 datagram without source, pktinfo or hop limit",
                ));
            };
            Ok(RecvInfo {
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                ttl,
                ifindex,
                len,
                truncated: raw.len > buf.len(),
            })
        }
    }
}

/// What `recvmsg` returned, before interpretation.
struct RawRecv {
    /// Real datagram length (MSG_TRUNC), may exceed the buffer.
    len: usize,
    /// Bytes of control data written.
    control_len: usize,
    /// Sender from `msg_name`.
    src: Option<IpAddr>,
}

#[allow(unsafe_code)]
fn raw_recvmsg(fd: RawFd, buf: &mut [u8], control: &mut [u8]) -> io::Result<RawRecv> {
    // SAFETY: all-zero is a valid `sockaddr_storage` and `msghdr` (plain C data).
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: every pointer in `msg` refers to a live, exclusively borrowed buffer of the
    // stated length (`name`, `iov` -> `buf`, `control`) that outlives the call; the
    // kernel writes at most those lengths. `fd` is an open socket owned by the caller.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = usize::try_from(n).unwrap_or(0);
    let src = match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the kernel wrote a sockaddr_in; it is smaller than
            // and no more aligned than sockaddr_storage, and any bytes are a valid value.
            let sin =
                unsafe { *(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { *(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    };
    Ok(RawRecv {
        len,
        control_len: msg.msg_controllen.min(control.len()),
        src,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_round_trip() {
        let a = cmsg(
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        );
        let b = cmsg(
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPLIMIT,
            &255_i32.to_ne_bytes(),
        );
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let got: Vec<_> = cmsgs(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, libc::IPPROTO_IP);
        assert_eq!(got[0].1, libc::IP_PKTINFO);
        assert_eq!(got[0].2, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(got[1].1, libc::IPV6_HOPLIMIT);
        assert_eq!(got[1].2, &255_i32.to_ne_bytes());
    }

    #[test]
    fn cmsgs_truncated_is_bounded() {
        let a = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 12]);
        for cut in 0..a.len() {
            // A cut buffer never panics and never yields a message past its end.
            let n = cmsgs(&a[..cut]).count();
            assert!(n <= 1);
        }
        // A length field smaller than the header stops the walk.
        let mut bad = a.clone();
        bad[..size_of::<usize>()].copy_from_slice(&1usize.to_ne_bytes());
        assert_eq!(cmsgs(&bad).count(), 0);
    }

    #[test]
    fn libc_cmsg_macros_agree() {
        #[allow(unsafe_code)]
        // SAFETY: CMSG_SPACE / CMSG_LEN are pure arithmetic on their argument.
        let (space, len) = unsafe { (libc::CMSG_SPACE(12), libc::CMSG_LEN(12)) };
        let ours = cmsg(0, 0, &[0; 12]);
        assert_eq!(ours.len(), space as usize);
        assert_eq!(CMSG_HDR + 12, len as usize);
    }
}
