//! `<state-dir>/stats.json`: states and counters, written on SIGUSR2 (keepalived writes
//! /tmp/keepalived.stats on the same signal). Written to a temp file in the same
//! directory (0600) and renamed, so readers never see half a file and nothing is
//! written to a shared directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

/// One instance in the dump.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStats {
    /// vrrp_instance name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Interface VRRP runs on.
    pub interface: String,
    /// MASTER, BACKUP, FAULT or INIT.
    pub state: String,
    /// Configured priority.
    pub base_priority: u8,
    /// Priority in effect.
    pub effective_priority: u8,
    /// Master_Down_Interval in microseconds.
    pub master_down_interval_us: u128,
    /// Counters.
    pub counters: CounterStats,
    /// Transitions by (new state, reason).
    pub transitions: std::collections::BTreeMap<String, u64>,
    /// Trackers: kind, name, status, weight.
    pub trackers: Vec<TrackerStats>,
    /// Gratuitous ARPs sent (IPv4 VIPs).
    pub garp_sent: u64,
    /// Unsolicited neighbour advertisements sent (IPv6 VIPs).
    pub na_sent: u64,
    /// Per entry of `vips`: on its interface, added by us (filled for the metrics only).
    #[serde(skip)]
    pub vips_present: Vec<bool>,
    /// Notify script runs and failures (incl. timeouts and drops).
    pub notify_runs: u64,
    /// Notify script failures.
    pub notify_failures: u64,
    /// Priority override in force.
    pub override_priority: Option<u8>,
    /// VRRP version (2 or 3).
    pub version: u8,
    /// `vrrp_sync_group` it belongs to.
    pub sync_group: Option<String>,
    /// Source address of our adverts.
    pub source: String,
    /// Master_Adver_Interval (v3: learned from the master), microseconds.
    pub master_adver_interval_us: u64,
    /// Source of the last advert accepted.
    pub last_advert_from: Option<String>,
    /// Virtual addresses (with prefix) in force.
    pub vips: Vec<String>,
    /// Preemption on (no `nopreempt`).
    pub preempt: bool,
    /// Local alerts in force (vrid-collision, peer-master).
    pub alerts: Vec<String>,
}

/// One tracker of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerStats {
    /// script, file, interface, process.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// up, down, unknown, disabled, value N.
    pub status: String,
    /// Passing (a value of 0 counts as passing).
    pub ok: bool,
    /// Weight on this instance.
    pub weight: i32,
}

/// Counters of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct CounterStats {
    /// Adverts accepted.
    pub rx: u64,
    /// Adverts sent.
    pub tx: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Priority-0 adverts sent.
    pub prio0_sent: u64,
    /// Priority-0 adverts received.
    pub prio0_received: u64,
    /// Timers acted on much later than their deadline (stalls of this process).
    pub stalls: u64,
    /// Master_Down expiries postponed after a stall to hear the master first.
    pub stall_deferrals: u64,
    /// Adverts heard, as master, from another (lower-priority) master.
    pub peer_master_adverts: u64,
    /// Drops by reason name.
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

/// Drops the sockets counted before any instance saw the packet (foreign VRIDs, or
/// packets too broken to name a VRID).
#[derive(Debug, Clone, Serialize)]
pub struct SocketStats {
    /// Interface.
    pub interface: String,
    /// Drops by reason name.
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

/// The whole dump.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Increments with every dump, so a reader can tell a fresh one.
    pub dump_seq: u64,
    /// Node name.
    pub node: String,
    /// Wake-ups of the engine much later than the deadline it slept for (this process was
    /// not scheduled: a stall).
    #[serde(default)]
    pub stalls: u64,
    /// The longest such lateness, microseconds.
    #[serde(default)]
    pub stall_max_us: u64,
    /// Instances.
    pub instances: Vec<InstanceStats>,
    /// Per-socket drops.
    pub sockets: Vec<SocketStats>,
    /// The load balancer (absent without virtual servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lb: Option<LbStats>,
}

/// The load balancer in the dump (and the `ha_lb_*` metrics).
#[derive(Debug, Clone, Serialize, Default)]
pub struct LbStats {
    /// "nftables" or "ipvs".
    pub backend: String,
    /// Data-plane applies done.
    pub applies: u64,
    /// Consecutive failed applies.
    pub failures: u32,
    /// Last whole-backend error.
    pub last_error: Option<String>,
    /// Objects whose last apply failed: (object, error).
    pub object_errors: Vec<(String, String)>,
    /// Virtual servers.
    pub virtual_servers: Vec<VsStats>,
    /// Counters per data-plane object (service or destination).
    pub counters: Vec<ObjectCounters>,
}

