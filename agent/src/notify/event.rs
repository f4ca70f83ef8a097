//! What a notification says: keepalived's notify script arguments and FIFO line.
//!
//! The generic `notify` script gets four arguments appended: `INSTANCE`|`GROUP`, the
//! name, the state (`MASTER`, `BACKUP`, `FAULT`, `STOP`, `DELETED`) and the priority
//! (always 0 for a group). The FIFO line is the same four fields with the name in double
//! quotes, e.g. `INSTANCE "VI_1" MASTER 100` or `GROUP "G1" BACKUP 0`, newline
//! terminated; FIFO-only events are `MASTER_RX_LOWER_PRI`, `MASTER_PRIORITY` and
//! `BACKUP_PRIORITY` (keepalived `vrrp_notify.c`).

use std::fmt;

use crate::units::Priority;

/// An instance or a sync group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    /// A `vrrp_instance`.
    Instance,
    /// A `vrrp_sync_group`.
    Group,
}

impl NotifyKind {
    /// keepalived's word.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Instance => "INSTANCE",
            NotifyKind::Group => "GROUP",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyState {
    /// Became master.
    Master,
    /// Became backup.
    Backup,
    /// Entered fault.
    Fault,
    /// Stopping.
    Stop,
    /// Removed by a reload.
    Deleted,
    /// A master received a lower-priority advert (`notify_master_rx_lower_pri`).
    MasterRxLowerPri,
    /// Priority changed while master (FIFO only).
    MasterPriority,
    /// Priority changed while backup (FIFO only).
    BackupPriority,
}

impl NotifyState {
    /// keepalived's word.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
            NotifyState::Deleted => "DELETED",
            NotifyState::MasterRxLowerPri => "MASTER_RX_LOWER_PRI",
            NotifyState::MasterPriority => "MASTER_PRIORITY",
            NotifyState::BackupPriority => "BACKUP_PRIORITY",
        }
    }

    /// Whether the generic `notify` script runs for it (state changes only).
    pub fn runs_generic(self) -> bool {
        matches!(
            self,
            NotifyState::Master
                | NotifyState::Backup
                | NotifyState::Fault
                | NotifyState::Stop
                | NotifyState::Deleted
        )
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    /// Instance or group.
    pub kind: NotifyKind,
    /// Its name.
    pub name: String,
    /// New state or event.
    pub state: NotifyState,
    /// Effective priority (shown as 0 for groups).
    pub priority: Priority,
}

impl NotifyEvent {
    /// An instance event.
    pub fn instance(name: &str, state: NotifyState, priority: Priority) -> NotifyEvent {
        NotifyEvent {
            kind: NotifyKind::Instance,
            name: name.to_owned(),
            state,
            priority,
        }
    }

    /// A sync group event (priority 0, as keepalived sends).
    pub fn group(name: &str, state: NotifyState) -> NotifyEvent {
        NotifyEvent {
            kind: NotifyKind::Group,
            name: name.to_owned(),
            state,
            priority: Priority(0),
        }
    }

    fn shown_priority(&self) -> u8 {
        match self.kind {
            NotifyKind::Instance => self.priority.get(),
            NotifyKind::Group => 0,
        }
    }

    /// The four arguments appended to the generic `notify` script.
    pub fn script_args(&self) -> [String; 4] {
        [
            self.kind.as_str().to_owned(),
            self.name.clone(),
            self.state.as_str().to_owned(),
            self.shown_priority().to_string(),
        ]
    }

    /// The FIFO line, newline included.
    pub fn fifo_line(&self) -> String {
        format!(
            "{} \"{}\" {} {}\n",
            self.kind.as_str(),
            self.name,
            self.state.as_str(),
            self.shown_priority()
        )
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fifo_line().trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_formats() {
        let e = NotifyEvent::instance("VI_1", NotifyState::Master, Priority(100));
        assert_eq!(e.fifo_line(), "INSTANCE \"VI_1\" MASTER 100\n");
        assert_eq!(
            e.script_args(),
            ["INSTANCE", "VI_1", "MASTER", "100"].map(String::from)
        );
        let g = NotifyEvent::group("G1", NotifyState::Backup);
        assert_eq!(g.fifo_line(), "GROUP \"G1\" BACKUP 0\n");
        let mut g2 = g.clone();
        g2.priority = Priority(50);
        assert_eq!(g2.script_args()[3], "0");
        let r = NotifyEvent::instance("VI_2", NotifyState::MasterRxLowerPri, Priority(90));
        assert_eq!(r.fifo_line(), "INSTANCE \"VI_2\" MASTER_RX_LOWER_PRI 90\n");
        assert!(!r.state.runs_generic());
    }
}
