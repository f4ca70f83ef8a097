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
    /// Notify script runs and failures (incl. timeouts and drops).
    pub notify_runs: u64,
    /// Notify script failures.
    pub notify_failures: u64,
    /// Priority override in force.
    pub override_priority: Option<u8>,
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
    /// Instances.
    pub instances: Vec<InstanceStats>,
    /// Per-socket drops.
    pub sockets: Vec<SocketStats>,
}

/// Write `stats` to `dir/stats.json` atomically.
pub fn write(dir: &Path, stats: &Stats) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(".stats.json.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let text = serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?;
    f.write_all(&text)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("stats.json"))
}
