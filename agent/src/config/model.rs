//! Typed model of a validated keepalived.conf.
//!
//! Built by `build.rs` from the generic tree once `keywords.rs` accepted every keyword and
//! `validate.rs` found no error, so required fields are plain values (a `VrrpInstance`
//! always has an interface and a VRID). Defaults are keepalived's, already resolved:
//! instance settings that inherit from `global_defs` hold the effective value.
//! Features that are parsed but not active yet (scripts, track files, sync groups, LVS)
//! are typed enough for later issues and keep the rest as a key/value bag ([`Node`]s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use super::tree::Node;
use crate::units::{Centiseconds, Priority, Version, Vrid};

/// Where something is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File it is in (shared by everything defined in it, as the lexer's `Loc`).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            file: Arc::from(Path::new("")),
            line: 0,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `global_defs`, with keepalived's defaults when absent.
    pub global: GlobalDefs,
    /// `vrrp_instance` blocks, in file order.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `vrrp_script` blocks (parsed, not active yet).
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `vrrp_track_file` / `track_file` blocks (parsed, not active yet).
    pub track_files: Vec<TrackFile>,
    /// `vrrp_track_process` blocks (parsed, not active yet).
    pub track_processes: Vec<Section>,
    /// `vrrp_sync_group` blocks (parsed, not active yet).
    pub sync_groups: Vec<SyncGroup>,
    /// `virtual_server_group` blocks (parsed, not active yet).
    pub virtual_server_groups: Vec<Section>,
    /// `virtual_server` blocks (parsed, not active yet).
    pub virtual_servers: Vec<VirtualServer>,
    /// Other top-level blocks and statements (static_*, garp_group, bfd_instance, SSL, ...).
    pub other: Vec<Node>,
}

/// A named block kept as a key/value bag.
#[derive(Debug, Clone)]
pub struct Section {
    /// The block's name argument (may be empty).
    pub name: String,
    /// Where it is defined.
    pub origin: Origin,
    /// Its statements.
    pub entries: Vec<Node>,
}

/// Gratuitous ARP / unsolicited NA settings (global defaults or a resolved instance copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garp {
    /// Delay of the second burst after becoming master; `None` = no second burst.
    pub master_delay: Option<Duration>,
    /// Messages per burst after becoming master.
    pub master_repeat: u32,
    /// Periodic refresh while master; `None` = off.
    pub master_refresh: Option<Duration>,
    /// Messages per refresh.
    pub master_refresh_repeat: u32,
    /// Delay of the second burst after a lower-priority advert as master; `None` = none.
    pub lower_prio_delay: Option<Duration>,
    /// Messages per burst after a lower-priority advert as master.
    pub lower_prio_repeat: u32,
    /// Gap between GARPs on one interface.
    pub interval: Duration,
    /// Gap between unsolicited NAs on one interface.
    pub na_interval: Duration,
}

impl Default for Garp {
    /// keepalived's defaults: 5 messages, second burst after 5 s, no refresh.
    fn default() -> Self {
        Garp {
            master_delay: Some(Duration::from_secs(5)),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            lower_prio_delay: Some(Duration::from_secs(5)),
            lower_prio_repeat: 5,
            interval: Duration::ZERO,
            na_interval: Duration::ZERO,
        }
    }
}

/// `user [group]` to run scripts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptUser {
    /// User name.
    pub user: String,
    /// Group name (default: the user's group).
    pub group: Option<String>,
}

