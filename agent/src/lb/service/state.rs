//! The runtime's pure state: every virtual server, its real servers and their checkers;
//! keepalived's quorum rules (`update_quorum_state`) and the desired data-plane table.
//! No I/O: inputs change it (events.rs), the task executes the [`Effect`]s (run.rs).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::lb::check::RsKey;
use crate::lb::dataplane::{Destination, Forward, Service, ServiceKey};

use super::input::{Effect, LbEvent, NotifyCmd};

#[derive(Debug, Clone)]
pub(super) struct CheckerState {
    pub(super) kind: &'static str,
    pub(super) up: bool,
    pub(super) detail: String,
    pub(super) latency: Duration,
}

#[derive(Debug, Clone)]
pub(super) struct RsState {
    pub(super) addr: IpAddr,
    /// Port in the data plane (the virtual server's when the config gives none).
    pub(super) port: u16,
    /// Port checker events name it by (0 when the config gives none).
    pub(super) key_port: u16,
    pub(super) weight: u32,
    /// MISC_CHECK `misc_dynamic` weight, reported as `dynamic_weight=N`.
    pub(super) dynamic_weight: Option<u32>,
    pub(super) weight_override: Option<u32>,
    pub(super) drained: bool,
    pub(super) inhibit: bool,
    pub(super) forward: Forward,
    pub(super) checkers: Vec<CheckerState>,
    pub(super) alive: bool,
    pub(super) removed: bool,
    pub(super) from_override: bool,
    pub(super) notify_up: Option<NotifyCmd>,
    pub(super) notify_down: Option<NotifyCmd>,
}

