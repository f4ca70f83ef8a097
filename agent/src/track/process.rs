//! `vrrp_track_process`: is a quorum of matching processes running?
//!
//! keepalived follows process events from the kernel connector; this task scans
//! `/proc` every [`DEFAULT_POLL`] instead (a few hundred small reads; the scan runs on
//! the blocking pool). Matching as keepalived documents it:
//! - no parameters, no `param_match`, no `full_command`: the process name
//!   (`/proc/PID/comm`, at most 15 characters) equals `process` (cut to 15);
//! - otherwise the command line (`/proc/PID/cmdline`): argv[0] equals `process`, and the
//!   parameters, if any or if `param_match` is given, match: exactly (default),
//!   `partial` (the first n match, more may follow) or `initial` (same count, the last
//!   configured one may be a prefix of the actual one); `param_match` with no parameters
//!   means the command must have none.
//!
//! Zombies never count. The quorum holds when `quorum <= n <= quorum_max`. After
//! startup, gaining the quorum is reported after `fork_delay` and losing it after
//! `terminate_delay` (both set by `delay`), if it still holds then.

use std::fs;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Status, TrackerEvent, TrackerKind};
use crate::config::model::Section;

/// How often /proc is scanned.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// `param_match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamMatch {
    /// All parameters, exactly (the default when parameters are given).
    Exact,
    /// The first n parameters; more may follow.
    Partial,
    /// Same count; the last configured parameter may be a prefix.
    Initial,
}

/// A `vrrp_track_process`, ready to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTracker {
    /// Name referenced by `track_process`.
    pub name: String,
    /// `process` first word: name or argv[0].
    pub process: String,
    /// Parameters to match (`None`: not matched at all).
    pub params: Option<Vec<String>>,
    /// How parameters match.
    pub param_match: ParamMatch,
    /// `full_command`: match the command line even without parameters.
    pub full_command: bool,
    /// Minimum matching processes.
    pub quorum: u32,
    /// Maximum matching processes.
    pub quorum_max: u32,
    /// Delay before reporting a gained quorum.
    pub fork_delay: Duration,
    /// Delay before reporting a lost quorum.
    pub terminate_delay: Duration,
    /// Scan period.
    pub poll: Duration,
}

fn secs(s: &str) -> Option<Duration> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

impl ProcessTracker {
    /// From the raw config block; errors are lowercase messages.
    pub fn from_section(s: &Section) -> Result<ProcessTracker, String> {
        let mut t = ProcessTracker {
            name: s.name.clone(),
            process: String::new(),
            params: None,
            param_match: ParamMatch::Exact,
            full_command: false,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            poll: DEFAULT_POLL,
        };
        let mut param_match = None;
        for n in &s.entries {
            let bad = || {
                n.diag(format!("track process {}: bad {}", s.name, n.name))
                    .to_string()
            };
            match n.name.as_str() {
                "process" => {
                    t.process = n.arg(0).ok_or_else(bad)?.to_owned();
                    let rest = n.args.get(1..).unwrap_or(&[]);
                    t.params = (!rest.is_empty()).then(|| rest.to_vec());
                }
                "param_match" => {
                    param_match = Some(match n.arg(0) {
                        None => ParamMatch::Exact,
                        Some("initial") => ParamMatch::Initial,
                        Some("partial") => ParamMatch::Partial,
                        Some(_) => return Err(bad()),
                    })
                }
                "full_command" => t.full_command = true,
                "quorum" => t.quorum = n.arg(0).and_then(|a| a.parse().ok()).ok_or_else(bad)?,
                "quorum_max" => {
                    t.quorum_max = n.arg(0).and_then(|a| a.parse().ok()).ok_or_else(bad)?
                }
                "delay" => {
                    let d = n.arg(0).and_then(secs).ok_or_else(bad)?;
                    t.fork_delay = d;
                    t.terminate_delay = d;
                }
                "fork_delay" => t.fork_delay = n.arg(0).and_then(secs).ok_or_else(bad)?,
                "terminate_delay" => t.terminate_delay = n.arg(0).and_then(secs).ok_or_else(bad)?,
                _ => {}
            }
        }
        if t.process.is_empty() {
            return Err(format!(
                "track process {}: process name not specified",
                s.name
            ));
        }
        if let Some(m) = param_match {
            t.param_match = m;
            t.params.get_or_insert_with(Vec::new);
        }
        Ok(t)
    }

