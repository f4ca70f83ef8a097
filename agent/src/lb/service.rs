//! The virtual-server runtime (keepalived's checker process logic, minus the checkers):
//! checker verdicts, VIP states and manager overrides in; the desired data-plane table,
//! notify scripts, status and history events out.
//!
//! ```text
//!  checker tasks --CheckEvent-----> +--------------------+ --desired table--> Reconciler
//!  VRRP engine ---VipState--------> |  LbState (pure)    |                    (DataPlane:
//!  manager link --RsAdd/Del/...--> |  one task: run()   | --LbStatus (watch)   nft / ipvs)
//!  resync / retry deadline -------> +--------------------+ --LbEvent--> history
//!                                             +--> notify_up/down, quorum_up/down scripts
//! ```
//!
//! Semantics (keepalived's `check_data` / `ipwrapper`):
//! - a real server is alive when all its checkers pass; one without checkers always is;
//!   with `alpha` its checkers start failed (it joins on the first pass), else passed;
//! - a dead server leaves the table, or stays with weight 0 with `inhibit_on_failure`;
//! - quorum: the sum of the weights of live servers; gained when it reaches
//!   `quorum + hysteresis`, lost when it falls below `quorum - hysteresis` (or to 0);
//!   on loss the live servers are replaced by the `sorry_server` when there is one;
//!   `quorum_up` / `quorum_down` run on changes, `notify_up` / `notify_down` per server;
//! - `ha_suspend`: an address service is programmed only while the VIP is held
//!   ([`ServiceInput::VipState`]); `omega`: at shutdown, the down notifiers run too;
//! - manager overrides ([`ServiceInput::RsAdd`] ...) layer on the config: added servers
//!   have no checkers, drain is weight 0 with connections kept.
//!
//! Checkers are not spawned here: the caller spawns one per [`Checker`] with the virtual
//! server named by [`vs_name`] and sends their [`CheckEvent`]s in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::model::{Checker, Config, Node, ScriptUser, VirtualServer, VsTarget};
use crate::lb::check::{CheckEvent, RsKey};
use crate::lb::dataplane::ipvs::Ipvs;
use crate::lb::dataplane::nft::{service_object, Nft};
use crate::lb::dataplane::reconcile::{ReconcileStatus, ReconcileTiming, Reconciler};
use crate::lb::dataplane::{
    DataPlane, DataPlaneError, Destination, Forward, ObjectStatus, Proto, Service, ServiceKey,
    Stats,
};
use crate::script::{self, ScriptDefaults, ScriptSpec};

/// Timeout of notify_up/down and quorum_up/down scripts.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// keepalived's default scheduler when `lb_algo` is absent (IPVS's default too).
const DEFAULT_SCHEDULER: &str = "wlc";
/// Largest address range expanded from a `virtual_server_group` entry.
const MAX_GROUP_RANGE: u32 = 256;

/// Inputs of the runtime besides checker events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceInput {
    /// A VRRP instance holding `addr` became MASTER (`master`) or left it (ha_suspend).
    VipState {
        /// The VIP.
        addr: IpAddr,
        /// Held by a MASTER instance here.
        master: bool,
    },
    /// `hactl rs add`: a real server without checkers (always alive), or a new weight
    /// for an existing one.
    RsAdd {
        /// Virtual server name ([`vs_name`]).
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// Weight.
        weight: u32,
    },
    /// `hactl rs del`: remove a real server (config ones too, until the override goes).
    RsDel {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `hactl rs weight`: override the weight (`None` returns to the configured weight
    /// and ends a drain).
    RsWeight {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// New weight, or back to the config.
        weight: Option<u32>,
    },
    /// `hactl rs drain`: weight 0, established connections kept.
    RsDrain {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// The manager's whole real-server override set: replaces the one in force (servers
    /// it added and no longer names go, configured ones return to the config), then each
    /// entry applies as the matching `Rs*` input.
    SetOverrides {
        /// Generation of the override set (shown in [`LbStatus::override_generation`]).
        generation: u64,
        /// At most one entry per (virtual server, address, port).
        list: Vec<RsOverride>,
    },
    /// Stop: run omega notifiers, remove our services from the data plane, end the task.
    Shutdown,
    /// End the task and leave the data plane as it is (a reload's successor takes over
    /// and reconciles from there).
    Detach,
}

/// One real-server override, as the manager pushes it and the agent persists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RsOverride {
    /// Virtual server name ([`vs_name`]).
    pub vs: String,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// What to do.
    pub action: RsAction,
}

/// What a [`RsOverride`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RsAction {
    /// Add a server without checkers (or re-weight an existing one).
    Add {
        /// Weight.
        weight: u32,
    },
    /// Remove (a configured one too, while the override lasts).
    Del,
    /// Set the weight.
    Weight(u32),
    /// Weight 0, connections kept.
    Drain,
}

impl RsOverride {
    /// The incremental input this entry applies as.
    pub fn input(&self) -> ServiceInput {
        let (vs, addr, port) = (self.vs.clone(), self.addr, self.port);
        match self.action {
            RsAction::Add { weight } => ServiceInput::RsAdd {
                vs,
                addr,
                port,
                weight,
            },
            RsAction::Del => ServiceInput::RsDel { vs, addr, port },
            RsAction::Weight(w) => ServiceInput::RsWeight {
                vs,
                addr,
                port,
                weight: Some(w),
            },
            RsAction::Drain => ServiceInput::RsDrain { vs, addr, port },
        }
    }
}

