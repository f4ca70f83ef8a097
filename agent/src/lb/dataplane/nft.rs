//! The nftables data plane, for kernels without IPVS: [`Nft`] implements [`DataPlane`]
//! by driving the `nft` binary (text batches in, `nft -j` JSON out).
//!
//! Ownership: three tables are ours and nothing else is touched: `ip ha_lb` and
//! `ip6 ha_lb6` (NAT services) and `netdev ha_lb_dr` (DR services). Every apply is one
//! `nft -f -` batch that declares, deletes and re-creates our tables, which the kernel
//! commits atomically: a packet sees the old ruleset or the new one, never a mix.
//!
//! - **NAT** (LVS-NAT): a `nat` chain on prerouting (and output, so the director's own
//!   clients reach the VIP) DNATs to a weighted map:
//!   `dnat ip addr . port to numgen inc mod 4 map { 0-2 : RS1 . 8080, 3 : RS2 . 8080 }`.
//!   rr and wrr use `numgen inc` (deterministic like IPVS), sh/mh and any persistent
//!   service `jhash` of the client address (granularity: the address truncated to whole
//!   bytes), dh `jhash` of the destination, fo the heaviest server, and the
//!   connection-count schedulers (lc, wlc, sed, nq, ovf, lblc, lblcr) weighted
//!   `numgen random`. Conntrack keeps established connections on their server, so a
//!   drained (weight 0) server keeps its connections. No SNAT is added: as in LVS-NAT
//!   the director must be the real servers' gateway so replies come back through it.
//!   A service without a live destination only counts packets and lets them pass to the
//!   local stack, as IPVS does.
//! - **DR** (LVS-DR): a `netdev` ingress chain on every up Ethernet interface matches
//!   the VIP, picks a destination with `jhash` of the flow (client address and port, or
//!   the client address when persistent: netdev has no conntrack, so the choice must be
//!   a pure function of the packet), rewrites `ether saddr`/`ether daddr` and `fwd`s the
//!   frame out of the interface facing the real server. Only frames addressed to this
//!   host's MAC are considered (`meta pkttype host`): ingress sees frames a switch
//!   floods too, which IPVS never would, and a backup director must not forward the
//!   master's traffic. MACs come from the neighbour
//!   table (one ping when missing); an unresolved one is a per-destination error.
//! - **TUN** and DR fwmark services are not possible here: per-object errors.
//!
//! `read()` rebuilds the table from what the kernel has: each service rule carries a
//! comment with its identity and scheduler, and a `members` map holds every
//! destination with its weight (weight-0 ones included, which no forwarding map holds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{
    DataPlane, DataPlaneError, Destination, Forward, ObjectStatus, Proto, Service, ServiceKey,
    Stats,
};

const BACKEND: &str = "nftables";
/// NAT table for IPv4.
pub const TABLE4: &str = "ha_lb";
/// NAT table for IPv6.
pub const TABLE6: &str = "ha_lb6";
/// DR table (netdev family).
pub const TABLE_DR: &str = "ha_lb_dr";
/// Bound on one `nft` run.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// The nftables backend.
#[derive(Debug, Clone)]
pub struct Nft {
    /// The `nft` program (PATH lookup by default).
    program: String,
    /// Run every command inside this named network namespace (`ip netns exec`), for
    /// tests and for directors whose data plane lives in another namespace.
    netns: Option<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new()
    }
}

/// Name of a service as keepalived prints it: `192.0.2.10:80/TCP`, `[2001:db8::1]:80/TCP`,
/// `fwmark 1` (`fwmark 1/v6` for IPv6).
pub fn service_object(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { proto, addr, port } => {
            format!("{}/{}", sockaddr(*addr, *port), proto_upper(*proto))
        }
        ServiceKey::Fwmark { mark, ipv6: false } => format!("fwmark {mark}"),
        ServiceKey::Fwmark { mark, ipv6: true } => format!("fwmark {mark}/v6"),
    }
}

/// Name of a destination of a service: `192.0.2.10:80/TCP -> 198.51.100.11:8080`.
pub fn destination_object(key: &ServiceKey, addr: IpAddr, port: u16) -> String {
    format!("{} -> {}", service_object(key), sockaddr(addr, port))
}

fn sockaddr(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn proto_upper(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
        Proto::Sctp => "SCTP",
    }
}

fn proto_nft(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    }
}

fn is_v6(key: &ServiceKey) -> bool {
    match key {
        ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
        ServiceKey::Fwmark { ipv6, .. } => *ipv6,
    }
}

/// Where a DR destination's frames go: out of `dev`, from `dev_mac` to `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Next {
    /// Interface facing the real server.
    pub dev: String,
    /// That interface's MAC.
    pub dev_mac: String,
    /// The real server's MAC.
    pub mac: String,
}

/// A destination that can be programmed, with its slot count.
#[derive(Debug, Clone)]
struct PlannedDest {
    addr: IpAddr,
    port: u16,
    weight: u32,
    l2: Option<L2Next>,
}

/// A service that can be programmed.
#[derive(Debug, Clone)]
struct PlannedService {
    svc: Service,
    forward: Forward,
    dests: Vec<PlannedDest>,
}