/// `global_defs`.
#[derive(Debug, Clone)]
pub struct GlobalDefs {
    /// `router_id`: default node name.
    pub router_id: Option<String>,
    /// `vrrp_version` (None: 2, IPv6 instances 3).
    pub vrrp_version: Option<Version>,
    /// `vrrp_garp_*` / `vrrp_gna_interval` / `vrrp_min_garp`, resolved.
    pub garp: Garp,
    /// `script_user`.
    pub script_user: Option<ScriptUser>,
    /// `enable_script_security`.
    pub enable_script_security: bool,
    /// `vrrp_check_unicast_src`.
    pub vrrp_check_unicast_src: bool,
    /// `v3_checksum_as_v2` (keepalived 2.2.8+): v3 IPv4 checksum without pseudo-header.
    pub v3_checksum_as_v2: bool,
    /// `vrrp_strict`.
    pub vrrp_strict: bool,
    /// `vrrp_skip_check_adv_addr`.
    pub vrrp_skip_check_adv_addr: bool,
    /// `vrrp_higher_prio_send_advert`.
    pub vrrp_higher_prio_send_advert: bool,
    /// `vrrp_lower_prio_no_advert` (None: false unless strict).
    pub vrrp_lower_prio_no_advert: Option<bool>,
    /// `vrrp_mcast_group4` (default 224.0.0.18).
    pub vrrp_mcast_group4: Ipv4Addr,
    /// `vrrp_mcast_group6` (default ff02::12).
    pub vrrp_mcast_group6: Ipv6Addr,
    /// `vrrp_priority`, `vrrp_rt_priority`, `vrrp_no_swap`: scheduling of the VRRP thread.
    pub process: ProcessTuning,
    /// `vrrp_startup_delay`: VRRP starts this long after the agent (zero: at once).
    pub vrrp_startup_delay: Duration,
    /// `vrrp_delay_after_boot`: VRRP starts no sooner than this long after the system
    /// booted (/proc/uptime, read at start); the longer of the two delays wins.
    pub vrrp_delay_after_boot: Option<Duration>,
    /// `vrrp_owner_ignore_adverts`: default of `owner_ignore_adverts` for address owners.
    pub vrrp_owner_ignore_adverts: bool,
    /// `state_dump_file`, `json_dump_file`, `stats_dump_file`: where the dumps go.
    pub dump_files: DumpFiles,
    /// Where `global_defs` is (None if absent).
    pub origin: Option<Origin>,
    /// Every other global statement (lvs, checker, process tuning, ...), raw.
    pub other: Vec<Node>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            vrrp_version: None,
            garp: Garp::default(),
            script_user: None,
            enable_script_security: false,
            vrrp_check_unicast_src: false,
            v3_checksum_as_v2: false,
            vrrp_strict: false,
            vrrp_skip_check_adv_addr: false,
            vrrp_higher_prio_send_advert: false,
            vrrp_lower_prio_no_advert: None,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            process: ProcessTuning::default(),
            vrrp_startup_delay: Duration::ZERO,
            vrrp_delay_after_boot: None,
            vrrp_owner_ignore_adverts: false,
            dump_files: DumpFiles::default(),
            origin: None,
            other: Vec::new(),
        }
    }
}

/// The dump file paths of `global_defs`, as written. A relative path is under
/// `--runtime-dir`; a path ending in `/` is a directory for the default file name
/// (keepalived's rule for `state_dump_file`, applied to all three).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpFiles {
    /// `state_dump_file`: the SIGUSR1 text dump (default `keepalived.data`).
    pub state: Option<PathBuf>,
    /// `json_dump_file`: the SIGUSR1 JSON dump (default `keepalived.json`).
    pub json: Option<PathBuf>,
    /// `stats_dump_file`: the SIGUSR2 counters (default `stats.json`).
    pub stats: Option<PathBuf>,
}

impl DumpFiles {
    /// Resolve one configured path against `dir` and the default file name.
    pub fn resolve(configured: Option<&Path>, dir: &Path, default_name: &str) -> PathBuf {
        match configured {
            None => dir.join(default_name),
            Some(p) => {
                let base = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    dir.join(p)
                };
                if p.as_os_str().to_string_lossy().ends_with('/') {
                    base.join(default_name)
                } else {
                    base
                }
            }
        }
    }
}

/// keepalived's tuning of its VRRP process, applied to the agent's VRRP (engine) thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessTuning {
    /// `vrrp_priority`: nice value, -20..19.
    pub nice: Option<i32>,
    /// `vrrp_rt_priority`: SCHED_RR priority, 1..99.
    pub rt_priority: Option<u32>,
    /// `vrrp_no_swap`: lock memory (mlockall), so a page-in never stalls VRRP.
    pub no_swap: bool,
}

/// Initial state asked for by `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialState {
    /// `state MASTER`.
    Master,
    /// `state BACKUP` (the default).
    #[default]
    Backup,
}

/// Address family of an instance (of its `virtual_ipaddress` list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// IPv4.
    #[default]
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// Address scope (`ip addr add ... scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `global` (default).
    Global,
    /// `site`.
    Site,
    /// `link`.
    Link,
    /// `host`.
    Host,
    /// `nowhere`.
    Nowhere,
}

/// A VRRP v2 simple password: keepalived keeps the first 8 bytes, zero padded
/// (RFC 2338 §5.3.6.1; removed by RFC 3768 but still spoken).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthPass(pub [u8; 8]);

impl std::fmt::Debug for AuthPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthPass(..)")
    }
}