/// Something worth keeping in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbEvent {
    /// One checker's verdict changed.
    Checker {
        /// Real server.
        rs: RsKey,
        /// Checker index.
        checker: usize,
        /// Kind ("HTTP_GET").
        kind: &'static str,
        /// Passing now.
        up: bool,
        /// Why.
        detail: String,
    },
    /// A real server became alive (`up`) or dead.
    RealServer {
        /// Real server.
        rs: RsKey,
        /// Alive now.
        up: bool,
    },
    /// A virtual server gained (`up`) or lost quorum.
    Quorum {
        /// Virtual server name.
        vs: String,
        /// Quorum held now.
        up: bool,
        /// Sum of the weights of live servers.
        weight: u64,
    },
    /// An override was applied (or refused: `error`).
    Override {
        /// The input, for the record.
        input: String,
        /// Why it was refused.
        error: Option<String>,
    },
}

/// One checker as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerStatus {
    /// Kind ("TCP_CHECK").
    pub kind: String,
    /// Passing now.
    pub up: bool,
    /// Last verdict, one line.
    pub detail: String,
    /// Duration of the last check.
    pub latency: Duration,
}

/// One real server as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsStatus {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight from the config (or from `rs add`).
    pub weight_base: u32,
    /// Weight after overrides (drain = 0).
    pub weight_effective: u32,
    /// All checkers pass.
    pub alive: bool,
    /// In the data-plane table now (possibly with weight 0).
    pub in_table: bool,
    /// Drained by an override.
    pub drained: bool,
    /// Added by an override rather than the config.
    pub from_override: bool,
    /// Its checkers.
    pub checkers: Vec<CheckerStatus>,
}

/// One virtual server as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsStatus {
    /// Name ([`vs_name`]).
    pub name: String,
    /// Data-plane objects it programs (several for a group).
    pub services: Vec<String>,
    /// Scheduler.
    pub scheduler: String,
    /// Forwarding method ("NAT", "DR", "TUN").
    pub method: String,
    /// Configured quorum.
    pub quorum: u64,
    /// Configured hysteresis.
    pub hysteresis: u64,
    /// Sum of live weights.
    pub live_weight: u64,
    /// Quorum held.
    pub quorum_up: bool,
    /// The sorry server is serving.
    pub sorry_active: bool,
    /// Not programmed (ha_suspend and the VIP not held).
    pub suspended: bool,
    /// Real servers.
    pub real_servers: Vec<RsStatus>,
}

/// What the runtime publishes on its watch channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbStatus {
    /// Virtual servers.
    pub virtual_servers: Vec<VsStatus>,
    /// Data plane: backend, per-object results, last error.
    pub dataplane: ReconcileStatus,
    /// Counters read back at the last resync.
    pub stats: Vec<Stats>,
    /// Generation of the real-server override set in force (0: none yet).
    pub override_generation: u64,
}

/// `lvs_backend` in `global_defs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// IPVS over generic netlink.
    Ipvs,
    /// nftables.
    Nftables,
    /// IPVS when the kernel has it (`/proc/net/ip_vs`), else nftables.
    Auto,
}

/// The data plane the runtime drives (concrete, so the task's future is `Send`).
pub enum Backend {
    /// nftables.
    Nft(Nft),
    /// IPVS over generic netlink.
    Ipvs(Box<Ipvs>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl DataPlane for Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Nft(n) => n.name(),
            Backend::Ipvs(i) => i.name(),
        }
    }
    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.apply(desired).await,
            Backend::Ipvs(i) => i.apply(desired).await,
        }
    }
    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.read().await,
            Backend::Ipvs(i) => i.read().await,
        }
    }
    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.stats().await,
            Backend::Ipvs(i) => i.stats().await,
        }
    }
}

/// The `lvs_backend` setting (`auto` when absent).
pub fn backend_setting(cfg: &Config) -> Result<BackendKind, String> {
    let Some(n) = cfg.global.other.iter().find(|n| n.name == "lvs_backend") else {
        return Ok(BackendKind::Auto);
    };
    match n.arg(0) {
        Some("ipvs") => Ok(BackendKind::Ipvs),
        Some("nftables") | Some("nft") => Ok(BackendKind::Nftables),
        Some("auto") => Ok(BackendKind::Auto),
        other => Err(format!(
            "lvs_backend: expected ipvs, nftables or auto, got '{}'",
            other.unwrap_or("")
        )),
    }
}

/// Pick the data plane per `lvs_backend`: `ipvs` (error when the kernel has none),
/// `nftables`, or `auto` (IPVS when `/proc/net/ip_vs` exists and opens, else nftables).
/// Async because opening IPVS resolves its generic-netlink family; call it inside the
/// runtime.
pub async fn choose_backend(cfg: &Config) -> Result<Backend, DataPlaneError> {
    open_backend(backend_setting(cfg)).await
}

/// [`choose_backend`] on an already read [`backend_setting`].
pub async fn open_backend(setting: Result<BackendKind, String>) -> Result<Backend, DataPlaneError> {
    let kind = setting.map_err(|reason| DataPlaneError::Unavailable {
        backend: "lvs_backend",
        reason,
    })?;
    match kind {
        BackendKind::Nftables => Ok(Backend::Nft(Nft::new())),
        BackendKind::Ipvs => Ok(Backend::Ipvs(Box::new(Ipvs::new().await?))),
        BackendKind::Auto => {
            if Path::new("/proc/net/ip_vs").exists() {
                match Ipvs::new().await {
                    Ok(i) => return Ok(Backend::Ipvs(Box::new(i))),
                    Err(e) => {
                        tracing::warn!(error = %e, "IPVS present but unusable; using nftables")
                    }
                }
            }
            Ok(Backend::Nft(Nft::new()))
        }
    }
}

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