/// Result of planning: what goes in the batch and the statuses decided already.
#[derive(Debug, Default)]
struct Plan {
    services: Vec<PlannedService>,
    statuses: Vec<ObjectStatus>,
}

/// How a service picks a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// `numgen inc`, one slot per live destination (rr).
    Inc,
    /// `numgen inc`, weighted slots (wrr).
    IncWeighted,
    /// `numgen random`, weighted slots.
    Random,
    /// `jhash` of the client address (prefix bits), weighted slots.
    HashSource(u8),
    /// `jhash` of the destination address, weighted slots.
    HashDest,
    /// Only the heaviest destination (fo).
    Heaviest,
}

fn pick_of(svc: &Service) -> Pick {
    let full = if is_v6(&svc.key) { 128 } else { 32 };
    let src = Pick::HashSource(svc.persistence_granularity.unwrap_or(full).min(full));
    if svc.persistence.is_some() {
        return src;
    }
    match svc.scheduler.as_str() {
        "rr" => Pick::Inc,
        "wrr" => Pick::IncWeighted,
        "sh" | "mh" => src,
        "dh" => Pick::HashDest,
        "fo" => Pick::Heaviest,
        _ => Pick::Random,
    }
}

/// Slots `(first, last, dest index)` of the live destinations for `pick`.
fn slots(pick: Pick, dests: &[PlannedDest]) -> Vec<(u64, u64, usize)> {
    let mut out = Vec::new();
    let mut next: u64 = 0;
    if pick == Pick::Heaviest {
        let best = dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.weight > 0)
            .max_by(|(ia, a), (ib, b)| a.weight.cmp(&b.weight).then(ib.cmp(ia)));
        if let Some((i, _)) = best {
            out.push((0, 0, i));
        }
        return out;
    }
    for (i, d) in dests.iter().enumerate() {
        if d.weight == 0 {
            continue;
        }
        let n = if pick == Pick::Inc {
            1
        } else {
            u64::from(d.weight)
        };
        out.push((next, next + n - 1, i));
        next += n;
    }
    out
}

fn slot_text(first: u64, last: u64) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// Source-address hash key: the whole address or its first whole bytes.
fn source_key(v6: bool, bits: u8) -> String {
    let (fam, full, off) = if v6 { ("ip6", 128, 64) } else { ("ip", 32, 96) };
    if bits >= full {
        return format!("{fam} saddr");
    }
    // jhash needs whole bytes: round the prefix down (coarser groups keep every member
    // of a finer group together), at least one byte.
    let bytes = (bits / 8).max(1);
    format!("@nh,{off},{}", u32::from(bytes) * 8)
}

fn selector(pick: Pick, v6: bool, total: u64, flow_proto: Option<Proto>, dr: bool) -> String {
    let fam = if v6 { "ip6" } else { "ip" };
    match pick {
        Pick::HashSource(bits) => format!("jhash {} mod {total}", source_key(v6, bits)),
        Pick::HashDest => format!("jhash {fam} daddr mod {total}"),
        // Stateless DR must pick per flow, never per packet.
        _ if dr => match flow_proto {
            Some(p) => format!("jhash {fam} saddr . {} sport mod {total}", proto_nft(p)),
            None => format!("jhash {fam} saddr mod {total}"),
        },
        Pick::Inc | Pick::IncWeighted | Pick::Heaviest => format!("numgen inc mod {total}"),
        Pick::Random => format!("numgen random mod {total}"),
    }
}

/// Comment carried by a service rule: identity and scheduling, parsed back by `read`.
fn comment(i: usize, svc: &Service) -> String {
    let key = match &svc.key {
        ServiceKey::Addr { proto, addr, port } => format!("{}/{addr}/{port}", proto_nft(*proto)),
        ServiceKey::Fwmark { mark, ipv6 } => format!("fwm{}/{mark}", if *ipv6 { 6 } else { 4 }),
    };
    let mut c = format!("i={i} k={key} s={}", svc.scheduler);
    if let Some(p) = svc.persistence {
        let _ = write!(c, " p={}", p.as_secs());
    }
    if let Some(g) = svc.persistence_granularity {
        let _ = write!(c, " g={g}");
    }
    c
}

fn parse_comment(c: &str) -> Option<(usize, Service)> {
    let mut idx = None;
    let mut key = None;
    let mut sched = None;
    let mut persistence = None;
    let mut gran = None;
    for kv in c.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "i" => idx = v.parse().ok(),
            "k" => key = parse_key(v),
            "s" => sched = Some(v.to_string()),
            "p" => persistence = v.parse().ok().map(Duration::from_secs),
            "g" => gran = v.parse().ok(),
            _ => {}
        }
    }
    Some((
        idx?,
        Service {
            key: key?,
            scheduler: sched?,
            persistence,
            persistence_granularity: gran,
            destinations: Vec::new(),
        },
    ))
}

