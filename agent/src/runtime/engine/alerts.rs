//! Local alerts an instance raises from what it hears (VRID collision, another master)
//! and its own stalls. Alerts go to the manager as ALERT_RAISED / ALERT_CLEARED events and
//! into the instance's state; they expire when what caused them is no longer heard.
//!
//! `peer-master` is the agent's own evidence of a split brain: as MASTER it keeps hearing
//! another master's adverts (of lower priority, which should have stepped down on hearing
//! ours). During an ordinary preemption that lasts one advert round trip, so the alert is
//! raised only when the other master persists for longer than Master_Down_Interval.

use super::*;

/// Alert kind of a VRID collision (another address list for our VRID).
pub(super) const VRID_COLLISION: &str = "vrid-collision";
/// Alert kind of another master heard while we are master.
pub(super) const PEER_MASTER: &str = "peer-master";

/// Another master heard by an instance in MASTER.
#[derive(Debug, Clone)]
pub(super) struct PeerSeen {
    /// Its address.
    pub src: IpAddr,
    /// First advert of this run (without a gap longer than Master_Down_Interval).
    pub first: Mono,
    /// Last advert.
    pub last: Mono,
}

impl Engine {
    /// Another router advertises our VRID with a different address list.
    pub(super) fn raise_collision(&mut self, i: usize, src: IpAddr) {
        let vrid = self.slots[i].plan.cfg.vrid;
        let text =
            format!("{VRID_COLLISION}: {src} advertises VRID {vrid} with another address list");
        self.raise_local(i, VRID_COLLISION, text);
    }

    /// As master, an advert from another master of lower priority (see the module docs).
    pub(super) fn peer_master(&mut self, i: usize, src: IpAddr, priority: Priority) {
        let now = self.now();
        let slot = &mut self.slots[i];
        let mdi = slot.inst.master_down_interval();
        let seen = match slot.peer_master.take() {
            Some(p) if p.src == src && now.since(p.last) <= mdi => PeerSeen { last: now, ..p },
            _ => PeerSeen {
                src,
                first: now,
                last: now,
            },
        };
        let persisted = now.since(seen.first) > mdi;
        slot.peer_master = Some(seen);
        if persisted {
            let vrid = slot.plan.cfg.vrid;
            let text = format!(
                "{PEER_MASTER}: {src} advertises VRID {vrid} as MASTER at priority {priority}"
            );
            self.raise_local(i, PEER_MASTER, text);
        }
    }

    /// The instance left MASTER: another master is no longer a split brain of ours.
    pub(super) fn left_master(&mut self, i: usize) {
        self.slots[i].peer_master = None;
        self.clear_local(i, |text| text.starts_with(PEER_MASTER));
    }

    /// A timer of instance `i` was acted on `late` after its deadline: our own stall.
    /// Counted by the instance; logged here (rate-limited per instance).
    pub(super) fn stalled(&mut self, i: usize, late: Duration, deferred: bool) {
        let now = self.now();
        let name = self.slots[i].plan.cfg.name.clone();
        if let Verdict::Log { suppressed } = self.stall_log.check(i, now) {
            let late_ms = late.as_secs_f64() * 1000.0;
            if deferred {
                warn!(instance = %name, late_ms, suppressed,
                      "({name}) woke {late_ms:.1} ms after the master down deadline (a stall of this process): listening one more interval before taking over");
            } else {
                warn!(instance = %name, late_ms, suppressed,
                      "({name}) timer acted on {late_ms:.1} ms late (a stall of this process)");
            }
        }
    }

    /// Raise (or refresh) a local alert of instance `i`.
    fn raise_local(&mut self, i: usize, kind: &str, text: String) {
        let now = self.now();
        let name = self.slots[i].plan.cfg.name.clone();
        let slot = &mut self.slots[i];
        if let Some(a) = slot.alerts.iter_mut().find(|a| a.0 == text) {
            a.1 = now;
            return;
        }
        // One alert per kind: a new text (another priority, say) replaces the old one.
        self.clear_local(i, |t| t.starts_with(kind) && *t != text);
        self.slots[i].alerts.push((text.clone(), now));
        warn!(instance = %name, "({name}) {text}");
        self.event(kind::ALERT_RAISED, &name, "", "", kind, &text);
    }

    /// Clear the local alerts of instance `i` whose text matches.
    fn clear_local(&mut self, i: usize, matches: impl Fn(&str) -> bool) {
        let name = self.slots[i].plan.cfg.name.clone();
        let mut cleared = Vec::new();
        self.slots[i].alerts.retain(|(text, _)| {
            let hit = matches(text);
            if hit {
                cleared.push(text.clone());
            }
            !hit
        });
        for text in cleared {
            self.alert_cleared(&name, &text);
        }
    }

    fn alert_cleared(&self, name: &str, text: &str) {
        let kind = text.split(':').next().unwrap_or_default();
        info!(instance = %name, "({name}) cleared: {text}");
        self.event(kind::ALERT_CLEARED, name, "", "", kind, text);
    }

    /// Clear alerts not seen for a while: a collision after max(10 s, 3 x
    /// Master_Down_Interval), another master after Master_Down_Interval without its
    /// adverts (it stepped down or is gone: the evidence must not outlive the split).
    pub(super) fn expire_alerts(&mut self) {
        let now = self.now();
        let mut cleared = Vec::new();
        for s in &mut self.slots {
            let mdi = s.inst.master_down_interval();
            let keep_collision = Duration::from_secs(10).max(mdi * 3);
            s.alerts.retain(|(text, seen)| {
                let keep = if text.starts_with(PEER_MASTER) {
                    mdi
                } else {
                    keep_collision
                };
                let live = now.since(*seen) < keep;
                if !live {
                    cleared.push((s.plan.cfg.name.clone(), text.clone()));
                }
                live
            });
        }
        for (name, text) in cleared {
            self.alert_cleared(&name, &text);
        }
    }
}
