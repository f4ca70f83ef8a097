//! The invariants, checked over what the observer recorded: pure functions of samples,
//! probes and history, so each can be tested on made-up timelines.
//!
//! Times are milliseconds from the start of the schedule. The margins are explicit
//! constants: a check never waits "a bit longer" to pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The trio's three VRRP instances.
pub const INSTANCES: [Vrrp; 3] = [
    Vrrp {
        name: "CH_V2",
        vrid: 11,
        version: 2,
        advert_int_ms: 1000,
        advert_int: "1",
        vip: "192.0.2.11",
    },
    Vrrp {
        name: "CH_V3",
        vrid: 12,
        version: 3,
        advert_int_ms: 100,
        advert_int: "0.1",
        vip: "192.0.2.12",
    },
    Vrrp {
        name: "CH_V3F",
        vrid: 13,
        version: 3,
        advert_int_ms: 10,
        advert_int: "0.01",
        vip: "192.0.2.13",
    },
];

/// Lowest priority in the trio: its skew time is the longest Master_Down_Interval.
pub const LOWEST_PRIORITY: u8 = 50;

/// Slack beyond Master_Down_Interval for VRRP to converge after a heal (a restarted
/// daemon's start-up counts against it).
pub const MARGIN_MS: u64 = 2000;

/// The manager's split-brain margin (`--split-margin-ms`, which the trio passes
/// explicitly): two masters must persist for the longer Master_Down_Interval of the pair
/// plus this before the alert.
pub const SPLIT_MARGIN_MS: u64 = 1000;

/// How much shorter a stretch of two masters may look to the observer than it was: it
/// began up to one sample before the first sample that saw it and ended up to one after
/// the last.
const SAMPLING_SLACK_MS: u64 = 500;

/// After a heal, alerts must be gone by then: the longest Master_Down_Interval plus
/// [`MARGIN_MS`] (the split-brain debounce) plus 4 s for an agent to reconnect after a
/// manager restart (its first backoff steps) and send a heartbeat.
pub const ALERT_CLEAR_MS: u64 = 10_000;

/// One VRRP instance of the trio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vrrp {
    /// Instance name.
    pub name: &'static str,
    /// Virtual router id.
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// Advertisement interval, ms.
    pub advert_int_ms: u64,
    /// advert_int as written in keepalived.conf.
    pub advert_int: &'static str,
    /// The virtual address (a /24 of 192.0.2.0).
    pub vip: &'static str,
}

impl Vrrp {
    /// Master_Down_Interval of the lowest-priority backup, ms: 3 x interval + skew
    /// (RFC 5798 6.1; RFC 3768 uses the same formula in seconds).
    pub fn master_down_ms(&self) -> u64 {
        self.master_down_at(LOWEST_PRIORITY)
    }

    /// Master_Down_Interval of a backup at `prio`, ms.
    pub fn master_down_at(&self, prio: u8) -> u64 {
        3 * self.advert_int_ms + (256 - u64::from(prio)) * self.advert_int_ms / 256
    }
}

/// The longest Master_Down_Interval of the trio.
pub fn longest_master_down_ms() -> u64 {
    INSTANCES
        .iter()
        .map(Vrrp::master_down_ms)
        .max()
        .unwrap_or(0)
}

/// Priority of node `node` for instance `inst`: each node masters one instance (150); the
/// next node backs it up (100), the third at [`LOWEST_PRIORITY`].
pub fn priority(node: usize, inst: usize) -> u8 {
    match (node + 3 - inst) % 3 {
        0 => 150,
        1 => 100,
        _ => LOWEST_PRIORITY,
    }
}

/// One node as a sample saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Its daemon runs.
    pub alive: bool,
    /// Its daemon is SIGSTOPped.
    pub stopped: bool,
    /// The state each instance last entered in the current run's log (None: none yet).
    pub states: [Option<String>; 3],
    /// Whether each instance's VIP is configured on the node.
    pub holds: [bool; 3],
}

impl NodeView {
    /// Master of instance `i` and able to act as one (running, not stopped).
    pub fn master(&self, i: usize) -> bool {
        self.alive && !self.stopped && self.states[i].as_deref() == Some("MASTER")
    }

    fn state_word(&self, i: usize) -> String {
        if !self.alive {
            "not running".into()
        } else {
            self.states[i].clone().unwrap_or_else(|| "INIT".into())
        }
    }
}

