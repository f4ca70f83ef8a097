//! What each input does to the pure state: a checker verdict ([`LbState::on_check`]),
//! a VIP state, an override or shutdown ([`LbState::on_input`]). Each returns the
//! [`Effect`]s to run; none does I/O.

use crate::lb::check::CheckEvent;

use super::input::{Effect, LbEvent, ServiceInput};
use super::state::{LbState, RsState};

impl LbState {
    /// A checker verdict.
    pub fn on_check(&mut self, ev: &CheckEvent) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(vs) = self.vss.iter_mut().find(|v| *v.name == *ev.rs.vs) else {
            tracing::debug!(vs = %ev.rs.vs, "check event for an unknown virtual server");
            return fx;
        };
        let Some(i) = vs
            .rs
            .iter()
            .position(|r| r.addr == ev.rs.addr && r.key_port == ev.rs.port)
        else {
            return fx;
        };
        // MISC_CHECK misc_dynamic: the script's exit code sets the weight.
        let dynamic = ev
            .detail
            .rsplit("dynamic_weight=")
            .next()
            .filter(|_| ev.detail.contains("dynamic_weight="))
            .and_then(|w| w.trim().parse::<u32>().ok());
        if let (Some(w), Some(r)) = (dynamic, vs.rs.get_mut(i)) {
            if r.dynamic_weight != Some(w) {
                r.dynamic_weight = Some(w);
                Self::update_quorum(vs, &mut fx);
            }
        }
        let Some(c) = vs
            .rs
            .get_mut(i)
            .and_then(|r| r.checkers.get_mut(ev.checker))
        else {
            return fx;
        };
        let changed = c.up != ev.up;
        c.up = ev.up;
        c.detail.clone_from(&ev.detail);
        c.latency = ev.latency;
        c.kind = ev.kind;
        if changed {
            fx.push(Effect::Event(LbEvent::Checker {
                rs: ev.rs.clone(),
                checker: ev.checker,
                kind: ev.kind,
                up: ev.up,
                detail: ev.detail.clone(),
            }));
        }
        let alive = vs.rs.get(i).is_some_and(RsState::all_up);
        Self::set_alive(vs, i, alive, &mut fx);
        fx
    }

    /// A VIP state, override or shutdown (shutdown gives the omega notifiers).
    pub fn on_input(&mut self, input: &ServiceInput) -> Vec<Effect> {
        let mut fx = Vec::new();
        let target = |s: &mut LbState, vs: &str| s.vss.iter().position(|v| *v.name == *vs);
        let refused = |fx: &mut Vec<Effect>, e: String| {
            fx.push(Effect::Event(LbEvent::Override {
                input: format!("{input:?}"),
                error: Some(e),
            }));
        };
        match input {
            ServiceInput::VipState { addr, master } => {
                if *master {
                    self.vips.insert(*addr);
                } else {
                    self.vips.remove(addr);
                }
                return fx;
            }
            ServiceInput::SetOverrides { generation, list } => {
                self.override_generation = *generation;
                for v in &mut self.vss {
                    v.rs.retain(|r| !r.from_override);
                    for r in &mut v.rs {
                        r.removed = false;
                        r.weight_override = None;
                        r.drained = false;
                    }
                }
                for o in list {
                    fx.extend(self.on_input(&o.input()));
                }
                for v in &mut self.vss {
                    Self::update_quorum(v, &mut fx);
                }
                return fx;
            }
            ServiceInput::Detach => return fx,
            ServiceInput::Shutdown => {
                for vs in &mut self.vss {
                    if !vs.omega {
                        continue;
                    }
                    for r in vs.rs.iter().filter(|r| r.alive && !r.removed) {
                        if let Some(c) = &r.notify_down {
                            fx.push(Effect::Script(c.clone()));
                        }
                    }
                    if vs.quorum_up {
                        if let Some(c) = &vs.quorum_down_cmd {
                            fx.push(Effect::Script(c.clone()));
                        }
                    }
                }
                return fx;
            }
            ServiceInput::RsAdd {
                vs,
                addr,
                port,
                weight,
            } => {
                let Some(v) = target(self, vs) else {
                    refused(&mut fx, format!("no virtual server {vs}"));
                    return fx;
                };
                let Some(v) = self.vss.get_mut(v) else {
                    return fx;
                };
                match v.rs.iter().position(|r| r.addr == *addr && r.port == *port) {
                    Some(i) => {
                        if let Some(r) = v.rs.get_mut(i) {
                            r.removed = false;
                            r.weight_override = Some(*weight);
                        }
                    }
                    None => v.rs.push(RsState {
                        addr: *addr,
                        port: *port,
                        key_port: *port,
                        weight: *weight,
                        dynamic_weight: None,
                        weight_override: None,
                        drained: false,
                        inhibit: v.inhibit,
                        forward: v.forward,
                        checkers: Vec::new(),
                        alive: true,
                        removed: false,
                        from_override: true,
                        notify_up: None,
                        notify_down: None,
                    }),
                }
            }
            ServiceInput::RsDel { vs, addr, port }
            | ServiceInput::RsDrain { vs, addr, port }
            | ServiceInput::RsWeight { vs, addr, port, .. } => {
                let Some(v) = target(self, vs) else {
                    refused(&mut fx, format!("no virtual server {vs}"));
                    return fx;
                };
                let Some(v) = self.vss.get_mut(v) else {
                    return fx;
                };
                let Some(i) = v.rs.iter().position(|r| r.addr == *addr && r.port == *port) else {
                    refused(&mut fx, format!("no real server {addr}:{port} in {vs}"));
                    return fx;
                };
                let Some(r) = v.rs.get_mut(i) else { return fx };
                match input {
                    ServiceInput::RsDel { .. } => {
                        if r.from_override {
                            v.rs.remove(i);
                        } else {
                            r.removed = true;
                        }
                    }
                    ServiceInput::RsDrain { .. } => r.drained = true,
                    ServiceInput::RsWeight { weight, .. } => {
                        r.drained = false;
                        r.weight_override = *weight;
                    }
                    _ => {}
                }
            }
        }
        fx.push(Effect::Event(LbEvent::Override {
            input: format!("{input:?}"),
            error: None,
        }));
        // Weights changed: quorum may have too.
        for v in &mut self.vss {
            Self::update_quorum(v, &mut fx);
        }
        fx
    }
}
