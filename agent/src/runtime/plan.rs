//! The plan: what the runtime will run, derived from a validated config. Pure mapping
//! from `config::model` to the protocol core's `InstanceConfig` plus what the edges need
//! (interfaces, vmac, VIP entries); no I/O.

use std::net::{IpAddr, Ipv4Addr};

use crate::config::model::{self, Config, InitialState, VipSpec, VrrpInstance};
use crate::net::netlink::{Family, Scope};
use crate::track::{instance_trackers, TrackerState};
use crate::vrrp::instance::{GarpConfig, InstanceConfig, StartState};
use crate::vrrp::packet::ChecksumMode;

/// One VIP as the netlink edge will install it (interface still by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipPlan {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// `dev`, if not the instance's interface.
    pub dev: Option<String>,
    /// `label`.
    pub label: Option<String>,
    /// `scope`.
    pub scope: Scope,
    /// `brd`.
    pub brd: Option<Ipv4Addr>,
}

/// One instance to run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePlan {
    /// What the protocol core needs.
    pub cfg: InstanceConfig,
    /// `interface`.
    pub interface: String,
    /// `use_vmac`: the vmac's name.
    pub use_vmac: Option<String>,
    /// `unicast_src_ip`.
    pub unicast_src: Option<IpAddr>,
    /// Addresses installed as master: `virtual_ipaddress` then `_excluded`.
    pub vips: Vec<VipPlan>,
    /// `track_interface` names (down puts the instance in FAULT).
    pub track_interfaces: Vec<String>,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// v3 IPv4 checksum form.
    pub checksum: ChecksumMode,
    /// Trackers (scripts, files, interfaces, processes) with resolved weights.
    pub trackers: Vec<TrackerState>,
    /// The `vrrp_sync_group` this instance belongs to.
    pub sync_group: Option<String>,
}

impl InstancePlan {
    /// Address family the instance runs VRRP in.
    pub fn family(&self) -> Family {
        match self.cfg.vips.first().or(self.unicast_src.as_ref()) {
            Some(IpAddr::V6(_)) => Family::V6,
            _ => Family::V4,
        }
    }
}

/// Everything to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Node name: `--node`, else router_id, else the hostname.
    pub node: String,
    /// Instances.
    pub instances: Vec<InstancePlan>,
    /// Checksum mode of the receive path (v3_checksum_as_v2 anywhere accepts both forms).
    pub checksum: ChecksumMode,
    /// The validated config (trackers and notify scripts are started from it).
    pub config: Config,
}

/// Which halves of keepalived run: keepalived's `-P` (VRRP only) and `-C` (checkers only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daemons {
    /// VRRP instances, their trackers and notify scripts.
    pub vrrp: bool,
    /// Virtual servers and their checkers (the load balancer).
    pub checkers: bool,
}

impl Default for Daemons {
    fn default() -> Self {
        Daemons {
            vrrp: true,
            checkers: true,
        }
    }
}

/// The process-wide choice of `-P` / `-C`, set once from the command line; every plan
/// (at start and on each reload) follows it.
static DAEMONS: std::sync::OnceLock<Daemons> = std::sync::OnceLock::new();

/// Set the halves to run (once, before the first plan); false if already set.
pub fn set_daemons(d: Daemons) -> bool {
    DAEMONS.set(d).is_ok()
}

/// The halves to run (both unless [`set_daemons`] said otherwise).
pub fn daemons() -> Daemons {
    DAEMONS.get().copied().unwrap_or_default()
}

/// `cfg` without the half `d` leaves out: `-C` drops the VRRP side (instances, sync
/// groups, vrrp_script / track_file / track_process trackers), `-P` the virtual servers.
pub fn restrict(cfg: &Config, d: Daemons) -> Config {
    let mut c = cfg.clone();
    if !d.vrrp {
        c.vrrp_instances.clear();
        c.sync_groups.clear();
        c.vrrp_scripts.clear();
        c.track_files.clear();
        c.track_processes.clear();
    }
    if !d.checkers {
        c.virtual_servers.clear();
        c.virtual_server_groups.clear();
    }
    c
}