fn forward_name(f: Forward) -> &'static str {
    match f {
        Forward::Nat => "NAT",
        Forward::Dr => "DR",
        Forward::Tun => "TUN",
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
fn group_entry(n: &Node, proto: Proto) -> Result<Vec<ServiceKey>, String> {
    if n.name == "fwmark" {
        let mark = n
            .arg(0)
            .and_then(|m| m.parse().ok())
            .ok_or("fwmark needs a number")?;
        return Ok(vec![ServiceKey::Fwmark { mark, ipv6: false }]);
    }
    let port: u16 = n.arg(0).and_then(|p| p.parse().ok()).unwrap_or(0);
    let (first, last) = match n.name.rsplit_once('-') {
        Some((a, end)) => (a, Some(end)),
        None => (n.name.as_str(), None),
    };
    let addr: IpAddr = first
        .parse()
        .map_err(|_| format!("bad address '{}'", n.name))?;
    let Some(end) = last else {
        return Ok(vec![ServiceKey::Addr { proto, addr, port }]);
    };
    let mut out = Vec::new();
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            let end: u8 = end.parse().map_err(|_| format!("bad range '{}'", n.name))?;
            if end < o[3] {
                return Err(format!("bad range '{}'", n.name));
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
            let end =
                u16::from_str_radix(end, 16).map_err(|_| format!("bad range '{}'", n.name))?;
            if end < s[7] || u32::from(end - s[7]) >= MAX_GROUP_RANGE {
                return Err(format!("bad range '{}'", n.name));
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

/// A notify script as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCmd {
    /// Command line.
    pub command: String,
    /// Own `user [group]`.
    pub user: Option<ScriptUser>,
}

/// What the pure state asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run a notify script (never awaited by the state).
    Script(NotifyCmd),
    /// Record a history event.
    Event(LbEvent),
}

#[derive(Debug, Clone)]
struct CheckerState {
    kind: &'static str,
    up: bool,
    detail: String,
    latency: Duration,
}

#[derive(Debug, Clone)]
struct RsState {
    addr: IpAddr,
    /// Port in the data plane (the virtual server's when the config gives none).
    port: u16,
    /// Port checker events name it by (0 when the config gives none).
    key_port: u16,
    weight: u32,
    /// MISC_CHECK `misc_dynamic` weight, reported as `dynamic_weight=N`.
    dynamic_weight: Option<u32>,
    weight_override: Option<u32>,
    drained: bool,
    inhibit: bool,
    forward: Forward,
    checkers: Vec<CheckerState>,
    alive: bool,
    removed: bool,
    from_override: bool,
    notify_up: Option<NotifyCmd>,
    notify_down: Option<NotifyCmd>,
}

impl RsState {
    fn effective_weight(&self) -> u32 {
        if self.drained {
            0
        } else {
            self.weight_override
                .or(self.dynamic_weight)
                .unwrap_or(self.weight)
        }
    }
    fn all_up(&self) -> bool {
        self.checkers.iter().all(|c| c.up)
    }
}

#[derive(Debug, Clone)]
struct Sorry {
    addr: IpAddr,
    port: u16,
    forward: Forward,
    inhibit: bool,
}

#[derive(Debug, Clone)]
struct VsState {
    /// [`vs_name`], shared with the checkers' [`RsKey`]s.
    name: Arc<str>,
    keys: Vec<ServiceKey>,
    scheduler: String,
    forward: Forward,
    persistence: Option<Duration>,
    granularity: Option<u8>,
    quorum: u64,
    hysteresis: u64,
    quorum_up_cmd: Option<NotifyCmd>,
    quorum_down_cmd: Option<NotifyCmd>,
    inhibit: bool,
    omega: bool,
    ha_suspend: bool,
    sorry: Option<Sorry>,
    quorum_up: bool,
    rs: Vec<RsState>,
}

impl VsState {
    fn live_weight(&self) -> u64 {
        self.rs
            .iter()
            .filter(|r| r.alive && !r.removed)
            .map(|r| u64::from(r.effective_weight()))
            .sum()
    }
    fn sorry_active(&self) -> bool {
        !self.quorum_up && self.sorry.is_some()
    }
    /// (addr, port, weight) of every destination in the table now.
    fn destinations(&self) -> Vec<Destination> {
        let mut out = Vec::new();
        let sorry_active = self.sorry_active();
        for r in self.rs.iter().filter(|r| !r.removed) {
            let w = if r.alive && !sorry_active {
                Some(r.effective_weight())
            } else if r.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(weight) = w {
                out.push(Destination {
                    addr: r.addr,
                    port: r.port,
                    weight,
                    forward: r.forward,
                });
            }
        }
        if let Some(s) = &self.sorry {
            let w = if sorry_active {
                Some(1)
            } else if s.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(weight) = w {
                // The sorry server may also be a real server: one entry, the live one.
                out.retain(|d| (d.addr, d.port) != (s.addr, s.port));
                out.push(Destination {
                    addr: s.addr,
                    port: s.port,
                    weight,
                    forward: s.forward,
                });
            }
        }
        out
    }
}

/// The runtime's pure state: every virtual server, its real servers and their checkers.
#[derive(Debug, Clone, Default)]
pub struct LbState {
    vss: Vec<VsState>,
    /// VIPs held by a MASTER instance here (ha_suspend).
    vips: BTreeSet<IpAddr>,
    /// Generation of the override set in force.
    override_generation: u64,
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

    /// Effects of the initial state (quorum down at start runs `quorum_down`).
    pub fn start(&self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for vs in self.vss.iter().filter(|v| !v.quorum_up) {
            fx.push(Effect::Event(LbEvent::Quorum {
                vs: vs.name.to_string(),
                up: false,
                weight: vs.live_weight(),
            }));
            if let Some(c) = &vs.quorum_down_cmd {
                fx.push(Effect::Script(c.clone()));
            }
        }
        fx
    }

    /// keepalived's `update_quorum_state`.
    fn update_quorum(vs: &mut VsState, fx: &mut Vec<Effect>) {
        let sum = vs.live_weight();
        let changed = if !vs.quorum_up && sum >= vs.quorum + vs.hysteresis {
            vs.quorum_up = true;
            true
        } else if vs.quorum_up && (sum == 0 || sum < vs.quorum.saturating_sub(vs.hysteresis)) {
            vs.quorum_up = false;
            true
        } else {
            false
        };
        if changed {
            tracing::debug!(vs = %vs.name, up = vs.quorum_up, weight = sum, "quorum changed");
            fx.push(Effect::Event(LbEvent::Quorum {
                vs: vs.name.to_string(),
                up: vs.quorum_up,
                weight: sum,
            }));
            let cmd = if vs.quorum_up {
                &vs.quorum_up_cmd
            } else {
                &vs.quorum_down_cmd
            };
            if let Some(c) = cmd {
                fx.push(Effect::Script(c.clone()));
            }
        }
    }

    fn set_alive(vs: &mut VsState, i: usize, alive: bool, fx: &mut Vec<Effect>) {
        let name = vs.name.clone();
        let Some(r) = vs.rs.get_mut(i) else { return };
        if r.alive == alive {
            return;
        }
        r.alive = alive;
        tracing::debug!(vs = %name, rs = %r.addr, port = r.port, alive, "real server changed");
        fx.push(Effect::Event(LbEvent::RealServer {
            rs: RsKey {
                vs: name,
                addr: r.addr,
                port: r.port,
            },
            up: alive,
        }));
        let cmd = if alive { &r.notify_up } else { &r.notify_down };
        if let Some(c) = cmd {
            fx.push(Effect::Script(c.clone()));
        }
        Self::update_quorum(vs, fx);
    }

    /// A checker verdict.
    pub fn on_check(&mut self, ev: &CheckEvent) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(vs) = self.vss.iter_mut().find(|v| *v.name == *ev.rs.vs) else {
            tracing::debug!(vs = %ev.rs.vs, "check event for an unknown virtual server");
            return fx;
        };
        let Some(i) = vs
            .rs
            .iter()
            .position(|r| r.addr == ev.rs.addr && r.key_port == ev.rs.port)
        else {
            return fx;
        };
        // MISC_CHECK misc_dynamic: the script's exit code sets the weight.
        let dynamic = ev
            .detail
            .rsplit("dynamic_weight=")
            .next()
            .filter(|_| ev.detail.contains("dynamic_weight="))
            .and_then(|w| w.trim().parse::<u32>().ok());
        if let (Some(w), Some(r)) = (dynamic, vs.rs.get_mut(i)) {
            if r.dynamic_weight != Some(w) {
                r.dynamic_weight = Some(w);
                Self::update_quorum(vs, &mut fx);
            }
        }
        let Some(c) = vs
            .rs
            .get_mut(i)
            .and_then(|r| r.checkers.get_mut(ev.checker))
        else {
            return fx;
        };
        let changed = c.up != ev.up;
        c.up = ev.up;
        c.detail.clone_from(&ev.detail);
        c.latency = ev.latency;
        c.kind = ev.kind;
        if changed {
            fx.push(Effect::Event(LbEvent::Checker {
                rs: ev.rs.clone(),
                checker: ev.checker,
                kind: ev.kind,
                up: ev.up,
                detail: ev.detail.clone(),
            }));
        }
        let alive = vs.rs.get(i).is_some_and(RsState::all_up);
        Self::set_alive(vs, i, alive, &mut fx);
        fx
    }

    /// A VIP state, override or shutdown (shutdown gives the omega notifiers).
    pub fn on_input(&mut self, input: &ServiceInput) -> Vec<Effect> {
        let mut fx = Vec::new();
        let target = |s: &mut LbState, vs: &str| s.vss.iter().position(|v| *v.name == *vs);
        let refused = |fx: &mut Vec<Effect>, e: String| {
            fx.push(Effect::Event(LbEvent::Override {
                input: format!("{input:?}"),
                error: Some(e),
            }));
        };
        match input {
            ServiceInput::VipState { addr, master } => {
                if *master {
                    self.vips.insert(*addr);
                } else {
                    self.vips.remove(addr);
                }
                return fx;
            }
            ServiceInput::SetOverrides { generation, list } => {
                self.override_generation = *generation;
                for v in &mut self.vss {
                    v.rs.retain(|r| !r.from_override);
                    for r in &mut v.rs {
                        r.removed = false;
                        r.weight_override = None;
                        r.drained = false;
                    }
                }
                for o in list {
                    fx.extend(self.on_input(&o.input()));
                }
                for v in &mut self.vss {
                    Self::update_quorum(v, &mut fx);
                }
                return fx;
            }
            ServiceInput::Detach => return fx,
            ServiceInput::Shutdown => {
                for vs in &mut self.vss {
                    if !vs.omega {
                        continue;
                    }
                    for r in vs.rs.iter().filter(|r| r.alive && !r.removed) {
                        if let Some(c) = &r.notify_down {
                            fx.push(Effect::Script(c.clone()));
                        }
                    }
                    if vs.quorum_up {
                        if let Some(c) = &vs.quorum_down_cmd {
                            fx.push(Effect::Script(c.clone()));
                        }
                    }
                }
                return fx;
            }
            ServiceInput::RsAdd {
                vs,
                addr,
                port,
                weight,
            } => {
                let Some(v) = target(self, vs) else {
                    refused(&mut fx, format!("no virtual server {vs}"));
                    return fx;
                };
                let Some(v) = self.vss.get_mut(v) else {
                    return fx;
                };
                match v.rs.iter().position(|r| r.addr == *addr && r.port == *port) {
                    Some(i) => {
                        if let Some(r) = v.rs.get_mut(i) {
                            r.removed = false;
                            r.weight_override = Some(*weight);
                        }
                    }
                    None => v.rs.push(RsState {
                        addr: *addr,
                        port: *port,
                        key_port: *port,
                        weight: *weight,
                        dynamic_weight: None,
                        weight_override: None,
                        drained: false,
                        inhibit: v.inhibit,
                        forward: v.forward,
                        checkers: Vec::new(),
                        alive: true,
                        removed: false,
                        from_override: true,
                        notify_up: None,
                        notify_down: None,
                    }),
                }
            }
            ServiceInput::RsDel { vs, addr, port }
            | ServiceInput::RsDrain { vs, addr, port }
            | ServiceInput::RsWeight { vs, addr, port, .. } => {
                let Some(v) = target(self, vs) else {
                    refused(&mut fx, format!("no virtual server {vs}"));
                    return fx;
                };
                let Some(v) = self.vss.get_mut(v) else {
                    return fx;
                };
                let Some(i) = v.rs.iter().position(|r| r.addr == *addr && r.port == *port) else {
                    refused(&mut fx, format!("no real server {addr}:{port} in {vs}"));
                    return fx;
                };
                let Some(r) = v.rs.get_mut(i) else { return fx };
                match input {
                    ServiceInput::RsDel { .. } => {
                        if r.from_override {
                            v.rs.remove(i);
                        } else {
                            r.removed = true;
                        }
                    }
                    ServiceInput::RsDrain { .. } => r.drained = true,
                    ServiceInput::RsWeight { weight, .. } => {
                        r.drained = false;
                        r.weight_override = *weight;
                    }
                    _ => {}
                }
            }
        }
        fx.push(Effect::Event(LbEvent::Override {
            input: format!("{input:?}"),
            error: None,
        }));
        // Weights changed: quorum may have too.
        for v in &mut self.vss {
            Self::update_quorum(v, &mut fx);
        }
        fx
    }

    /// Whether `vs` is suspended (ha_suspend and its VIP not held) for `key`.
    fn suspended(&self, vs: &VsState, key: &ServiceKey) -> bool {
        match key {
            ServiceKey::Addr { addr, .. } => vs.ha_suspend && !self.vips.contains(addr),
            ServiceKey::Fwmark { .. } => false,
        }
    }

    /// Generation of the real-server override set in force.
    pub fn override_generation(&self) -> u64 {
        self.override_generation
    }

    /// The complete desired data-plane table.
    pub fn desired(&self) -> Vec<Service> {
        let mut out = Vec::new();
        for vs in &self.vss {
            let dests = vs.destinations();
            for key in &vs.keys {
                if self.suspended(vs, key) {
                    continue;
                }
                out.push(Service {
                    key: key.clone(),
                    scheduler: vs.scheduler.clone(),
                    persistence: vs.persistence,
                    persistence_granularity: vs.granularity,
                    destinations: dests.clone(),
                });
            }
        }
        out
    }

    /// Status of every virtual server as the data plane runs it: a real server is `in
    /// table` only when it is desired there and the last apply programmed it (no
    /// whole-backend error such as a missing nft, no error on its service or on it).
    pub fn status_programmed(&self, dp: &ReconcileStatus) -> Vec<VsStatus> {
        let mut out = self.status();
        for (st, vs) in out.iter_mut().zip(&self.vss) {
            for r in &mut st.real_servers {
                r.in_table = r.in_table && programmed(dp, &vs.keys, r.addr, r.port);
            }
        }
        out
    }

    /// Status of every virtual server.
    pub fn status(&self) -> Vec<VsStatus> {
        self.vss
            .iter()
            .map(|vs| {
                let dests = vs.destinations();
                VsStatus {
                    name: vs.name.to_string(),
                    services: vs.keys.iter().map(service_object).collect(),
                    scheduler: vs.scheduler.clone(),
                    method: forward_name(vs.forward).into(),
                    quorum: vs.quorum,
                    hysteresis: vs.hysteresis,
                    live_weight: vs.live_weight(),
                    quorum_up: vs.quorum_up,
                    sorry_active: vs.sorry_active(),
                    suspended: vs.keys.iter().all(|k| self.suspended(vs, k)),
                    real_servers: vs
                        .rs
                        .iter()
                        .filter(|r| !r.removed)
                        .map(|r| RsStatus {
                            addr: r.addr,
                            port: r.port,
                            weight_base: r.weight,
                            weight_effective: r.effective_weight(),
                            alive: r.alive,
                            in_table: dests.iter().any(|d| (d.addr, d.port) == (r.addr, r.port)),
                            drained: r.drained,
                            from_override: r.from_override,
                            checkers: r
                                .checkers
                                .iter()
                                .map(|c| CheckerStatus {
                                    kind: c.kind.into(),
                                    up: c.up,
                                    detail: c.detail.clone(),
                                    latency: c.latency,
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect()
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

/// Run the effects: scripts in their own tasks (never awaited here), events out.
fn execute(
    fx: Vec<Effect>,
    defaults: &ScriptDefaults,
    events: Option<&mpsc::UnboundedSender<LbEvent>>,
) -> Vec<JoinHandle<()>> {
    let mut running = Vec::new();
    for e in fx {
        match e {
            Effect::Event(ev) => {
                if let Some(tx) = events {
                    let _ = tx.send(ev);
                }
            }
            Effect::Script(cmd) => {
                match ScriptSpec::from_command(&cmd.command, cmd.user.as_ref(), defaults) {
                    Ok(spec) => {
                        running.push(tokio::spawn(async move {
                            let r = script::run(&spec, NOTIFY_TIMEOUT).await;
                            if !r.success() {
                                tracing::warn!(script = %spec.display(), exit = ?r.exit,
                                    timed_out = r.timed_out, "lb notify script failed");
                            }
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(script = %cmd.command, error = %e, "lb notify script refused")
                    }
                }
            }
        }
    }
    running
}

/// Spawn the runtime on `backend`. It ends on [`ServiceInput::Shutdown`] or when the
/// inputs channel closes, after removing its services from the data plane.
///
/// It runs on its own thread with a current-thread runtime: the IPVS backend's futures
/// are not provably `Send` (higher-ranked lifetimes in its netlink code), so they cannot
/// go to `tokio::spawn`; the thread needs no `Send` future and keeps the data plane off
/// the VRRP engine's workers. Must be called inside a tokio runtime.
pub fn spawn(
    cfg: &Config,
    backend: Backend,
    checks: mpsc::UnboundedReceiver<CheckEvent>,
    inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) -> JoinHandle<()> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "lb runtime thread: cannot build a runtime");
                return;
            }
        };
        rt.block_on(run(
            &cfg,
            backend,
            ReconcileTiming::default(),
            checks,
            inputs,
            status,
            events,
        ));
    })
}

/// What the runtime loop needs of the config, built once so the config itself need not
/// be kept (a thousand real servers' parsed statements are far larger than their state).
#[derive(Debug)]
pub struct Prepared {
    /// The pure state, as the config sets it up.
    pub state: LbState,
    /// What [`LbState::from_config`] skipped, logged when the loop starts.
    pub errors: Vec<String>,
    /// Script settings of `global_defs` (notify scripts).
    pub defaults: ScriptDefaults,
}

impl Prepared {
    /// Build from the config.
    pub fn from_config(cfg: &Config) -> Prepared {
        let (state, errors) = LbState::from_config(cfg);
        Prepared {
            state,
            errors,
            defaults: ScriptDefaults::from_global(&cfg.global),
        }
    }
}

/// The runtime loop on any data plane (tests use fakes; [`spawn`] uses [`Backend`]).
#[allow(clippy::too_many_arguments)]
pub async fn run<D: DataPlane>(
    cfg: &Config,
    dp: D,
    timing: ReconcileTiming,
    checks: mpsc::UnboundedReceiver<CheckEvent>,
    inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) {
    let prepared = Prepared::from_config(cfg);
    run_prepared(prepared, dp, timing, checks, inputs, status, events).await;
}

/// [`run`] on state built beforehand ([`Prepared::from_config`]).
pub async fn run_prepared<D: DataPlane>(
    prepared: Prepared,
    dp: D,
    timing: ReconcileTiming,
    mut checks: mpsc::UnboundedReceiver<CheckEvent>,
    mut inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) {
    let Prepared {
        mut state,
        errors,
        defaults,
    } = prepared;
    for e in &errors {
        tracing::warn!(error = %e, "virtual server config");
    }
    let mut rec = Reconciler::new(dp, timing, Instant::now());
    drop(execute(state.start(), &defaults, events.as_ref()));
    rec.set_desired(state.desired());
    let mut checks_open = true;
    let mut stats = Vec::new();
    loop {
        let now = Instant::now();
        let outcome = rec.tick(now).await;
        if outcome == crate::lb::dataplane::reconcile::TickOutcome::InSync {
            stats = rec.backend_mut().stats().await.unwrap_or_default();
        }
        let now_status = LbStatus {
            virtual_servers: state.status_programmed(rec.status()),
            dataplane: rec.status().clone(),
            stats: stats.clone(),
            override_generation: state.override_generation(),
        };
        status.send_if_modified(|s| {
            let changed = *s != now_status;
            if changed {
                *s = now_status;
            }
            changed
        });
        let deadline = rec.deadline(Instant::now());
        tokio::select! {
            ev = checks.recv(), if checks_open => match ev {
                Some(ev) => {
                    drop(execute(state.on_check(&ev), &defaults, events.as_ref()));
                    // Verdicts that arrived together (a thousand checkers' first round)
                    // are taken as one batch: one status and one desired table for all.
                    while let Ok(ev) = checks.try_recv() {
                        drop(execute(state.on_check(&ev), &defaults, events.as_ref()));
                    }
                }
                None => checks_open = false,
            },
            inp = inputs.recv() => match inp {
                Some(ServiceInput::Shutdown) | None => break,
                Some(ServiceInput::Detach) => return,
                Some(i) => drop(execute(state.on_input(&i), &defaults, events.as_ref())),
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
        rec.set_desired(state.desired());
    }
    // Shutdown: omega notifiers, then our services leave the data plane; the notifiers
    // are awaited (each bounded by its timeout) so they finish before the runtime goes.
    let running = execute(
        state.on_input(&ServiceInput::Shutdown),
        &defaults,
        events.as_ref(),
    );
    rec.set_desired(Vec::new());
    let _ = rec.tick(Instant::now()).await;
    for r in running {
        let _ = r.await;
    }
    status.send_replace(LbStatus {
        virtual_servers: state.status_programmed(rec.status()),
        dataplane: rec.status().clone(),
        stats: Vec::new(),
        override_generation: state.override_generation(),
    });
}

/// Whether destination `addr:port` of the services `keys` is in the data plane after the
/// last apply (`dp`): one apply done, no backend-wide error, and no error reported on a
/// service or on the destination (under either backend's object names).
pub fn programmed(dp: &ReconcileStatus, keys: &[ServiceKey], addr: IpAddr, port: u16) -> bool {
    if dp.applies == 0 || dp.last_error.is_some() {
        return false;
    }
    keys.iter().all(|k| {
        let names = [
            service_object(k),
            crate::lb::dataplane::nft::destination_object(k, addr, port),
            crate::lb::dataplane::ipvs::service_name(k),
            crate::lb::dataplane::ipvs::dest_name(k, addr, port),
        ];
        !dp.objects
            .iter()
            .any(|o| o.result.is_err() && names.contains(&o.object))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn load(text: &str) -> Config {
        match parse_str(Path::new("k.conf"), text) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn in_table_only_when_the_data_plane_programmed_it() {
        use crate::lb::dataplane::{ObjectStatus, Proto};
        let key = ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 80,
        };
        let rs: IpAddr = "192.0.2.11".parse().unwrap();
        let ok = |object: &str| ObjectStatus {
            object: object.into(),
            result: Ok(()),
        };
        let mut dp = ReconcileStatus::default();
        let keys = [key];
        assert!(!programmed(&dp, &keys, rs, 80), "no apply yet");
        dp.applies = 1;
        dp.objects = vec![
            ok("192.0.2.10:80/TCP"),
            ok("192.0.2.10:80/TCP -> 192.0.2.11:80"),
        ];
        assert!(programmed(&dp, &keys, rs, 80));
        // nft missing: the whole apply failed.
        dp.last_error = Some("nft: No such file or directory".into());
        assert!(!programmed(&dp, &keys, rs, 80));
        dp.last_error = None;
        // The destination (or its service) refused.
        dp.objects[1].result = Err("no neighbour".into());
        assert!(!programmed(&dp, &keys, rs, 80));
        assert!(programmed(&dp, &keys, "192.0.2.12".parse().unwrap(), 80));
        dp.objects[1].result = Ok(());
        dp.objects[0].result = Err("tunnel forwarding (TUN) needs IPVS".into());
        assert!(!programmed(&dp, &keys, rs, 80));
    }

    const CONF: &str = r#"
virtual_server 192.0.2.10 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    quorum 3
    hysteresis 0
    sorry_server 198.51.100.99 8080
    quorum_up "/bin/true up"
    quorum_down "/bin/true down"
    real_server 198.51.100.11 8080 {
        weight 3
        notify_down "/bin/true rs1down"
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.51.100.12 8080 {
        weight 1
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"#;

    fn ev(vs: &str, last: u8, up: bool) -> CheckEvent {
        CheckEvent {
            rs: RsKey {
                vs: vs.into(),
                addr: format!("198.51.100.{last}").parse().unwrap(),
                port: 8080,
            },
            checker: 0,
            kind: "TCP_CHECK",
            up,
            detail: if up { "connected" } else { "refused" }.into(),
            latency: Duration::from_millis(1),
        }
    }

    fn weights(s: &LbState) -> Vec<(String, u32)> {
        let d = s.desired();
        d[0].destinations
            .iter()
            .map(|d| (d.addr.to_string(), d.weight))
            .collect()
    }

    fn scripts(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Script(c) => Some(c.command.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn builds_table_from_config() {
        let (s, errs) = LbState::from_config(&load(CONF));
        assert!(errs.is_empty(), "{errs:?}");
        let d = s.desired();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].scheduler, "wrr");
        assert_eq!(service_object(&d[0].key), "192.0.2.10:80/TCP");
        assert_eq!(
            weights(&s),
            vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 1)]
        );
        assert!(s.start().is_empty(), "quorum 3 <= 4 at start");
    }

    #[test]
    fn failure_removes_or_inhibits_and_quorum_brings_sorry_server() {
        let (mut s, _) = LbState::from_config(&load(CONF));
        let vs = "192.0.2.10:80/TCP";
        // rs2 (inhibit_on_failure) fails: stays with weight 0; live weight 3 >= quorum 3.
        let fx = s.on_check(&ev(vs, 12, false));
        assert!(scripts(&fx).is_empty());
        assert_eq!(
            weights(&s),
            vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 0)]
        );
        // rs1 fails: quorum lost, live servers replaced by the sorry server.
        let fx = s.on_check(&ev(vs, 11, false));
        assert_eq!(scripts(&fx), vec!["/bin/true rs1down", "/bin/true down"]);
        assert_eq!(
            weights(&s),
            vec![("198.51.100.12".into(), 0), ("198.51.100.99".into(), 1)]
        );
        assert!(s.status()[0].sorry_active);
        // rs1 back: quorum back, sorry server gone.
        let fx = s.on_check(&ev(vs, 11, true));
        assert_eq!(scripts(&fx), vec!["/bin/true up"]);
        assert_eq!(
            weights(&s),
            vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 0)]
        );
        // An unchanged verdict changes nothing.
        assert!(s.on_check(&ev(vs, 11, true)).is_empty());
    }

    #[test]
    fn alpha_starts_down_and_hysteresis_holds() {
        let conf = CONF
            .replace("quorum 3", "quorum 3\n    alpha")
            .replace("hysteresis 0", "hysteresis 1");
        let (mut s, _) = LbState::from_config(&load(&conf));
        let vs = "192.0.2.10:80/TCP";
        // All down at start: sorry server only (rs2 inhibited at 0).
        assert_eq!(scripts(&s.start()), vec!["/bin/true down"]);
        assert_eq!(
            weights(&s),
            vec![("198.51.100.12".into(), 0), ("198.51.100.99".into(), 1)]
        );
        // rs1 up: 3 < quorum + hysteresis = 4: still down.
        s.on_check(&ev(vs, 11, true));
        assert!(!s.status()[0].quorum_up);
        // rs2 up: 4: quorum gained.
        s.on_check(&ev(vs, 12, true));
        assert!(s.status()[0].quorum_up);
        // rs2 down: 3 >= quorum - hysteresis = 2: held.
        s.on_check(&ev(vs, 12, false));
        assert!(s.status()[0].quorum_up);
    }

    #[test]
    fn overrides_add_drain_weight_and_delete() {
        let (mut s, _) = LbState::from_config(&load(CONF));
        let vs = "192.0.2.10:80/TCP".to_string();
        let a13: IpAddr = "198.51.100.13".parse().unwrap();
        let a11: IpAddr = "198.51.100.11".parse().unwrap();
        s.on_input(&ServiceInput::RsAdd {
            vs: vs.clone(),
            addr: a13,
            port: 8080,
            weight: 2,
        });
        assert!(weights(&s).contains(&("198.51.100.13".into(), 2)));
        s.on_input(&ServiceInput::RsDrain {
            vs: vs.clone(),
            addr: a11,
            port: 8080,
        });
        assert!(weights(&s).contains(&("198.51.100.11".into(), 0)));
        s.on_input(&ServiceInput::RsWeight {
            vs: vs.clone(),
            addr: a11,
            port: 8080,
            weight: Some(5),
        });
        assert!(weights(&s).contains(&("198.51.100.11".into(), 5)));
        s.on_input(&ServiceInput::RsDel {
            vs: vs.clone(),
            addr: a11,
            port: 8080,
        });
        assert!(!weights(&s).iter().any(|(a, _)| a == "198.51.100.11"));
        // Unknown targets are refused, with the reason in history.
        let fx = s.on_input(&ServiceInput::RsDel {
            vs: "nope".into(),
            addr: a11,
            port: 1,
        });
        assert!(matches!(
            &fx[0],
            Effect::Event(LbEvent::Override { error: Some(_), .. })
        ));
    }

    #[test]
    fn override_sets_replace_each_other() {
        let (mut s, _) = LbState::from_config(&load(CONF));
        let vs = "192.0.2.10:80/TCP".to_string();
        let o = |last: u8, action| RsOverride {
            vs: vs.clone(),
            addr: format!("198.51.100.{last}").parse().unwrap(),
            port: 8080,
            action,
        };
        let before = weights(&s);
        s.on_input(&ServiceInput::SetOverrides {
            generation: 3,
            list: vec![
                o(13, RsAction::Add { weight: 5 }),
                o(11, RsAction::Drain),
                o(12, RsAction::Del),
            ],
        });
        assert_eq!(s.override_generation(), 3);
        let w = weights(&s);
        assert!(w.contains(&("198.51.100.13".into(), 5)), "{w:?}");
        assert!(w.contains(&("198.51.100.11".into(), 0)), "{w:?}");
        assert!(!w.iter().any(|(a, _)| a == "198.51.100.12"), "{w:?}");
        // The next set names only a weight: the added server goes, the drain and the
        // delete end, the configured servers are back as configured.
        s.on_input(&ServiceInput::SetOverrides {
            generation: 4,
            list: vec![o(12, RsAction::Weight(7))],
        });
        let w = weights(&s);
        assert!(!w.iter().any(|(a, _)| a == "198.51.100.13"), "{w:?}");
        assert!(w.contains(&("198.51.100.11".into(), 3)), "{w:?}");
        assert!(w.contains(&("198.51.100.12".into(), 7)), "{w:?}");
        // An empty set restores the config exactly.
        s.on_input(&ServiceInput::SetOverrides {
            generation: 5,
            list: Vec::new(),
        });
        assert_eq!(weights(&s), before);
    }

    #[test]
    fn ha_suspend_programs_only_with_the_vip() {
        let conf = CONF.replace("quorum 3", "quorum 1\n    ha_suspend");
        let (mut s, _) = LbState::from_config(&load(&conf));
        assert!(s.desired().is_empty());
        let vip: IpAddr = "192.0.2.10".parse().unwrap();
        s.on_input(&ServiceInput::VipState {
            addr: vip,
            master: true,
        });
        assert_eq!(s.desired().len(), 1);
        s.on_input(&ServiceInput::VipState {
            addr: vip,
            master: false,
        });
        assert!(s.desired().is_empty());
    }

    #[test]
    fn groups_expand_and_methods_parse() {
        let conf = r#"
virtual_server_group G {
    192.0.2.20-22 80
    fwmark 7
}
virtual_server group G {
    lb_algo rr
    lb_kind DR
    persistence_timeout 60
    persistence_granularity 255.255.255.0
    real_server 198.51.100.11 80 {
    }
}
"#;
        let (s, errs) = LbState::from_config(&load(conf));
        assert!(errs.is_empty(), "{errs:?}");
        let d = s.desired();
        assert_eq!(d.len(), 4);
        assert!(d.iter().all(|x| x.persistence_granularity == Some(24)));
        assert!(d.iter().all(|x| x.destinations[0].forward == Forward::Dr));
        assert_eq!(s.status()[0].name, "group G");
    }

    #[test]
    fn omega_runs_down_notifiers_at_shutdown() {
        let conf = CONF.replace("quorum 3", "quorum 3\n    omega");
        let (mut s, _) = LbState::from_config(&load(&conf));
        let fx = s.on_input(&ServiceInput::Shutdown);
        assert_eq!(scripts(&fx), vec!["/bin/true rs1down", "/bin/true down"]);
        let (mut s, _) = LbState::from_config(&load(CONF));
        assert!(scripts(&s.on_input(&ServiceInput::Shutdown)).is_empty());
    }

    #[test]
    fn misc_dynamic_weight_and_portless_real_servers() {
        let conf = r#"
virtual_server 192.0.2.10 80 {
    lb_algo wrr
    real_server 198.51.100.11 {
        weight 5
        MISC_CHECK {
            misc_path "/bin/true"
            misc_dynamic
        }
    }
}
"#;
        let (mut s, _) = LbState::from_config(&load(conf));
        // The checker names it with port 0; the data plane uses the service port.
        let mut e = ev("192.0.2.10:80/TCP", 11, true);
        e.rs.port = 0;
        e.detail = "exit 4; dynamic_weight=2".into();
        s.on_check(&e);
        let d = s.desired();
        assert_eq!(d[0].destinations[0].port, 80);
        assert_eq!(d[0].destinations[0].weight, 2);
    }

    #[test]
    fn backend_setting_parses() {
        assert_eq!(backend_setting(&load(CONF)), Ok(BackendKind::Auto));
    }
}