fn parse_key(v: &str) -> Option<ServiceKey> {
    let mut it = v.split('/');
    let a = it.next()?;
    let b = it.next()?;
    if let Some(fam) = a.strip_prefix("fwm") {
        return Some(ServiceKey::Fwmark {
            mark: b.parse().ok()?,
            ipv6: fam == "6",
        });
    }
    let proto = match a {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return None,
    };
    Some(ServiceKey::Addr {
        proto,
        addr: b.parse().ok()?,
        port: it.next()?.parse().ok()?,
    })
}

/// Interface names are interpolated into nft strings: accept only what the kernel allows
/// and nft can quote safely.
fn safe_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

fn safe_mac(m: &str) -> bool {
    m.len() == 17
        && m.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Render the whole batch for `services` (already planned), with `devices` as the DR
/// ingress interfaces. Pure: unit tested against golden text.
fn render(services: &[PlannedService], devices: &[String]) -> String {
    let mut nat4 = String::new();
    let mut nat6 = String::new();
    let mut dr_rules = String::new();
    let mut dr_chains = String::new();
    let mut members4 = Vec::new();
    let mut members6 = Vec::new();
    let mut dr_members4 = Vec::new();
    let mut dr_members6 = Vec::new();

    for (i, ps) in services.iter().enumerate() {
        let v6 = is_v6(&ps.svc.key);
        let fam = if v6 { "ip6" } else { "ip" };
        let pick = pick_of(&ps.svc);
        let sl = slots(pick, &ps.dests);
        let total = sl.last().map(|s| s.1 + 1).unwrap_or(0);
        let cmt = comment(i, &ps.svc);
        let dr = ps.forward == Forward::Dr;
        let members = match (dr, v6) {
            (false, false) => &mut members4,
            (false, true) => &mut members6,
            (true, false) => &mut dr_members4,
            (true, true) => &mut dr_members6,
        };
        for d in &ps.dests {
            members.push(format!("{i} . {} . {} : {}", d.addr, d.port, d.weight));
        }
        // Match part(s): (match text, transport protocol known to the rule).
        let matches: Vec<(String, Option<Proto>)> = match &ps.svc.key {
            ServiceKey::Addr { proto, addr, port } => {
                let p = proto_nft(*proto);
                let m = if *port == 0 {
                    format!("{fam} daddr {addr} meta l4proto {p}")
                } else {
                    format!("{fam} daddr {addr} {p} dport {port}")
                };
                vec![(m, Some(*proto))]
            }
            ServiceKey::Fwmark { mark, .. } => {
                // The table's family already restricts to IPv4 or IPv6.
                if ps.dests.iter().all(|d| d.port == 0) {
                    vec![(format!("meta mark {mark}"), None)]
                } else {
                    [Proto::Tcp, Proto::Udp]
                        .iter()
                        .map(|p| {
                            (
                                format!("meta mark {mark} meta l4proto {}", proto_nft(*p)),
                                Some(*p),
                            )
                        })
                        .collect()
                }
            }
        };
        if dr {
            let chain = format!("vs{i}");
            let mut vmap = Vec::new();
            for (j, d) in ps.dests.iter().enumerate() {
                let Some(l2) = &d.l2 else { continue };
                let dchain = format!("vs{i}d{j}");
                let _ = write!(
                    dr_chains,
                    "  chain {dchain} {{\n    ether saddr set {} ether daddr set {} fwd to \"{}\"\n  }}\n",
                    l2.dev_mac, l2.mac, l2.dev
                );
                if let Some((a, b, _)) = sl.iter().find(|s| s.2 == j) {
                    vmap.push(format!("{} : jump {dchain}", slot_text(*a, *b)));
                }
            }
            let proto = matches.first().and_then(|m| m.1);
            let body = if vmap.is_empty() {
                String::new()
            } else {
                format!(
                    "    {} vmap {{ {} }}\n",
                    selector(pick, v6, total, proto, true),
                    vmap.join(", ")
                )
            };
            let _ = write!(dr_chains, "  chain {chain} {{\n{body}  }}\n");
            for (n, (m, _)) in matches.iter().enumerate() {
                let c = if n == 0 {
                    format!(" comment \"{cmt}\"")
                } else {
                    String::new()
                };
                let _ = writeln!(dr_rules, "    {m} counter jump {chain}{c}");
            }
            continue;
        }
        let out = if v6 { &mut nat6 } else { &mut nat4 };
        for (n, (m, proto)) in matches.iter().enumerate() {
            let c = if n == 0 {
                format!(" comment \"{cmt}\"")
            } else {
                String::new()
            };
            if sl.is_empty() {
                let _ = writeln!(out, "    {m} counter{c}");
                continue;
            }
            // Port-less services (all ports, or fwmark) whose servers have no port keep the
            // client's destination port.
            let with_port = proto.is_some() && ps.dests.iter().any(|d| d.port != 0);
            let elems: Vec<String> = sl
                .iter()
                .filter_map(|(a, b, j)| {
                    let d = ps.dests.get(*j)?;
                    let target = match (d.addr, with_port) {
                        (IpAddr::V6(a6), true) => format!("[{a6}] . {}", d.port),
                        (a, true) => format!("{a} . {}", d.port),
                        (a, false) => a.to_string(),
                    };
                    Some(format!("{} : {target}", slot_text(*a, *b)))
                })
                .collect();
            let how = if with_port {
                format!("dnat {fam} addr . port to")
            } else {
                format!("dnat {fam} to")
            };
            let _ = writeln!(
                out,
                "    {m} counter {how} {} map {{ {} }}{c}",
                selector(pick, v6, total, *proto, false),
                elems.join(", ")
            );
        }
    }

    let mut s = String::new();
    let nat_table = |s: &mut String,
                     fam: &str,
                     name: &str,
                     addr_t: &str,
                     rules: &str,
                     members: &[String]| {
        let _ = writeln!(s, "table {fam} {name}\ndelete table {fam} {name}");
        if rules.is_empty() {
            return;
        }
        let _ = writeln!(s, "table {fam} {name} {{");
        let _ = writeln!(
            s,
            "  map members {{\n    type mark . {addr_t} . inet_service : mark"
        );
        if !members.is_empty() {
            let _ = writeln!(s, "    elements = {{ {} }}", members.join(", "));
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(
            s,
            "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}"
        );
        let _ = writeln!(
            s,
            "  chain output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}"
        );
        let _ = writeln!(s, "  chain services {{\n{rules}  }}\n}}");
    };
    nat_table(&mut s, "ip", TABLE4, "ipv4_addr", &nat4, &members4);
    nat_table(&mut s, "ip6", TABLE6, "ipv6_addr", &nat6, &members6);
    let _ = writeln!(s, "table netdev {TABLE_DR}\ndelete table netdev {TABLE_DR}");
    if !dr_rules.is_empty() && !devices.is_empty() {
        let _ = writeln!(s, "table netdev {TABLE_DR} {{");
        for (name, t, m) in [
            ("members4", "ipv4_addr", &dr_members4),
            ("members6", "ipv6_addr", &dr_members6),
        ] {
            let _ = writeln!(
                s,
                "  map {name} {{\n    type mark . {t} . inet_service : mark"
            );
            if !m.is_empty() {
                let _ = writeln!(s, "    elements = {{ {} }}", m.join(", "));
            }
            let _ = writeln!(s, "  }}");
        }
        let _ = writeln!(
            s,
            "  chain ingress {{\n    type filter hook ingress devices = {{ {} }} priority -500; policy accept;\n    meta pkttype != host accept\n{dr_rules}  }}",
            devices.join(", ")
        );
        let _ = writeln!(s, "{dr_chains}}}");
    }
    s
}

/// First pass over the desired table: decide each service's forwarding method and drop
/// what nftables cannot do, with a status for it. DR destinations get their L2 next hop
/// from `resolve` (already looked up).
fn plan(desired: &[Service], l2: &BTreeMap<IpAddr, Result<L2Next, L2Error>>) -> Plan {
    let mut p = Plan::default();
    for svc in desired {
        let sname = service_object(&svc.key);
        let forward = svc
            .destinations
            .first()
            .map(|d| d.forward)
            .unwrap_or(Forward::Nat);
        if forward == Forward::Tun {
            p.statuses.push(ObjectStatus {
                object: sname,
                result: Err("tunnel forwarding (TUN) needs IPVS; nftables cannot do it".into()),
            });
            continue;
        }
        if forward == Forward::Dr && matches!(svc.key, ServiceKey::Fwmark { .. }) {
            p.statuses.push(ObjectStatus {
                object: sname,
                result: Err(
                    "fwmark services with DR need IPVS; nftables DR matches addresses".into(),
                ),
            });
            continue;
        }
        let mixed_ports = matches!(svc.key, ServiceKey::Fwmark { .. })
            && svc.destinations.iter().any(|d| d.port == 0)
            && svc.destinations.iter().any(|d| d.port != 0);
        let mut dests = Vec::new();
        for d in &svc.destinations {
            let dname = destination_object(&svc.key, d.addr, d.port);
            let err = if d.forward != forward {
                Some(format!(
                    "forwarding {:?} differs from the service's {:?}; nftables needs one method per service",
                    d.forward, forward
                ))
            } else if d.addr.is_ipv6() != is_v6(&svc.key) {
                Some("address family differs from the service's".into())
            } else if mixed_ports {
                Some("fwmark service mixes port 0 and real ports".into())
            } else {
                None
            };
            if let Some(e) = err {
                p.statuses.push(ObjectStatus {
                    object: dname,
                    result: Err(e),
                });
                continue;
            }
            let next = if forward == Forward::Dr {
                match l2.get(&d.addr) {
                    Some(Ok(n)) => Some(n.clone()),
                    Some(Err(e)) => {
                        p.statuses.push(ObjectStatus {
                            object: dname,
                            result: Err(e.to_string()),
                        });
                        continue;
                    }
                    None => {
                        p.statuses.push(ObjectStatus {
                            object: dname,
                            result: Err("no link-layer next hop resolved".into()),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            dests.push(PlannedDest {
                addr: d.addr,
                port: d.port,
                weight: d.weight,
                l2: next,
            });
        }
        p.services.push(PlannedService {
            svc: svc.clone(),
            forward,
            dests,
        });
    }
    p
}

/// Statuses of everything in a plan that was programmed.
fn ok_statuses(services: &[PlannedService]) -> Vec<ObjectStatus> {
    let mut v = Vec::new();
    for ps in services {
        v.push(ObjectStatus {
            object: service_object(&ps.svc.key),
            result: Ok(()),
        });
        for d in &ps.dests {
            v.push(ObjectStatus {
                object: destination_object(&ps.svc.key, d.addr, d.port),
                result: Ok(()),
            });
        }
    }
    v
}

/// Why running nft, or reading what it printed, failed. The texts end up in the log and
/// in the data plane's status.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The nft binary.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the batch to its stdin failed.
    #[error("write to nft: {0}")]
    Write(std::io::Error),
    /// It did not finish within `NFT_TIMEOUT`.
    #[error("nft did not finish within {NFT_TIMEOUT:?}")]
    Timeout,
    /// Waiting for it failed.
    #[error("nft: {0}")]
    Wait(std::io::Error),
    /// nft refused: its error lines.
    #[error("{0}")]
    Refused(String),
    /// Its JSON output does not parse.
    #[error("nft json: {0}")]
    Json(#[from] serde_json::Error),
    /// Its JSON output has no `nftables` array.
    #[error("nft json: no nftables array")]
    NoArray,
}

/// Why the L2 next hop of a DR real server is unknown (reported on the destination),
/// or `ip` could not say.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// `ip` did not answer within 5 s.
    #[error("ip timed out")]
    IpTimeout,
    /// `ip` could not be started.
    #[error("cannot run ip: {0}")]
    IpSpawn(std::io::Error),
    /// `ip` failed: its stderr.
    #[error("{0}")]
    IpFailed(String),
    /// Its JSON output does not parse.
    #[error("ip json: {0}")]
    IpJson(serde_json::Error),
    /// `ip route get` failed.
    #[error("no route to {addr}: {source}")]
    RouteFailed {
        /// The real server.
        addr: IpAddr,
        /// Why.
        source: Box<L2Error>,
    },
    /// No route at all.
    #[error("no route to {0}")]
    NoRoute(IpAddr),
    /// Reached through a gateway.
    #[error("{0} is not on a directly connected network (DR needs the same L2 segment)")]
    NotOnLink(IpAddr),
    /// The route names no interface we can hook.
    #[error("route to {0} has no usable interface")]
    NoInterface(IpAddr),
    /// The interface has no MAC address.
    #[error("interface {0} has no MAC address")]
    NoDeviceMac(String),
    /// The neighbour did not resolve (even after a ping).
    #[error("MAC address of {addr} unresolved on {dev}")]
    Unresolved {
        /// The real server.
        addr: IpAddr,
        /// The interface.
        dev: String,
    },
}

/// Parse `nft -j list table ...` output of one of our tables into services.
/// Pure: unit tested on captured JSON.
pub fn parse_table(json: &str) -> Result<Vec<Service>, NftError> {
    let v: Value = serde_json::from_str(json)?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or(NftError::NoArray)?;
    let mut services: BTreeMap<usize, Service> = BTreeMap::new();
    let mut members: Vec<(usize, IpAddr, u16, u32)> = Vec::new();
    let mut dr = false;
    for it in items {
        if let Some(t) = it.get("table") {
            dr = t.get("family").and_then(Value::as_str) == Some("netdev");
        }
        if let Some(r) = it.get("rule") {
            if let Some((i, s)) = r
                .get("comment")
                .and_then(Value::as_str)
                .and_then(parse_comment)
            {
                services.insert(i, s);
            }
        }
        if let Some(m) = it.get("map") {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            if !name.starts_with("members") {
                continue;
            }
            for e in m
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(pair) = e.as_array() else { continue };
                let (Some(k), Some(w)) = (pair.first(), pair.get(1).and_then(Value::as_u64)) else {
                    continue;
                };
                let Some(c) = k.get("concat").and_then(Value::as_array) else {
                    continue;
                };
                let i = c.first().and_then(Value::as_u64);
                let a = c
                    .get(1)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok());
                let p = c.get(2).and_then(Value::as_u64);
                if let (Some(i), Some(a), Some(p)) = (i, a, p) {
                    members.push((
                        usize::try_from(i).unwrap_or(usize::MAX),
                        a,
                        u16::try_from(p).unwrap_or(0),
                        u32::try_from(w).unwrap_or(u32::MAX),
                    ));
                }
            }
        }
    }
    let forward = if dr { Forward::Dr } else { Forward::Nat };
    for (i, addr, port, weight) in members {
        if let Some(s) = services.get_mut(&i) {
            s.destinations.push(Destination {
                addr,
                port,
                weight,
                forward,
            });
        }
    }
    Ok(services.into_values().collect())
}

/// Per-rule counters (`counter` in each service rule), keyed by service object.
fn parse_counters(json: &str) -> Vec<Stats> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for it in v
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(r) = it.get("rule") else { continue };
        let Some((_, s)) = r
            .get("comment")
            .and_then(Value::as_str)
            .and_then(parse_comment)
        else {
            continue;
        };
        for e in r
            .get("expr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(c) = e.get("counter") {
                out.push(Stats {
                    object: service_object(&s.key),
                    packets_in: c.get("packets").and_then(Value::as_u64).unwrap_or(0),
                    bytes_in: c.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                    ..Stats::default()
                });
            }
        }
    }
    out
}

impl Nft {
    /// The backend using `nft` from PATH.
    pub fn new() -> Nft {
        Nft {
            program: "nft".into(),
            netns: None,
        }
    }

    /// The backend acting inside the named network namespace `name`.
    pub fn in_netns(name: &str) -> Nft {
        Nft {
            program: "nft".into(),
            netns: Some(name.to_string()),
        }
    }

    /// A command for `program`, inside our namespace if we have one.
    fn command(&self, program: &str) -> tokio::process::Command {
        match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => tokio::process::Command::new(program),
        }
    }

    /// Whether the `nft` binary runs here (for `lvs_backend auto`).
    pub async fn available(&self) -> Result<(), DataPlaneError> {
        self.run(&["--version"], None)
            .await
            .map(|_| ())
            .map_err(|e| DataPlaneError::Unavailable {
                backend: BACKEND,
                reason: e.to_string(),
            })
    }

    /// Run nft with `args`, feeding `stdin`; stdout on success, stderr text on failure.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let mut cmd = self.command(&self.program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| NftError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(NftError::Write)?;
            drop(pipe);
        }
        let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| NftError::Timeout)?
            .map_err(NftError::Wait)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            // nft echoes the offending line and a caret line; keep the error lines.
            let msg: Vec<&str> = err.lines().filter(|l| l.contains("Error")).collect();
            Err(NftError::Refused(if msg.is_empty() {
                err.trim().to_string()
            } else {
                msg.join("; ")
            }))
        }
    }

    /// Which of our tables exist: `(family, name)`.
    async fn our_tables(&self) -> Result<Vec<(String, String)>, DataPlaneError> {
        let out = self
            .run(&["-j", "list", "tables"], None)
            .await
            .map_err(io)?;
        let v: Value = serde_json::from_str(&out).map_err(|e| io(NftError::Json(e)))?;
        let mut found = Vec::new();
        for it in v
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(t) = it.get("table") else { continue };
            let fam = t.get("family").and_then(Value::as_str).unwrap_or("");
            let name = t.get("name").and_then(Value::as_str).unwrap_or("");
            if matches!(
                (fam, name),
                ("ip", TABLE4) | ("ip6", TABLE6) | ("netdev", TABLE_DR)
            ) {
                found.push((fam.to_string(), name.to_string()));
            }
        }
        Ok(found)
    }

    async fn list_tables_json(&self) -> Result<Vec<String>, DataPlaneError> {
        let mut out = Vec::new();
        for (fam, name) in self.our_tables().await? {
            out.push(
                self.run(&["-j", "list", "table", &fam, &name], None)
                    .await
                    .map_err(io)?,
            );
        }
        Ok(out)
    }
}