/// What `auth_hmac` does when it is active (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacMode {
    /// `enforce` (default): sign every advert, drop unsigned or bad ones.
    #[default]
    Enforce,
    /// `permissive`: sign, accept unsigned adverts too (migration).
    Permissive,
    /// `receive-only`: verify signed adverts, send unsigned.
    ReceiveOnly,
}

/// Freshness check of `auth_hmac` (`anti_replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AntiReplay {
    /// `time` (default): wall-clock timestamps within `time_window`.
    #[default]
    Time,
    /// `monotonic`: per-sender increasing counters.
    Monotonic,
}

/// An `auth_hmac` key secret (32-64 bytes); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacSecret(pub Vec<u8>);

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacSecret({} bytes)", self.0.len())
    }
}

/// One `key ID VALUE` line of `auth_hmac` (VALUE: ASCII, `hex:...` or `file:PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacKey {
    /// Key id, 1-255.
    pub id: u8,
    /// The secret.
    pub secret: HmacSecret,
    /// Where the line is.
    pub origin: Origin,
}

/// `auth_hmac { }` (keepalived 2.4.3): parsed and checked, not active yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHmac {
    /// `key` lines, ids unique.
    pub keys: Vec<HmacKey>,
    /// `active_key`: the key adverts are signed with (one of `keys`).
    pub active_key: u8,
    /// `time_window`, 1-300 s; unset with `anti_replay time`: 3 x advert_int, 5-300 s.
    pub time_window: Duration,
    /// `anti_replay`.
    pub anti_replay: AntiReplay,
    /// `mode`.
    pub mode: HmacMode,
    /// Where `auth_hmac` is.
    pub origin: Origin,
}

/// One `virtual_ipaddress` / `virtual_ipaddress_excluded` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (default /32 or /128).
    pub prefix_len: u8,
    /// `dev IFNAME` (default: the instance's interface, or its VMAC).
    pub dev: Option<String>,
    /// `label LABEL`.
    pub label: Option<String>,
    /// `scope SCOPE`.
    pub scope: Option<Scope>,
    /// `brd ADDR` (IPv4 only).
    pub brd: Option<Ipv4Addr>,
    /// Other `ip addr` options (`peer`, `home`, `-nodad`, `no_track`, ...), raw words.
    pub extra: Vec<String>,
    /// Where the line is.
    pub origin: Origin,
}

/// A `unicast_peer` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicastPeer {
    /// Peer address.
    pub addr: IpAddr,
    /// `min_ttl N`.
    pub min_ttl: Option<u8>,
    /// `max_ttl N`.
    pub max_ttl: Option<u8>,
    /// Where the line is.
    pub origin: Origin,
}

/// A line of `track_interface`, `track_script`, `track_file`, `track_process`, `track_bfd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRef {
    /// Interface, script, file, process or BFD name.
    pub name: String,
    /// `weight N` (None: the tracked object's own weight; for interfaces 0 = FAULT).
    pub weight: Option<i32>,
    /// `reverse`.
    pub reverse: bool,
    /// Where the line is.
    pub origin: Origin,
}

/// A notify script: command line and optional user/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyScript {
    /// The command (a quoted string may hold arguments).
    pub command: String,
    /// `username [groupname]` after the command.
    pub user: Option<ScriptUser>,
    /// Where the line is.
    pub origin: Origin,
}

/// The `notify*` scripts of an instance or sync group (parsed, not active yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<NotifyScript>,
    /// `notify_backup`.
    pub backup: Option<NotifyScript>,
    /// `notify_fault`.
    pub fault: Option<NotifyScript>,
    /// `notify_stop`.
    pub stop: Option<NotifyScript>,
    /// `notify` (called with type, name, state, priority).
    pub any: Option<NotifyScript>,
    /// `notify_master_rx_lower_pri`.
    pub master_rx_lower_pri: Option<NotifyScript>,
}