/// Every node at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When.
    pub t_ms: u64,
    /// n1, n2, n3.
    pub nodes: [NodeView; 3],
}

impl Sample {
    /// The nodes that are master of instance `i`.
    pub fn masters(&self, i: usize) -> Vec<usize> {
        (0..3).filter(|n| self.nodes[*n].master(i)).collect()
    }
}

/// One arping of a VIP from the observer: the MACs that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arp {
    /// When.
    pub t_ms: u64,
    /// Instance index.
    pub inst: usize,
    /// MACs of the replies, lowercase.
    pub macs: Vec<String>,
}

/// One `hactl status --json` poll: the alerts in force ("kind subject"), or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPoll {
    /// When.
    pub t_ms: u64,
    /// Alerts, or the error.
    pub alerts: Result<Vec<String>, String>,
}

/// A quiet window: from the heal of an episode to the start of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the last fault of the episode was healed.
    pub healed_ms: u64,
    /// When the quiet ends.
    pub until_ms: u64,
}

/// Which invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Exactly one master per VRID from Master_Down_Interval + margin after a heal.
    OneMaster,
    /// The VIP is answered (ARP) from the master's MAC only.
    VipFromMaster,
    /// No BACKUP, FAULT or dead node holds a VIP longer than the margin.
    NoStaleVip,
    /// Every logged transition is in manager history once, or inside a GAP.
    History,
    /// No alert open after a heal.
    AlertsCleared,
    /// No split-brain alert without two masters for longer than the debounce.
    FalseSplitBrain,
}

impl Invariant {
    /// All, in report order.
    pub const ALL: [Invariant; 6] = [
        Invariant::OneMaster,
        Invariant::VipFromMaster,
        Invariant::NoStaleVip,
        Invariant::History,
        Invariant::AlertsCleared,
        Invariant::FalseSplitBrain,
    ];

    /// Whether it is about the manager (not checked for keepalived).
    pub fn manager_only(&self) -> bool {
        matches!(
            self,
            Invariant::History | Invariant::AlertsCleared | Invariant::FalseSplitBrain
        )
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Invariant::OneMaster => "one-master",
            Invariant::VipFromMaster => "vip-from-master",
            Invariant::NoStaleVip => "no-stale-vip",
            Invariant::History => "history-complete",
            Invariant::AlertsCleared => "alerts-cleared",
            Invariant::FalseSplitBrain => "no-false-split-brain",
        }
    }
}

/// One violation, precisely: invariant, time, node, VRID, what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub inv: Invariant,
    /// When (ms from the schedule's start).
    pub t_ms: u64,
    /// Node index, if one is to blame.
    pub node: Option<usize>,
    /// VRID, if about one.
    pub vrid: Option<u8>,
    /// What was seen.
    pub seen: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<20} t={:>8.1}s node={} vrid={} {}",
            self.inv.name(),
            self.t_ms as f64 / 1000.0,
            self.node
                .map_or_else(|| "-".into(), |n| format!("n{}", n + 1)),
            self.vrid.map_or_else(|| "-".into(), |v| v.to_string()),
            self.seen
        )
    }
}

fn names(nodes: &[usize]) -> String {
    let v: Vec<String> = nodes.iter().map(|n| format!("n{}", n + 1)).collect();
    format!("[{}]", v.join(","))
}

/// One master per VRID in every sample from `healed + Master_Down_Interval + margin` to
/// the end of the window; one violation per (window, VRID), at its first bad sample.
pub fn one_master(windows: &[Window], samples: &[Sample]) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in windows {
        for (i, inst) in INSTANCES.iter().enumerate() {
            let from = w.healed_ms + inst.master_down_ms() + MARGIN_MS;
            let checked: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.t_ms >= from && s.t_ms < w.until_ms)
                .collect();
            let bad: Vec<&&Sample> = checked.iter().filter(|s| s.masters(i).len() != 1).collect();
            if let Some(first) = bad.first() {
                out.push(Violation {
                    inv: Invariant::OneMaster,
                    t_ms: first.t_ms,
                    node: None,
                    vrid: Some(inst.vrid),
                    seen: format!(
                        "masters {} {:.1}s after the heal ({} of {} samples of the window wrong)",
                        names(&first.masters(i)),
                        (first.t_ms - w.healed_ms) as f64 / 1000.0,
                        bad.len(),
                        checked.len()
                    ),
                });
            }
        }
    }
    out
}