fn io(e: impl std::fmt::Display) -> DataPlaneError {
    DataPlaneError::Io {
        backend: BACKEND,
        reason: e.to_string(),
    }
}

/// Run `ip -j ARGS` (in `nft`'s namespace) and parse its JSON.
async fn ip_json(nft: &Nft, args: &[&str]) -> Result<Value, L2Error> {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        nft.command("ip")
            .arg("-j")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| L2Error::IpTimeout)?
    .map_err(L2Error::IpSpawn)?;
    if !out.status.success() {
        return Err(L2Error::IpFailed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).map_err(L2Error::IpJson)
}

/// Interfaces a DR ingress chain hooks: every up Ethernet interface.
async fn ingress_devices(nft: &Nft) -> Result<Vec<String>, L2Error> {
    let v = ip_json(nft, &["link", "show", "up"]).await?;
    let mut devs: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l.get("link_type").and_then(Value::as_str) == Some("ether"))
        .filter_map(|l| l.get("ifname").and_then(Value::as_str))
        .filter(|n| safe_ifname(n))
        .map(str::to_string)
        .collect();
    devs.sort();
    devs.dedup();
    Ok(devs)
}

fn neigh_mac(v: &Value) -> Option<String> {
    v.as_array()?.iter().find_map(|n| {
        let states: Vec<&str> = n
            .get("state")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let bad = states.iter().any(|s| matches!(*s, "FAILED" | "INCOMPLETE"));
        let mac = n.get("lladdr").and_then(Value::as_str)?;
        (!bad && safe_mac(mac)).then(|| mac.to_ascii_lowercase())
    })
}