/// `vrrp_instance NAME { ... }`.
#[derive(Debug, Clone)]
pub struct VrrpInstance {
    /// Instance name.
    pub name: String,
    /// Where `vrrp_instance` is written.
    pub origin: Origin,
    /// `state`.
    pub state: InitialState,
    /// `interface`.
    pub interface: String,
    /// `virtual_router_id`.
    pub vrid: Vrid,
    /// `priority` (default 100; 255 = address owner).
    pub priority: Priority,
    /// `advert_int` (default 1 s).
    pub advert_int: Centiseconds,
    /// Effective version: `version`, else `vrrp_version`, else 3 for IPv6, else 2.
    pub version: Version,
    /// `version` as written in the instance (None: inherited).
    pub version_configured: Option<Version>,
    /// Family of the VIPs (IPv6 also with `native_ipv6`).
    pub family: Family,
    /// `authentication { auth_type PASS; auth_pass ... }` (v2 only).
    pub auth: Option<AuthPass>,
    /// `auth_hmac { }` (parsed, not active yet).
    pub auth_hmac: Option<AuthHmac>,
    /// `owner_ignore_adverts`, resolved as keepalived: an address owner (priority 255)
    /// drops every advert; default false, true in strict mode or with the global
    /// `vrrp_owner_ignore_adverts`; never set below priority 255.
    pub owner_ignore_adverts: bool,
    /// `no_virtual_ipaddress`: no VIP is intended (no warning, and v3 allowed).
    pub no_virtual_ipaddress: bool,
    /// `virtual_ipaddress` (sent in adverts).
    pub vips: Vec<VipSpec>,
    /// `virtual_ipaddress_excluded` (not sent in adverts; any family).
    pub vips_excluded: Vec<VipSpec>,
    /// `unicast_src_ip` or `mcast_src_ip` (same keepalived setting).
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer { }`; empty means multicast.
    pub unicast_peers: Vec<UnicastPeer>,
    /// `check_unicast_src` / global `vrrp_check_unicast_src` / a peer TTL bound.
    pub check_unicast_src: bool,
    /// `nopreempt`.
    pub nopreempt: bool,
    /// `preempt_delay` (default 0).
    pub preempt_delay: Duration,
    /// Accept mode: `accept` / `no_accept`; default accept unless strict mode (then
    /// accept only as address owner).
    pub accept: bool,
    /// `strict_mode` or global `vrrp_strict`.
    pub strict_mode: bool,
    /// `track_interface` lines.
    pub track_interfaces: Vec<TrackRef>,
    /// `track_script` lines (parsed, not active yet).
    pub track_scripts: Vec<TrackRef>,
    /// `track_file` lines (parsed, not active yet).
    pub track_files: Vec<TrackRef>,
    /// `track_process` lines (parsed, not active yet).
    pub track_processes: Vec<TrackRef>,
    /// GARP/NA settings, instance values over global ones.
    pub garp: Garp,
    /// `use_vmac [NAME]`: `Some(None)` = default name (`vrrp.VRID`).
    pub use_vmac: Option<Option<String>>,
    /// `vmac_xmit_base`: adverts on the base interface, not the VMAC.
    pub vmac_xmit_base: bool,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// `v3_checksum_as_v2` here or in global_defs.
    pub v3_checksum_as_v2: bool,
    /// `lower_prio_no_advert` / global (default false; true in strict mode).
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert` / global.
    pub higher_prio_send_advert: bool,
    /// `skip_check_adv_addr` / global.
    pub skip_check_adv_addr: bool,
    /// `timer_expired_backup` (kept only with nopreempt, as keepalived).
    pub timer_expired_backup: Option<crate::units::Priority>,
    /// `notify*` scripts (parsed, not active yet).
    pub notify: Notify,
    /// Every other statement of the instance (parsed, not active yet), raw.
    pub other: Vec<Node>,
}

/// `vrrp_script NAME { ... }` (parsed, not active yet).
#[derive(Debug, Clone)]
pub struct VrrpScript {
    /// Script name (referenced by `track_script`).
    pub name: String,
    /// Where it is defined.
    pub origin: Origin,
    /// `script` command line.
    pub script: Option<String>,
    /// `interval` (default 1 s).
    pub interval: Duration,
    /// `timeout` (default: the interval).
    pub timeout: Duration,
    /// `weight` (default 0: failure means FAULT).
    pub weight: i32,
    /// `weight N reverse`.
    pub weight_reverse: bool,
    /// `rise` (default 1).
    pub rise: u32,
    /// `fall` (default 1).
    pub fall: u32,
    /// `user USER [GROUP]`.
    pub user: Option<ScriptUser>,
    /// `init_fail`.
    pub init_fail: bool,
    /// Other statements, raw.
    pub other: Vec<Node>,
}

/// `vrrp_track_file` / `track_file NAME { ... }` (parsed, not active yet).
#[derive(Debug, Clone)]
pub struct TrackFile {
    /// Name (referenced by `track_file` in instances).
    pub name: String,
    /// Where it is defined.
    pub origin: Origin,
    /// `file PATH`.
    pub file: Option<PathBuf>,
    /// `weight N` (keepalived default 1).
    pub weight: i32,
    /// `weight N reverse`.
    pub reverse: bool,
    /// Other statements (`init_file`, ...), raw.
    pub other: Vec<Node>,
}

