//! One chaos run: settle the trio, play the schedule while the observer records, then
//! check every invariant and report.
//!
//! The observer records, every [`TICK`]: each node's state per instance (from its log),
//! whether it runs or is stopped, and which VIPs it holds; on its own thread, arping of each
//! VIP from the observer namespace; on another, `hactl status --json` every second (ha-agent
//! runs). After the schedule, manager history is read for the history and split-brain
//! checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use ha_common::time::wall_ms as epoch_ms;
use serde_json::Value;

use crate::bench::check_interrupted;
pub use crate::bench::impl_name;
use crate::chaos::invariants::{
    self, Arp, BootLog, HistEvent, Invariant, NodeView, Sample, SplitAlert, StatusPoll, Violation,
    Window, INSTANCES,
};
use crate::chaos::schedule::{Fault, Schedule};
use crate::chaos::topo::{hactl_in, Trio, OBSERVER};
use crate::scenario::Impl;

/// Sampling period of the observer.
pub const TICK: Duration = Duration::from_millis(250);
/// Settling before the schedule starts (bounded).
const SETTLE: Duration = Duration::from_secs(40);
/// How long history may take to catch up after the schedule.
const HISTORY_CATCH_UP: Duration = Duration::from_secs(30);

/// What a run found.
#[derive(Debug)]
pub struct Report {
    /// Which implementation.
    pub which: Impl,
    /// Actions applied: (ms, what), heals included.
    pub applied: Vec<(u64, String)>,
    /// Actions that failed to apply or heal (harness trouble, not violations).
    pub errors: Vec<String>,
    /// Every violation, in time order.
    pub violations: Vec<Violation>,
    /// Samples taken.
    pub samples: usize,
    /// Arpings done.
    pub arps: usize,
    /// Scratch directory (logs).
    pub dir: std::path::PathBuf,
}

impl Report {
    /// Violations of `inv`.
    pub fn count(&self, inv: Invariant) -> usize {
        self.violations.iter().filter(|v| v.inv == inv).count()
    }
}

/// Shared recording of the probe threads.
#[derive(Default)]
struct Probes {
    arps: Mutex<Vec<Arp>>,
    polls: Mutex<Vec<StatusPoll>>,
}

/// The MACs in arping's reply lines: `42 bytes from 02:..:.. (192.0.2.11): index=0 ...`.
pub fn arping_macs(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let rest = l.split(" bytes from ").nth(1)?;
            rest.split_whitespace().next().map(str::to_ascii_lowercase)
        })
        .collect()
}

