//! One VRRP instance (one VRID on one interface): its configuration, counters, and one
//! handler per input: receive checks (RFC 3768 §7.1, RFC 5798 §7.1, in REFERENCE.md order),
//! Backup and Master behaviour (RFC 5798 §6.4), timers, link, priority and shutdown.
//!
//! Pure: `handle(now, input) -> Vec<Action>`; no I/O, no clock reads, no randomness. The
//! runtime sleeps until [`Instance::next_deadline`] and sends [`Input::Tick`]. States,
//! inputs, actions and the single `change_state` live in `fsm.rs`; formulas in `timers.rs`.
//!
//! Where the RFCs and keepalived differ, the wire behaviour follows keepalived (noted at
//! each place).

use std::net::IpAddr;
use std::time::Duration;

use super::fsm::{Action, Input, Reason, State};
use super::packet::{Advert, Auth, DropReason, Received};
use super::timers::{self, Timers};
use crate::units::{Centiseconds, Mono, Priority, Version, Vrid};

/// Gratuitous ARP / unsolicited NA settings (keepalived `garp_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// `garp_master_delay`: second burst this long after becoming master (zero: none).
    pub delay: Duration,
    /// `garp_master_repeat`: packets per address in each burst.
    pub repeat: u32,
    /// `garp_master_refresh`: periodic burst while master (`None`: off).
    pub refresh: Option<Duration>,
    /// `garp_master_refresh_repeat`: packets per address in each refresh.
    pub refresh_repeat: u32,
    /// `garp_lower_prio_delay`: second burst this long after a lower-priority advert.
    pub lower_prio_delay: Option<Duration>,
    /// `garp_lower_prio_repeat`: burst when a lower-priority advert arrives (0: none).
    pub lower_prio_repeat: u32,
}

impl Default for GarpConfig {
    /// keepalived's per-instance defaults (5 s, 5, refresh off, 1); the lower-priority
    /// pair comes from global_defs in keepalived, so the config layer fills it in.
    fn default() -> Self {
        GarpConfig {
            delay: Duration::from_secs(5),
            repeat: 5,
            refresh: None,
            refresh_repeat: 1,
            lower_prio_delay: None,
            lower_prio_repeat: 0,
        }
    }
}

/// The state an instance is configured to start in (keepalived `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartState {
    /// `state BACKUP`: wait a full Master_Down_Interval.
    #[default]
    Backup,
    /// `state MASTER`: below priority 255, take over after one interval plus the minimum
    /// skew unless a master is heard first (keepalived `vrrp_init_state`; not in the RFCs).
    Master,
}

/// What the instance needs from keepalived.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// `vrrp_instance` name, for logs.
    pub name: String,
    /// `virtual_router_id`.
    pub vrid: Vrid,
    /// `version` / `vrrp_version`.
    pub version: Version,
    /// Base `priority` (255 = address owner).
    pub priority: Priority,
    /// `advert_int` (v2: whole seconds).
    pub interval: Centiseconds,
    /// False with `nopreempt`.
    pub preempt: bool,
    /// `preempt_delay` (zero: none).
    pub preempt_delay: Duration,
    /// Configured `state`.
    pub start: StartState,
    /// Advertised virtual addresses, all of one family.
    pub vips: Vec<IpAddr>,
    /// v2 `auth_type PASS` password, zero padded.
    pub auth: Option<[u8; 8]>,
    /// `unicast_peer` addresses; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// GARP / NA settings.
    pub garp: GarpConfig,
    /// keepalived `timer_expired_backup` (needs nopreempt): the highest priority of the
    /// other routers; a master that wakes later than their quickest takeover steps back.
    pub timer_expired_backup: Option<Priority>,
    /// keepalived `owner_ignore_adverts`: as the address owner (priority 255), drop every
    /// advert (RFC 3768 §7.1 / RFC 5798 §7.1). Off, the owner hears the others as
    /// keepalived does by default (two owners settle by address; a lower master is
    /// answered with an advert).
    pub owner_ignore_adverts: bool,
}

/// Per-instance statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts that passed every check.
    pub rx: u64,
    /// Adverts sent (including priority 0).
    pub tx: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Priority-0 adverts sent.
    pub prio0_sent: u64,
    /// Priority-0 adverts received (and accepted).
    pub prio0_received: u64,
    /// v3 adverts accepted with an address list different from ours.
    pub address_list_mismatch: u64,
    /// Packets received while in INIT or FAULT (not checked, not acted on).
    pub ignored: u64,
    /// Timers acted on much later than their deadline (our own scheduling stalls).
    pub stalls: u64,
    /// Master_Down expiries postponed after a stall to hear the master first.
    pub stall_deferrals: u64,
    /// Adverts heard, as master, from another master of lower priority.
    pub peer_master_adverts: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Drops counted for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
    /// Drops for every reason together.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// One VRRP instance: state, timers and counters.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Configuration (base values; priority overrides arrive as `SetPriority`).
    pub(super) cfg: InstanceConfig,
    /// Our source address: the family, and the tie-break of equal priorities.
    pub(super) primary: IpAddr,
    /// Current state.
    pub(super) state: State,
    /// Priority in use: base plus trackers and overrides; 255 stays 255.
    pub(super) effective: Priority,
    /// Master_Adver_Interval: configured, or learned from the master (v3 only).
    pub(super) master_adver_interval: Centiseconds,
    /// Every running timer.
    pub(super) timers: Timers,
    /// Statistics.
    pub(super) counters: Counters,
    /// Last known link state (an instance starts in FAULT if the link is down).
    pub(super) link_up: bool,
    /// Trackers and sync group are fine (FAULT otherwise), and the reason of the last change.
    pub(super) health: (bool, Reason),
    /// Backup: a lower-priority advert was ignored since the timer was last reset.
    pub(super) preempting: bool,
    /// Backup: Master_Down_Timer was set to Skew_Time by a priority-0 advert.
    pub(super) stop_pending: bool,
    /// v3: an address-list mismatch was reported and no matching list seen since.
    pub(super) addr_mismatch_reported: bool,
    /// Backup: a Master_Down expiry was postponed after a stall; the next one is acted on
    /// unless an advert arrives first.
    pub(super) stall_grace: bool,
}

