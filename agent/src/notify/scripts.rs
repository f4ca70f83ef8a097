//! Which scripts a notification runs, built from an instance's or group's `notify*`.
//!
//! keepalived order: the state's own script (`notify_master`, `notify_backup`,
//! `notify_fault`, `notify_stop`; `notify_master_rx_lower_pri` for that event), then the
//! generic `notify` script with the four arguments appended. A script that cannot be
//! set up (bad quoting, unknown user) is dropped with an error, as keepalived disables it.

use super::event::{NotifyEvent, NotifyState};
use crate::config::model::{Notify, NotifyScript};
use crate::script::{ScriptDefaults, ScriptError, ScriptSpec};

/// Which configured script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptRole {
    /// `notify_master`.
    Master,
    /// `notify_backup`.
    Backup,
    /// `notify_fault`.
    Fault,
    /// `notify_stop`.
    Stop,
    /// `notify_master_rx_lower_pri`.
    MasterRxLowerPri,
    /// `notify` (generic, with arguments appended).
    Generic,
}

/// The resolved `notify*` scripts of one instance or group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyScripts {
    /// `notify_master`.
    pub master: Option<ScriptSpec>,
    /// `notify_backup`.
    pub backup: Option<ScriptSpec>,
    /// `notify_fault`.
    pub fault: Option<ScriptSpec>,
    /// `notify_stop`.
    pub stop: Option<ScriptSpec>,
    /// `notify`.
    pub generic: Option<ScriptSpec>,
    /// `notify_master_rx_lower_pri`.
    pub master_rx_lower_pri: Option<ScriptSpec>,
}

impl NotifyScripts {
    /// From the config; scripts that fail to set up are left out and returned as errors.
    pub fn from_config(n: &Notify, d: &ScriptDefaults) -> (NotifyScripts, Vec<ScriptError>) {
        let mut errors = Vec::new();
        let mut one = |s: &Option<NotifyScript>| {
            s.as_ref().and_then(|s| {
                match ScriptSpec::from_command(&s.command, s.user.as_ref(), d) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            })
        };
        let scripts = NotifyScripts {
            master: one(&n.master),
            backup: one(&n.backup),
            fault: one(&n.fault),
            stop: one(&n.stop),
            generic: one(&n.any),
            master_rx_lower_pri: one(&n.master_rx_lower_pri),
        };
        (scripts, errors)
    }

    /// Whether any script is configured.
    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.generic.is_none()
            && self.master_rx_lower_pri.is_none()
    }

    /// The runs for one event, in order.
    pub fn for_event(&self, ev: &NotifyEvent) -> Vec<(ScriptRole, ScriptSpec)> {
        let own = match ev.state {
            NotifyState::Master => self.master.as_ref().map(|s| (ScriptRole::Master, s)),
            NotifyState::Backup => self.backup.as_ref().map(|s| (ScriptRole::Backup, s)),
            NotifyState::Fault => self.fault.as_ref().map(|s| (ScriptRole::Fault, s)),
            NotifyState::Stop => self.stop.as_ref().map(|s| (ScriptRole::Stop, s)),
            NotifyState::MasterRxLowerPri => self
                .master_rx_lower_pri
                .as_ref()
                .map(|s| (ScriptRole::MasterRxLowerPri, s)),
            _ => None,
        };
        let mut out: Vec<(ScriptRole, ScriptSpec)> =
            own.map(|(r, s)| (r, s.clone())).into_iter().collect();
        if ev.state.runs_generic() {
            if let Some(g) = &self.generic {
                out.push((ScriptRole::Generic, g.with_args(ev.script_args())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::RunAs;
    use crate::units::Priority;

    fn spec(cmd: &str) -> ScriptSpec {
        ScriptSpec {
            argv: vec![cmd.into()],
            run_as: RunAs::current(),
            security: false,
        }
    }

    #[test]
    fn specific_then_generic_with_arguments() {
        let s = NotifyScripts {
            master: Some(spec("/m")),
            generic: Some(ScriptSpec {
                argv: vec!["/g".into(), "x".into()],
                ..spec("/g")
            }),
            ..NotifyScripts::default()
        };
        let runs = s.for_event(&NotifyEvent::instance(
            "VI_1",
            NotifyState::Master,
            Priority(100),
        ));
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0, ScriptRole::Master);
        assert_eq!(
            runs[1].1.argv,
            vec!["/g", "x", "INSTANCE", "VI_1", "MASTER", "100"]
        );
        let runs = s.for_event(&NotifyEvent::instance(
            "VI_1",
            NotifyState::Backup,
            Priority(100),
        ));
        assert_eq!(
            runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![ScriptRole::Generic]
        );
        assert!(s
            .for_event(&NotifyEvent::instance(
                "VI_1",
                NotifyState::MasterPriority,
                Priority(9)
            ))
            .is_empty());
    }
}
