//! Effective priority from tracker states, pure (keepalived `vrrp_track.c` semantics).
//!
//! Per tracked object, as an instance references it (`weight` and `reverse` already
//! resolved from the `track_*` line or the object's own defaults):
//! - up/down objects (script, interface, process), weight 0: the instance is in FAULT
//!   while the object is down (with `reverse`: while it is up);
//! - up/down objects, weight w != 0 (`m` = -1 with `reverse`, else 1): up and w > 0 adds
//!   w*m; down and w < 0 adds w*m; otherwise nothing;
//! - track files, weight 0: a non-zero value is FAULT (with `reverse`: zero is FAULT);
//!   weight w: value*w*m, FAULT if <= -254, else added, capped at 253;
//! - an object whose state is not known yet (a script that has not finished its first
//!   run, an interface or file not read yet): weight 0 holds the instance in INIT
//!   (keepalived's `num_script_init`), a weight adds nothing;
//! - a disabled object (an insecure script keepalived will not run) is ignored.
//!
//! The sum is added to the base priority and clamped to 1..=254. An address owner (255)
//! is never lowered or raised by weights (keepalived skips it), but weight-0 faults
//! still put it in FAULT.

use crate::config::model::{Config, Section, SyncGroup, TrackRef, VrrpInstance};
use crate::units::Priority;

use super::{Status, TrackerKind};

/// One tracked object as seen by one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerState {
    /// What is tracked.
    pub kind: TrackerKind,
    /// Script, file, interface or process name.
    pub name: String,
    /// Effective weight (the `track_*` line's, else the object's).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// Last known status.
    pub status: Status,
}

/// What one tracker does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contribution {
    /// Adds this much to the priority.
    Add(i64),
    /// Puts the instance in FAULT.
    Fault,
    /// Holds the instance in INIT (a weight-0 object with no state yet).
    Init,
}

/// The outcome for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityOutcome {
    /// At least one tracker faults the instance.
    Fault,
    /// No fault, but a weight-0 tracker has not reported yet: stay in INIT.
    Init,
    /// Running at this effective priority.
    Priority(Priority),
}

/// Contribution of an up/down object (script, interface, process).
pub fn binary_contribution(up: bool, weight: i32, reverse: bool) -> Contribution {
    let m: i64 = if reverse { -1 } else { 1 };
    let w = i64::from(weight);
    match weight {
        0 if up == reverse => Contribution::Fault,
        0 => Contribution::Add(0),
        _ if up && w > 0 => Contribution::Add(w * m),
        _ if !up && w < 0 => Contribution::Add(w * m),
        _ => Contribution::Add(0),
    }
}

/// Contribution of a track file holding `value`.
pub fn file_contribution(value: i64, weight: i32, reverse: bool) -> Contribution {
    if weight == 0 {
        return if (value != 0) != reverse {
            Contribution::Fault
        } else {
            Contribution::Add(0)
        };
    }
    let m: i64 = if reverse { -1 } else { 1 };
    let v = value.saturating_mul(i64::from(weight)).saturating_mul(m);
    if v <= -254 {
        Contribution::Fault
    } else {
        Contribution::Add(v.min(253))
    }
}

impl TrackerState {
    /// What this tracker does to an instance now.
    pub fn contribution(&self) -> Contribution {
        match (self.kind, self.status) {
            (_, Status::Disabled) => Contribution::Add(0),
            (_, Status::Unknown) if self.weight == 0 => Contribution::Init,
            (_, Status::Unknown) => Contribution::Add(0),
            (TrackerKind::File, Status::Value(v)) => {
                file_contribution(v, self.weight, self.reverse)
            }
            (TrackerKind::File, Status::Up) => file_contribution(0, self.weight, self.reverse),
            (TrackerKind::File, Status::Down) => file_contribution(1, self.weight, self.reverse),
            (_, Status::Value(v)) => binary_contribution(v != 0, self.weight, self.reverse),
            (_, Status::Up) => binary_contribution(true, self.weight, self.reverse),
            (_, Status::Down) => binary_contribution(false, self.weight, self.reverse),
        }
    }

    /// Take a new status if the event is about this tracker; true if it was.
    pub fn apply(&mut self, ev: &super::TrackerEvent) -> bool {
        let hit = ev.kind == self.kind && ev.name == self.name;
        if hit {
            self.status = ev.status;
        }
        hit
    }
}

/// Base priority plus tracker weights, clamped to 1..=254; FAULT or INIT when a weight-0
/// tracker says so; an owner (255) keeps 255.
pub fn effective_priority(base: Priority, trackers: &[TrackerState]) -> PriorityOutcome {
    let mut sum: i64 = 0;
    let mut init = false;
    for t in trackers {
        match t.contribution() {
            Contribution::Fault => return PriorityOutcome::Fault,
            Contribution::Init => init = true,
            Contribution::Add(v) => sum = sum.saturating_add(v),
        }
    }
    if init {
        return PriorityOutcome::Init;
    }
    if base == Priority::OWNER {
        return PriorityOutcome::Priority(base);
    }
    let p = (i64::from(base.get()) + sum).clamp(1, 254);
    PriorityOutcome::Priority(Priority(u8::try_from(p).unwrap_or(254)))
}

