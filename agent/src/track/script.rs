//! A task per `vrrp_script`: run it every `interval` (the first run at once), each run
//! bounded by `timeout` (a timeout counts as a failure, as in keepalived), feed the
//! rise/fall counter and send a [`TrackerEvent`] on each transition.
//!
//! A script that cannot run (insecure under `enable_script_security`, missing, not
//! executable, unknown user) is reported once as [`Status::Disabled`]: keepalived
//! disables such a script and the instances ignore it. The checks are repeated before
//! every run, so a fixed path brings the script back.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::hysteresis::Hysteresis;
use super::{Status, TrackerEvent, TrackerKind};
use crate::config::model::VrrpScript;
use crate::script::{self, Exit, ScriptDefaults, ScriptError, ScriptResult, ScriptSpec};

/// A `vrrp_script`, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptTracker {
    /// Name referenced by `track_script`.
    pub name: String,
    /// What to run, as whom.
    pub spec: ScriptSpec,
    /// Time between run starts.
    pub interval: Duration,
    /// Kill a run after this long.
    pub timeout: Duration,
    /// Successes to become good.
    pub rise: u32,
    /// Failures to become bad.
    pub fall: u32,
    /// Start failed.
    pub init_fail: bool,
}

impl ScriptTracker {
    /// From the config block and the global script settings.
    pub fn from_config(s: &VrrpScript, d: &ScriptDefaults) -> Result<ScriptTracker, ScriptError> {
        let cmd = s.script.as_deref().unwrap_or_default();
        Ok(ScriptTracker {
            name: s.name.clone(),
            spec: ScriptSpec::from_command(cmd, s.user.as_ref(), d)?,
            interval: s.interval.max(Duration::from_millis(10)),
            timeout: if s.timeout.is_zero() {
                s.interval
            } else {
                s.timeout
            },
            rise: s.rise,
            fall: s.fall,
            init_fail: s.init_fail,
        })
    }
}

fn describe(r: &ScriptResult) -> String {
    match &r.exit {
        _ if r.timed_out => format!("timed out after {:?}", r.duration),
        Exit::Code(0) => "succeeded".into(),
        Exit::Code(c) => format!("exited with status {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
        Exit::NotRun(e) => e.to_string(),
    }
}

/// Start the tracker task; it ends when `tx`'s receiver is gone (or when aborted).
pub fn spawn_script_tracker(t: ScriptTracker, tx: UnboundedSender<TrackerEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut h = Hysteresis::new(t.rise, t.fall, t.init_fail);
        let mut disabled = false;
        let mut tick = tokio::time::interval(t.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let r = script::run(&t.spec, t.timeout).await;
            let status = match &r.exit {
                Exit::NotRun(_) => {
                    if disabled {
                        continue;
                    }
                    disabled = true;
                    tracing::error!(script = %t.name, error = %describe(&r), "vrrp_script disabled");
                    Some(Status::Disabled)
                }
                _ => {
                    if let Some(w) = &r.insecure {
                        tracing::warn!(script = %t.name, warning = %w, "unsafe script path");
                    }
                    let was_disabled = std::mem::replace(&mut disabled, false);
                    match h.record(r.success()) {
                        Some(up) => Some(if up { Status::Up } else { Status::Down }),
                        // Back from disabled: report the current state again.
                        None if was_disabled => {
                            h.state()
                                .map(|up| if up { Status::Up } else { Status::Down })
                        }
                        None => None,
                    }
                }
            };
            if let Some(status) = status {
                tracing::info!(script = %t.name, %status, reason = %describe(&r), "vrrp_script state");
                let ev = TrackerEvent {
                    kind: TrackerKind::Script,
                    name: t.name.clone(),
                    status,
                    detail: describe(&r),
                    run: Some(Box::new(r)),
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    })
}