/// The last sample at or before `t` (the first one if none is).
fn sample_at(samples: &[Sample], t: u64) -> Option<&Sample> {
    let idx = samples.partition_point(|s| s.t_ms <= t);
    samples.get(idx.saturating_sub(1))
}

/// In the checked part of each window, every arping of a VIP answered by exactly the
/// MAC of the one master (skipped where there is not exactly one: [`one_master`] reports
/// that). One violation per (window, VRID).
pub fn vip_from_master(
    windows: &[Window],
    samples: &[Sample],
    arps: &[Arp],
    macs: &[String; 3],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in windows {
        for (i, inst) in INSTANCES.iter().enumerate() {
            let from = w.healed_ms + inst.master_down_ms() + MARGIN_MS;
            let mut first: Option<Violation> = None;
            let mut bad = 0;
            for a in arps
                .iter()
                .filter(|a| a.inst == i && a.t_ms >= from && a.t_ms < w.until_ms)
            {
                let Some(s) = sample_at(samples, a.t_ms) else {
                    continue;
                };
                let [m] = s.masters(i)[..] else { continue };
                let mut got: Vec<&str> = a.macs.iter().map(String::as_str).collect();
                got.sort_unstable();
                got.dedup();
                if got != [macs[m].as_str()] {
                    bad += 1;
                    first.get_or_insert(Violation {
                        inv: Invariant::VipFromMaster,
                        t_ms: a.t_ms,
                        node: Some(m),
                        vrid: Some(inst.vrid),
                        seen: format!(
                            "{} answered by {:?}, master n{} is {}",
                            inst.vip,
                            got,
                            m + 1,
                            macs[m]
                        ),
                    });
                }
            }
            if let Some(mut v) = first {
                v.seen += &format!(" ({bad} bad arping(s) in the window)");
                out.push(v);
            }
        }
    }
    out
}

/// Over the whole run: a node that holds a VIP while not master of its instance (BACKUP,
/// FAULT, INIT or not running) for longer than [`MARGIN_MS`]; one violation per stretch.
pub fn no_stale_vip(samples: &[Sample]) -> Vec<Violation> {
    let mut out = Vec::new();
    let end = samples.last().map_or(0, |s| s.t_ms);
    for n in 0..3 {
        for (i, inst) in INSTANCES.iter().enumerate() {
            let mut since: Option<(u64, String)> = None;
            let mut reported = false;
            for s in samples {
                let v = &s.nodes[n];
                // A stopped master still believes it is master: that is not stale.
                let ok = !v.holds[i] || (v.alive && v.states[i].as_deref() == Some("MASTER"));
                if ok {
                    since = None;
                    reported = false;
                    continue;
                }
                let (start, state) = since.get_or_insert_with(|| (s.t_ms, v.state_word(i)));
                if !reported && s.t_ms - *start > MARGIN_MS {
                    reported = true;
                    // How long it lasted: until the first sample without it.
                    let stop = samples
                        .iter()
                        .find(|x| {
                            x.t_ms > s.t_ms
                                && (!x.nodes[n].holds[i]
                                    || (x.nodes[n].alive
                                        && x.nodes[n].states[i].as_deref() == Some("MASTER")))
                        })
                        .map(|x| x.t_ms);
                    out.push(Violation {
                        inv: Invariant::NoStaleVip,
                        t_ms: *start,
                        node: Some(n),
                        vrid: Some(inst.vrid),
                        seen: format!(
                            "{} held while {} for {}",
                            inst.vip,
                            state,
                            match stop {
                                Some(z) => format!("{:.1}s", (z - *start) as f64 / 1000.0),
                                None =>
                                    format!("{:.1}s+ (to the end)", (end - *start) as f64 / 1000.0),
                            }
                        ),
                    });
                }
            }
        }
    }
    out
}

