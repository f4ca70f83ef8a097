//! The nftables data plane against the real kernel and `nft` binary, each test in its
//! own named network namespace (`Nft::in_netns`): what `apply` programs, `read` gives
//! back exactly (the reconciler's drift check relies on it); applies are idempotent;
//! foreign tables are never touched; what nftables cannot do is a per-object error.
//! Needs root.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ha_agent::lb::dataplane::nft::Nft;
use ha_agent::lb::dataplane::reconcile::diff;
use ha_agent::lb::dataplane::{DataPlane, Destination, Forward, Proto, Service, ServiceKey};

static N: AtomicU32 = AtomicU32::new(0);

/// A named namespace removed on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "lbnft{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let ns = Ns(name);
        ns.sh("ip link set lo up");
        ns
    }
    fn sh(&self, line: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", line])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dest(addr: &str, port: u16, weight: u32, forward: Forward) -> Destination {
    Destination {
        addr: a(addr),
        port,
        weight,
        forward,
    }
}

fn table() -> Vec<Service> {
    vec![
        Service {
            key: ServiceKey::Addr {
                proto: Proto::Tcp,
                addr: a("192.0.2.10"),
                port: 80,
            },
            scheduler: "wrr".into(),
            persistence: None,
            persistence_granularity: None,
            destinations: vec![
                dest("198.51.100.11", 8080, 3, Forward::Nat),
                dest("198.51.100.12", 8080, 1, Forward::Nat),
                dest("198.51.100.13", 8080, 0, Forward::Nat),
            ],
        },
        Service {
            key: ServiceKey::Addr {
                proto: Proto::Udp,
                addr: a("192.0.2.10"),
                port: 53,
            },
            scheduler: "sh".into(),
            persistence: Some(Duration::from_secs(360)),
            persistence_granularity: Some(24),
            destinations: vec![dest("198.51.100.11", 53, 1, Forward::Nat)],
        },
        Service {
            key: ServiceKey::Addr {
                proto: Proto::Sctp,
                addr: a("2001:db8::10"),
                port: 80,
            },
            scheduler: "rr".into(),
            persistence: None,
            persistence_granularity: None,
            destinations: vec![
                dest("2001:db8:1::11", 80, 1, Forward::Nat),
                dest("2001:db8:1::12", 80, 2, Forward::Nat),
            ],
        },
        Service {
            key: ServiceKey::Fwmark {
                mark: 7,
                ipv6: false,
            },
            scheduler: "wlc".into(),
            persistence: None,
            persistence_granularity: None,
            destinations: vec![dest("198.51.100.11", 0, 1, Forward::Nat)],
        },
        Service {
            key: ServiceKey::Addr {
                proto: Proto::Tcp,
                addr: a("192.0.2.20"),
                port: 443,
            },
            scheduler: "fo".into(),
            persistence: None,
            persistence_granularity: None,
            destinations: vec![],
        },
    ]
}

#[tokio::test]
async fn apply_read_round_trip_is_exact_and_idempotent() {
    let ns = Ns::new();
    ns.sh("nft add table inet foreign && nft add chain inet foreign c");
    let mut nft = Nft::in_netns(&ns.0);
    let want = table();
    let st = nft.apply(&want).await.unwrap();
    assert!(st.iter().all(|s| s.result.is_ok()), "{st:?}");
    // One status per service and per destination.
    assert_eq!(st.len(), 5 + 7);
    let got = nft.read().await.unwrap();
    assert!(diff(&got, &want).is_empty(), "{:?}", diff(&got, &want));
    // Same table again: same result, still in sync.
    nft.apply(&want).await.unwrap();
    assert!(diff(&nft.read().await.unwrap(), &want).is_empty());
    // A smaller table: removed services are gone.
    let small = vec![want[0].clone()];
    nft.apply(&small).await.unwrap();
    assert!(diff(&nft.read().await.unwrap(), &small).is_empty());
    assert!(!ns.sh("nft list tables").contains("ha_lb6"));
    // Empty: our tables go, the foreign one stays.
    nft.apply(&[]).await.unwrap();
    assert!(nft.read().await.unwrap().is_empty());
    let tables = ns.sh("nft list tables");
    assert!(!tables.contains("ha_lb"), "{tables}");
    assert!(tables.contains("inet foreign"), "{tables}");
}

