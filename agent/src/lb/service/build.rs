//! The pure state from the config: virtual servers, groups expanded, real servers and
//! their checkers' starting verdicts; the names checkers and overrides use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::model::{Checker, Config, Node, ScriptUser, VirtualServer, VsTarget};
use crate::lb::check::RsKey;
use crate::lb::dataplane::nft::service_object;
use crate::lb::dataplane::{Forward, Proto, ServiceKey};

use super::error::ConfigError;
use super::input::NotifyCmd;
use super::state::{CheckerState, LbState, RsState, Sorry, VsState};

/// keepalived's default scheduler when `lb_algo` is absent (IPVS's default too).
const DEFAULT_SCHEDULER: &str = "wlc";
/// Largest address range expanded from a `virtual_server_group` entry.
const MAX_GROUP_RANGE: u32 = 256;

/// Name of a virtual server, as used in [`RsKey::vs`] and overrides:
/// `192.0.2.10:80/TCP`, `fwmark 1`, `group NAME`.
pub fn vs_name(vs: &VirtualServer) -> String {
    match &vs.target {
        VsTarget::Addr { addr, port } => service_object(&ServiceKey::Addr {
            proto: proto_of(vs),
            addr: *addr,
            port: port.unwrap_or(0),
        }),
        VsTarget::Fwmark(m) => format!("fwmark {m}"),
        VsTarget::Group(g) => format!("group {g}"),
    }
}

/// The real server key a checker of `rs` reports under (port 0 when the real server
/// has none, as `check::CheckerSpec` does).
pub fn rs_key(vs: &VirtualServer, rs: &crate::config::model::RealServer) -> RsKey {
    RsKey {
        vs: vs_name(vs).into(),
        addr: rs.addr,
        port: rs.port.unwrap_or(0),
    }
}

fn vs_port(vs: &VirtualServer) -> u16 {
    match vs.target {
        VsTarget::Addr { port, .. } => port.unwrap_or(0),
        _ => 0,
    }
}

fn proto_of(vs: &VirtualServer) -> Proto {
    match vs
        .protocol
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("UDP") => Proto::Udp,
        Some("SCTP") => Proto::Sctp,
        _ => Proto::Tcp,
    }
}

fn forward_of(s: Option<&str>) -> Option<Forward> {
    match s?.to_ascii_uppercase().as_str() {
        "NAT" => Some(Forward::Nat),
        "DR" => Some(Forward::Dr),
        "TUN" => Some(Forward::Tun),
        _ => None,
    }
}

fn find<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Node> {
    nodes.iter().find(|n| n.name == name)
}

fn flag(nodes: &[Node], name: &str) -> bool {
    find(nodes, name).is_some()
}

fn num(nodes: &[Node], name: &str) -> Option<u64> {
    find(nodes, name)?.arg(0)?.parse().ok()
}

/// A notify command with its optional user, from `keyword "cmd" [user [group]]`.
fn notify_of(nodes: &[Node], name: &str) -> Option<NotifyCmd> {
    let n = find(nodes, name)?;
    let command = n.arg(0)?.to_string();
    let user = n.arg(1).map(|u| ScriptUser {
        user: u.to_string(),
        group: n.arg(2).map(str::to_string),
    });
    Some(NotifyCmd { command, user })
}

/// `persistence_granularity`: a netmask (IPv4) or a prefix length.
fn granularity(nodes: &[Node]) -> Option<u8> {
    let a = find(nodes, "persistence_granularity")?.arg(0)?;
    if let Ok(n) = a.parse::<u8>() {
        return Some(n);
    }
    let m: std::net::Ipv4Addr = a.parse().ok()?;
    let bits = u32::from(m);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones() as u8)
}

/// Expand one `virtual_server_group` entry: `IP PORT`, `IP-LAST PORT`, `fwmark N`.
fn group_entry(n: &Node, proto: Proto) -> Result<Vec<ServiceKey>, ConfigError> {
    if n.name == "fwmark" {
        let mark = n
            .arg(0)
            .and_then(|m| m.parse().ok())
            .ok_or(ConfigError::FwmarkNumber)?;
        return Ok(vec![ServiceKey::Fwmark { mark, ipv6: false }]);
    }
    let port: u16 = n.arg(0).and_then(|p| p.parse().ok()).unwrap_or(0);
    let (first, last) = match n.name.rsplit_once('-') {
        Some((a, end)) => (a, Some(end)),
        None => (n.name.as_str(), None),
    };
    let addr: IpAddr = first.parse().map_err(|_| ConfigError::GroupAddress {
        entry: n.name.clone(),
    })?;
    let Some(end) = last else {
        return Ok(vec![ServiceKey::Addr { proto, addr, port }]);
    };
    let range = || ConfigError::GroupRange {
        entry: n.name.clone(),
    };
    let mut out = Vec::new();
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            let end: u8 = end.parse().map_err(|_| range())?;
            if end < o[3] {
                return Err(range());
            }
            for x in o[3]..=end {
                out.push(ServiceKey::Addr {
                    proto,
                    addr: IpAddr::from([o[0], o[1], o[2], x]),
                    port,
                });
            }
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let end = u16::from_str_radix(end, 16).map_err(|_| range())?;
            if end < s[7] || u32::from(end - s[7]) >= MAX_GROUP_RANGE {
                return Err(range());
            }
            for x in s[7]..=end {
                let mut seg = s;
                seg[7] = x;
                out.push(ServiceKey::Addr {
                    proto,
                    addr: IpAddr::from(seg),
                    port,
                });
            }
        }
    }
    Ok(out)
}