impl Instance {
    /// A new instance in INIT; `primary` is our source address on the interface.
    pub fn new(cfg: InstanceConfig, primary: IpAddr) -> Self {
        let effective = cfg.priority;
        let master_adver_interval = cfg.interval;
        Instance {
            cfg,
            primary,
            state: State::Init,
            effective,
            master_adver_interval,
            timers: Timers::default(),
            counters: Counters::default(),
            link_up: true,
            health: (true, Reason::Startup),
            preempting: false,
            stop_pending: false,
            addr_mismatch_reported: false,
            stall_grace: false,
        }
    }

    /// Live reload: take a new configuration for the same VRID, version and family,
    /// keeping state, timers and counters (keepalived keeps a reloaded instance's state).
    /// The caller follows up with `SetPriority` for the new effective priority; new
    /// intervals and VIP lists take effect with the next advert.
    pub fn reconfigure(&mut self, cfg: InstanceConfig) {
        if self.state != State::Master && self.cfg.interval != cfg.interval {
            self.master_adver_interval = cfg.interval;
        }
        self.cfg = cfg;
    }

    /// Feed one input at `now`; returns what the runtime must do, in order.
    pub fn handle(&mut self, now: Mono, input: Input) -> Vec<Action> {
        match input {
            Input::Start => self.on_start(now),
            Input::Packet(rx) => self.on_packet(now, &rx),
            Input::Dropped(reason) => {
                self.count_drop(reason);
                Vec::new()
            }
            Input::Tick => self.on_tick(now),
            Input::Link { up } => self.on_link(now, up),
            Input::SetPriority(p) => self.on_set_priority(p),
            Input::Health { ok, reason } => {
                self.health = (ok, reason);
                self.update_usable(now, reason)
            }
            Input::GroupBackup if self.state == State::Master => {
                self.change_state(now, State::Backup, Reason::SyncGroup)
            }
            Input::GroupMaster if self.state == State::Backup => {
                self.change_state(now, State::Master, Reason::SyncGroup)
            }
            Input::GroupBackup | Input::GroupMaster => Vec::new(),
            Input::Shutdown => self.on_shutdown(now),
        }
    }

    /// When the runtime must send the next `Tick` (`None`: no timer running).
    pub fn next_deadline(&self) -> Option<Mono> {
        self.timers.next()
    }

    /// Whether a `Tick` at `now` would act: a deadline is due, or (as master) the next
    /// advert falls within [`timers::advert_slack`], so that a runtime awake for another
    /// instance sends it in the same wake-up.
    pub fn due(&self, now: Mono) -> bool {
        self.next_deadline().is_some_and(|d| d <= now)
            || (self.state == State::Master
                && self
                    .timers
                    .adver
                    .due_within(now, timers::advert_slack(self.cfg.interval)))
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Priority in use (what we advertise and compare).
    pub fn effective_priority(&self) -> Priority {
        self.effective
    }

    /// Statistics.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The configuration the instance was built with.
    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// Our source address.
    pub fn primary(&self) -> IpAddr {
        self.primary
    }

    /// Master_Adver_Interval: configured, or (v3 backup) learned from the master.
    pub fn master_adver_interval(&self) -> Centiseconds {
        self.master_adver_interval
    }

    /// Skew_Time at the current priority and Master_Adver_Interval (RFC 5798 §6.1).
    pub fn skew_time(&self) -> Duration {
        timers::skew_time(self.cfg.version, self.effective, self.master_adver_interval)
    }

    /// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time (RFC 5798 §6.1).
    pub fn master_down_interval(&self) -> Duration {
        timers::master_down_interval(self.cfg.version, self.effective, self.master_adver_interval)
    }

    fn is_owner(&self) -> bool {
        self.cfg.priority == Priority::OWNER
    }

    fn count_drop(&mut self, reason: DropReason) {
        self.counters.drops[reason.index()] += 1;
    }

    /// An advert with our settings and `priority`, counted as sent.
    pub(super) fn send(&mut self, priority: Priority) -> Action {
        self.counters.tx += 1;
        if priority == Priority::STOP {
            self.counters.prio0_sent += 1;
        }
        Action::SendAdvert(self.advert(priority))
    }

    /// The advert we would send at `priority` (not counted: the runtime prebuilds the
    /// priority-0 one that a crash sends).
    pub fn advert(&self, priority: Priority) -> Advert {
        let auth = match (self.cfg.version, self.cfg.auth) {
            (Version::V2, Some(pw)) => Auth::Pass(pw),
            _ => Auth::None,
        };
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval: self.cfg.interval,
            addrs: self.cfg.vips.clone(),
            auth,
        }
    }

