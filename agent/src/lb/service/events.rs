//! What each input does to the pure state: a checker verdict ([`LbState::on_check`]),
//! a VIP state, an override or shutdown ([`LbState::on_input`]). Each returns the
//! [`Effect`]s to run; none does I/O.

use std::net::IpAddr;

use crate::lb::check::CheckEvent;

use super::error::OverrideError;
use super::input::{Effect, LbEvent, RsOverride, ServiceInput};
use super::state::{LbState, RsState, VsState};

impl LbState {
    /// A checker verdict: the checker's state, then the real server's, then quorum.
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

    /// A VIP state, override or shutdown (shutdown gives the omega notifiers): each
    /// input has its handler below.
    pub fn on_input(&mut self, input: &ServiceInput) -> Vec<Effect> {
        match input {
            ServiceInput::VipState { addr, master } => {
                self.on_vip_state(*addr, *master);
                Vec::new()
            }
            ServiceInput::SetOverrides { generation, list } => {
                self.on_set_overrides(*generation, list)
            }
            ServiceInput::Shutdown => self.on_shutdown(),
            ServiceInput::Detach => Vec::new(),
            ServiceInput::RsAdd {
                vs,
                addr,
                port,
                weight,
            } => self.override_applied(input, |s| s.on_rs_add(vs, *addr, *port, *weight)),
            ServiceInput::RsDel { vs, addr, port } => {
                self.override_applied(input, |s| s.on_rs_del(vs, *addr, *port))
            }
            ServiceInput::RsDrain { vs, addr, port } => {
                self.override_applied(input, |s| s.on_rs_drain(vs, *addr, *port))
            }
            ServiceInput::RsWeight {
                vs,
                addr,
                port,
                weight,
            } => self.override_applied(input, |s| s.on_rs_weight(vs, *addr, *port, *weight)),
        }
    }

    /// [`ServiceInput::VipState`]: the VIPs held here decide what ha_suspend programs.
    fn on_vip_state(&mut self, addr: IpAddr, master: bool) {
        if master {
            self.vips.insert(addr);
        } else {
            self.vips.remove(&addr);
        }
    }

    /// [`ServiceInput::SetOverrides`]: back to the config (servers the last set added
    /// go), then each entry as its own input.
    fn on_set_overrides(&mut self, generation: u64, list: &[RsOverride]) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.override_generation = generation;
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
        fx
    }

    /// [`ServiceInput::Shutdown`]: with `omega`, the down notifiers of what is up.
    fn on_shutdown(&self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for vs in self.vss.iter().filter(|v| v.omega) {
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
        fx
    }

    /// One override: `apply` changes the state or refuses (changing nothing); history
    /// records either, and after a change the quorum of every virtual server is
    /// re-evaluated (weights changed).
    fn override_applied(
        &mut self,
        input: &ServiceInput,
        apply: impl FnOnce(&mut Self) -> Result<(), OverrideError>,
    ) -> Vec<Effect> {
        let result = apply(self);
        let mut fx = vec![Effect::Event(LbEvent::Override {
            input: format!("{input:?}"),
            error: result.as_ref().err().map(ToString::to_string),
        })];
        if result.is_ok() {
            for v in &mut self.vss {
                Self::update_quorum(v, &mut fx);
            }
        }
        fx
    }

    /// [`ServiceInput::RsAdd`]: a server without checkers, or a new weight for one.
    fn on_rs_add(
        &mut self,
        vs: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), OverrideError> {
        let v = self.virtual_server(vs)?;
        if let Some(r) = v.rs.iter_mut().find(|r| r.addr == addr && r.port == port) {
            r.removed = false;
            r.weight_override = Some(weight);
            return Ok(());
        }
        let added = RsState {
            addr,
            port,
            key_port: port,
            weight,
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
        };
        v.rs.push(added);
        Ok(())
    }

    /// [`ServiceInput::RsDel`]: a server added by override goes; a configured one is
    /// left out while the override lasts.
    fn on_rs_del(&mut self, vs: &str, addr: IpAddr, port: u16) -> Result<(), OverrideError> {
        let (v, i) = self.real_server(vs, addr, port)?;
        match v.rs.get_mut(i) {
            Some(r) if r.from_override => {
                v.rs.remove(i);
            }
            Some(r) => r.removed = true,
            None => {}
        }
        Ok(())
    }

    /// [`ServiceInput::RsDrain`]: weight 0, connections kept.
    fn on_rs_drain(&mut self, vs: &str, addr: IpAddr, port: u16) -> Result<(), OverrideError> {
        let (v, i) = self.real_server(vs, addr, port)?;
        if let Some(r) = v.rs.get_mut(i) {
            r.drained = true;
        }
        Ok(())
    }

    /// [`ServiceInput::RsWeight`]: a weight (`None`: the configured one), ending a drain.
    fn on_rs_weight(
        &mut self,
        vs: &str,
        addr: IpAddr,
        port: u16,
        weight: Option<u32>,
    ) -> Result<(), OverrideError> {
        let (v, i) = self.real_server(vs, addr, port)?;
        if let Some(r) = v.rs.get_mut(i) {
            r.drained = false;
            r.weight_override = weight;
        }
        Ok(())
    }

    /// The virtual server an override names.
    fn virtual_server(&mut self, vs: &str) -> Result<&mut VsState, OverrideError> {
        self.vss
            .iter_mut()
            .find(|v| *v.name == *vs)
            .ok_or_else(|| OverrideError::NoVirtualServer { vs: vs.to_string() })
    }

    /// The real server an override names: its virtual server and its index there.
    fn real_server(
        &mut self,
        vs: &str,
        addr: IpAddr,
        port: u16,
    ) -> Result<(&mut VsState, usize), OverrideError> {
        let v = self.virtual_server(vs)?;
        match v.rs.iter().position(|r| r.addr == addr && r.port == port) {
            Some(i) => Ok((v, i)),
            None => Err(OverrideError::NoRealServer {
                vs: vs.to_string(),
                addr,
                port,
            }),
        }
    }
}