/// Alerts in force in the polls from `healed + ALERT_CLEAR_MS` to the end of each window
/// (a failed poll counts: the manager should answer after a heal). One per window.
pub fn alerts_cleared(windows: &[Window], polls: &[StatusPoll]) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in windows {
        let from = w.healed_ms + ALERT_CLEAR_MS;
        let in_window: Vec<&StatusPoll> = polls
            .iter()
            .filter(|p| p.t_ms >= from && p.t_ms < w.until_ms)
            .collect();
        let bad: Vec<&&StatusPoll> = in_window
            .iter()
            .filter(|p| !matches!(&p.alerts, Ok(a) if a.is_empty()))
            .collect();
        if let Some(p) = bad.first() {
            let what = match &p.alerts {
                Ok(a) => format!("open alerts {a:?}"),
                Err(e) => format!("manager not answering: {e}"),
            };
            out.push(Violation {
                inv: Invariant::AlertsCleared,
                t_ms: p.t_ms,
                node: None,
                vrid: None,
                seen: format!(
                    "{what} {:.1}s after the heal ({} of {} polls)",
                    (p.t_ms - w.healed_ms) as f64 / 1000.0,
                    bad.len(),
                    in_window.len()
                ),
            });
        }
    }
    out
}

/// A split-brain alert the manager raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAlert {
    /// When (ms from the schedule's start; may be negative before it: clamp to 0).
    pub t_ms: u64,
    /// The instance it names.
    pub instance: String,
    /// The node it names.
    pub node: String,
}

/// Split-brain alerts raised without two running masters of that instance for at least
/// the manager's hold (the longer Master_Down_Interval of the masters, at their
/// priorities, plus [`SPLIT_MARGIN_MS`]) before the alert; a split that ended more than
/// [`MARGIN_MS`] before the alert does not justify it either. One per (instance, second)
/// so both members' events count once.
pub fn false_split_brain(alerts: &[SplitAlert], samples: &[Sample]) -> Vec<Violation> {
    // Stretches of two or more masters per instance: (start, end, hold).
    let mut stretches: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); 3];
    for (i, st) in stretches.iter_mut().enumerate() {
        let mut open: Option<(u64, u64, u64)> = None;
        for s in samples {
            let masters = s.masters(i);
            if masters.len() >= 2 {
                let hold = masters
                    .iter()
                    .map(|&n| INSTANCES[i].master_down_at(priority(n, i)))
                    .max()
                    .unwrap_or(0)
                    + SPLIT_MARGIN_MS;
                let o = open.get_or_insert((s.t_ms, s.t_ms, hold));
                o.1 = s.t_ms;
                o.2 = o.2.min(hold);
            } else if let Some(o) = open.take() {
                st.push(o);
            }
        }
        st.extend(open);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in alerts {
        let Some(i) = INSTANCES.iter().position(|x| x.name == a.instance) else {
            continue;
        };
        if !seen.insert((i, a.t_ms / 1000)) {
            continue;
        }
        let justified = stretches[i].iter().any(|&(s, e, hold)| {
            e - s + SAMPLING_SLACK_MS >= hold
                && s + hold <= a.t_ms + SAMPLING_SLACK_MS
                && e + MARGIN_MS >= a.t_ms
        });
        if !justified {
            let longest = stretches[i]
                .iter()
                .filter(|(_, e, _)| *e <= a.t_ms + MARGIN_MS && *e + 30_000 >= a.t_ms)
                .max_by_key(|(s, e, _)| e - s);
            out.push(Violation {
                inv: Invariant::FalseSplitBrain,
                t_ms: a.t_ms,
                node: a.node.strip_prefix('n').and_then(|n| n.parse::<usize>().ok()).map(|n| n.saturating_sub(1)),
                vrid: Some(INSTANCES[i].vrid),
                seen: format!(
                    "split-brain alert on {} ({}) with two masters for at most {} in the 30 s before (hold {})",
                    a.instance,
                    a.node,
                    longest.map_or_else(|| "0 s".into(), |(s, e, _)| format!("{:.1}s", (e - s) as f64 / 1000.0)),
                    longest.map_or_else(|| "-".into(), |(_, _, h)| format!("{:.1}s", *h as f64 / 1000.0)),
                ),
            });
        }
    }
    out
}

/// What one run (process start) of an agent logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootLog {
    /// Node index.
    pub node: usize,
    /// When it started (ms from the schedule's start, 0 for the first).
    pub t_ms: u64,
    /// The boot id it logged, if any.
    pub boot_id: Option<String>,
    /// `(instance, state)` of each `(X) Entering STATE STATE` line, in order.
    pub transitions: Vec<(String, String)>,
}

