//! The VRRP state machine vocabulary: states, inputs, actions, transition reasons, and the
//! single place that changes state ([`Instance::change_state`]).
//!
//! `change_state` logs nothing itself: it returns the [`Action::Transition`] (which the
//! runtime logs as keepalived does, "(VI_1) Entering MASTER STATE", and forwards as an
//! event) followed by the exit actions of the old state and the entry actions of the new
//! one. The per-input handlers live in `instance.rs`.

use std::fmt;
use std::net::IpAddr;

use super::instance::{Instance, StartState};
use super::packet::{Advert, DecodeError, DropReason, Received};
use super::timers;
use crate::units::{Mono, Priority};

/// Protocol state of one instance (RFC 5798 §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Init,
    /// Listening to a master; takes over when Master_Down_Timer fires.
    Backup,
    /// Forwarding for the VIPs and advertising.
    Master,
    /// The interface is down (keepalived's FAULT; not an RFC state).
    Fault,
}

impl State {
    /// keepalived's spelling: `INIT`, `BACKUP`, `MASTER`, `FAULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `Input::Start` of a non-owner.
    Startup,
    /// `Input::Start` (or link up) of the address owner, priority 255.
    AddressOwner,
    /// Master_Down_Timer fired with no master heard.
    MasterDown,
    /// Master_Down_Timer fired while we were ignoring a lower-priority master (preemption).
    Preempting,
    /// Master_Down_Timer (set to Skew_Time) fired after the master sent priority 0.
    PriorityZero,
    /// As master: an advert with a higher priority arrived.
    HigherPriority,
    /// As master: an equal-priority advert from a higher primary address arrived.
    HigherAddress,
    /// The interface went down.
    LinkDown,
    /// The interface came back.
    LinkUp,
    /// `Input::Shutdown`.
    Shutdown,
    /// A tracker (script, file, process, interface weight 0) failed.
    TrackerFault,
    /// Every failed tracker recovered.
    TrackerRecovered,
    /// Another member of the instance's `vrrp_sync_group` moved (keepalived moves the
    /// group together).
    SyncGroup,
    /// Effective priority changed (trackers or an override); reserved for the runtime's
    /// events: a priority change never forces a transition by itself (the next advert decides).
    PriorityChanged,
    /// As master with `timer_expired_backup`: we woke so late that another router has
    /// probably taken over, so we step back instead of preempting it (keepalived 2.2.8).
    TimerExpired,
}

impl Reason {
    /// Short lowercase phrase for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::AddressOwner => "address owner",
            Reason::MasterDown => "master down timer expired",
            Reason::Preempting => "preempting lower priority master",
            Reason::PriorityZero => "priority 0 received",
            Reason::HigherPriority => "higher priority advert",
            Reason::HigherAddress => "equal priority advert from higher address",
            Reason::LinkDown => "link down",
            Reason::LinkUp => "link up",
            Reason::Shutdown => "shutdown",
            Reason::TrackerFault => "tracker failed",
            Reason::TrackerRecovered => "tracker recovered",
            Reason::SyncGroup => "sync group",
            Reason::PriorityChanged => "priority changed",
            Reason::TimerExpired => "VRRP thread timer expired",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message into an instance. Every input is replayable: tests feed the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin: leave INIT (RFC 5798 §6.4.1).
    Start,
    /// A decoded advert for this instance's VRID; the instance runs its own checks.
    Packet(Received),
    /// A packet the codec rejected (count only; the runtime logs it with its source).
    Dropped(DropReason),
    /// The runtime's wake-up at or after [`Instance::next_deadline`].
    Tick,
    /// The interface changed carrier/admin state.
    Link {
        /// True when the link is usable.
        up: bool,
    },
    /// New effective priority from trackers or an override (caller clamps to 1..=254).
    SetPriority(Priority),
    /// Health from trackers or the sync group: not ok puts the instance in FAULT like a
    /// link down; ok again lets it leave FAULT (if the link is up too).
    Health {
        /// True when healthy.
        ok: bool,
        /// Why (TrackerFault, TrackerRecovered, SyncGroup).
        reason: Reason,
    },
    /// Sync group: another member left MASTER; as master, follow it to BACKUP.
    GroupBackup,
    /// Sync group: another member became MASTER; as backup, follow it to MASTER.
    GroupMaster,
    /// Stop: as master send priority 0 and give up the VIPs (RFC 5798 §6.4.3).
    Shutdown,
}