/// The alerts of a `hactl status --json` output as "kind subject".
fn alerts_of(stdout: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| format!("status json: {e}"))?;
    Ok(v["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{} {}",
                        x["kind"].as_str().unwrap_or("?"),
                        x["subject"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn spawn_probes(
    ns: String,
    manager: bool,
    t0: Instant,
    probes: Arc<Probes>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let ms = move || t0.elapsed().as_millis() as u64;
    let mut v = Vec::new();
    {
        let (ns, probes, stop) = (ns.clone(), Arc::clone(&probes), Arc::clone(&stop));
        v.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (i, inst) in INSTANCES.iter().enumerate() {
                    let t = ms();
                    let out = std::process::Command::new("ip")
                        .args(["netns", "exec", &ns, "arping", "-c", "1", "-w", "0.5"])
                        .args(["-i", "eth0", inst.vip])
                        .stdin(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .output();
                    let macs = out
                        .map(|o| arping_macs(&String::from_utf8_lossy(&o.stdout)))
                        .unwrap_or_default();
                    if let Ok(mut a) = probes.arps.lock() {
                        a.push(Arp {
                            t_ms: t,
                            inst: i,
                            macs,
                        });
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }
    if manager {
        v.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let t = ms();
                let alerts = match hactl_in(&ns, &["status", "--json"]) {
                    Ok(o) if o.status.success() => alerts_of(&o.stdout),
                    Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                    Err(e) => Err(format!("{e:#}")),
                };
                if let Ok(mut p) = probes.polls.lock() {
                    p.push(StatusPoll { t_ms: t, alerts });
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
    }
    v
}

/// One sample of every node.
fn sample(trio: &mut Trio, t_ms: u64) -> Sample {
    let mut nodes: [NodeView; 3] = Default::default();
    for (n, view) in nodes.iter_mut().enumerate() {
        let alive = trio.alive(n);
        let m = &mut trio.members[n];
        if let Some(tail) = m.logs.last_mut() {
            tail.poll();
            if m.node.is_some() {
                view.states = tail.states.clone();
            }
        }
        view.alive = alive;
        view.stopped = m.stopped;
        let addrs = trio
            .lan
            .ns(n)
            .sh("ip -o -4 addr show dev eth0")
            .unwrap_or_default();
        for (i, inst) in INSTANCES.iter().enumerate() {
            let needle = format!(" {}/", inst.vip);
            view.holds[i] = addrs.contains(&needle);
        }
    }
    Sample { t_ms, nodes }
}

/// Wait until every instance has its designated master and two backups (bounded).
fn settle(trio: &mut Trio) -> Result<()> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        let s = sample(trio, 0);
        let ok = (0..3).all(|i| {
            (0..3).all(|n| {
                let want = if invariants::priority(n, i) == 150 {
                    "MASTER"
                } else {
                    "BACKUP"
                };
                s.nodes[n].states[i].as_deref() == Some(want)
            })
        });
        if ok {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            anyhow::bail!(
                "trio not settled after {SETTLE:?}: {:?} (logs in {})",
                s.nodes.iter().map(|n| n.states.clone()).collect::<Vec<_>>(),
                trio.dir.display()
            );
        }
        std::thread::sleep(TICK);
    }
}

/// A step of the timeline: apply or heal action `idx`, or toggle a flapping link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Heal(usize),
    Apply(usize),
}

/// Run `schedule` on a fresh trio of `which`; `log` gets progress lines.
pub fn run(schedule: &Schedule, which: Impl, name: &str, log: &dyn Fn(&str)) -> Result<Report> {
    let mut trio = Trio::new(name, which)?;
    if trio.with_manager() {
        trio.start_manager()?;
        trio.wait_manager(Duration::from_secs(20))?;
    }
    for n in 0..3 {
        trio.start_node(n, 0)?;
    }
    settle(&mut trio)?;
    if trio.with_manager() {
        // Let the agents connect before the first fault.
        std::thread::sleep(Duration::from_secs(2));
    }
    log(&format!(
        "{}: settled; {} episodes over {:.0} s; kill -9 cleanup: {}; netem: {}",
        name,
        schedule.episodes.len(),
        schedule.limits.total_ms as f64 / 1000.0,
        if trio.cleanup {
            "ha-agent --cleanup"
        } else {
            "restart only"
        },
        if trio.netem {
            "tc netem"
        } else {
            "no sch_netem in this kernel: random loss on the bridge (nftables), no delay/jitter"
        }
    ));
    let actions = schedule.actions();
    let mut steps: Vec<(u64, Step)> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        steps.push((a.start_ms, Step::Apply(i)));
        steps.push((a.end_ms, Step::Heal(i)));
    }
    steps.sort();
    let t0 = Instant::now();
    let epoch0 = epoch_ms();
    let probes = Arc::new(Probes::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads = spawn_probes(
        trio.lan.ns(OBSERVER).name.clone(),
        trio.with_manager(),
        t0,
        Arc::clone(&probes),
        Arc::clone(&stop),
    );
    let mut samples = Vec::new();
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    let mut next = 0;
    // Flapping links: action index -> (next toggle ms, link up).
    let mut flaps: BTreeMap<usize, (u64, bool)> = BTreeMap::new();
    let total = schedule.limits.total_ms;
    let mut result = Ok(());
    // Bounded by the schedule's total (plus one tick).
    while t0.elapsed().as_millis() as u64 <= total {
        if let Err(e) = check_interrupted() {
            result = Err(e);
            break;
        }
        let now = t0.elapsed().as_millis() as u64;
        while next < steps.len() && steps[next].0 <= now {
            let (_, step) = steps[next];
            next += 1;
            let (i, heal) = match step {
                Step::Apply(i) => (i, false),
                Step::Heal(i) => (i, true),
            };
            let f = actions[i].fault;
            let r = if heal {
                flaps.remove(&i);
                trio.heal(i, &f, now)
            } else {
                if let Fault::LinkFlap { period_ms, .. } = f {
                    flaps.insert(i, (now + period_ms, false));
                }
                trio.apply(i, &f)
            };
            let what = format!("{} {f}", if heal { "heal " } else { "apply" });
            log(&format!("  [{:>7.1}s] {what}", now as f64 / 1000.0));
            if let Err(e) = r {
                errors.push(format!("{:.1}s {what}: {e:#}", now as f64 / 1000.0));
            }
            applied.push((now, what));
        }
        for (i, (at, up)) in flaps.iter_mut() {
            if *at <= now {
                if let Fault::LinkFlap { node, period_ms } = actions[*i].fault {
                    *up = !*up;
                    if let Err(e) = trio.lan.set_link(node, *up) {
                        errors.push(format!("flap n{}: {e:#}", node + 1));
                    }
                    *at = now + period_ms;
                }
            }
        }
        samples.push(sample(&mut trio, now));
        let spent = t0.elapsed().as_millis() as u64 - now;
        std::thread::sleep(TICK.saturating_sub(Duration::from_millis(spent)));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    result?;
    // Heal anything the loop did not (an interrupted schedule, a step past the end).
    for (i, a) in actions.iter().enumerate() {
        if !steps[..next].contains(&(a.end_ms, Step::Heal(i))) {
            let _ = trio.heal(i, &a.fault, total);
        }
    }

    let windows: Vec<Window> = schedule
        .episodes
        .iter()
        .map(|e| Window {
            healed_ms: e.healed_ms,
            until_ms: e.quiet_until_ms,
        })
        .collect();
    let arps = probes.arps.lock().map(|a| a.clone()).unwrap_or_default();
    let polls = probes.polls.lock().map(|p| p.clone()).unwrap_or_default();
    let mut violations = Vec::new();
    violations.extend(invariants::one_master(&windows, &samples));
    violations.extend(invariants::vip_from_master(
        &windows, &samples, &arps, &trio.macs,
    ));
    violations.extend(invariants::no_stale_vip(&samples));
    if trio.with_manager() {
        violations.extend(invariants::alerts_cleared(&windows, &polls));
        let (hist, alerts) = history_checks(&mut trio, epoch0, log)?;
        violations.extend(hist);
        violations.extend(invariants::false_split_brain(&alerts, &samples));
    }
    violations.sort_by_key(|v| v.t_ms);
    Ok(Report {
        which,
        applied,
        errors,
        violations,
        samples: samples.len(),
        arps: arps.len(),
        dir: trio.dir.clone(),
    })
}

/// Read history until it holds every logged transition (bounded), then check it; also
/// return the split-brain alerts it recorded.
fn history_checks(
    trio: &mut Trio,
    epoch0: i64,
    log: &dyn Fn(&str),
) -> Result<(Vec<Violation>, Vec<SplitAlert>)> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        for m in &mut trio.members {
            if let Some(t) = m.logs.last_mut() {
                t.poll();
            }
        }
        let boots: Vec<BootLog> = trio
            .members
            .iter()
            .enumerate()
            .flat_map(|(n, m)| {
                m.logs.iter().map(move |t| BootLog {
                    node: n,
                    t_ms: t.t_ms,
                    boot_id: t.boot_id.clone(),
                    transitions: t.transitions.clone(),
                })
            })
            .collect();
        let fetched = trio
            .hactl(&["history", "--json"])
            .context("hactl history")
            .and_then(|o| {
                anyhow::ensure!(
                    o.status.success(),
                    "hactl history: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                let v: Value = serde_json::from_slice(&o.stdout)?;
                Ok(v["events"].as_array().cloned().unwrap_or_default())
            });
        let last_try = start.elapsed() > HISTORY_CATCH_UP;
        let events = match fetched {
            Ok(e) => e,
            Err(e) if last_try => {
                let v = Violation {
                    inv: Invariant::History,
                    t_ms: 0,
                    node: None,
                    vrid: None,
                    seen: format!("history unreadable after the run: {e:#}"),
                };
                return Ok((vec![v], Vec::new()));
            }
            Err(_) => {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
        let hist: Vec<HistEvent> = events
            .iter()
            .map(|e| HistEvent {
                node: s(e, "node"),
                boot_id: s(e, "boot_id"),
                seq: e["seq"].as_u64().unwrap_or(0),
                kind: s(e, "kind"),
                instance: s(e, "instance"),
                to_state: s(e, "to_state"),
                detail: s(e, "detail"),
            })
            .collect();
        let v = invariants::history(&boots, &hist);
        if v.is_empty() || last_try {
            let alerts = events
                .iter()
                .filter(|e| e["kind"] == "ALERT_RAISED" && e["reason"] == "split-brain")
                .map(|e| SplitAlert {
                    t_ms: u64::try_from(
                        e["stored_ms"]
                            .as_i64()
                            .filter(|t| *t > 0)
                            .or(e["wall_time_ms"].as_i64())
                            .unwrap_or(0)
                            - epoch0,
                    )
                    .unwrap_or(0),
                    instance: s(e, "instance"),
                    node: s(e, "node"),
                })
                .collect();
            log(&format!(
                "  history: {} events read after {:.0} s",
                events.len(),
                start.elapsed().as_secs_f64()
            ));
            return Ok((v, alerts));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The per-invariant table of one or more reports, side by side.
pub fn table(reports: &[&Report]) -> String {
    let mut s = format!("{:<22}", "invariant");
    for r in reports {
        s += &format!(" | {:>12}", impl_name(r.which));
    }
    s += "\n";
    s += &"-".repeat(22 + 15 * reports.len());
    s += "\n";
    for inv in Invariant::ALL {
        s += &format!("{:<22}", inv.name());
        for r in reports {
            if inv.manager_only() && r.which == Impl::Keepalived {
                s += &format!(" | {:>12}", "n/a");
            } else {
                s += &format!(" | {:>12}", r.count(inv));
            }
        }
        s += "\n";
    }
    s
}

/// The bounds of a schedule of `total` with CPU hogs of at most `max_hog_workers`: quiet
/// windows of 12 to 15 s, so that each holds [`invariants::ALERT_CLEAR_MS`] and a few
/// seconds of checks after it.
pub fn limits(total: Duration, max_hog_workers: u32) -> crate::chaos::schedule::Limits {
    crate::chaos::schedule::Limits {
        total_ms: total.as_millis() as u64,
        quiet_min_ms: invariants::ALERT_CLEAR_MS + 2000,
        quiet_max_ms: invariants::ALERT_CLEAR_MS + 5000,
        max_hog_workers,
    }
}

/// A seed from the clock, for runs not given one.
pub fn fresh_seed() -> u64 {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    crate::chaos::schedule::Rng::new(n ^ u64::from(std::process::id())).next_u64()
}

/// The schedule, one line per action.
pub fn describe(schedule: &Schedule) -> String {
    let mut s = String::new();
    for (k, e) in schedule.episodes.iter().enumerate() {
        for a in &e.actions {
            s += &format!(
                "  episode {:>2}: {:>6.1}s..{:>6.1}s {}\n",
                k + 1,
                a.start_ms as f64 / 1000.0,
                a.end_ms as f64 / 1000.0,
                a.fault
            );
        }
    }
    s
}

/// A report's applied nemeses per kind, harness errors and every violation.
pub fn details(r: &Report, schedule: &Schedule) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for a in schedule.actions() {
        *kinds.entry(a.fault.kind()).or_default() += 1;
    }
    let mut s = format!(
        "{}: {} actions ({} steps applied), {} samples, {} arpings; logs in {}\n  nemeses: {}\n",
        impl_name(r.which),
        schedule.actions().len(),
        r.applied.len(),
        r.samples,
        r.arps,
        r.dir.display(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for e in &r.errors {
        s += &format!("  harness error: {e}\n");
    }
    if r.violations.is_empty() {
        s += "  no violations\n";
    }
    for v in &r.violations {
        s += &format!("  VIOLATION {v}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arping_replies_are_read() {
        let out = "ARPING 192.0.2.11\n42 bytes from 9A:e0:22:d3:65:36 (192.0.2.11): index=0 time=9.9 usec\n\
                   42 bytes from 82:90:15:92:17:66 (192.0.2.11): index=1 time=32.7 usec\n\n--- stats ---\n";
        assert_eq!(
            arping_macs(out),
            vec!["9a:e0:22:d3:65:36".to_string(), "82:90:15:92:17:66".into()]
        );
        assert!(arping_macs("ARPING 192.0.2.11\nTimeout\n").is_empty());
    }

    #[test]
    fn status_alerts_are_read() {
        let j = br#"{"nodes":[],"alerts":[{"kind":"split-brain","subject":"vrid 11","message":"m","since_ms":1}]}"#;
        assert_eq!(alerts_of(j), Ok(vec!["split-brain vrid 11".to_string()]));
        assert!(alerts_of(b"nope").is_err());
    }
}
