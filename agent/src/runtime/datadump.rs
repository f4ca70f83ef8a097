//! SIGUSR1: the running state of everything, as text in the layout of keepalived's
//! /tmp/keepalived.data (so that people and tools that read that file find the same lines)
//! and as JSON, written to `<runtime-dir>/keepalived.data` and `keepalived.json`.
//!
//! Pure rendering from a [`Stats`] snapshot; `write` does the files (atomically, 0600).
//! Writing it never touches VRRP: the engine builds the snapshot between two inputs.

use std::fmt::Write as _;
use std::path::Path;

use super::stats::{self, Stats};

/// Text file name (keepalived's, in the runtime directory).
pub const TEXT_FILE: &str = "keepalived.data";
/// JSON file name.
pub const JSON_FILE: &str = "keepalived.json";

/// keepalived's "Advert interval" wording: whole seconds as "N sec", else milliseconds.
fn interval(us: u64) -> String {
    if us.is_multiple_of(1_000_000) {
        format!("{} sec", us / 1_000_000)
    } else {
        format!("{} milli-sec", us / 1000)
    }
}

/// The text dump.
pub fn render(s: &Stats, wall: &str) -> String {
    let mut o = String::new();
    // `writeln!` into a String cannot fail.
    let _ = writeln!(o, "------< Global definitions >------");
    let _ = writeln!(o, " Router ID = {}", s.node);
    let _ = writeln!(o, " Dump time = {wall}");
    let _ = writeln!(
        o,
        " Stalls = {} (longest {} milli-sec)",
        s.stalls,
        s.stall_max_us / 1000
    );
    let _ = writeln!(o, "------< VRRP Topology >------");
    for i in &s.instances {
        let _ = writeln!(o, " VRRP Instance = {}", i.name);
        let _ = writeln!(o, "   VRRP Version = {}", i.version);
        if let Some(g) = &i.sync_group {
            let _ = writeln!(o, "   Sync group = {g}");
        }
        let _ = writeln!(o, "   State = {}", i.state);
        if i.state == "BACKUP" {
            if let Some(m) = &i.last_advert_from {
                let _ = writeln!(o, "   Master router = {m}");
            }
            if i.version == 3 {
                let _ = writeln!(
                    o,
                    "   Master advert interval = {} milli-sec",
                    i.master_adver_interval_us / 1000
                );
            }
        }
        let _ = writeln!(o, "   Interface = {}", i.interface);
        let _ = writeln!(o, "   Using src_ip = {}", i.source);
        let _ = writeln!(o, "   Virtual Router ID = {}", i.vrid);
        let _ = writeln!(o, "   Priority = {}", i.base_priority);
        let _ = writeln!(o, "   Effective priority = {}", i.effective_priority);
        if let Some(p) = i.override_priority {
            let _ = writeln!(o, "   Priority override = {p}");
        }
        let _ = writeln!(
            o,
            "   Advert interval = {}",
            interval(i.master_adver_interval_us)
        );
        let _ = writeln!(
            o,
            "   Preempt = {}",
            if i.preempt { "enabled" } else { "disabled" }
        );
        let _ = writeln!(
            o,
            "   Master down interval = {} micro-sec",
            i.master_down_interval_us
        );
        let c = &i.counters;
        let _ = writeln!(
            o,
            "   Adverts received = {}, sent = {}, priority 0 sent = {}, received = {}",
            c.rx, c.tx, c.prio0_sent, c.prio0_received
        );
        let _ = writeln!(o, "   Became master = {}", c.became_master);
        let _ = writeln!(
            o,
            "   Stalls = {} (takeovers postponed = {})",
            c.stalls, c.stall_deferrals
        );
        let dropped: u64 = c.drops.values().sum();
        let _ = writeln!(o, "   Packets dropped = {dropped}");
        for (reason, n) in c.drops.iter().filter(|(_, n)| **n > 0) {
            let _ = writeln!(o, "     {reason} = {n}");
        }
        let _ = writeln!(o, "   Virtual IP ({}):", i.vips.len());
        for v in &i.vips {
            let _ = writeln!(o, "     {v} dev {}", i.interface);
        }
        if !i.trackers.is_empty() {
            let _ = writeln!(o, "   Tracked objects ({}):", i.trackers.len());
            for t in &i.trackers {
                let _ = writeln!(
                    o,
                    "     {} {} weight {} = {}",
                    t.kind, t.name, t.weight, t.status
                );
            }
        }
        for a in &i.alerts {
            let _ = writeln!(o, "   Alert = {a}");
        }
        let _ = writeln!(
            o,
            "   Notify runs = {}, failures = {}",
            i.notify_runs, i.notify_failures
        );
    }
    if let Some(lb) = &s.lb {
        render_lb(&mut o, lb);
    }
    o
}

fn render_lb(o: &mut String, lb: &stats::LbStats) {
    let _ = writeln!(o, "------< LVS Topology >------");
    let _ = writeln!(o, " Backend = {}", lb.backend);
    if let Some(e) = &lb.last_error {
        let _ = writeln!(o, " Last error = {e}");
    }
    for vs in &lb.virtual_servers {
        let _ = writeln!(o, " VS = {}", vs.name);
        let _ = writeln!(
            o,
            "   Quorum = {}",
            if vs.quorum_up { "up" } else { "down" }
        );
        if vs.sorry_active {
            let _ = writeln!(o, "   Sorry server in use");
        }
        if vs.suspended {
            let _ = writeln!(o, "   Suspended");
        }
        for rs in &vs.real_servers {
            let _ = writeln!(o, "   RS = {}:{}", rs.addr, rs.port);
            let _ = writeln!(
                o,
                "     Alive = {}, weight = {} (configured {}){}, in table = {}",
                rs.alive,
                rs.weight_effective,
                rs.weight_base,
                if rs.drained { ", drained" } else { "" },
                rs.in_table
            );
            for c in &rs.checkers {
                let _ = writeln!(
                    o,
                    "     {} = {} ({})",
                    c.kind,
                    if c.up { "up" } else { "down" },
                    c.detail
                );
            }
        }
    }
}

/// Write the text dump to `text` and the JSON one to `json` (directories created if
/// missing).
pub fn write(text: &Path, json: &Path, s: &Stats, wall: &str) -> std::io::Result<()> {
    stats::write_path(text, render(s, wall).as_bytes())?;
    let bytes = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    stats::write_path(json, &bytes)
}