impl Input {
    /// The input for what the receive edge decoded.
    pub fn from_decode(r: Result<Received, DecodeError>) -> Input {
        match r {
            Ok(rx) => Input::Packet(rx),
            Err(e) => Input::Dropped(e.reason()),
        }
    }
}

/// A thing the runtime must do. Actions are executed in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send, to the multicast group or to each unicast peer.
    SendAdvert(Advert),
    /// Install every VIP.
    AddVips,
    /// Remove every VIP we installed.
    RemoveVips,
    /// A burst of gratuitous ARP (IPv4) / unsolicited NA (IPv6, R=1 S=0 O=1) for all VIPs.
    Announce {
        /// Packets per address.
        count: u32,
    },
    /// State changed; the runtime logs it and records an event.
    Transition {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// An advert was dropped by an instance check; the runtime rate-limits the log line.
    LogDrop {
        /// The drop counter that was incremented.
        reason: DropReason,
        /// Sender.
        src: IpAddr,
    },
    /// v3: an advert's address list differs from ours (RFC 5798 §7.1: accepted, logged).
    /// Emitted once until a matching list is seen again.
    AddressListMismatch {
        /// Sender.
        src: IpAddr,
    },
    /// A timer was acted on much later than its deadline: our own process was not run
    /// (a scheduling stall). The runtime counts and logs it.
    Stalled {
        /// How late the wake-up was.
        late: std::time::Duration,
        /// A backup's Master_Down expiry was postponed once to hear the master first.
        deferred: bool,
    },
    /// As master: another router advertises this VRID as master at a lower priority
    /// (each such advert; the runtime decides when that is a split brain).
    PeerMaster {
        /// Sender.
        src: IpAddr,
        /// Its advertised priority.
        priority: Priority,
    },
}

impl Instance {
    /// The one place that changes state: returns the `Transition` action, then the exit
    /// actions of the old state, then the entry actions of the new one, and sets timers.
    pub(super) fn change_state(&mut self, now: Mono, to: State, reason: Reason) -> Vec<Action> {
        let from = self.state;
        let mut out = vec![Action::Transition { from, to, reason }];

        // Exit actions.
        if from == State::Master {
            if matches!(to, State::Fault | State::Init) {
                // RFC 5798 §6.4.3 "Shutdown": send priority 0 so a backup takes over after
                // Skew_Time. keepalived also does this when leaving MASTER for FAULT
                // (vrrp_state_leave_master); on a dead link the send just fails.
                out.push(self.send(Priority::STOP));
            }
            out.push(Action::RemoveVips);
        }
        self.timers.clear();
        self.preempting = false;
        self.stop_pending = false;
        self.stall_grace = false;
        self.state = to;

        // Entry actions.
        match to {
            State::Master => {
                // keepalived (vrrp_state_master_tx) sends the advert first, so the old
                // master drops the VIPs before our GARPs go out; then VIPs, then GARP/NA
                // (RFC 5798 §6.4.2 "Transition to Master").
                let prio = self.effective;
                out.push(self.send(prio));
                out.push(Action::AddVips);
                let garp = &self.cfg.garp;
                if garp.repeat > 0 {
                    out.push(Action::Announce { count: garp.repeat });
                    if !garp.delay.is_zero() {
                        self.timers.garp_delayed.arm(now, garp.delay);
                    }
                }
                if let Some(r) = garp.refresh.filter(|r| !r.is_zero()) {
                    self.timers.garp_refresh.arm(now, r);
                }
                self.timers.adver.arm(now, self.cfg.interval.as_duration());
                self.counters.became_master += 1;
            }
            State::Backup => {
                // Entering BACKUP from INIT or FAULT restarts from the configured interval
                // (keepalived vrrp_state_leave_fault); from MASTER the caller has already
                // adopted the new master's interval (RFC 5798 §6.4.3).
                if from != State::Master {
                    self.master_adver_interval = self.cfg.interval;
                }
                let down = if from != State::Master && self.cfg.start == StartState::Master {
                    // keepalived vrrp_init_state: `state MASTER` below priority 255 waits one
                    // interval plus the minimum skew for a better master, then takes over.
                    self.cfg.interval.as_duration()
                        + timers::skew_time_min(self.cfg.version, self.cfg.interval)
                } else {
                    self.master_down_interval()
                };
                self.timers.master_down.arm(now, down);
            }
            State::Fault | State::Init => {}
        }
        out
    }
}
