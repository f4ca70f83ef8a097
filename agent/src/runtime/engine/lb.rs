//! The engine's side of the load-balancer thread (`runtime::lb`): start it, tell it which
//! VIPs are held here (ha_suspend), log and record its events.

use super::*;

impl Engine {
    /// Start the load-balancer thread for `cfg` (nothing without virtual servers) and
    /// hand its status to the link.
    pub(super) fn start_lb(&mut self, cfg: &crate::config::model::Config) {
        self.lb = Lb::start(cfg, self.lb_events_tx.clone());
        if let (Some(lb), Some(tx)) = (&self.lb, &self.to_link) {
            let _ = tx.send(ToLink::Lb(lb.status()));
        }
    }

    /// Tell the load balancer that instance `i`'s VIPs are held here or not (ha_suspend).
    pub(super) fn lb_vips(&self, i: usize, master: bool) {
        if let Some(lb) = &self.lb {
            for v in &self.slots[i].vips {
                lb.vip_state(v.addr, master);
            }
        }
    }

    /// A load-balancer event: a log line and a history event.
    pub(super) fn lb_event(&self, ev: &LbEvent) {
        let told = crate::runtime::lb::tell(ev);
        if told.warn {
            warn!("{}", told.line);
        } else {
            info!("{}", told.line);
        }
        if let Some((k, vs, to, reason, detail)) = told.event {
            self.event(k, &vs, "", &to, &reason, &detail);
        }
    }
}
