//! The I/O edges against a real kernel: raw VRRP sockets, GARP / NA frames, the netlink
//! task (VIP table, vmac, link monitor, lookups).
//!
//! Needs root. Each test runs in a thread that moved itself into a fresh, anonymous
//! network namespace (`unshare(CLONE_NEWNET)`), so tests run in parallel and leave
//! nothing behind: the namespace dies with the thread. `ip` commands are spawned from
//! that thread and inherit its namespace (checked by `commands_run_in_the_thread_netns`).
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use futures::TryStreamExt;
use ha_agent::net::garp::{self, Announcer};
use ha_agent::net::netlink::{
    self, Family, LinkEvent, NetError, NetlinkHandle, Options, VipEntry, VipStatus, ADDR_PROTO_MARK,
};
use ha_agent::net::socket::{Mode, VrrpSocket, RECV_BUF_LEN, VRRP_GROUP_V4, VRRP_GROUP_V6};
use netlink_packet_route::address::AddressAttribute;
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

/// Generous bound so a broken test fails instead of hanging (not a timing assert).
const PATIENCE: Duration = Duration::from_secs(10);

/// Run `f` in a thread inside a new network namespace, on a current-thread runtime.
fn in_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::spawn(move || {
        // SAFETY: unshare takes no pointers; CLONE_NEWNET only changes this thread's
        // network namespace, which is allowed in a multi-threaded process.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {} (needs root)",
            std::io::Error::last_os_error()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f());
    })
    .join()
    .unwrap();
}