    /// Whether one process matches.
    pub fn matches(&self, p: &ProcInfo) -> bool {
        if p.zombie {
            return false;
        }
        if self.params.is_none() && !self.full_command {
            let want: String = self.process.chars().take(15).collect();
            return p.comm == want;
        }
        if p.cmdline.first() != Some(&self.process) {
            return false;
        }
        let Some(params) = &self.params else {
            return true;
        };
        let actual = p.cmdline.get(1..).unwrap_or(&[]);
        match self.param_match {
            ParamMatch::Exact => actual == params.as_slice(),
            ParamMatch::Partial => {
                actual.len() >= params.len() && actual[..params.len()] == params[..]
            }
            ParamMatch::Initial => {
                actual.len() == params.len()
                    && match params.split_last() {
                        None => true,
                        Some((last, head)) => {
                            actual[..head.len()] == *head
                                && actual[head.len()].starts_with(last.as_str())
                        }
                    }
            }
        }
    }

    /// Whether `n` matching processes make a quorum.
    pub fn quorum_met(&self, n: u32) -> bool {
        self.quorum <= n && n <= self.quorum_max
    }
}

/// What the scan reads of one process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm` without the newline.
    pub comm: String,
    /// `/proc/PID/cmdline` split at NULs (only read when `want_cmdline`).
    pub cmdline: Vec<String>,
    /// State `Z`.
    pub zombie: bool,
}

/// Read every process under `proc_root` (normally `/proc`).
pub fn scan(proc_root: &Path, want_cmdline: bool) -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = e.path();
        let Ok(stat) = fs::read_to_string(base.join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat.get(open + 1..close).unwrap_or_default().to_owned();
        let zombie = stat.get(close + 2..close + 3) == Some("Z");
        let cmdline = if want_cmdline {
            fs::read(base.join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|w| !w.is_empty())
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(ProcInfo {
            pid,
            comm,
            cmdline,
            zombie,
        });
    }
    out
}

/// Delayed reporting of quorum changes, pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Debounce {
    reported: Option<bool>,
    pending: Option<(bool, Duration)>,
}

impl Debounce {
    /// Observe the quorum at `now` (time since any fixed origin); `Some(state)` when it
    /// is to be reported. The first observation is reported at once.
    pub fn observe(
        &mut self,
        now: Duration,
        up: bool,
        gain: Duration,
        loss: Duration,
    ) -> Option<bool> {
        match self.reported {
            None => {
                self.reported = Some(up);
                return Some(up);
            }
            Some(r) if r == up => {
                self.pending = None;
                return None;
            }
            Some(_) => {}
        }
        let due = match self.pending {
            Some((dir, due)) if dir == up => due,
            _ => {
                let due = now + if up { gain } else { loss };
                self.pending = Some((up, due));
                due
            }
        };
        if now >= due {
            self.pending = None;
            self.reported = Some(up);
            return Some(up);
        }
        None
    }

    /// When the pending change (if any) falls due.
    pub fn due(&self) -> Option<Duration> {
        self.pending.map(|(_, d)| d)
    }
}