/// Build the plan; `node` overrides router_id. Follows [`daemons`].
pub fn build(cfg: &Config, node: Option<String>) -> Plan {
    let d = daemons();
    if d != Daemons::default() {
        return build_all(&restrict(cfg, d), node);
    }
    build_all(cfg, node)
}

/// Build the plan of everything in `cfg`.
fn build_all(cfg: &Config, node: Option<String>) -> Plan {
    let node = node
        .or_else(|| cfg.global.router_id.clone())
        .unwrap_or_else(hostname);
    let instances: Vec<InstancePlan> = cfg
        .vrrp_instances
        .iter()
        .map(|i| {
            let mut p = instance(i);
            p.trackers = instance_trackers(i, cfg);
            p.sync_group = cfg
                .sync_groups
                .iter()
                .find(|g| g.instances.contains(&i.name))
                .map(|g| g.name.clone());
            p
        })
        .collect();
    let checksum = if instances.iter().any(|i| i.checksum == ChecksumMode::V3AsV2) {
        ChecksumMode::V3AsV2
    } else {
        ChecksumMode::Standard
    };
    Plan {
        node,
        instances,
        checksum,
        config: cfg.clone(),
    }
}

fn instance(i: &VrrpInstance) -> InstancePlan {
    let g = &i.garp;
    let cfg = InstanceConfig {
        name: i.name.clone(),
        vrid: i.vrid,
        version: i.version,
        priority: i.priority,
        interval: i.advert_int,
        preempt: !i.nopreempt,
        preempt_delay: i.preempt_delay,
        start: match i.state {
            InitialState::Master => StartState::Master,
            InitialState::Backup => StartState::Backup,
        },
        vips: i.vips.iter().map(|v| v.addr).collect(),
        auth: i.auth.as_ref().map(|a| a.0),
        unicast_peers: i.unicast_peers.iter().map(|p| p.addr).collect(),
        garp: GarpConfig {
            delay: g.master_delay.unwrap_or_default(),
            repeat: g.master_repeat,
            refresh: g.master_refresh,
            refresh_repeat: g.master_refresh_repeat,
            lower_prio_delay: g.lower_prio_delay,
            lower_prio_repeat: g.lower_prio_repeat,
        },
        timer_expired_backup: i.timer_expired_backup,
        owner_ignore_adverts: i.owner_ignore_adverts,
    };
    InstancePlan {
        cfg,
        interface: i.interface.clone(),
        use_vmac: i.use_vmac.as_ref().map(|n| {
            n.clone()
                .unwrap_or_else(|| crate::net::netlink::default_vmac_name(i.vrid))
        }),
        unicast_src: i.unicast_src_ip,
        vips: i.vips.iter().chain(&i.vips_excluded).map(vip).collect(),
        track_interfaces: i.track_interfaces.iter().map(|t| t.name.clone()).collect(),
        trackers: Vec::new(),
        sync_group: None,
        dont_track_primary: i.dont_track_primary,
        checksum: if i.v3_checksum_as_v2 {
            ChecksumMode::V3AsV2
        } else {
            ChecksumMode::Standard
        },
    }
}

fn vip(v: &VipSpec) -> VipPlan {
    VipPlan {
        addr: v.addr,
        prefix_len: v.prefix_len,
        dev: v.dev.clone(),
        label: v.label.clone(),
        scope: match v.scope {
            None | Some(model::Scope::Global) => Scope::Global,
            Some(model::Scope::Site) => Scope::Site,
            Some(model::Scope::Link) => Scope::Link,
            Some(model::Scope::Host) => Scope::Host,
            Some(model::Scope::Nowhere) => Scope::Nowhere,
        },
        brd: v.brd,
    }
}

/// The kernel's hostname (uts namespace), or "localhost".
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