/// Run a shell command (from the calling thread, so in its namespace); panic on failure.
fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair va (192.0.2.1, fe80::a, 2001:db8::a) <-> vb (192.0.2.2, fe80::b,
/// 2001:db8::b), both up, no automatic link-local, no DAD.
///
/// Both ends live in one namespace, so each end's IPv4 source is a local address of
/// the receiver: `accept_local` lets such datagrams in (between two hosts it is moot).
fn veth() {
    sh("sysctl -qw net.ipv4.conf.all.accept_local=1 net.ipv4.conf.default.accept_local=1");
    sh("ip link add va type veth peer name vb");
    sh("ip link set va addrgenmode none && ip link set vb addrgenmode none");
    sh("ip addr add 192.0.2.1/24 dev va && ip addr add 192.0.2.2/24 dev vb");
    sh("ip -6 addr add fe80::a/64 dev va nodad && ip -6 addr add fe80::b/64 dev vb nodad");
    sh("ip -6 addr add 2001:db8::a/64 dev va nodad && ip -6 addr add 2001:db8::b/64 dev vb nodad");
    sh("ip link set va up && ip link set vb up");
}

fn spawn_nl() -> NetlinkHandle {
    netlink::spawn(Options {
        resync: Duration::from_secs(3600),
    })
    .unwrap()
}

async fn recv(sock: &VrrpSocket, buf: &mut [u8]) -> ha_agent::net::socket::RecvInfo {
    tokio::time::timeout(PATIENCE, sock.recv(buf))
        .await
        .expect("no datagram arrived")
        .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn commands_run_in_the_thread_netns() {
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    in_netns(|| async move {
        let mine = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_ne!(mine, host, "thread did not move");
        let child = sh("readlink /proc/self/ns/net");
        assert_eq!(
            child.trim(),
            mine.to_string_lossy(),
            "child is not in the thread's netns"
        );
        sh("ip link add d0 type veth peer name d0p");
        let nl = spawn_nl();
        assert!(nl.ifindex_by_name("d0").await.unwrap() > 0);
        assert!(matches!(
            nl.ifindex_by_name("nope0").await,
            Err(NetError::NoSuchLink(_))
        ));
    });
}

#[test]
fn ipv4_multicast_exchange_ttl_255_pinned_source() {
    in_netns(|| async {
        veth();
        // A second address on va: the socket must send from the one it was given.
        sh("ip addr add 192.0.2.3/24 dev va");
        let nl = spawn_nl();
        let (ia, ib) = (
            nl.ifindex_by_name("va").await.unwrap(),
            nl.ifindex_by_name("vb").await.unwrap(),
        );
        let a = VrrpSocket::open(ia, ip("192.0.2.3"), Mode::Multicast).unwrap();
        let b = VrrpSocket::open(ib, ip("192.0.2.2"), Mode::Multicast).unwrap();
        let payload = b"vrrp-test-payload-v4";
        a.send_to(payload, IpAddr::V4(VRRP_GROUP_V4)).unwrap();
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let info = recv(&b, &mut buf).await;
        assert_eq!(info.src, ip("192.0.2.3"));
        assert_eq!(info.dst, IpAddr::V4(VRRP_GROUP_V4));
        assert_eq!(info.ttl, 255);
        assert_eq!(info.ifindex, ib);
        assert!(!info.truncated);
        // IPv4: the whole datagram, header first.
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        assert_eq!(buf[9], 112, "protocol");
        assert_eq!(&buf[ihl..info.len], payload);
        assert_eq!(info.meta().ttl, 255);

        // Loop is off: a's first datagram is b's answer, not its own advert.
        b.send_to(b"answer", IpAddr::V4(VRRP_GROUP_V4)).unwrap();
        let info = recv(&a, &mut buf).await;
        assert_eq!(info.src, ip("192.0.2.2"));
        assert_eq!(&buf[20..info.len], b"answer");
    });
}

#[test]
fn ipv6_multicast_exchange_hop_limit_255() {
    in_netns(|| async {
        veth();
        let nl = spawn_nl();
        let (ia, ib) = (
            nl.ifindex_by_name("va").await.unwrap(),
            nl.ifindex_by_name("vb").await.unwrap(),
        );
        let a = VrrpSocket::open(ia, ip("fe80::a"), Mode::Multicast).unwrap();
        let b = VrrpSocket::open(ib, ip("fe80::b"), Mode::Multicast).unwrap();
        let payload = b"vrrp-test-payload-v6";
        a.send_to(payload, IpAddr::V6(VRRP_GROUP_V6)).unwrap();
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let info = recv(&b, &mut buf).await;
        assert_eq!(info.src, ip("fe80::a"));
        assert_eq!(info.dst, IpAddr::V6(VRRP_GROUP_V6));
        assert_eq!(info.ttl, 255, "hop limit");
        assert_eq!(info.ifindex, ib);
        // IPv6: the VRRP message only.
        assert_eq!(&buf[..info.len], payload);

        b.send_to(b"answer", IpAddr::V6(VRRP_GROUP_V6)).unwrap();
        let info = recv(&a, &mut buf).await;
        assert_eq!(info.src, ip("fe80::b"));
        assert_eq!(&buf[..info.len], b"answer");
    });
}

#[test]
fn group_not_joined_is_not_received() {
    in_netns(|| async {
        veth();
        let nl = spawn_nl();
        let (ia, ib) = (
            nl.ifindex_by_name("va").await.unwrap(),
            nl.ifindex_by_name("vb").await.unwrap(),
        );
        // Someone else on vb joins 224.0.0.19, so the host accepts that group.
        let other = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        other
            .join_multicast_v4_n(
                &Ipv4Addr::new(224, 0, 0, 19),
                &socket2::InterfaceIndexOrAddress::Index(ib),
            )
            .unwrap();
        other.set_read_timeout(Some(PATIENCE)).unwrap();
        let a = VrrpSocket::open(ia, ip("192.0.2.1"), Mode::Multicast).unwrap();
        let b = VrrpSocket::open(ib, ip("192.0.2.2"), Mode::Multicast).unwrap();
        a.send_to(b"other-group", ip("224.0.0.19")).unwrap();
        a.send_to(b"vrrp-group", IpAddr::V4(VRRP_GROUP_V4)).unwrap();
        // The other-group datagram did reach the host...
        let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut seen = false;
        for _ in 0..4 {
            let n = other.recv(&mut raw).unwrap();
            // SAFETY: recv initialised the first n bytes.
            let bytes: Vec<u8> = raw[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if bytes.ends_with(b"other-group") {
                seen = true;
                break;
            }
        }
        assert!(seen, "224.0.0.19 never arrived");
        // ...but b, which joined only 224.0.0.18, gets the VRRP one first.
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let info = recv(&b, &mut buf).await;
        assert_eq!(info.dst, IpAddr::V4(VRRP_GROUP_V4));
        assert_eq!(&buf[20..info.len], b"vrrp-group");
    });
}

#[test]
fn bound_to_its_interface_only() {
    in_netns(|| async {
        veth();
        sh("ip link add vc type veth peer name vd");
        sh("ip addr add 198.51.100.1/24 dev vc && ip addr add 198.51.100.2/24 dev vd");
        sh("ip link set vc up && ip link set vd up");
        let nl = spawn_nl();
        let ia = nl.ifindex_by_name("va").await.unwrap();
        let ib = nl.ifindex_by_name("vb").await.unwrap();
        let ic = nl.ifindex_by_name("vc").await.unwrap();
        let id = nl.ifindex_by_name("vd").await.unwrap();
        // Unicast, where only SO_BINDTOIFINDEX keeps a raw socket to its link (for
        // multicast, IP_MULTICAST_ALL off already filters by group and interface).
        let a = VrrpSocket::open(ia, ip("192.0.2.1"), Mode::Unicast).unwrap();
        let b = VrrpSocket::open(ib, ip("192.0.2.2"), Mode::Unicast).unwrap();
        let c = VrrpSocket::open(ic, ip("198.51.100.1"), Mode::Unicast).unwrap();
        let d = VrrpSocket::open(id, ip("198.51.100.2"), Mode::Unicast).unwrap();
        // The other link's advert goes first; b must still see only its own link's.
        c.send_to(b"other-link", ip("198.51.100.2")).unwrap();
        a.send_to(b"this-link", ip("192.0.2.2")).unwrap();
        let mut buf = vec![0u8; RECV_BUF_LEN];
        let info = recv(&d, &mut buf).await;
        assert_eq!(&buf[20..info.len], b"other-link", "it did arrive on vd");
        let info = recv(&b, &mut buf).await;
        assert_eq!(info.ifindex, ib);
        assert_eq!(&buf[20..info.len], b"this-link");
    });
}

#[test]
fn unicast_v4_and_v6() {
    in_netns(|| async {
        veth();
        let nl = spawn_nl();
        let (ia, ib) = (
            nl.ifindex_by_name("va").await.unwrap(),
            nl.ifindex_by_name("vb").await.unwrap(),
        );
        let mut buf = vec![0u8; RECV_BUF_LEN];

        // Sent from a secondary address: the routing table would pick 192.0.2.1, so
        // this shows the source is pinned by IP_PKTINFO.
        sh("ip addr add 192.0.2.3/24 dev va");
        let a = VrrpSocket::open(ia, ip("192.0.2.3"), Mode::Unicast).unwrap();
        let b = VrrpSocket::open(ib, ip("192.0.2.2"), Mode::Unicast).unwrap();
        a.send_to(b"uni4", ip("192.0.2.2")).unwrap();
        let info = recv(&b, &mut buf).await;
        assert_eq!(
            (info.src, info.dst, info.ttl, info.ifindex),
            (ip("192.0.2.3"), ip("192.0.2.2"), 255, ib)
        );
        assert_eq!(&buf[20..info.len], b"uni4");

        let a6 = VrrpSocket::open(ia, ip("2001:db8::a"), Mode::Unicast).unwrap();
        let b6 = VrrpSocket::open(ib, ip("2001:db8::b"), Mode::Unicast).unwrap();
        a6.send_to(b"uni6", ip("2001:db8::b")).unwrap();
        let info = recv(&b6, &mut buf).await;
        assert_eq!(
            (info.src, info.dst, info.ttl, info.ifindex),
            (ip("2001:db8::a"), ip("2001:db8::b"), 255, ib)
        );
        assert_eq!(&buf[..info.len], b"uni6");
        // A family mismatch is refused, not sent.
        assert!(a6.send_to(b"x", ip("192.0.2.2")).is_err());
    });
}

/// An AF_PACKET socket that sees every frame arriving on `ifindex`.
fn packet_listener(ifindex: u32) -> Socket {
    let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
    let s = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(eth_p_all))),
    )
    .unwrap();
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is a sockaddr type of this platform and fits the storage.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = eth_p_all;
    ll.sll_ifindex = ifindex as i32;
    // SAFETY: family AF_PACKET, storage holds a sockaddr_ll, length is its size.
    let addr = unsafe { SockAddr::new(storage, std::mem::size_of::<libc::sockaddr_ll>() as u32) };
    s.bind(&addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn next_frame(s: &Socket) -> Vec<u8> {
    let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    let n = s.recv(&mut raw).expect("no frame arrived");
    // SAFETY: recv initialised the first n bytes.
    raw[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect()
}

#[test]
fn garp_and_unsolicited_na_frames() {
    in_netns(|| async {
        veth();
        let nl = spawn_nl();
        let (ia, ib) = (
            nl.ifindex_by_name("va").await.unwrap(),
            nl.ifindex_by_name("vb").await.unwrap(),
        );
        let mac = nl.mac_of(ia).await.unwrap();
        let vmac = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];
        let listener = packet_listener(ib);
        let v4 = Ipv4Addr::new(192, 0, 2, 100);
        let v6: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let ll: Ipv6Addr = "fe80::a".parse().unwrap();

        let a = Announcer::open(ia, mac).unwrap().with_na_source(ll);
        let r = a.announce(&[IpAddr::V4(v4), IpAddr::V6(v6)]).unwrap();
        assert_eq!((r.sent, r.dropped), (2, 0));
        let r = garp::announce(ia, vmac, &[IpAddr::V4(v4)], 2).unwrap();
        assert_eq!(r.sent, 2);

        let (mut garps, mut nas) = (Vec::new(), Vec::new());
        while garps.len() < 3 || nas.is_empty() {
            let f = next_frame(&listener);
            if f[12..14] == [0x08, 0x06] && f[28..32] == v4.octets() {
                garps.push(f);
            } else if f[12..14] == [0x86, 0xdd] && f[14 + 6] == 58 && f[14 + 40] == 136 {
                nas.push(f);
            }
        }
        for (g, src) in garps.iter().zip([mac, vmac, vmac]) {
            assert_eq!(&g[0..6], &[0xff; 6], "broadcast");
            assert_eq!(&g[6..12], &src, "source mac");
            assert_eq!(&g[20..22], &[0, 1], "arp request");
            assert_eq!(&g[22..28], &src, "sender mac");
            assert_eq!(&g[38..42], &v4.octets(), "target ip = vip");
        }
        let na = &nas[0];
        assert_eq!(&na[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&na[6..12], &mac);
        let ip6 = &na[14..];
        assert_eq!(ip6[7], 255, "hop limit");
        assert_eq!(&ip6[8..24], &ll.octets());
        assert_eq!(&ip6[24..40], &garp::ALL_NODES.octets());
        let icmp = &ip6[40..72];
        assert_eq!(icmp[4], 0xa0, "R=1 S=0 O=1");
        assert_eq!(&icmp[8..24], &v6.octets());
        assert_eq!(&icmp[24..26], &[2, 1], "target link-layer option");
        assert_eq!(&icmp[26..32], &mac);
        assert_eq!(
            garp::icmpv6_checksum(ll, garp::ALL_NODES, icmp),
            0,
            "checksum"
        );
    });
}

/// (address, carries our mark) of every address on `ifindex`, straight from the kernel.
async fn addrs_on(ifindex: u32) -> Vec<(IpAddr, bool)> {
    let (conn, handle, _) = rtnetlink::new_connection().unwrap();
    tokio::spawn(conn);
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute()
        .try_collect()
        .await
        .unwrap();
    msgs.iter()
        .filter_map(|m| {
            let mut addr = None;
            let mut marked = false;
            for a in &m.attributes {
                match a {
                    AddressAttribute::Local(x) => addr = Some(*x),
                    AddressAttribute::Address(x) if addr.is_none() => addr = Some(*x),
                    AddressAttribute::Protocol(p) => marked = u8::from(*p) == ADDR_PROTO_MARK,
                    _ => {}
                }
            }
            addr.map(|a| (a, marked))
        })
        .collect()
}

fn has(list: &[(IpAddr, bool)], a: &str) -> Option<bool> {
    list.iter().find(|(x, _)| *x == ip(a)).map(|(_, m)| *m)
}

#[test]
fn vip_table_marks_heals_and_removes_only_ours() {
    in_netns(|| async {
        sh("ip link add d0 type veth peer name d0p && ip link set d0 up");
        sh("ip addr add 198.51.100.1/24 dev d0");
        sh("ip addr add 198.51.100.20/24 dev d0"); // an operator's address that equals a VIP
        let nl = spawn_nl();
        let d0 = nl.ifindex_by_name("d0").await.unwrap();
        let mut labelled = VipEntry::new(d0, ip("198.51.100.10"), 24);
        labelled.label = Some("d0:vip".into());
        let vips = vec![
            labelled,
            VipEntry::new(d0, ip("198.51.100.20"), 24),
            VipEntry::new(d0, ip("2001:db8:1::10"), 64),
        ];
        nl.set_vips("VI_1".into(), vips.clone()).await.unwrap();
        nl.flush().await.unwrap();
        let now = addrs_on(d0).await;
        assert_eq!(
            has(&now, "198.51.100.10"),
            Some(true),
            "added with our mark"
        );
        assert_eq!(has(&now, "2001:db8:1::10"), Some(true));
        assert_eq!(
            has(&now, "198.51.100.20"),
            Some(false),
            "manual one untouched"
        );
        assert!(
            sh("ip addr show dev d0").contains("d0:vip"),
            "label applied"
        );
        let status = nl.status().await.unwrap();
        let st = |a: &str| {
            status
                .iter()
                .find(|(_, e, _)| e.addr == ip(a))
                .map(|(_, _, s)| s.clone())
        };
        assert_eq!(st("198.51.100.10"), Some(VipStatus::Applied));
        assert_eq!(st("198.51.100.20"), Some(VipStatus::NotOurs));

        // Idempotent: the same table again changes nothing and reports no error.
        nl.set_vips("VI_1".into(), vips.clone()).await.unwrap();
        nl.flush().await.unwrap();
        assert_eq!(addrs_on(d0).await, now);

        // Drift: someone deletes a VIP; the next reconcile puts it back.
        sh("ip addr del 198.51.100.10/24 dev d0");
        nl.flush().await.unwrap();
        assert_eq!(has(&addrs_on(d0).await, "198.51.100.10"), Some(true));

        // Withdraw: ours go, the operator's stay.
        nl.clear_vips("VI_1".into()).await.unwrap();
        nl.flush().await.unwrap();
        let after = addrs_on(d0).await;
        assert_eq!(has(&after, "198.51.100.10"), None);
        assert_eq!(has(&after, "2001:db8:1::10"), None);
        assert_eq!(has(&after, "198.51.100.20"), Some(false));
        assert_eq!(has(&after, "198.51.100.1"), Some(false));

        // Crash: a VIP left behind by a task that went away without clearing.
        nl.set_vips(
            "VI_2".into(),
            vec![VipEntry::new(d0, ip("198.51.100.30"), 24)],
        )
        .await
        .unwrap();
        nl.flush().await.unwrap();
        drop(nl);
        assert_eq!(has(&addrs_on(d0).await, "198.51.100.30"), Some(true));
        let nl2 = spawn_nl();
        assert_eq!(nl2.cleanup_leftovers().await.unwrap(), 1);
        let end = addrs_on(d0).await;
        assert_eq!(has(&end, "198.51.100.30"), None);
        assert_eq!(has(&end, "198.51.100.20"), Some(false));
        assert_eq!(has(&end, "198.51.100.1"), Some(false));
    });
}

#[test]
fn primary_address_skips_secondaries_and_our_vips() {
    in_netns(|| async {
        veth();
        let nl = spawn_nl();
        let ia = nl.ifindex_by_name("va").await.unwrap();
        sh("ip addr add 192.0.2.3/24 dev va"); // secondary
        nl.set_vips(
            "VI_1".into(),
            vec![VipEntry::new(ia, ip("203.0.113.1"), 24)],
        )
        .await
        .unwrap();
        nl.flush().await.unwrap();
        assert_eq!(
            nl.primary_address(ia, Family::V4).await.unwrap(),
            ip("192.0.2.1")
        );
        assert_eq!(
            nl.primary_address(ia, Family::V6).await.unwrap(),
            ip("fe80::a")
        );
        sh("ip link add d1 type veth peer name d1p");
        let d1 = nl.ifindex_by_name("d1").await.unwrap();
        assert!(matches!(
            nl.primary_address(d1, Family::V4).await,
            Err(NetError::NoAddress(_))
        ));
    });
}

#[test]
fn vmac_created_reused_replaced_deleted() {
    in_netns(|| async {
        sh("ip link add d0 type veth peer name d0p && ip link set d0 up");
        let nl = spawn_nl();
        let d0 = nl.ifindex_by_name("d0").await.unwrap();
        let vrid = ha_agent::units::Vrid::new(51).unwrap();
        let mac = netlink::virtual_mac(vrid, Family::V4);
        let name = netlink::default_vmac_name(vrid);
        let idx = nl.create_vmac(d0, &name, mac).await.unwrap();
        assert_eq!(nl.mac_of(idx).await.unwrap(), [0, 0, 0x5e, 0, 1, 51]);
        let details = sh(&format!("ip -d link show {name}"));
        assert!(details.contains("macvlan mode private"), "{details}");
        assert!(
            details.contains("state UP") || details.contains(",UP"),
            "{details}"
        );
        // Again: the same interface is reused.
        assert_eq!(nl.create_vmac(d0, &name, mac).await.unwrap(), idx);
        // Something else in the way under that name is replaced.
        sh("ip link add vrrp.52 type veth peer name vrrp.52p");
        let other = nl.ifindex_by_name("vrrp.52").await.unwrap();
        let mac6 = netlink::virtual_mac(ha_agent::units::Vrid::new(52).unwrap(), Family::V6);
        let idx52 = nl.create_vmac(d0, "vrrp.52", mac6).await.unwrap();
        assert_ne!(idx52, other);
        assert!(sh("ip -d link show vrrp.52").contains("macvlan mode private"));
        assert_eq!(nl.mac_of(idx52).await.unwrap(), [0, 0, 0x5e, 0, 2, 52]);
        nl.delete_vmac(idx).await.unwrap();
        assert!(matches!(
            nl.ifindex_by_name(&name).await,
            Err(NetError::NoSuchLink(_))
        ));
    });
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<LinkEvent>,
    ifindex: u32,
    up: bool,
) -> LinkEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let ev = rx.recv().await.expect("link channel closed");
            if ev.ifindex == ifindex && ev.up == up {
                return ev;
            }
        }
    })
    .await
    .expect("link event never came")
}

#[test]
fn link_monitor_reports_initial_state_down_and_up() {
    in_netns(|| async {
        veth();
        sh("ip link add d0 type veth peer name d0p"); // down from the start
        let nl = spawn_nl();
        let ia = nl.ifindex_by_name("va").await.unwrap();
        let d0 = nl.ifindex_by_name("d0").await.unwrap();
        let mut rx = nl.subscribe_links().await.unwrap();
        // Initial state first: every link once, as it is now.
        let mut initial = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            initial.push(ev);
        }
        assert!(
            initial.contains(&LinkEvent {
                ifindex: ia,
                name: "va".into(),
                up: true
            }),
            "{initial:?}"
        );
        assert!(
            initial.contains(&LinkEvent {
                ifindex: d0,
                name: "d0".into(),
                up: false
            }),
            "{initial:?}"
        );
        sh("ip link set va down");
        wait_for(&mut rx, ia, false).await;
        sh("ip link set va up");
        let ev = wait_for(&mut rx, ia, true).await;
        assert_eq!(ev.name, "va");
        // Carrier loss on the peer side also counts as down (IFF_RUNNING cleared).
        sh("ip link set vb down");
        wait_for(&mut rx, ia, false).await;
    });
}