    /// RFC 5798 §6.4.1: leave INIT.
    fn on_start(&mut self, now: Mono) -> Vec<Action> {
        if self.state != State::Init {
            return Vec::new();
        }
        if !self.link_up {
            self.change_state(now, State::Fault, Reason::LinkDown)
        } else if !self.health.0 {
            self.change_state(now, State::Fault, self.health.1)
        } else if self.is_owner() {
            // RFC 5798 §6.4.1: the owner (priority 255) becomes master at once.
            self.change_state(now, State::Master, Reason::AddressOwner)
        } else {
            // RFC 5798 §6.4.1: everyone else starts as backup with Master_Down_Timer
            // (shortened for `state MASTER`, see fsm.rs).
            self.change_state(now, State::Backup, Reason::Startup)
        }
    }

    fn on_packet(&mut self, now: Mono, rx: &Received) -> Vec<Action> {
        if !matches!(self.state, State::Backup | State::Master) {
            self.counters.ignored += 1;
            return Vec::new();
        }
        let src = rx.meta.src;
        if let Err(reason) = self.check(rx) {
            self.count_drop(reason);
            return vec![Action::LogDrop { reason, src }];
        }
        self.counters.rx += 1;
        let mut out = Vec::new();
        if self.cfg.version == Version::V3 {
            // RFC 5798 §7.1: a differing address list is accepted; log (once) and count.
            if self.same_addrs(&rx.advert.addrs) {
                self.addr_mismatch_reported = false;
            } else {
                self.counters.address_list_mismatch += 1;
                if !self.addr_mismatch_reported {
                    self.addr_mismatch_reported = true;
                    out.push(Action::AddressListMismatch { src });
                }
            }
        }
        if rx.advert.priority == Priority::STOP {
            self.counters.prio0_received += 1;
        }
        match self.state {
            State::Backup => self.backup_rx(now, &rx.advert),
            State::Master => self.master_rx(now, rx, &mut out),
            State::Init | State::Fault => {}
        }
        out
    }

    /// Instance-level receive checks, in REFERENCE.md order (RFC 3768 §7.1, RFC 5798 §7.1).
    /// The codec already checked type, length and checksum.
    fn check(&self, rx: &Received) -> Result<(), DropReason> {
        let (meta, adv) = (&rx.meta, &rx.advert);
        // 1. RFC 5798 §7.1: TTL / hop limit must be 255. In unicast mode keepalived checks
        //    the source against the configured peers instead (`check_unicast_src`).
        if self.cfg.unicast_peers.is_empty() {
            if meta.ttl != 255 {
                return Err(DropReason::Ttl);
            }
        } else if !self.cfg.unicast_peers.contains(&meta.src) {
            return Err(DropReason::UnicastSource);
        }
        // 2. RFC 5798 §7.1: version must be the configured one.
        if adv.version != self.cfg.version {
            return Err(DropReason::Version);
        }
        // The sender must speak the instance's address family.
        if meta.src.is_ipv4() != self.primary.is_ipv4() {
            return Err(DropReason::Family);
        }
        // 5. RFC 5798 §7.1: the VRID must be ours (the runtime dispatches by VRID already).
        if adv.vrid != self.cfg.vrid {
            return Err(DropReason::Vrid);
        }
        // 6. RFC 3768 §7.1 / RFC 5798 §7.1: the address owner drops every advert; keepalived
        //    only with `owner_ignore_adverts` (its default in strict mode).
        if self.cfg.owner_ignore_adverts && self.effective == Priority::OWNER {
            return Err(DropReason::Owner);
        }
        // 7. RFC 3768 §5.3.6, §7.1: v2 auth type and password must match; v3 has none.
        if self.cfg.version == Version::V2 {
            let ok = match (self.cfg.auth, adv.auth) {
                (None, Auth::None) => true,
                (Some(ours), Auth::Pass(theirs)) => constant_time_eq(&ours, &theirs),
                _ => false,
            };
            if !ok {
                return Err(DropReason::Auth);
            }
        }
        // 8. RFC 3768 §7.1: a v2 interval must match. RFC 5798 §7.1 has no such check (the
        //    backup learns it), but an interval of 0 is meaningless and keepalived drops it.
        let interval_ok = match self.cfg.version {
            Version::V2 => adv.interval == self.cfg.interval,
            Version::V3 => adv.interval.0 != 0,
        };
        if !interval_ok {
            return Err(DropReason::Interval);
        }
        // 9. RFC 3768 §7.1: a v2 address list must match unless the sender is the owner.
        if self.cfg.version == Version::V2
            && adv.priority != Priority::OWNER
            && !self.same_addrs(&adv.addrs)
        {
            return Err(DropReason::AddressList);
        }
        Ok(())
    }

    /// The advert's addresses are ours, in any order.
    fn same_addrs(&self, addrs: &[IpAddr]) -> bool {
        if addrs.len() != self.cfg.vips.len() {
            return false;
        }
        let mut a = addrs.to_vec();
        let mut b = self.cfg.vips.clone();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }

