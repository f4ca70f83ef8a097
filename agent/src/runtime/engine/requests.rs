//! What the manager link asks of the engine: snapshots, and override sets validated
//! as a whole and applied atomically.

use super::*;

impl Engine {
    pub(super) async fn link_request(&mut self, req: FromLink) {
        match req {
            FromLink::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            FromLink::ApplyOverrides { set, reply } => {
                let generation = set.generation;
                let request = set.request_id.clone();
                let result = self.apply_overrides(set);
                match &result {
                    Ok(touched) => {
                        for i in touched.clone() {
                            self.refresh(i).await;
                        }
                        info!(generation, request = %request, "overrides applied");
                        self.event(
                            kind::OVERRIDE_APPLIED,
                            "",
                            "",
                            "",
                            "",
                            &format!("generation {generation} request {request}"),
                        );
                        // Install the new VIP sets of masters now.
                        for i in 0..self.slots.len() {
                            if self.slots[i].inst.state() == State::Master {
                                self.run_actions(i, vec![Action::AddVips]).await;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(generation, request = %request, error = %e, "overrides refused");
                        self.event(kind::OVERRIDE_REJECTED, "", "", "", "", e);
                    }
                }
                let _ = reply.send(result.map(|_| ()));
            }
        }
    }

    /// Validate and apply a whole override set; on error nothing changes.
    /// Returns the slots whose priority override changed: the caller refreshes them.
    pub(super) fn apply_overrides(&mut self, set: OverrideSet) -> Result<Vec<usize>, String> {
        let targets: Vec<overrides::Target> = self
            .slots
            .iter()
            .map(|s| overrides::Target {
                name: s.plan.cfg.name.clone(),
                base_vips: s.base_vips.iter().map(|v| (v.addr, v.prefix_len)).collect(),
            })
            .collect();
        let lb_check = match (&self.lb, set.real_servers.is_empty()) {
            (_, true) => Ok(()),
            (None, false) => Err(vec![
                "real-server overrides: this agent runs no virtual_server".to_string(),
            ]),
            (Some(lb), false) => lb.validate(&set.real_servers),
        };
        let effects = match (overrides::validate(&set, &targets), lb_check) {
            (Ok(e), Ok(())) => e,
            (Err(mut a), Err(b)) => {
                a.extend(b);
                return Err(a.join("; "));
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.join("; ")),
        };
        if let Some(lb) = &self.lb {
            lb.set_overrides(set.generation, set.real_servers.clone());
        }
        let now = self.now();
        let mut pending = Vec::new();
        for i in 0..self.slots.len() {
            let name = self.slots[i].plan.cfg.name.clone();
            let Some(eff) = effects.get(&name) else {
                continue;
            };
            let slot = &mut self.slots[i];
            // Installed VIPs: configured entries kept as they are, added ones on the
            // instance's VIP interface.
            let default_if = slot
                .base_vips
                .first()
                .map(|v| v.ifindex)
                .unwrap_or_default();
            slot.vips = eff
                .vips
                .iter()
                .map(|(a, p)| {
                    slot.base_vips
                        .iter()
                        .find(|v| v.addr == *a)
                        .cloned()
                        .unwrap_or_else(|| VipEntry::new(default_if, *a, *p))
                })
                .collect();
            slot.announce = slot.vips.iter().map(|v| v.addr).collect();
            if slot.override_prio != eff.priority {
                slot.override_prio = eff.priority;
                let p = eff.priority.unwrap_or(slot.plan.cfg.priority);
                let window = slot.inst.master_down_interval() * 2 + Duration::from_secs(1);
                slot.override_cause_until = Some(now.after(window));
                info!(instance = %name, priority = %p, "({name}) priority set to {p} by override");
                pending.push(i);
            }
        }
        self.override_generation = set.generation;
        self.overrides = set;
        Ok(pending)
    }

    /// The state of every instance, for the manager.
    pub(super) fn snapshot(&self) -> Vec<InstanceView> {
        self.slots
            .iter()
            .map(|s| InstanceView {
                name: s.plan.cfg.name.clone(),
                vrid: s.plan.cfg.vrid.get(),
                interface: s.plan.interface.clone(),
                state: s.inst.state().to_string(),
                base_priority: s.plan.cfg.priority.get(),
                effective_priority: s.inst.effective_priority().get(),
                override_priority: s.override_prio.map(|p| p.get()),
                vips: s
                    .vips
                    .iter()
                    .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                    .collect(),
                alerts: s.alerts.iter().map(|a| a.0.clone()).collect(),
                last_advert_from: s.last_advert_from,
                trackers: s
                    .trackers
                    .iter()
                    .map(|t| {
                        (
                            t.kind.to_string(),
                            t.name.clone(),
                            t.status.ok().unwrap_or(false),
                            t.weight,
                        )
                    })
                    .collect(),
                last_notify: s.last_notify.clone(),
            })
            .collect()
    }
}