fn section_weight(s: &Section) -> (i32, bool) {
    let mut w = (1, false);
    for n in s.entries.iter().filter(|n| n.name == "weight") {
        if let Some(v) = n.arg(0).and_then(|a| a.parse::<i32>().ok()) {
            w = (v.clamp(-254, 254), n.arg(1) == Some("reverse"));
        }
    }
    w
}

fn resolve(r: &TrackRef, own: (i32, bool)) -> (i32, bool) {
    // keepalived: a line without `weight` inherits the object's weight and reverse; a
    // line with `weight` keeps the object's reverse unless it says `reverse`. (The model
    // cannot express `noreverse` overriding an object's `reverse`.)
    (r.weight.unwrap_or(own.0), r.reverse || own.1)
}

/// The trackers of one instance from the config, weights and `reverse` resolved;
/// references to undefined objects are skipped (keepalived ignores them). Statuses
/// start unknown, except `init_fail` scripts (down); interfaces are for the engine to
/// set from the link state.
pub fn instance_trackers(inst: &VrrpInstance, cfg: &Config) -> Vec<TrackerState> {
    let mut out = Vec::new();
    for r in &inst.track_interfaces {
        let (weight, reverse) = resolve(r, (0, false));
        out.push(TrackerState {
            kind: TrackerKind::Interface,
            name: r.name.clone(),
            weight,
            reverse,
            status: Status::Unknown,
        });
    }
    for r in &inst.track_scripts {
        if let Some(s) = cfg.vrrp_scripts.iter().find(|s| s.name == r.name) {
            let (weight, reverse) = resolve(r, (s.weight, s.weight_reverse));
            let status = if s.init_fail {
                Status::Down
            } else {
                Status::Unknown
            };
            out.push(TrackerState {
                kind: TrackerKind::Script,
                name: r.name.clone(),
                weight,
                reverse,
                status,
            });
        }
    }
    for r in &inst.track_files {
        if let Some(f) = cfg.track_files.iter().find(|f| f.name == r.name) {
            let (weight, reverse) = resolve(r, (f.weight, f.reverse));
            out.push(TrackerState {
                kind: TrackerKind::File,
                name: r.name.clone(),
                weight,
                reverse,
                status: Status::Unknown,
            });
        }
    }
    for r in &inst.track_processes {
        if let Some(p) = cfg.track_processes.iter().find(|p| p.name == r.name) {
            let (weight, reverse) = resolve(r, section_weight(p));
            out.push(TrackerState {
                kind: TrackerKind::Process,
                name: r.name.clone(),
                weight,
                reverse,
                status: Status::Unknown,
            });
        }
    }
    for g in cfg
        .sync_groups
        .iter()
        .filter(|g| g.instances.contains(&inst.name))
    {
        out.extend(group_trackers(g, cfg));
    }
    out
}

/// Names in a sync group's `track_script { ... }`-style block (first word of each line).
pub fn group_refs<'a>(g: &'a SyncGroup, keyword: &'a str) -> impl Iterator<Item = &'a str> {
    g.other
        .iter()
        .filter(move |n| n.name == keyword)
        .flat_map(|n| n.block.iter().flatten())
        .map(|n| n.name.as_str())
}