    /// preempt_delay still holds back preemption (keepalived `preempt_time`: the clock
    /// starts at the first lower-priority advert seen in BACKUP; cleared on entering BACKUP
    /// and when a master of equal or higher priority is heard).
    fn preempt_delay_holds(&self, now: Mono) -> bool {
        !self.cfg.preempt_delay.is_zero() && self.timers.preempt_until.is_none_or(|t| t > now)
    }

    /// RFC 5798 §6.4.2: an accepted advert in BACKUP.
    fn backup_rx(&mut self, now: Mono, adv: &Advert) {
        self.stall_grace = false;
        if adv.priority == Priority::STOP {
            // "If the Priority in the ADVERTISEMENT is zero, then: Set the Master_Down_Timer
            // to Skew_Time".
            let skew = self.skew_time();
            self.timers.master_down.arm(now, skew);
            self.stop_pending = true;
            self.preempting = false;
        } else if !self.cfg.preempt
            || adv.priority >= self.effective
            || self.preempt_delay_holds(now)
        {
            // "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is greater
            // than or equal to the local Priority, then: [v3: Set Master_Adver_Interval to
            // Adver Interval contained in the ADVERTISEMENT,] Reset the Master_Down_Timer".
            if self.cfg.version == Version::V3 {
                self.master_adver_interval = adv.interval;
            }
            let down = self.master_down_interval();
            self.timers.master_down.arm(now, down);
            self.stop_pending = false;
            self.preempting = false;
            if !self.cfg.preempt_delay.is_zero() {
                if adv.priority >= self.effective {
                    self.timers.preempt_until = None;
                } else if self.timers.preempt_until.is_none() {
                    self.timers.preempt_until = Some(now.after(self.cfg.preempt_delay));
                }
            }
        } else {
            // "Otherwise: Discard the ADVERTISEMENT": the timer runs out and we preempt.
            self.preempting = true;
        }
    }

    /// RFC 5798 §6.4.3: an accepted advert in MASTER.
    fn master_rx(&mut self, now: Mono, rx: &Received, out: &mut Vec<Action>) {
        let adv = &rx.advert;
        if adv.priority == Priority::STOP {
            // "If the Priority in the ADVERTISEMENT is zero, then: Send an ADVERTISEMENT".
            // The RFC also resets the Adver_Timer; keepalived does not (its next periodic
            // advert keeps its schedule), and we follow keepalived on the wire.
            let prio = self.effective;
            out.push(self.send(prio));
            return;
        }
        // "If the Priority in the ADVERTISEMENT is greater than the local Priority, or the
        // Priority is equal and the primary IP address of the sender is greater than the
        // local primary IP address" (compared as unsigned big-endian integers).
        let theirs = (adv.priority, addr_key(rx.meta.src));
        let ours = (self.effective, addr_key(self.primary));
        match theirs.cmp(&ours) {
            std::cmp::Ordering::Greater => {
                if self.cfg.version == Version::V3 {
                    self.master_adver_interval = adv.interval;
                }
                let reason = if adv.priority > self.effective {
                    Reason::HigherPriority
                } else {
                    Reason::HigherAddress
                };
                out.extend(self.change_state(now, State::Backup, reason));
            }
            std::cmp::Ordering::Less => {
                out.push(Action::PeerMaster {
                    src: rx.meta.src,
                    priority: adv.priority,
                });
                self.counters.peer_master_adverts += 1;
                // RFC: discard. keepalived (vrrp_state_master_rx) answers with an advert so
                // the lower-priority router steps down at once, and with GARP/NA when
                // garp_lower_prio_repeat is set, again after garp_lower_prio_delay: this
                // repairs stale ARP caches after a split brain heals.
                let prio = self.effective;
                out.push(self.send(prio));
                let garp = &self.cfg.garp;
                if garp.lower_prio_repeat > 0 {
                    out.push(Action::Announce {
                        count: garp.lower_prio_repeat,
                    });
                    if let Some(d) = garp.lower_prio_delay.filter(|d| !d.is_zero()) {
                        self.timers.lower_prio_garp.arm_if_idle(now, d);
                    }
                }
            }
            // Same priority and our own address: a looped-back copy or a misconfiguration.
            std::cmp::Ordering::Equal => {}
        }
    }