/// Resolve the L2 next hop of an on-link real server: route, interface MAC, neighbour
/// MAC (one ping to make the kernel resolve it when missing).
async fn resolve_l2(nft: &Nft, addr: IpAddr) -> Result<L2Next, L2Error> {
    let a = addr.to_string();
    let route = ip_json(nft, &["route", "get", &a])
        .await
        .map_err(|e| L2Error::RouteFailed {
            addr,
            source: Box::new(e),
        })?;
    let r = route
        .as_array()
        .and_then(|r| r.first())
        .ok_or(L2Error::NoRoute(addr))?;
    if r.get("gateway").is_some() {
        return Err(L2Error::NotOnLink(addr));
    }
    let dev = r
        .get("dev")
        .and_then(Value::as_str)
        .filter(|d| safe_ifname(d))
        .ok_or(L2Error::NoInterface(addr))?
        .to_string();
    let link = ip_json(nft, &["link", "show", "dev", &dev]).await?;
    let dev_mac = link
        .as_array()
        .and_then(|l| l.first())
        .and_then(|l| l.get("address"))
        .and_then(Value::as_str)
        .filter(|m| safe_mac(m))
        .ok_or_else(|| L2Error::NoDeviceMac(dev.clone()))?
        .to_ascii_lowercase();
    let mut mac = neigh_mac(&ip_json(nft, &["neigh", "show", "to", &a, "dev", &dev]).await?);
    if mac.is_none() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            nft.command("ping")
                .args(["-c", "1", "-W", "1", &a])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await;
        mac = neigh_mac(&ip_json(nft, &["neigh", "show", "to", &a, "dev", &dev]).await?);
    }
    let mac = mac.ok_or_else(|| L2Error::Unresolved {
        addr,
        dev: dev.clone(),
    })?;
    Ok(L2Next { dev, dev_mac, mac })
}