/// Start the scanning task: it reports the first state at once, then changes.
pub fn spawn_process_tracker(
    t: ProcessTracker,
    tx: UnboundedSender<TrackerEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let origin = Instant::now();
        let mut deb = Debounce::default();
        let want_cmdline = t.params.is_some() || t.full_command;
        loop {
            if tx.is_closed() {
                return;
            }
            let procs = tokio::task::spawn_blocking(move || scan(Path::new("/proc"), want_cmdline))
                .await
                .unwrap_or_default();
            let n =
                u32::try_from(procs.iter().filter(|p| t.matches(p)).count()).unwrap_or(u32::MAX);
            let now = origin.elapsed();
            if let Some(up) = deb.observe(now, t.quorum_met(n), t.fork_delay, t.terminate_delay) {
                let ev = TrackerEvent {
                    kind: TrackerKind::Process,
                    name: t.name.clone(),
                    status: if up { Status::Up } else { Status::Down },
                    detail: format!(
                        "{n} matching process(es), quorum {}..{}",
                        t.quorum, t.quorum_max
                    ),
                    run: None,
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
            let next = match deb.due() {
                Some(d) => d.saturating_sub(now).min(t.poll),
                None => t.poll,
            };
            tokio::time::sleep(next.max(Duration::from_millis(10))).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(text: &str) -> ProcessTracker {
        let conf = format!("vrrp_track_process p {{\n{text}\n}}\n");
        let cfg = crate::config::parse_str(Path::new("t.conf"), &conf)
            .unwrap()
            .config;
        ProcessTracker::from_section(&cfg.track_processes[0]).unwrap()
    }

    fn p(comm: &str, cmd: &[&str]) -> ProcInfo {
        ProcInfo {
            pid: 1,
            comm: comm.into(),
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
            zombie: false,
        }
    }

    #[test]
    fn matching_table() {
        let by_name = tracker(" process nginx");
        assert!(by_name.matches(&p("nginx", &["nginx: master"])));
        assert!(!by_name.matches(&p("nginx-x", &[])));
        assert!(!by_name.matches(&ProcInfo {
            zombie: true,
            ..p("nginx", &[])
        }));
        let long = tracker(" process averyveryverylongname");
        assert!(long.matches(&p("averyveryverylo", &[])));

        let exact = tracker(" process /usr/sbin/x -a b");
        assert!(exact.matches(&p("x", &["/usr/sbin/x", "-a", "b"])));
        assert!(!exact.matches(&p("x", &["/usr/sbin/x", "-a", "b", "c"])));
        assert!(!exact.matches(&p("x", &["/usr/sbin/x", "-a"])));

        let partial = tracker(" process /usr/sbin/x -a\n param_match partial");
        assert!(partial.matches(&p("x", &["/usr/sbin/x", "-a", "b"])));
        assert!(!partial.matches(&p("x", &["/usr/sbin/x", "-b"])));

        let initial = tracker(" process /usr/sbin/x -a conf\n param_match initial");
        assert!(initial.matches(&p("x", &["/usr/sbin/x", "-a", "config.yml"])));
        assert!(!initial.matches(&p("x", &["/usr/sbin/x", "-a", "other"])));

        let none = tracker(" process /usr/sbin/x\n param_match");
        assert!(none.matches(&p("x", &["/usr/sbin/x"])));
        assert!(!none.matches(&p("x", &["/usr/sbin/x", "-a"])));

        let full = tracker(" process /usr/sbin/x\n full_command");
        assert!(full.matches(&p("x", &["/usr/sbin/x", "-a"])));
        assert!(!full.matches(&p("x", &["x"])));
    }

    #[test]
    fn settings_parse() {
        let t = tracker(
            " process x\n quorum 2\n quorum_max 3\n delay 1.5\n terminate_delay 0.25\n weight -10",
        );
        assert_eq!((t.quorum, t.quorum_max), (2, 3));
        assert_eq!(t.fork_delay, Duration::from_millis(1500));
        assert_eq!(t.terminate_delay, Duration::from_millis(250));
        assert!(!t.quorum_met(1) && t.quorum_met(2) && t.quorum_met(3) && !t.quorum_met(4));
    }

    #[test]
    fn debounce_delays_changes_only() {
        let s = Duration::from_secs;
        let mut d = Debounce::default();
        assert_eq!(d.observe(s(0), false, s(2), s(5)), Some(false));
        assert_eq!(d.observe(s(1), true, s(2), s(5)), None);
        assert_eq!(d.due(), Some(s(3)));
        assert_eq!(d.observe(s(2), true, s(2), s(5)), None);
        assert_eq!(d.observe(s(3), true, s(2), s(5)), Some(true));
        // A loss that heals before terminate_delay is never reported.
        assert_eq!(d.observe(s(4), false, s(2), s(5)), None);
        assert_eq!(d.observe(s(6), true, s(2), s(5)), None);
        assert_eq!(d.due(), None);
        assert_eq!(d.observe(s(7), false, s(2), s(5)), None);
        assert_eq!(d.observe(s(12), false, s(2), s(5)), Some(false));
        // Zero delay reports at once.
        let mut z = Debounce::default();
        z.observe(s(0), true, s(0), s(0));
        assert_eq!(z.observe(s(1), false, s(0), s(0)), Some(false));
    }

    #[test]
    fn scan_sees_ourselves() {
        let me = std::process::id();
        let all = scan(Path::new("/proc"), true);
        let mine = all.iter().find(|p| p.pid == me).unwrap();
        assert!(!mine.cmdline.is_empty());
        assert!(!mine.zombie);
    }
}
