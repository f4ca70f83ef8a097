//! `track_interface`: the engine already follows links; this turns a link state into
//! the same [`TrackerEvent`] the other trackers send, so one code path applies it.
//! (keepalived: weight 0, the default, means FAULT while the interface is down.)

use super::{Status, TrackerEvent, TrackerKind};

/// The event for an interface that is now up or down.
pub fn interface_event(name: &str, up: bool) -> TrackerEvent {
    TrackerEvent {
        kind: TrackerKind::Interface,
        name: name.to_owned(),
        status: if up { Status::Up } else { Status::Down },
        detail: if up {
            "link up".into()
        } else {
            "link down".into()
        },
        run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::priority::{effective_priority, PriorityOutcome, TrackerState};
    use crate::units::Priority;

    #[test]
    fn link_events_drive_fault_and_weight() {
        let mut ts = vec![
            TrackerState {
                kind: TrackerKind::Interface,
                name: "eth1".into(),
                weight: 0,
                reverse: false,
                status: Status::Unknown,
            },
            TrackerState {
                kind: TrackerKind::Interface,
                name: "eth2".into(),
                weight: -30,
                reverse: false,
                status: Status::Unknown,
            },
        ];
        assert_eq!(
            effective_priority(Priority(100), &ts),
            PriorityOutcome::Init
        );
        for t in &mut ts {
            t.apply(&interface_event("eth1", true));
            t.apply(&interface_event("eth2", false));
        }
        assert_eq!(
            effective_priority(Priority(100), &ts),
            PriorityOutcome::Priority(Priority(70))
        );
        ts[0].apply(&interface_event("eth1", false));
        assert_eq!(
            effective_priority(Priority(100), &ts),
            PriorityOutcome::Fault
        );
    }
}
