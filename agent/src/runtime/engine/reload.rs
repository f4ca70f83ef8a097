//! SIGHUP: re-read the config and apply the smallest change (instances diffed by
//! `runtime::reload`, the load balancer restarted only when its part changed, overrides
//! re-applied).

use super::*;

impl Engine {
    /// SIGHUP: re-read the config and apply the smallest change; an invalid config keeps
    /// the running one and reports every error.
    pub(super) async fn reload(&mut self) {
        info!(config = %self.config_path.display(), "SIGHUP: reloading configuration");
        let loaded = match crate::config::load(&self.config_path) {
            Ok(l) => l,
            Err(errors) => {
                let lines = crate::config::report_lines(&errors);
                for line in &lines {
                    error!("{line}");
                }
                let text = lines.join("\n");
                error!(
                    errors = errors.len(),
                    "reload refused: the running configuration stays"
                );
                self.event(kind::CONFIG, "", "", "", "reload refused", &text);
                return;
            }
        };
        let plan = crate::runtime::plan::build(&loaded.config, self.node_override.clone());
        self.dump_files = plan.config.global.dump_files.clone();
        let old: Vec<InstancePlan> = self.slots.iter().map(|s| s.plan.clone()).collect();
        let changes = crate::runtime::reload::diff(&old, &plan.instances);
        let mut summary = Vec::new();
        for (name, change) in changes {
            use crate::runtime::reload::Change;
            match change {
                Change::Keep => {}
                Change::Update(p) => {
                    if let Err(e) = self.update_instance(&name, *p).await {
                        error!(instance = %name, error = %e, "reload: update failed");
                    }
                    summary.push(format!("{name} updated"));
                }
                Change::Restart(p) => {
                    self.remove_instance(&name).await;
                    self.start_new_instance(*p).await;
                    summary.push(format!("{name} restarted"));
                }
                Change::Add(p) => {
                    self.start_new_instance(*p).await;
                    summary.push(format!("{name} added"));
                }
                Change::Remove => {
                    self.remove_instance(&name).await;
                    summary.push(format!("{name} removed"));
                }
            }
        }
        // The load balancer restarts only if its part of the config changed; the new one
        // takes the data plane over as it is and reconciles.
        let lb_same = match &self.lb {
            Some(lb) => lb.runs(&plan.config),
            None => plan.config.virtual_servers.is_empty(),
        };
        if !lb_same {
            let removed = plan.config.virtual_servers.is_empty();
            if let Some(old) = self.lb.take() {
                old.stop(removed).await;
            }
            self.start_lb(&plan.config);
            for i in 0..self.slots.len() {
                if self.slots[i].inst.state() == State::Master {
                    self.lb_vips(i, true);
                }
            }
            summary.push("virtual servers restarted".to_string());
        }
        // Overrides stay in force where they still apply.
        let set = self.overrides.clone();
        match self.apply_overrides(set) {
            Ok(touched) => {
                for i in touched {
                    self.refresh(i).await;
                }
            }
            Err(e) => warn!(error = %e, "overrides no longer valid after reload"),
        }
        // Trackers and notify scripts follow the new config.
        self.services = None;
        self.services = Some(services::spawn(
            &plan.config,
            false,
            &self.trackers_tx,
            self.reports_tx.clone(),
        ));
        let text = if summary.is_empty() {
            "no change".to_string()
        } else {
            summary.join(", ")
        };
        info!(changes = %text, "configuration reloaded");
        self.event(kind::CONFIG, "", "", "", "reloaded", &text);
    }

    pub(super) async fn start_new_instance(&mut self, p: InstancePlan) {
        let name = p.cfg.name.clone();
        match self.add_instance(p).await {
            Ok(()) => {
                let i = self.slots.len() - 1;
                self.refresh(i).await;
            }
            Err(e) => error!(instance = %name, error = %e, "reload: cannot start instance"),
        }
    }

    pub(super) async fn remove_instance(&mut self, name: &str) {
        let Some(i) = self.slots.iter().position(|s| s.plan.cfg.name == name) else {
            return;
        };
        self.feed(i, Input::Shutdown).await;
        let _ = self.nl.clear_vips(name.to_string()).await;
        let slot = self.slots.remove(i);
        if let Some(v) = slot.vmac {
            let _ = self.nl.flush().await;
            if let Err(e) = self.nl.delete_vmac(v).await {
                warn!(instance = %name, error = %e, "cannot delete vmac");
            }
        }
    }

    pub(super) async fn update_instance(
        &mut self,
        name: &str,
        p: InstancePlan,
    ) -> Result<(), EngineError> {
        let Some(i) = self.slots.iter().position(|s| s.plan.cfg.name == name) else {
            return Ok(());
        };
        let vrrp_ifindex = self.slots[i].vmac.unwrap_or(
            self.slots[i]
                .base_vips
                .first()
                .map(|v| v.ifindex)
                .unwrap_or_default(),
        );
        let vips = self.resolve_vips(&p, vrrp_ifindex).await?;
        let now = self.now();
        let slot = &mut self.slots[i];
        slot.base_vips = vips.clone();
        slot.vips = vips;
        slot.announce = p.vips.iter().map(|v| v.addr).collect();
        slot.inst.reconfigure(p.cfg.clone());
        // Tracker states carry over for objects the instance still follows.
        let old = std::mem::take(&mut slot.trackers);
        slot.trackers = p
            .trackers
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if let Some(o) = old.iter().find(|o| o.kind == t.kind && o.name == t.name) {
                    t.status = o.status;
                }
                t
            })
            .collect();
        slot.plan = p;
        let _ = now;
        self.refresh(i).await;
        if self.slots[i].inst.state() == State::Master {
            self.run_actions(i, vec![Action::AddVips]).await;
        }
        Ok(())
    }
}