/// One virtual server.
#[derive(Debug, Clone, Serialize)]
pub struct VsStats {
    /// Name ("192.0.2.10:80/TCP").
    pub name: String,
    /// Quorum held.
    pub quorum_up: bool,
    /// Sorry server serving.
    pub sorry_active: bool,
    /// Not programmed (ha_suspend).
    pub suspended: bool,
    /// Sum of live weights.
    pub live_weight: u64,
    /// Real servers.
    pub real_servers: Vec<RsStats>,
}

/// One real server.
#[derive(Debug, Clone, Serialize)]
pub struct RsStats {
    /// Address.
    pub addr: String,
    /// Port.
    pub port: u16,
    /// All checkers pass.
    pub alive: bool,
    /// Configured weight.
    pub weight_base: u32,
    /// Weight in force.
    pub weight_effective: u32,
    /// Drained by an override.
    pub drained: bool,
    /// In the data-plane table.
    pub in_table: bool,
    /// Checkers.
    pub checkers: Vec<CheckerStats>,
}

/// One checker.
#[derive(Debug, Clone, Serialize)]
pub struct CheckerStats {
    /// Kind ("TCP_CHECK").
    pub kind: String,
    /// Passing.
    pub up: bool,
    /// Last verdict.
    pub detail: String,
    /// Duration of the last check, microseconds.
    pub latency_us: u64,
}

/// Counters of one data-plane object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectCounters {
    /// Object ("192.0.2.10:80/TCP" or "... -> 198.51.100.11:8080").
    pub object: String,
    /// Connections.
    pub connections: u64,
    /// Packets in.
    pub packets_in: u64,
    /// Packets out.
    pub packets_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
}

impl LbStats {
    /// The dump's view of the load-balancer status.
    pub fn from_status(st: &crate::lb::service::LbStatus) -> LbStats {
        LbStats {
            backend: st.dataplane.backend.to_string(),
            applies: st.dataplane.applies,
            failures: st.dataplane.failures,
            last_error: st.dataplane.last_error.clone(),
            object_errors: st
                .dataplane
                .objects
                .iter()
                .filter_map(|o| Some((o.object.clone(), o.result.clone().err()?)))
                .collect(),
            virtual_servers: st
                .virtual_servers
                .iter()
                .map(|v| VsStats {
                    name: v.name.clone(),
                    quorum_up: v.quorum_up,
                    sorry_active: v.sorry_active,
                    suspended: v.suspended,
                    live_weight: v.live_weight,
                    real_servers: v
                        .real_servers
                        .iter()
                        .map(|r| RsStats {
                            addr: r.addr.to_string(),
                            port: r.port,
                            alive: r.alive,
                            weight_base: r.weight_base,
                            weight_effective: r.weight_effective,
                            drained: r.drained,
                            in_table: r.in_table,
                            checkers: r
                                .checkers
                                .iter()
                                .map(|c| CheckerStats {
                                    kind: c.kind.clone(),
                                    up: c.up,
                                    detail: c.detail.clone(),
                                    latency_us: u64::try_from(c.latency.as_micros())
                                        .unwrap_or(u64::MAX),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            counters: st
                .stats
                .iter()
                .map(|c| ObjectCounters {
                    object: c.object.clone(),
                    connections: c.connections,
                    packets_in: c.packets_in,
                    packets_out: c.packets_out,
                    bytes_in: c.bytes_in,
                    bytes_out: c.bytes_out,
                })
                .collect(),
        }
    }
}

/// The default name of the stats file in `--runtime-dir` (global_defs `stats_dump_file`
/// may name another).
pub const STATS_FILE: &str = "stats.json";

/// Write `stats` to `path` atomically.
pub fn write(path: &Path, stats: &Stats) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?;
    write_path(path, &text)
}

/// Write `bytes` to `path` atomically (see [`write_file`]).
pub fn write_path(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        ));
    };
    write_file(dir, &name.to_string_lossy(), bytes)
}

/// Write `bytes` to `dir/name` atomically (a 0600 temp file, synced, renamed), `dir`
/// created if missing.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    write_atomic(dir, name, bytes, 0o600)
}

/// Write `bytes` to `dir/name` through a temp file beside it (`mode`, O_NOFOLLOW,
/// synced), then renamed over `name`: readers see the old file or the new one.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))
}

/// How a reader of the stats snapshots (telemetry) asks the engine for a fresh one: the
/// engine builds a snapshot only when asked, so none is built that nobody reads.
pub type Wanted = std::sync::Arc<tokio::sync::Notify>;
