//! Gratuitous ARP (IPv4 VIPs) and unsolicited Neighbor Advertisements (IPv6 VIPs).
//!
//! What lives here: building the two frames (pure functions, unit-tested) and sending
//! them on an `AF_PACKET` socket bound to the interface, so the source MAC is exactly
//! the one given (the interface's, or the virtual MAC with `use_vmac`). What does not:
//! when and how often to announce (`garp_master_delay`, `garp_master_repeat`,
//! `garp_master_refresh`, `garp_lower_prio_*`): the instance decides and the runtime
//! schedules calls to [`Announcer::announce`].
//!
//! Frames (RFC 5798 §6.4.2 "Transition to Master"):
//! - IPv4: an ARP *request* with sender and target protocol address both the VIP,
//!   Ethernet broadcast, as keepalived sends it (requests are understood by more hosts
//!   than replies; RFC 5227 §3 calls it an ARP announcement).
//! - IPv6: an unsolicited NA (RFC 4861 §4.4, §7.2.6) to ff02::1 with hop limit 255,
//!   R = router flag, S = 0, O = 1, and the target link-layer address option.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

/// Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Ethernet address of ff02::1 (all nodes), RFC 2464 §7.
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// ff02::1, where unsolicited NAs go (RFC 4861 §7.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_HDR: usize = 14;
/// Minimum Ethernet frame without FCS; shorter frames are padded with zeros.
const ETH_MIN: usize = 60;
const ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_TARGET_LL: u8 = 2;

/// The gratuitous ARP request for `vip`, sent from `mac` (padded to 60 bytes).
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_MIN);
    f.extend_from_slice(&BROADCAST_MAC);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&1u16.to_be_bytes()); // op: request
    f.extend_from_slice(&mac); // sender hardware address
    f.extend_from_slice(&vip.octets()); // sender protocol address
    f.extend_from_slice(&BROADCAST_MAC); // target hardware address (keepalived: all ones)
    f.extend_from_slice(&vip.octets()); // target protocol address = sender
    f.resize(ETH_MIN, 0);
    f
}