impl RsState {
    pub(super) fn effective_weight(&self) -> u32 {
        if self.drained {
            0
        } else {
            self.weight_override
                .or(self.dynamic_weight)
                .unwrap_or(self.weight)
        }
    }
    pub(super) fn all_up(&self) -> bool {
        self.checkers.iter().all(|c| c.up)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Sorry {
    pub(super) addr: IpAddr,
    pub(super) port: u16,
    pub(super) forward: Forward,
    pub(super) inhibit: bool,
}

#[derive(Debug, Clone)]
pub(super) struct VsState {
    /// [`vs_name`], shared with the checkers' [`RsKey`]s.
    pub(super) name: Arc<str>,
    pub(super) keys: Vec<ServiceKey>,
    pub(super) scheduler: String,
    pub(super) forward: Forward,
    pub(super) persistence: Option<Duration>,
    pub(super) granularity: Option<u8>,
    pub(super) quorum: u64,
    pub(super) hysteresis: u64,
    pub(super) quorum_up_cmd: Option<NotifyCmd>,
    pub(super) quorum_down_cmd: Option<NotifyCmd>,
    pub(super) inhibit: bool,
    pub(super) omega: bool,
    pub(super) ha_suspend: bool,
    pub(super) sorry: Option<Sorry>,
    pub(super) quorum_up: bool,
    pub(super) rs: Vec<RsState>,
}

impl VsState {
    pub(super) fn live_weight(&self) -> u64 {
        self.rs
            .iter()
            .filter(|r| r.alive && !r.removed)
            .map(|r| u64::from(r.effective_weight()))
            .sum()
    }
    pub(super) fn sorry_active(&self) -> bool {
        !self.quorum_up && self.sorry.is_some()
    }
    /// (addr, port, weight) of every destination in the table now.
    pub(super) fn destinations(&self) -> Vec<Destination> {
        let mut out = Vec::new();
        let sorry_active = self.sorry_active();
        for r in self.rs.iter().filter(|r| !r.removed) {
            let w = if r.alive && !sorry_active {
                Some(r.effective_weight())
            } else if r.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(weight) = w {
                out.push(Destination {
                    addr: r.addr,
                    port: r.port,
                    weight,
                    forward: r.forward,
                });
            }
        }
        if let Some(s) = &self.sorry {
            let w = if sorry_active {
                Some(1)
            } else if s.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(weight) = w {
                // The sorry server may also be a real server: one entry, the live one.
                out.retain(|d| (d.addr, d.port) != (s.addr, s.port));
                out.push(Destination {
                    addr: s.addr,
                    port: s.port,
                    weight,
                    forward: s.forward,
                });
            }
        }
        out
    }
}

/// The runtime's pure state: every virtual server, its real servers and their checkers.
#[derive(Debug, Clone, Default)]
pub struct LbState {
    pub(super) vss: Vec<VsState>,
    /// VIPs held by a MASTER instance here (ha_suspend).
    pub(super) vips: BTreeSet<IpAddr>,
    /// Generation of the override set in force.
    pub(super) override_generation: u64,
}

impl LbState {
    /// Effects of the initial state (quorum down at start runs `quorum_down`).
    pub fn start(&self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for vs in self.vss.iter().filter(|v| !v.quorum_up) {
            fx.push(Effect::Event(LbEvent::Quorum {
                vs: vs.name.to_string(),
                up: false,
                weight: vs.live_weight(),
            }));
            if let Some(c) = &vs.quorum_down_cmd {
                fx.push(Effect::Script(c.clone()));
            }
        }
        fx
    }

    /// keepalived's `update_quorum_state`.
    pub(super) fn update_quorum(vs: &mut VsState, fx: &mut Vec<Effect>) {
        let sum = vs.live_weight();
        let changed = if !vs.quorum_up && sum >= vs.quorum + vs.hysteresis {
            vs.quorum_up = true;
            true
        } else if vs.quorum_up && (sum == 0 || sum < vs.quorum.saturating_sub(vs.hysteresis)) {
            vs.quorum_up = false;
            true
        } else {
            false
        };
        if changed {
            tracing::debug!(vs = %vs.name, up = vs.quorum_up, weight = sum, "quorum changed");
            fx.push(Effect::Event(LbEvent::Quorum {
                vs: vs.name.to_string(),
                up: vs.quorum_up,
                weight: sum,
            }));
            let cmd = if vs.quorum_up {
                &vs.quorum_up_cmd
            } else {
                &vs.quorum_down_cmd
            };
            if let Some(c) = cmd {
                fx.push(Effect::Script(c.clone()));
            }
        }
    }

    pub(super) fn set_alive(vs: &mut VsState, i: usize, alive: bool, fx: &mut Vec<Effect>) {
        let name = vs.name.clone();
        let Some(r) = vs.rs.get_mut(i) else { return };
        if r.alive == alive {
            return;
        }
        r.alive = alive;
        tracing::debug!(vs = %name, rs = %r.addr, port = r.port, alive, "real server changed");
        fx.push(Effect::Event(LbEvent::RealServer {
            rs: RsKey {
                vs: name,
                addr: r.addr,
                port: r.port,
            },
            up: alive,
        }));
        let cmd = if alive { &r.notify_up } else { &r.notify_down };
        if let Some(c) = cmd {
            fx.push(Effect::Script(c.clone()));
        }
        Self::update_quorum(vs, fx);
    }

    /// Whether `vs` is suspended (ha_suspend and its VIP not held) for `key`.
    pub(super) fn suspended(&self, vs: &VsState, key: &ServiceKey) -> bool {
        match key {
            ServiceKey::Addr { addr, .. } => vs.ha_suspend && !self.vips.contains(addr),
            ServiceKey::Fwmark { .. } => false,
        }
    }

    /// Generation of the real-server override set in force.
    pub fn override_generation(&self) -> u64 {
        self.override_generation
    }

    /// The complete desired data-plane table.
    pub fn desired(&self) -> Vec<Service> {
        let mut out = Vec::new();
        for vs in &self.vss {
            let dests = vs.destinations();
            for key in &vs.keys {
                if self.suspended(vs, key) {
                    continue;
                }
                out.push(Service {
                    key: key.clone(),
                    scheduler: vs.scheduler.clone(),
                    persistence: vs.persistence,
                    persistence_granularity: vs.granularity,
                    destinations: dests.clone(),
                });
            }
        }
        out
    }
}