    fn on_tick(&mut self, now: Mono) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup => {
                let due = self.timers.master_down.get();
                if self.timers.master_down.fire(now) {
                    let late = due.map_or(Duration::ZERO, |d| now.since(d));
                    if late >= timers::stall_threshold(self.master_adver_interval) {
                        // Our own stall: the runtime has fed every advert that was already
                        // queued, and none reset the timer. A master that is alive was
                        // probably stalled with us; give it one advert interval (plus our
                        // skew) to be heard before taking over, once. A priority-0
                        // advert needs no such chance: that master said it is leaving.
                        self.counters.stalls += 1;
                        let deferred = !self.stall_grace && !self.stop_pending;
                        out.push(Action::Stalled { late, deferred });
                        if deferred {
                            self.stall_grace = true;
                            self.counters.stall_deferrals += 1;
                            let wait = self.master_adver_interval.as_duration() + self.skew_time();
                            self.timers.master_down.arm(now, wait);
                            return out;
                        }
                    }
                    // RFC 5798 §6.4.2: "If the Master_Down_Timer fires, then: Send an
                    // ADVERTISEMENT, Broadcast a gratuitous ARP / Send an unsolicited ND
                    // NA, Transition to the Master state".
                    let reason = if self.stop_pending {
                        Reason::PriorityZero
                    } else if self.preempting {
                        Reason::Preempting
                    } else {
                        Reason::MasterDown
                    };
                    out.extend(self.change_state(now, State::Master, reason));
                }
            }
            State::Master => {
                let due = self.timers.adver.get();
                let slack = timers::advert_slack(self.cfg.interval);
                if self.timers.adver.fire_within(now, slack) {
                    let late = due.map_or(Duration::ZERO, |d| now.since(d));
                    if late >= timers::stall_threshold(self.cfg.interval) {
                        self.counters.stalls += 1;
                        out.push(Action::Stalled {
                            late,
                            deferred: false,
                        });
                        // keepalived `timer_expired_backup`: our last advert went out one
                        // interval before `due`; past the quickest takeover of the others,
                        // one of them is master by now, and with nopreempt we step back
                        // rather than take the VIPs back from it.
                        if let Some(other) = self.cfg.timer_expired_backup {
                            let since_sent = late + self.cfg.interval.as_duration();
                            let takeover = timers::quickest_takeover(
                                self.cfg.version,
                                other,
                                self.cfg.interval,
                            );
                            if since_sent >= takeover {
                                out.extend(self.change_state(
                                    now,
                                    State::Backup,
                                    Reason::TimerExpired,
                                ));
                                return out;
                            }
                        }
                    }
                    // RFC 5798 §6.4.3: "If the Adver_Timer fires, then: Send an
                    // ADVERTISEMENT, Reset the Adver_Timer to Advertisement_Interval".
                    let prio = self.effective;
                    out.push(self.send(prio));
                    self.timers.adver.arm(now, self.cfg.interval.as_duration());
                }
                let garp = &self.cfg.garp;
                if self.timers.garp_delayed.fire(now) {
                    out.push(Action::Announce { count: garp.repeat });
                }
                if self.timers.garp_refresh.fire(now) {
                    if garp.refresh_repeat > 0 {
                        out.push(Action::Announce {
                            count: garp.refresh_repeat,
                        });
                    }
                    if let Some(r) = garp.refresh.filter(|r| !r.is_zero()) {
                        self.timers.garp_refresh.arm(now, r);
                    }
                }
                if self.timers.lower_prio_garp.fire(now) && garp.lower_prio_repeat > 0 {
                    out.push(Action::Announce {
                        count: garp.lower_prio_repeat,
                    });
                }
            }
            State::Init | State::Fault => {}
        }
        out
    }

    /// Interface down: FAULT, giving up the VIPs. Up again: BACKUP (or MASTER if owner),
    /// as keepalived does (`vrrp_state_leave_fault`).
    fn on_link(&mut self, now: Mono, up: bool) -> Vec<Action> {
        self.link_up = up;
        let reason = if up { Reason::LinkUp } else { Reason::LinkDown };
        self.update_usable(now, reason)
    }

    /// FAULT while the link is down or a tracker / the sync group says so; back to
    /// BACKUP (MASTER for the owner) when both are fine.
    fn update_usable(&mut self, now: Mono, reason: Reason) -> Vec<Action> {
        let usable = self.link_up && self.health.0;
        match (usable, self.state) {
            (false, State::Backup | State::Master) => self.change_state(now, State::Fault, reason),
            (true, State::Fault) if self.is_owner() => {
                self.change_state(now, State::Master, reason)
            }
            (true, State::Fault) => self.change_state(now, State::Backup, reason),
            _ => Vec::new(),
        }
    }

    /// New effective priority. The owner stays 255 (RFC 5798 §5.2.4: only the owner has
    /// 255, and trackers never lower it). No transition here: as master the next adverts
    /// carry the new priority and a better backup preempts; as backup the next advert
    /// comparison decides (RFC 5798 §6.4.2).
    fn on_set_priority(&mut self, p: Priority) -> Vec<Action> {
        if !self.is_owner() {
            self.effective = Priority(p.get().clamp(1, 254));
        }
        Vec::new()
    }

    /// RFC 5798 §6.4.2 / §6.4.3 "If a Shutdown event is received": as master send priority
    /// 0 and remove the VIPs; as backup just stop the timers. Then INIT.
    fn on_shutdown(&mut self, now: Mono) -> Vec<Action> {
        if self.state == State::Init {
            return Vec::new();
        }
        self.change_state(now, State::Init, Reason::Shutdown)
    }
}

/// An address as an unsigned big-endian integer (RFC 5798 §6.4.3 tie-break).
fn addr_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from_be_bytes(a.octets())),
        IpAddr::V6(a) => u128::from_be_bytes(a.octets()),
    }
}