/// A sync group's own trackers: keepalived applies them to every member with fault
/// semantics (weight 0), whatever weight the object has.
fn group_trackers(g: &SyncGroup, cfg: &Config) -> Vec<TrackerState> {
    let mut out = Vec::new();
    let mut add = |kind, name: &str| {
        out.push(TrackerState {
            kind,
            name: name.to_string(),
            weight: 0,
            reverse: false,
            status: Status::Unknown,
        })
    };
    for n in group_refs(g, "track_interface") {
        add(TrackerKind::Interface, n);
    }
    for n in group_refs(g, "track_script").filter(|n| cfg.vrrp_scripts.iter().any(|s| s.name == *n))
    {
        add(TrackerKind::Script, n);
    }
    for n in group_refs(g, "track_file").filter(|n| cfg.track_files.iter().any(|f| f.name == *n)) {
        add(TrackerKind::File, n);
    }
    for n in
        group_refs(g, "track_process").filter(|n| cfg.track_processes.iter().any(|p| p.name == *n))
    {
        add(TrackerKind::Process, n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TrackerKind, weight: i32, reverse: bool, status: Status) -> TrackerState {
        TrackerState {
            kind,
            name: "x".into(),
            weight,
            reverse,
            status,
        }
    }
    use PriorityOutcome::{Fault, Init};
    use Status::{Disabled, Down, Unknown, Up, Value};
    use TrackerKind::{File, Interface, Process, Script};

    fn p(v: u8) -> PriorityOutcome {
        PriorityOutcome::Priority(Priority(v))
    }

    #[test]
    fn effective_priority_table() {
        let cases: Vec<(u8, Vec<TrackerState>, PriorityOutcome)> = vec![
            (100, vec![], p(100)),
            (100, vec![t(Script, -20, false, Up)], p(100)),
            (100, vec![t(Script, -20, false, Down)], p(80)),
            (100, vec![t(Script, 20, false, Up)], p(120)),
            (100, vec![t(Script, 20, false, Down)], p(100)),
            (100, vec![t(Script, -20, true, Down)], p(120)),
            (100, vec![t(Script, 20, true, Up)], p(80)),
            (100, vec![t(Script, 0, false, Down)], Fault),
            (100, vec![t(Script, 0, false, Up)], p(100)),
            (100, vec![t(Script, 0, true, Up)], Fault),
            (100, vec![t(Script, 0, true, Down)], p(100)),
            (100, vec![t(Script, 0, false, Unknown)], Init),
            (100, vec![t(Script, -20, false, Unknown)], p(100)),
            (100, vec![t(Script, 0, false, Disabled)], p(100)),
            (
                100,
                vec![t(Script, 0, false, Unknown), t(Interface, 0, false, Down)],
                Fault,
            ),
            (10, vec![t(Script, -50, false, Down)], p(1)),
            (250, vec![t(Process, 50, false, Up)], p(254)),
            (
                200,
                vec![t(Script, 100, false, Up), t(Interface, 100, false, Up)],
                p(254),
            ),
            (
                100,
                vec![t(Interface, -30, false, Down), t(Process, 10, false, Up)],
                p(80),
            ),
            (255, vec![t(Script, -100, false, Down)], p(255)),
            (255, vec![t(Script, 0, false, Down)], Fault),
            (255, vec![t(File, 5, false, Value(-100))], Fault),
            (255, vec![t(File, 5, false, Value(-10))], p(255)),
            (100, vec![t(File, 1, false, Value(-30))], p(70)),
            (100, vec![t(File, -10, false, Value(3))], p(70)),
            (100, vec![t(File, 10, true, Value(3))], p(70)),
            (100, vec![t(File, 10, false, Value(100))], p(254)),
            (100, vec![t(File, 1, false, Value(-253))], p(1)),
            (100, vec![t(File, 1, false, Value(-254))], Fault),
            (100, vec![t(File, 0, false, Value(0))], p(100)),
            (100, vec![t(File, 0, false, Value(7))], Fault),
            (100, vec![t(File, 0, true, Value(0))], Fault),
            (100, vec![t(File, 0, true, Value(7))], p(100)),
            (100, vec![t(File, 0, false, Unknown)], Init),
        ];
        for (base, trackers, want) in cases {
            assert_eq!(
                effective_priority(Priority(base), &trackers),
                want,
                "{base} {trackers:?}"
            );
        }
    }

    #[test]
    fn file_value_is_capped_at_253_per_file() {
        assert_eq!(file_contribution(1000, 1, false), Contribution::Add(253));
        assert_eq!(
            file_contribution(i64::MAX, 2, false),
            Contribution::Add(253)
        );
        assert_eq!(file_contribution(i64::MIN, 2, false), Contribution::Fault);
    }

    #[test]
    fn instance_trackers_resolve_weights() {
        let text = "vrrp_script chk {\n script /bin/true\n weight -20\n init_fail\n}\nvrrp_script chk2 {\n script /bin/true\n weight 10 reverse\n}\ntrack_file tf {\n file /run/x\n weight 3\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 192.0.2.9\n }\n track_interface {\n eth1 weight -5\n eth2\n }\n track_script {\n chk\n chk2 weight 7\n }\n track_file {\n tf weight -2 reverse\n }\n}\n";
        let cfg = crate::config::parse_str(std::path::Path::new("t.conf"), text)
            .unwrap()
            .config;
        check(&cfg);

        fn check(cfg: &Config) {
            let ts = instance_trackers(&cfg.vrrp_instances[0], cfg);
            let got: Vec<(TrackerKind, &str, i32, bool, Status)> = ts
                .iter()
                .map(|t| (t.kind, t.name.as_str(), t.weight, t.reverse, t.status))
                .collect();
            assert_eq!(
                got,
                vec![
                    (Interface, "eth1", -5, false, Unknown),
                    (Interface, "eth2", 0, false, Unknown),
                    (Script, "chk", -20, false, Down),
                    (Script, "chk2", 7, true, Unknown),
                    (File, "tf", -2, true, Unknown),
                ]
            );
        }
    }
}