/// The unsolicited Neighbor Advertisement for `target`, from `src` (an address of the
/// interface, normally its link-local) and `mac`; `router` sets the R flag.
pub fn na_frame(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, router: bool) -> Vec<u8> {
    // ICMPv6 NA (RFC 4861 §4.4) + target link-layer address option (§4.6.1).
    let mut icmp = Vec::with_capacity(32);
    icmp.push(ND_NEIGHBOR_ADVERT);
    icmp.push(0); // code
    icmp.extend_from_slice(&[0, 0]); // checksum, filled below
    let flags = if router { 0x80 } else { 0 } | 0x20; // R, S = 0, O = 1
    icmp.extend_from_slice(&[flags, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.push(ND_OPT_TARGET_LL);
    icmp.push(1); // length in units of 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(src, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(ETH_HDR + 40 + icmp.len());
    f.extend_from_slice(&ALL_NODES_MAC);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow 0
    let plen = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    f.extend_from_slice(&plen.to_be_bytes());
    f.push(ICMPV6);
    f.push(255); // hop limit: receivers drop ND with anything else (RFC 4861 §7.1.2)
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and `msg`
/// (whose checksum field must be zero).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum = sum.wrapping_add(hi | lo);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// How one announce round went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceReport {
    /// Frames handed to the kernel.
    pub sent: u32,
    /// Of those, gratuitous ARPs (IPv4).
    pub garp: u32,
    /// Of those, unsolicited NAs (IPv6).
    pub na: u32,
    /// Frames dropped because the socket buffer was full (never waited for).
    pub dropped: u32,
}

/// Sends GARPs and NAs for one interface; cheap to keep open per instance.
#[derive(Debug)]
pub struct Announcer {
    /// AF_PACKET raw socket, protocol 0: it sends and never receives.
    sock: Socket,
    /// Interface the frames leave on.
    ifindex: u32,
    /// Source MAC (interface MAC, or the virtual MAC with `use_vmac`).
    mac: [u8; 6],
    /// IPv6 source of the NAs; `None` sends each NA from its own target address.
    na_src: Option<Ipv6Addr>,
    /// Set the R flag in NAs (a VRRP master is a router, RFC 5798 §8.2).
    router: bool,
}

impl Announcer {
    /// Open the sender for `ifindex` with source MAC `mac`. Needs CAP_NET_RAW.
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        // Protocol 0: no frames are queued to this socket, so it never fills up.
        let sock = Socket::new(
            Domain::PACKET,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(0)),
        )?;
        Ok(Self {
            sock,
            ifindex,
            mac,
            na_src: None,
            router: true,
        })
    }

    /// Send NAs from `src` (keepalived uses the interface's link-local address).
    pub fn with_na_source(mut self, src: Ipv6Addr) -> Self {
        self.na_src = Some(src);
        self
    }

    /// Set or clear the NA router flag (default set).
    pub fn with_router_flag(mut self, router: bool) -> Self {
        self.router = router;
        self
    }

    /// One round: a GARP per IPv4 address and an NA per IPv6 address. Never blocks.
    pub fn announce(&self, addrs: &[IpAddr]) -> io::Result<AnnounceReport> {
        let mut report = AnnounceReport::default();
        for addr in addrs {
            let (frame, proto, dst) = match addr {
                IpAddr::V4(v4) => (garp_frame(self.mac, *v4), ETH_P_ARP, BROADCAST_MAC),
                IpAddr::V6(v6) => {
                    let src = self.na_src.unwrap_or(*v6);
                    (
                        na_frame(self.mac, src, *v6, self.router),
                        ETH_P_IPV6,
                        ALL_NODES_MAC,
                    )
                }
            };
            let to = link_addr(self.ifindex, proto, dst)?;
            match self.sock.send_to(&frame, &to) {
                Ok(_) => {
                    report.sent += 1;
                    if addr.is_ipv4() {
                        report.garp += 1;
                    } else {
                        report.na += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => report.dropped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

/// Send `count` back-to-back rounds for `addrs` on `ifindex` from `mac`.
pub fn announce(
    ifindex: u32,
    mac: [u8; 6],
    addrs: &[IpAddr],
    count: u32,
) -> io::Result<AnnounceReport> {
    let a = Announcer::open(ifindex, mac)?;
    let mut total = AnnounceReport::default();
    for _ in 0..count {
        let r = a.announce(addrs)?;
        total.sent += r.sent;
        total.garp += r.garp;
        total.na += r.na;
        total.dropped += r.dropped;
    }
    Ok(total)
}

/// A `sockaddr_ll` naming the interface, EtherType and destination MAC.
#[allow(unsafe_code)]
fn link_addr(ifindex: u32, proto: u16, dst: [u8; 6]) -> io::Result<SockAddr> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's `sockaddr_*` types, as `view_as`
    // requires, and it fits in the storage (checked by `view_as`).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = proto.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the family is AF_PACKET, the storage holds an initialised `sockaddr_ll`
    // and `len` is its size: family, content and length match.
    Ok(unsafe { SockAddr::new(storage, len) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];

    #[test]
    fn garp_fields() {
        let vip = Ipv4Addr::new(192, 0, 2, 10);
        let f = garp_frame(MAC, vip);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &BROADCAST_MAC);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &MAC, "sender mac");
        assert_eq!(&f[28..32], &vip.octets(), "sender ip");
        assert_eq!(&f[38..42], &vip.octets(), "target ip = sender ip");
        assert!(f[42..].iter().all(|b| *b == 0), "zero padding");
    }

    #[test]
    fn na_fields_and_checksum() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = na_frame(MAC, src, target, true);
        assert_eq!(&f[0..6], &ALL_NODES_MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..];
        assert_eq!(ip[6], 58, "next header icmpv6");
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32);
        assert_eq!(&ip[8..24], &src.octets());
        assert_eq!(&ip[24..40], &ALL_NODES.octets());
        let icmp = &ip[40..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0xa0, "R=1 S=0 O=1");
        assert_eq!(&icmp[8..24], &target.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // A correct checksum makes the sum over pseudo-header and message fold to 0.
        assert_eq!(icmpv6_checksum(src, ALL_NODES, icmp), 0);
        let not_router = na_frame(MAC, src, target, false);
        assert_eq!(not_router[14 + 40 + 4], 0x20);
    }

    #[test]
    fn checksum_known_vector() {
        // Odd length is padded with a zero byte; the result changes if a byte changes.
        let a = icmpv6_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &[1, 2, 3]);
        let b = icmpv6_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &[1, 2, 4]);
        assert_ne!(a, b);
        // Sum: ::1 twice (2), length 3, next header 58, 0x0102, 0x0300 -> 0x0441.
        assert_eq!(a, !0x0441u16);
    }
}