/// Compare two passwords without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8; 8], b: &[u8; 8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vrrp::packet::RxMeta;

    fn cfg(version: Version, prio: u8, interval: Centiseconds) -> InstanceConfig {
        InstanceConfig {
            name: format!("VI_{prio}"),
            vrid: Vrid::new(51).unwrap(),
            version,
            priority: Priority(prio),
            interval,
            preempt: true,
            preempt_delay: Duration::ZERO,
            start: StartState::Backup,
            vips: vec!["192.0.2.100".parse().unwrap()],
            auth: None,
            unicast_peers: Vec::new(),
            garp: GarpConfig::default(),
            timer_expired_backup: None,
            owner_ignore_adverts: false,
        }
    }

    fn at(d: Duration) -> Mono {
        Mono(d)
    }

    /// A virtual LAN of instances on one virtual clock: adverts are delivered to every
    /// other live node after `latency`. No sleeps, no real time.
    struct Lan {
        nodes: Vec<Instance>,
        alive: Vec<bool>,
        latency: Duration,
        in_flight: Vec<(Mono, usize, Received)>,
        now: Mono,
        /// (time, node) of every transition to MASTER.
        masters: Vec<(Mono, usize)>,
    }

    impl Lan {
        fn new(nodes: Vec<Instance>, latency: Duration) -> Self {
            let alive = vec![true; nodes.len()];
            Lan {
                nodes,
                alive,
                latency,
                in_flight: Vec::new(),
                now: Mono::default(),
                masters: Vec::new(),
            }
        }

        fn input(&mut self, i: usize, input: Input) {
            let actions = self.nodes[i].handle(self.now, input);
            for a in actions {
                match a {
                    Action::SendAdvert(advert) => {
                        for j in 0..self.nodes.len() {
                            if j != i && self.alive[j] {
                                let meta = RxMeta {
                                    src: self.nodes[i].primary(),
                                    dst: "224.0.0.18".parse().unwrap(),
                                    ttl: 255,
                                    ifindex: 2,
                                };
                                let rx = Received {
                                    meta,
                                    advert: advert.clone(),
                                };
                                self.in_flight.push((self.now.after(self.latency), j, rx));
                            }
                        }
                    }
                    Action::Transition {
                        to: State::Master, ..
                    } => self.masters.push((self.now, i)),
                    _ => {}
                }
            }
        }

        /// Process every event up to `until`, earliest first. Ties are resolved against
        /// the test: a timer fires before a packet due at the same instant, and the node
        /// with the lowest index (the lower priority in the tests) ticks first.
        fn run_until(&mut self, until: Mono) {
            for _ in 0..1_000_000 {
                let delivery = self
                    .in_flight
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (t, _, _))| *t)
                    .map(|(k, (t, _, _))| (*t, k));
                let tick = (0..self.nodes.len())
                    .filter(|i| self.alive[*i])
                    .filter_map(|i| self.nodes[i].next_deadline().map(|t| (t, i)))
                    .min();
                match (delivery, tick) {
                    (Some((t, k)), tk) if t <= until && tk.is_none_or(|(tt, _)| t < tt) => {
                        let (t, j, rx) = self.in_flight.swap_remove(k);
                        self.now = t;
                        if self.alive[j] {
                            self.input(j, Input::Packet(rx));
                        }
                    }
                    (_, Some((t, i))) if t <= until => {
                        self.now = t;
                        self.input(i, Input::Tick);
                    }
                    _ => {
                        self.now = until;
                        return;
                    }
                }
            }
            panic!("simulation did not settle");
        }
    }

    const CASES: [(Version, Centiseconds); 3] = [
        (Version::V2, Centiseconds(100)),
        (Version::V3, Centiseconds(1)),
        (Version::V3, Centiseconds(100)),
    ];

    fn primary(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// Latencies to try: none, and half the skew difference between 101 and 100.
    fn latencies(version: Version, interval: Centiseconds) -> [Duration; 2] {
        let diff = timers::skew_time(version, Priority(100), interval)
            - timers::skew_time(version, Priority(101), interval);
        [Duration::ZERO, diff / 2]
    }

    #[test]
    fn skew_difference_between_101_and_100_is_positive_in_microseconds() {
        for (version, interval) in CASES {
            let s100 = timers::skew_time(version, Priority(100), interval);
            let s101 = timers::skew_time(version, Priority(101), interval);
            let diff_us = s100.as_micros() - s101.as_micros();
            assert!(diff_us > 0, "{version:?} {interval}: {s100:?} vs {s101:?}");
        }
    }

    #[test]
    fn backup_101_beats_backup_100_at_simultaneous_start() {
        for (version, interval) in CASES {
            for latency in latencies(version, interval) {
                // The 100 node has the higher address and ticks first on ties: only the
                // skew difference can make 101 win.
                let b = Instance::new(cfg(version, 100, interval), primary(2));
                let a = Instance::new(cfg(version, 101, interval), primary(1));
                let mut lan = Lan::new(vec![b, a], latency);
                lan.input(0, Input::Start);
                lan.input(1, Input::Start);
                lan.run_until(at(interval.as_duration() * 20));
                let label = format!("{version:?} {interval} {latency:?}");
                assert_eq!(lan.masters.first().map(|m| m.1), Some(1), "{label}");
                assert!(
                    lan.masters.iter().all(|m| m.1 == 1),
                    "{label}: {:?}",
                    lan.masters
                );
                assert_eq!(lan.nodes[1].state(), State::Master);
                assert_eq!(lan.nodes[0].state(), State::Backup);
            }
        }
    }

    #[test]
    fn backup_101_beats_backup_100_when_master_dies_or_stops() {
        for (version, interval) in CASES {
            for latency in latencies(version, interval) {
                for clean_stop in [false, true] {
                    let m = Instance::new(cfg(version, 200, interval), primary(3));
                    let b = Instance::new(cfg(version, 100, interval), primary(2));
                    let a = Instance::new(cfg(version, 101, interval), primary(1));
                    let mut lan = Lan::new(vec![m, b, a], latency);
                    for i in 0..3 {
                        lan.input(i, Input::Start);
                    }
                    let i = interval.as_duration();
                    lan.run_until(at(i * 10));
                    assert_eq!(lan.masters, vec![(lan.masters[0].0, 0)]);
                    // Stop the master between two of its adverts.
                    lan.run_until(at(i * 10 + i / 3));
                    let stop = lan.now;
                    if clean_stop {
                        lan.input(0, Input::Shutdown);
                    }
                    lan.alive[0] = false;
                    lan.run_until(at(i * 30));
                    let label = format!("{version:?} {interval} {latency:?} clean={clean_stop}");
                    assert_eq!(lan.masters.len(), 2, "{label}: {:?}", lan.masters);
                    let (t, who) = lan.masters[1];
                    assert_eq!(who, 2, "{label}");
                    assert_eq!(lan.nodes[1].state(), State::Backup, "{label}");
                    let took = t.since(stop);
                    let skew101 = timers::skew_time(version, Priority(101), interval);
                    if clean_stop {
                        // Promise 3: a clean stop hands over within about the skew time.
                        assert_eq!(took, latency + skew101, "{label}");
                    } else {
                        assert!(
                            took <= timers::master_down_interval(version, Priority(101), interval)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn address_key_is_numeric_not_textual() {
        assert!(addr_key(primary(10)) > addr_key(primary(9)));
        let lo: IpAddr = "2001:db8::9".parse().unwrap();
        let hi: IpAddr = "2001:db8::10".parse().unwrap();
        assert!(addr_key(hi) > addr_key(lo));
    }

    #[test]
    fn constant_time_eq_compares_all_bytes() {
        assert!(constant_time_eq(b"secret\0\0", b"secret\0\0"));
        assert!(!constant_time_eq(b"secret\0\0", b"secret\0\x01"));
        assert!(!constant_time_eq(b"Secret\0\0", b"secret\0\0"));
    }

    #[test]
    fn names_match_keepalived_and_are_lowercase_phrases() {
        assert_eq!(State::Master.to_string(), "MASTER");
        assert_eq!(State::Backup.to_string(), "BACKUP");
        assert_eq!(State::Fault.to_string(), "FAULT");
        assert_eq!(State::Init.to_string(), "INIT");
        assert_eq!(Reason::MasterDown.to_string(), "master down timer expired");
        assert_eq!(Reason::PriorityZero.to_string(), "priority 0 received");
    }

    #[test]
    fn codec_drops_are_counted_without_state_change() {
        let mut inst = Instance::new(cfg(Version::V2, 100, Centiseconds(100)), primary(1));
        inst.handle(Mono::default(), Input::Start);
        let before = inst.next_deadline();
        for r in DropReason::ALL {
            assert!(inst.handle(Mono::default(), Input::Dropped(r)).is_empty());
        }
        assert_eq!(inst.state(), State::Backup);
        assert_eq!(inst.next_deadline(), before);
        assert!(inst.counters().drops.iter().all(|d| *d == 1));
        assert_eq!(
            inst.counters().total_dropped(),
            DropReason::ALL.len() as u64
        );
    }

    #[test]
    fn from_decode_passes_packets_through() {
        let rx = Received {
            meta: RxMeta {
                src: primary(2),
                dst: "224.0.0.18".parse().unwrap(),
                ttl: 255,
                ifindex: 2,
            },
            advert: Advert {
                version: Version::V2,
                vrid: Vrid::new(51).unwrap(),
                priority: Priority(100),
                interval: Centiseconds(100),
                addrs: vec![],
                auth: Auth::None,
            },
        };
        assert_eq!(Input::from_decode(Ok(rx.clone())), Input::Packet(rx));
    }

    #[test]
    fn owner_ignore_adverts_keeps_an_owner_deaf() {
        for (version, interval) in CASES {
            for ignore in [false, true] {
                // Two address owners (a misconfiguration keepalived allows): without the
                // option the lower address steps back; with it both stay MASTER and count
                // every advert of the other as an owner drop.
                let mut low = cfg(version, 255, interval);
                low.owner_ignore_adverts = ignore;
                let mut high = cfg(version, 255, interval);
                high.owner_ignore_adverts = ignore;
                let a = Instance::new(low, primary(1));
                let b = Instance::new(high, primary(2));
                let mut lan = Lan::new(vec![a, b], Duration::from_millis(1));
                lan.input(0, Input::Start);
                lan.input(1, Input::Start);
                lan.run_until(at(interval.as_duration() * 10));
                let label = format!("{version:?} {interval} ignore={ignore}");
                assert_eq!(lan.nodes[1].state(), State::Master, "{label}");
                let owner_drops = lan.nodes[0].counters.dropped(DropReason::Owner);
                if ignore {
                    assert_eq!(lan.nodes[0].state(), State::Master, "{label}");
                    assert!(owner_drops >= 5, "{label}: {owner_drops}");
                } else {
                    assert_eq!(lan.nodes[0].state(), State::Backup, "{label}");
                    assert_eq!(owner_drops, 0, "{label}");
                }
            }
        }
    }

    #[test]
    fn owner_cannot_be_lowered_and_others_are_clamped() {
        let mut owner = Instance::new(cfg(Version::V3, 255, Centiseconds(100)), primary(1));
        owner.handle(Mono::default(), Input::SetPriority(Priority(10)));
        assert_eq!(owner.effective_priority(), Priority::OWNER);
        let mut other = Instance::new(cfg(Version::V3, 100, Centiseconds(100)), primary(1));
        other.handle(Mono::default(), Input::SetPriority(Priority(255)));
        assert_eq!(other.effective_priority(), Priority(254));
        other.handle(Mono::default(), Input::SetPriority(Priority(0)));
        assert_eq!(other.effective_priority(), Priority(1));
    }

    fn transitions(actions: &[Action]) -> Vec<(State, Reason)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Transition { to, reason, .. } => Some((*to, *reason)),
                _ => None,
            })
            .collect()
    }

    fn master(prio: u8) -> Instance {
        let mut i = Instance::new(
            cfg(Version::V3, prio, Centiseconds(100)),
            "192.0.2.1".parse().unwrap(),
        );
        i.handle(at(Duration::ZERO), Input::Start);
        let due = i.next_deadline().unwrap();
        i.handle(due, Input::Tick);
        assert_eq!(i.state(), State::Master);
        i
    }

    #[test]
    fn an_advert_due_within_the_slack_goes_out_with_the_wake_up_and_locks_phase() {
        let mut i = master(100);
        let d = i.next_deadline().unwrap();
        let slack = timers::advert_slack(Centiseconds(100));
        assert_eq!(slack, Duration::from_millis(2));
        // Not yet within the slack: nothing to do.
        let early = Mono(d.0 - Duration::from_millis(3));
        assert!(!i.due(early));
        assert!(i.handle(early, Input::Tick).is_empty());
        // Within it: the advert goes now and the next one is due an interval from now.
        let now = Mono(d.0 - Duration::from_millis(1));
        assert!(i.due(now));
        let a = i.handle(now, Input::Tick);
        assert!(a.iter().any(|a| matches!(a, Action::SendAdvert(_))));
        assert!(!a.iter().any(|a| matches!(a, Action::Stalled { .. })));
        assert_eq!(i.next_deadline(), Some(now.after(Duration::from_secs(1))));
    }

    #[test]
    fn master_down_is_never_acted_on_early() {
        let mut i = Instance::new(
            cfg(Version::V3, 90, Centiseconds(1)),
            "192.0.2.1".parse().unwrap(),
        );
        i.handle(at(Duration::ZERO), Input::Start);
        assert_eq!(i.state(), State::Backup);
        let d = i.next_deadline().unwrap();
        let before = Mono(d.0 - Duration::from_micros(100));
        assert!(!i.due(before));
        assert!(transitions(&i.handle(before, Input::Tick)).is_empty());
        assert!(i.due(d));
        assert_eq!(
            transitions(&i.handle(d, Input::Tick)),
            vec![(State::Master, Reason::MasterDown)]
        );
    }

    #[test]
    fn tracker_fault_and_recovery_need_the_link_too() {
        let mut i = master(100);
        let t = at(Duration::from_secs(11));
        let a = i.handle(
            t,
            Input::Health {
                ok: false,
                reason: Reason::TrackerFault,
            },
        );
        assert_eq!(transitions(&a), vec![(State::Fault, Reason::TrackerFault)]);
        assert!(a.contains(&Action::RemoveVips));
        // Link down while the tracker is failed: still FAULT; the tracker recovering
        // alone does not leave FAULT while the link is down.
        assert!(i.handle(t, Input::Link { up: false }).is_empty());
        assert!(i
            .handle(
                t,
                Input::Health {
                    ok: true,
                    reason: Reason::TrackerRecovered
                }
            )
            .is_empty());
        assert_eq!(i.state(), State::Fault);
        let a = i.handle(t, Input::Link { up: true });
        assert_eq!(transitions(&a), vec![(State::Backup, Reason::LinkUp)]);
    }

    #[test]
    fn unhealthy_at_start_is_fault() {
        let mut i = Instance::new(
            cfg(Version::V3, 100, Centiseconds(100)),
            "192.0.2.1".parse().unwrap(),
        );
        i.handle(
            at(Duration::ZERO),
            Input::Health {
                ok: false,
                reason: Reason::TrackerFault,
            },
        );
        let a = i.handle(at(Duration::ZERO), Input::Start);
        assert_eq!(transitions(&a), vec![(State::Fault, Reason::TrackerFault)]);
    }

    #[test]
    fn sync_group_inputs_move_only_the_right_states() {
        let mut i = master(100);
        let t = at(Duration::from_secs(11));
        assert!(
            i.handle(t, Input::GroupMaster).is_empty(),
            "a master ignores GroupMaster"
        );
        let a = i.handle(t, Input::GroupBackup);
        assert_eq!(transitions(&a), vec![(State::Backup, Reason::SyncGroup)]);
        assert!(a.contains(&Action::RemoveVips));
        assert!(
            i.handle(t, Input::GroupBackup).is_empty(),
            "a backup ignores GroupBackup"
        );
        let a = i.handle(t, Input::GroupMaster);
        assert_eq!(transitions(&a), vec![(State::Master, Reason::SyncGroup)]);
        assert!(a.contains(&Action::AddVips));
    }
}