#[tokio::test]
async fn unsupported_objects_are_errors_and_the_rest_is_programmed() {
    let ns = Ns::new();
    let mut nft = Nft::in_netns(&ns.0);
    let mut t = table();
    // TUN service: refused as a whole.
    t.push(Service {
        key: ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: a("192.0.2.30"),
            port: 80,
        },
        scheduler: "rr".into(),
        persistence: None,
        persistence_granularity: None,
        destinations: vec![dest("198.51.100.11", 80, 1, Forward::Tun)],
    });
    // DR destination that is not on any connected network: its MAC cannot resolve.
    t.push(Service {
        key: ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: a("192.0.2.40"),
            port: 80,
        },
        scheduler: "rr".into(),
        persistence: None,
        persistence_granularity: None,
        destinations: vec![dest("203.0.113.50", 80, 1, Forward::Dr)],
    });
    let st = nft.apply(&t).await.unwrap();
    let err = |o: &str| {
        st.iter()
            .find(|s| s.object == o)
            .unwrap_or_else(|| panic!("no status for {o}: {st:?}"))
            .result
            .clone()
    };
    assert!(err("192.0.2.30:80/TCP").is_err());
    assert!(err("192.0.2.40:80/TCP -> 203.0.113.50:80").is_err());
    assert!(err("192.0.2.10:80/TCP").is_ok());
    assert!(err("192.0.2.10:80/TCP -> 198.51.100.11:8080").is_ok());
    // What could be programmed is there.
    let got = nft.read().await.unwrap();
    assert!(got.iter().any(|s| s.key == t[0].key));
    assert!(!got.iter().any(|s| matches!(s.key,
        ServiceKey::Addr { addr, .. } if addr == a("192.0.2.30"))));
}

#[tokio::test]
async fn dr_resolves_macs_and_hooks_ingress() {
    let ns = Ns::new();
    ns.sh(
        "ip link add eth0 type veth peer name peer0 && ip addr add 192.0.2.1/24 dev eth0 \
         && ip link set eth0 up && ip link set peer0 up \
         && ip neigh add 192.0.2.11 lladdr 02:00:5e:00:00:11 dev eth0",
    );
    let mut nft = Nft::in_netns(&ns.0);
    let want = vec![Service {
        key: ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: a("192.0.2.10"),
            port: 80,
        },
        scheduler: "wrr".into(),
        persistence: None,
        persistence_granularity: None,
        destinations: vec![dest("192.0.2.11", 80, 2, Forward::Dr)],
    }];
    let st = nft.apply(&want).await.unwrap();
    assert!(st.iter().all(|s| s.result.is_ok()), "{st:?}");
    let text = ns.sh("nft list table netdev ha_lb_dr");
    assert!(text.contains("ether daddr set 02:00:5e:00:00:11"), "{text}");
    assert!(text.contains("fwd to \"eth0\""), "{text}");
    assert!(text.contains("eth0") && text.contains("peer0"), "{text}");
    assert!(diff(&nft.read().await.unwrap(), &want).is_empty());
}

#[tokio::test]
async fn portless_services_keep_the_client_port() {
    let ns = Ns::new();
    let mut nft = Nft::in_netns(&ns.0);
    let want = vec![Service {
        key: ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: a("192.0.2.10"),
            port: 0,
        },
        scheduler: "sh".into(),
        persistence: Some(Duration::from_secs(60)),
        persistence_granularity: None,
        destinations: vec![dest("198.51.100.11", 0, 1, Forward::Nat)],
    }];
    let st = nft.apply(&want).await.unwrap();
    assert!(st.iter().all(|s| s.result.is_ok()), "{st:?}");
    let text = ns.sh("nft list table ip ha_lb");
    assert!(
        text.contains("dnat to jhash ip saddr mod 1 map { 0 : 198.51.100.11 }"),
        "{text}"
    );
    assert!(diff(&nft.read().await.unwrap(), &want).is_empty());
}