impl LbState {
    /// Build from the config; `errors` lists what was skipped and why (file:line).
    pub fn from_config(cfg: &Config) -> (LbState, Vec<String>) {
        let mut errors = Vec::new();
        let groups: BTreeMap<&str, &crate::config::model::Section> = cfg
            .virtual_server_groups
            .iter()
            .map(|g| (g.name.as_str(), g))
            .collect();
        let mut vss = Vec::new();
        for vs in &cfg.virtual_servers {
            let proto = proto_of(vs);
            let o = &vs.other;
            let keys = match &vs.target {
                VsTarget::Addr { addr, port } => vec![ServiceKey::Addr {
                    proto,
                    addr: *addr,
                    port: port.unwrap_or(0),
                }],
                VsTarget::Fwmark(mark) => vec![ServiceKey::Fwmark {
                    mark: *mark,
                    ipv6: find(o, "ip_family").and_then(|n| n.arg(0)) == Some("inet6"),
                }],
                VsTarget::Group(g) => match groups.get(g.as_str()) {
                    Some(sec) => {
                        let mut keys = Vec::new();
                        for e in &sec.entries {
                            match group_entry(e, proto) {
                                Ok(k) => keys.extend(k),
                                Err(m) => errors.push(format!(
                                    "{}:{}: virtual_server_group {g}: {m}",
                                    sec.origin.file.display(),
                                    e.loc.line
                                )),
                            }
                        }
                        keys
                    }
                    None => {
                        errors.push(format!(
                            "{}: virtual_server group {g}: no virtual_server_group named so",
                            vs.origin
                        ));
                        continue;
                    }
                },
            };
            let forward = match vs.method.as_deref() {
                None => Forward::Nat,
                Some(m) => forward_of(Some(m)).unwrap_or_else(|| {
                    errors.push(format!("{}: lb_kind '{m}' unknown; using NAT", vs.origin));
                    Forward::Nat
                }),
            };
            let vs_alpha = flag(o, "alpha");
            let vs_inhibit = flag(o, "inhibit_on_failure");
            let vport = vs_port(vs);
            let rs = vs
                .real_servers
                .iter()
                .map(|r| {
                    let ro = &r.other;
                    let alpha = vs_alpha
                        || flag(ro, "alpha")
                        || r.checkers.iter().any(|c| flag(&c.other, "alpha"));
                    let checkers: Vec<CheckerState> = r
                        .checkers
                        .iter()
                        .map(|c| CheckerState {
                            kind: checker_kind_name(c),
                            up: !alpha,
                            detail: if alpha {
                                "alpha: not checked yet"
                            } else {
                                "not checked yet"
                            }
                            .into(),
                            latency: Duration::ZERO,
                        })
                        .collect();
                    let alive = checkers.iter().all(|c| c.up);
                    RsState {
                        addr: r.addr,
                        port: r.port.unwrap_or(vport),
                        key_port: r.port.unwrap_or(0),
                        weight: u32::try_from(r.weight.max(0)).unwrap_or(0),
                        dynamic_weight: None,
                        weight_override: None,
                        drained: false,
                        inhibit: vs_inhibit || flag(ro, "inhibit_on_failure"),
                        forward: forward_of(find(ro, "lvs_method").and_then(|n| n.arg(0)))
                            .unwrap_or(forward),
                        checkers,
                        alive,
                        removed: false,
                        from_override: false,
                        notify_up: notify_of(ro, "notify_up"),
                        notify_down: notify_of(ro, "notify_down"),
                    }
                })
                .collect();
            let sorry = vs.sorry_server.map(|(addr, port)| Sorry {
                addr,
                port: port.unwrap_or(vport),
                forward: forward_of(find(o, "sorry_server_lvs_method").and_then(|n| n.arg(0)))
                    .unwrap_or(forward),
                inhibit: flag(o, "sorry_server_inhibit"),
            });
            let mut st = VsState {
                name: vs_name(vs).into(),
                keys,
                scheduler: vs
                    .scheduler
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEDULER.into()),
                forward,
                persistence: vs.persistence_timeout,
                granularity: granularity(o),
                quorum: num(o, "quorum").unwrap_or(1),
                hysteresis: num(o, "hysteresis").unwrap_or(0),
                quorum_up_cmd: notify_of(o, "quorum_up"),
                quorum_down_cmd: notify_of(o, "quorum_down"),
                inhibit: vs_inhibit,
                omega: flag(o, "omega"),
                ha_suspend: flag(o, "ha_suspend"),
                sorry,
                quorum_up: false,
                rs,
            };
            // keepalived's set_quorum_states at start.
            st.quorum_up = st.live_weight() >= st.quorum + st.hysteresis;
            vss.push(st);
        }
        (
            LbState {
                vss,
                vips: BTreeSet::new(),
                override_generation: 0,
            },
            errors,
        )
    }
}

fn checker_kind_name(c: &Checker) -> &'static str {
    use crate::config::model::CheckerKind as K;
    match c.kind {
        K::HttpGet => "HTTP_GET",
        K::SslGet => "SSL_GET",
        K::Tcp => "TCP_CHECK",
        K::Smtp => "SMTP_CHECK",
        K::Dns => "DNS_CHECK",
        K::Misc => "MISC_CHECK",
        K::Bfd => "BFD_CHECK",
        K::Udp => "UDP_CHECK",
        K::Ping => "PING_CHECK",
        K::File => "FILE_CHECK",
    }
}