impl DataPlane for Nft {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError> {
        // L2 next hops of DR destinations.
        let mut l2 = BTreeMap::new();
        let any_dr = desired
            .iter()
            .any(|s| s.destinations.iter().any(|d| d.forward == Forward::Dr));
        for s in desired {
            for d in &s.destinations {
                if d.forward == Forward::Dr && !l2.contains_key(&d.addr) {
                    l2.insert(d.addr, resolve_l2(self, d.addr).await);
                }
            }
        }
        let devices = if any_dr {
            ingress_devices(self).await.map_err(io)?
        } else {
            Vec::new()
        };
        let mut plan = plan(desired, &l2);
        let script = render(&plan.services, &devices);
        tracing::debug!(backend = BACKEND, %script, "nft batch");
        if let Err(all_err) = self.run(&["-f", "-"], Some(&script)).await {
            // Find the services the kernel refuses (check mode: nothing is committed),
            // report them, and program the rest.
            let mut keep = Vec::new();
            for ps in std::mem::take(&mut plan.services) {
                let one = render(std::slice::from_ref(&ps), &devices);
                match self.run(&["-c", "-f", "-"], Some(&one)).await {
                    Ok(_) => keep.push(ps),
                    Err(e) => plan.statuses.push(ObjectStatus {
                        object: service_object(&ps.svc.key),
                        result: Err(e.to_string()),
                    }),
                }
            }
            let script = render(&keep, &devices);
            self.run(&["-f", "-"], Some(&script))
                .await
                .map_err(|e| io(format!("{all_err}; then without the refused services: {e}")))?;
            plan.services = keep;
        }
        let mut statuses = ok_statuses(&plan.services);
        statuses.append(&mut plan.statuses);
        Ok(statuses)
    }

    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
        let mut out = Vec::new();
        for json in self.list_tables_json().await? {
            out.extend(parse_table(&json).map_err(io)?);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
        let mut out = Vec::new();
        for json in self.list_tables_json().await? {
            out.extend(parse_counters(&json));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn svc(sched: &str, dests: &[(&str, u16, u32)], forward: Forward) -> Service {
        Service {
            key: ServiceKey::Addr {
                proto: Proto::Tcp,
                addr: v4("192.0.2.10"),
                port: 80,
            },
            scheduler: sched.into(),
            persistence: None,
            persistence_granularity: None,
            destinations: dests
                .iter()
                .map(|(a, p, w)| Destination {
                    addr: v4(a),
                    port: *p,
                    weight: *w,
                    forward,
                })
                .collect(),
        }
    }

    #[test]
    fn wrr_weights_become_slot_ranges() {
        let s = svc(
            "wrr",
            &[
                ("198.51.100.11", 8080, 3),
                ("198.51.100.12", 8080, 1),
                ("198.51.100.13", 8080, 0),
            ],
            Forward::Nat,
        );
        let p = plan(&[s], &BTreeMap::new());
        let text = render(&p.services, &[]);
        assert!(text.contains(
            "ip daddr 192.0.2.10 tcp dport 80 counter dnat ip addr . port to numgen inc mod 4 map { 0-2 : 198.51.100.11 . 8080, 3 : 198.51.100.12 . 8080 } comment \"i=0 k=tcp/192.0.2.10/80 s=wrr\""
        ), "{text}");
        // Weight 0 is a member but not in the forwarding map.
        assert!(text.contains("0 . 198.51.100.13 . 8080 : 0"), "{text}");
        assert!(text.contains("table ip6 ha_lb6\ndelete table ip6 ha_lb6\n"));
    }

    #[test]
    fn rr_ignores_weights_and_persistence_hashes_source() {
        let s = svc(
            "rr",
            &[("198.51.100.11", 80, 5), ("198.51.100.12", 80, 1)],
            Forward::Nat,
        );
        let t = render(
            &plan(std::slice::from_ref(&s), &BTreeMap::new()).services,
            &[],
        );
        assert!(
            t.contains("numgen inc mod 2 map { 0 : 198.51.100.11 . 80, 1 : 198.51.100.12 . 80 }"),
            "{t}"
        );
        let mut p = s;
        p.persistence = Some(Duration::from_secs(360));
        p.persistence_granularity = Some(24);
        let t = render(&plan(&[p], &BTreeMap::new()).services, &[]);
        assert!(
            t.contains(
                "jhash @nh,96,24 mod 6 map { 0-4 : 198.51.100.11 . 80, 5 : 198.51.100.12 . 80 }"
            ),
            "{t}"
        );
        assert!(t.contains("p=360 g=24"), "{t}");
    }

    #[test]
    fn empty_service_passes_and_tun_is_refused() {
        let s = svc("wlc", &[("198.51.100.11", 80, 0)], Forward::Nat);
        let t = render(&plan(&[s], &BTreeMap::new()).services, &[]);
        assert!(t.contains("tcp dport 80 counter comment"), "{t}");
        let tun = svc("wlc", &[("198.51.100.11", 80, 1)], Forward::Tun);
        let p = plan(&[tun], &BTreeMap::new());
        assert!(p.services.is_empty());
        assert_eq!(p.statuses.len(), 1);
        assert!(p.statuses[0].result.is_err());
    }

    #[test]
    fn dr_unresolved_mac_is_a_destination_error() {
        let s = svc(
            "wrr",
            &[("198.51.100.11", 80, 1), ("198.51.100.12", 80, 1)],
            Forward::Dr,
        );
        let mut l2 = BTreeMap::new();
        l2.insert(
            v4("198.51.100.11"),
            Ok(L2Next {
                dev: "eth0".into(),
                dev_mac: "02:00:00:00:00:01".into(),
                mac: "02:00:00:00:00:02".into(),
            }),
        );
        l2.insert(
            v4("198.51.100.12"),
            Err(L2Error::Unresolved {
                addr: v4("198.51.100.12"),
                dev: "eth0".into(),
            }),
        );
        let p = plan(&[s], &l2);
        assert_eq!(p.statuses.len(), 1);
        assert_eq!(
            p.statuses[0].object,
            "192.0.2.10:80/TCP -> 198.51.100.12:80"
        );
        let t = render(&p.services, &["eth0".into()]);
        assert!(t.contains("devices = { eth0 }"), "{t}");
        assert!(
            t.contains("jhash ip saddr . tcp sport mod 1 vmap { 0 : jump vs0d0 }"),
            "{t}"
        );
        assert!(t.contains(
            "ether saddr set 02:00:00:00:00:01 ether daddr set 02:00:00:00:00:02 fwd to \"eth0\""
        ));
    }

    #[test]
    fn comment_round_trips() {
        let mut s = svc("sh", &[], Forward::Nat);
        s.persistence = Some(Duration::from_secs(50));
        let (i, back) = parse_comment(&comment(7, &s)).unwrap();
        assert_eq!(i, 7);
        assert_eq!(back, s);
        let f = Service {
            key: ServiceKey::Fwmark {
                mark: 9,
                ipv6: true,
            },
            ..svc("rr", &[], Forward::Nat)
        };
        assert_eq!(parse_comment(&comment(0, &f)).unwrap().1, f);
    }

    #[test]
    fn parse_reads_members_and_comments() {
        let json = r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"ha_lb","handle":1}},
        {"map":{"family":"ip","name":"members","table":"ha_lb","type":["mark","ipv4_addr","inet_service"],"handle":4,"map":"mark",
          "elem":[[{"concat":[0,"198.51.100.11",8080]},3],[{"concat":[0,"198.51.100.12",8080]},0]]}},
        {"rule":{"family":"ip","table":"ha_lb","chain":"services","handle":8,"comment":"i=0 k=tcp/192.0.2.10/80 s=wrr","expr":[{"counter":{"packets":5,"bytes":300}}]}}]}"#;
        let got = parse_table(json).unwrap();
        let want = svc(
            "wrr",
            &[("198.51.100.11", 8080, 3), ("198.51.100.12", 8080, 0)],
            Forward::Nat,
        );
        assert_eq!(got, vec![want]);
        let st = parse_counters(json);
        assert_eq!(st[0].object, "192.0.2.10:80/TCP");
        assert_eq!(st[0].packets_in, 5);
    }

    #[test]
    fn names_and_safety() {
        let k = ServiceKey::Addr {
            proto: Proto::Udp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        assert_eq!(service_object(&k), "[2001:db8::1]:53/UDP");
        assert_eq!(
            destination_object(&k, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 53),
            "[2001:db8::1]:53/UDP -> 198.51.100.1:53"
        );
        assert!(safe_ifname("eth0.100"));
        assert!(!safe_ifname("eth0\"; flush"));
        assert!(safe_mac("02:ab:00:00:00:01"));
        assert!(!safe_mac("02:ab:00:00:00"));
    }
}