/// A history event, as far as the history check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistEvent {
    /// Node name (n1...).
    pub node: String,
    /// Agent boot id.
    pub boot_id: String,
    /// Seq within the boot.
    pub seq: u64,
    /// TRANSITION, GAP...
    pub kind: String,
    /// Instance.
    pub instance: String,
    /// New state (transitions).
    pub to_state: String,
    /// Details (GAP: "N events lost ...").
    pub detail: String,
}

/// Events a GAP says were lost ("N events lost ..."); unknown counts as unbounded.
fn gap_lost(detail: &str) -> u64 {
    detail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Every logged transition in history exactly once, in order, per (node, boot); missing
/// ones only as many as that boot's GAP markers report lost. Also flags duplicate seqs
/// and history transitions no log line accounts for.
pub fn history(boots: &[BootLog], events: &[HistEvent]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut per_boot: BTreeMap<(String, String), Vec<&HistEvent>> = BTreeMap::new();
    let mut seqs = HashSet::new();
    for e in events.iter().filter(|e| !e.boot_id.is_empty()) {
        if !seqs.insert((&e.node, &e.boot_id, e.seq)) {
            out.push(Violation {
                inv: Invariant::History,
                t_ms: 0,
                node: node_index(&e.node),
                vrid: vrid_of(&e.instance),
                seen: format!(
                    "event {} seq {} of boot {} twice in history",
                    e.kind, e.seq, e.boot_id
                ),
            });
            continue;
        }
        per_boot
            .entry((e.node.clone(), e.boot_id.clone()))
            .or_default()
            .push(e);
    }
    let mut known: HashMap<(String, String), ()> = HashMap::new();
    for b in boots {
        let node = format!("n{}", b.node + 1);
        let Some(id) = &b.boot_id else {
            if !b.transitions.is_empty() {
                out.push(Violation {
                    inv: Invariant::History,
                    t_ms: b.t_ms,
                    node: Some(b.node),
                    vrid: None,
                    seen: format!(
                        "{} transitions logged by a run that logged no boot id",
                        b.transitions.len()
                    ),
                });
            }
            continue;
        };
        known.insert((node.clone(), id.clone()), ());
        let mut evs = per_boot
            .get(&(node.clone(), id.clone()))
            .cloned()
            .unwrap_or_default();
        evs.sort_by_key(|e| e.seq);
        let lost: u64 = evs
            .iter()
            .filter(|e| e.kind == "GAP")
            .map(|e| gap_lost(&e.detail))
            .fold(0u64, u64::saturating_add);
        let hist: Vec<(&str, &str)> = evs
            .iter()
            .filter(|e| e.kind == "TRANSITION")
            .map(|e| (e.instance.as_str(), e.to_state.as_str()))
            .collect();
        // Greedy in-order match of history against the log.
        let mut j = 0;
        let mut missing = Vec::new();
        for (inst, st) in &b.transitions {
            if hist.get(j) == Some(&(inst.as_str(), st.as_str())) {
                j += 1;
            } else {
                missing.push(format!("{inst}->{st}"));
            }
        }
        if missing.len() as u64 > lost {
            out.push(Violation {
                inv: Invariant::History,
                t_ms: b.t_ms,
                node: Some(b.node),
                vrid: None,
                seen: format!(
                    "boot {id}: {} of {} logged transitions not in history (GAPs report {} lost): {}",
                    missing.len(),
                    b.transitions.len(),
                    if lost == u64::MAX { "unknown".into() } else { lost.to_string() },
                    shorten(&missing)
                ),
            });
        }
        if j < hist.len() {
            let extra: Vec<String> = hist[j..].iter().map(|(i, s)| format!("{i}->{s}")).collect();
            out.push(Violation {
                inv: Invariant::History,
                t_ms: b.t_ms,
                node: Some(b.node),
                vrid: None,
                seen: format!(
                    "boot {id}: history has {} transition(s) out of the log's order or never logged: {}",
                    extra.len(),
                    shorten(&extra)
                ),
            });
        }
    }
    for ((node, id), evs) in &per_boot {
        let n = evs.iter().filter(|e| e.kind == "TRANSITION").count();
        if n > 0 && !known.contains_key(&(node.clone(), id.clone())) {
            out.push(Violation {
                inv: Invariant::History,
                t_ms: 0,
                node: node_index(node),
                vrid: None,
                seen: format!("history has {n} transitions of boot {id}, which no log names"),
            });
        }
    }
    out
}

fn shorten(v: &[String]) -> String {
    let head: Vec<&str> = v.iter().take(6).map(String::as_str).collect();
    if v.len() > head.len() {
        format!("{} ...", head.join(", "))
    } else {
        head.join(", ")
    }
}

fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

fn vrid_of(instance: &str) -> Option<u8> {
    INSTANCES
        .iter()
        .find(|i| i.name == instance)
        .map(|i| i.vrid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, holds: bool) -> NodeView {
        NodeView {
            alive: true,
            stopped: false,
            states: [
                Some(state.into()),
                Some("BACKUP".into()),
                Some("BACKUP".into()),
            ],
            holds: [holds, false, false],
        }
    }

    fn sample(t: u64, a: NodeView, b: NodeView) -> Sample {
        let mut c = view("BACKUP", false);
        // n3 masters instances 2 and 3 in these timelines so only instance 1 varies.
        c.states[1] = Some("MASTER".into());
        c.states[2] = Some("MASTER".into());
        Sample {
            t_ms: t,
            nodes: [a, b, c],
        }
    }

    #[test]
    fn master_down_interval_and_priorities() {
        assert_eq!(INSTANCES[0].master_down_ms(), 3000 + 804);
        assert_eq!(INSTANCES[2].master_down_ms(), 30 + 8);
        assert_eq!(priority(0, 0), 150);
        assert_eq!(priority(1, 0), 100);
        assert_eq!(priority(2, 0), 50);
        assert_eq!(priority(2, 2), 150);
        assert_eq!(priority(0, 2), 100);
    }

    #[test]
    fn one_master_waits_for_the_margin_then_fails_on_two() {
        let w = [Window {
            healed_ms: 0,
            until_ms: 12_000,
        }];
        // Two masters until 5 s (inside MDI + margin = 5.8 s): fine.
        let mut s: Vec<Sample> = (0..12)
            .map(|k| {
                let t = k * 1000;
                let b = if t < 5000 {
                    view("MASTER", false)
                } else {
                    view("BACKUP", false)
                };
                sample(t, view("MASTER", true), b)
            })
            .collect();
        assert!(one_master(&w, &s).is_empty());
        // Two masters at 8 s: a violation naming both.
        s[8].nodes[1] = view("MASTER", false);
        let v = one_master(&w, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].t_ms, 8000);
        assert_eq!(v[0].vrid, Some(11));
        assert!(v[0].seen.contains("[n1,n2]"), "{}", v[0].seen);
        // A stopped master does not count.
        s[8].nodes[1] = view("BACKUP", false);
        s[9].nodes[0].stopped = true;
        assert_eq!(one_master(&w, &s).len(), 1);
    }

    #[test]
    fn stale_vip_after_the_margin_only() {
        let mut s: Vec<Sample> = (0..10)
            .map(|k| sample(k * 500, view("MASTER", true), view("BACKUP", false)))
            .collect();
        assert!(no_stale_vip(&s).is_empty());
        // n2 holds the VIP as BACKUP from 1.0 s to 2.5 s: within the margin.
        for x in &mut s[2..=5] {
            x.nodes[1].holds[0] = true;
        }
        assert!(no_stale_vip(&s).is_empty());
        // n1 dies holding it from 1.5 s on: beyond the margin.
        for x in &mut s[3..] {
            x.nodes[0].alive = false;
        }
        let v = no_stale_vip(&s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].node, v[0].t_ms), (Some(0), 1500));
        assert!(v[0].seen.contains("not running"), "{}", v[0].seen);
    }

    #[test]
    fn arp_must_come_from_the_master() {
        let w = [Window {
            healed_ms: 0,
            until_ms: 10_000,
        }];
        let s = vec![sample(0, view("MASTER", true), view("BACKUP", false))];
        let macs = [
            "02:00:00:00:00:01".to_string(),
            "02:00:00:00:00:02".into(),
            "02:00:00:00:00:03".into(),
        ];
        let arp = |t, m: &[&str]| Arp {
            t_ms: t,
            inst: 0,
            macs: m.iter().map(|x| x.to_string()).collect(),
        };
        let good = [arp(7000, &["02:00:00:00:00:01"]), arp(1000, &[])];
        assert!(vip_from_master(&w, &s, &good, &macs).is_empty());
        let bad = [
            arp(7000, &["02:00:00:00:00:01", "02:00:00:00:00:02"]),
            arp(8000, &[]),
        ];
        let v = vip_from_master(&w, &s, &bad, &macs);
        assert_eq!(v.len(), 1);
        assert!(v[0].seen.contains("2 bad"), "{}", v[0].seen);
    }

    #[test]
    fn alerts_must_clear_after_the_heal() {
        let w = [Window {
            healed_ms: 0,
            until_ms: 13_000,
        }];
        let poll = |t, a: Result<Vec<String>, String>| StatusPoll { t_ms: t, alerts: a };
        let ok = [
            poll(5000, Ok(vec!["split-brain x".into()])),
            poll(11_000, Ok(vec![])),
        ];
        assert!(alerts_cleared(&w, &ok).is_empty());
        let bad = [
            poll(11_000, Ok(vec![])),
            poll(12_000, Err("unreachable".into())),
        ];
        let v = alerts_cleared(&w, &bad);
        assert_eq!(v.len(), 1);
        assert!(v[0].seen.contains("not answering"));
    }

    #[test]
    fn split_brain_alert_needs_a_long_split() {
        // Two masters of CH_V2 (n1 at 150, n2 at 100) from 0 to 3 s (shorter than the hold of
        // 3.6 s + 1 s), then from 10 s to 20 s.
        let s: Vec<Sample> = (0..25)
            .map(|k| {
                let t = k * 1000;
                let two = t <= 3000 || (10_000..=20_000).contains(&t);
                let b = if two {
                    view("MASTER", false)
                } else {
                    view("BACKUP", false)
                };
                sample(t, view("MASTER", true), b)
            })
            .collect();
        let alert = |t| SplitAlert {
            t_ms: t,
            instance: "CH_V2".into(),
            node: "n2".into(),
        };
        let v = false_split_brain(&[alert(3500), alert(3600), alert(17_000)], &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].t_ms, v[0].node), (3500, Some(1)));
        // Raised before the debounce of the second split elapsed: false as well.
        assert_eq!(false_split_brain(&[alert(12_000)], &s).len(), 1);
        // Raised once the hold elapsed (4.7 s into the split): justified.
        assert!(false_split_brain(&[alert(14_700)], &s).is_empty());
    }

    #[test]
    fn history_matches_logs_with_gaps_and_duplicates() {
        let boot = BootLog {
            node: 0,
            t_ms: 0,
            boot_id: Some("b1".into()),
            transitions: vec![
                ("CH_V2".into(), "BACKUP".into()),
                ("CH_V2".into(), "MASTER".into()),
                ("CH_V3".into(), "BACKUP".into()),
            ],
        };
        let ev = |seq, kind: &str, inst: &str, st: &str, detail: &str| HistEvent {
            node: "n1".into(),
            boot_id: "b1".into(),
            seq,
            kind: kind.into(),
            instance: inst.into(),
            to_state: st.into(),
            detail: detail.into(),
        };
        let full = vec![
            ev(1, "AGENT_START", "", "", ""),
            ev(2, "TRANSITION", "CH_V2", "BACKUP", ""),
            ev(3, "TRANSITION", "CH_V2", "MASTER", ""),
            ev(4, "TRANSITION", "CH_V3", "BACKUP", ""),
        ];
        assert!(history(std::slice::from_ref(&boot), &full).is_empty());
        // One lost without a gap: violation; with a GAP of 1: fine.
        let mut lossy = full.clone();
        lossy.remove(2);
        assert_eq!(history(std::slice::from_ref(&boot), &lossy).len(), 1);
        lossy.push(ev(
            5,
            "GAP",
            "",
            "",
            "1 events lost (seq 3..3): ring overflowed",
        ));
        assert!(history(std::slice::from_ref(&boot), &lossy).is_empty());
        // A duplicate seq.
        let mut dup = full.clone();
        dup.push(ev(4, "TRANSITION", "CH_V3", "BACKUP", ""));
        let v = history(std::slice::from_ref(&boot), &dup);
        assert_eq!(v.len(), 1);
        assert!(v[0].seen.contains("twice"));
        // A boot nobody logged.
        let mut other = full.clone();
        other.push(HistEvent {
            boot_id: "zz".into(),
            ..ev(1, "TRANSITION", "CH_V2", "MASTER", "")
        });
        assert_eq!(history(&[boot], &other).len(), 1);
    }
}