/// `vrrp_sync_group NAME { ... }` (parsed, not active yet).
#[derive(Debug, Clone)]
pub struct SyncGroup {
    /// Group name.
    pub name: String,
    /// Where it is defined.
    pub origin: Origin,
    /// `group { INSTANCE ... }`.
    pub instances: Vec<String>,
    /// `notify*` scripts.
    pub notify: Notify,
    /// Other statements (track_*, smtp_alert, ...), raw.
    pub other: Vec<Node>,
}

/// What a `virtual_server` balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsTarget {
    /// `virtual_server IP [PORT]`.
    Addr {
        /// Virtual address.
        addr: IpAddr,
        /// Port (None: all ports / persistence on address).
        port: Option<u16>,
    },
    /// `virtual_server fwmark N`.
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

/// `virtual_server ... { ... }` (parsed, not active yet).
#[derive(Debug, Clone)]
pub struct VirtualServer {
    /// What it balances.
    pub target: VsTarget,
    /// Where it is defined.
    pub origin: Origin,
    /// `protocol TCP|UDP|SCTP`.
    pub protocol: Option<String>,
    /// `lb_algo` / `lvs_sched`.
    pub scheduler: Option<String>,
    /// `lb_kind` / `lvs_method` (NAT, DR, TUN).
    pub method: Option<String>,
    /// `delay_loop` (checker default for its real servers; keepalived default 60 s).
    pub delay_loop: Option<Duration>,
    /// `persistence_timeout`.
    pub persistence_timeout: Option<Duration>,
    /// `sorry_server IP PORT`.
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    /// `real_server` blocks.
    pub real_servers: Vec<RealServer>,
    /// Other statements, raw.
    pub other: Vec<Node>,
}

/// `real_server IP [PORT] { ... }`.
#[derive(Debug, Clone)]
pub struct RealServer {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: Option<u16>,
    /// Where it is defined.
    pub origin: Origin,
    /// `weight` (default 1).
    pub weight: i32,
    /// Health checkers.
    pub checkers: Vec<Checker>,
    /// Other statements (notify_up, inhibit_on_failure, ...), raw.
    pub other: Vec<Node>,
}

/// Checker kinds keepalived knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerKind {
    /// `HTTP_GET`.
    HttpGet,
    /// `SSL_GET`.
    SslGet,
    /// `TCP_CHECK`.
    Tcp,
    /// `SMTP_CHECK`.
    Smtp,
    /// `DNS_CHECK`.
    Dns,
    /// `MISC_CHECK`.
    Misc,
    /// `BFD_CHECK`.
    Bfd,
    /// `UDP_CHECK`.
    Udp,
    /// `PING_CHECK`.
    Ping,
    /// `FILE_CHECK`.
    File,
}

impl CheckerKind {
    /// From the config keyword.
    pub fn from_keyword(k: &str) -> Option<CheckerKind> {
        Some(match k {
            "HTTP_GET" => CheckerKind::HttpGet,
            "SSL_GET" => CheckerKind::SslGet,
            "TCP_CHECK" => CheckerKind::Tcp,
            "SMTP_CHECK" => CheckerKind::Smtp,
            "DNS_CHECK" => CheckerKind::Dns,
            "MISC_CHECK" => CheckerKind::Misc,
            "BFD_CHECK" => CheckerKind::Bfd,
            "UDP_CHECK" => CheckerKind::Udp,
            "PING_CHECK" => CheckerKind::Ping,
            "FILE_CHECK" => CheckerKind::File,
            _ => return None,
        })
    }
}

/// An HTTP_GET / SSL_GET `url { }` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlCheck {
    /// `path`.
    pub path: Option<String>,
    /// `digest` (MD5 hex).
    pub digest: Option<String>,
    /// `status_code` words (codes or ranges such as `200-299`).
    pub status_code: Vec<String>,
    /// Other statements, raw.
    pub other: Vec<Node>,
}

/// A checker block inside a real server.
#[derive(Debug, Clone)]
pub struct Checker {
    /// Which checker.
    pub kind: CheckerKind,
    /// Where it is defined.
    pub origin: Origin,
    /// `connect_ip`.
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// `connect_timeout` (keepalived default 5 s).
    pub connect_timeout: Option<Duration>,
    /// `url` blocks (HTTP_GET, SSL_GET).
    pub urls: Vec<UrlCheck>,
    /// `misc_path` (MISC_CHECK).
    pub misc_path: Option<String>,
    /// Other statements, raw.
    pub other: Vec<Node>,
}
