//! Live reload: the smallest change from the running plan to a new one. Pure.
//!
//! An instance whose identity on the wire or on the host changes (VRID, version, family,
//! interface, vmac, source, tracked interfaces) is restarted; one whose protocol settings
//! or VIPs change is updated in place, keeping its state; an unchanged one is not touched
//! at all (no transition, its VIPs never leave the interface).

use crate::runtime::plan::InstancePlan;

/// What to do with one instance name.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Same as before: leave it alone.
    Keep,
    /// Same identity, new settings: reconfigure in place.
    Update(Box<InstancePlan>),
    /// Identity changed: stop the old one, start the new one.
    Restart(Box<InstancePlan>),
    /// New instance.
    Add(Box<InstancePlan>),
    /// Gone from the config: stop it.
    Remove,
}

/// Per instance name, in the new config's order, then removals.
pub fn diff(old: &[InstancePlan], new: &[InstancePlan]) -> Vec<(String, Change)> {
    let mut out = Vec::new();
    for n in new {
        let name = n.cfg.name.clone();
        let change = match old.iter().find(|o| o.cfg.name == name) {
            None => Change::Add(Box::new(n.clone())),
            Some(o) if o == n => Change::Keep,
            Some(o) if same_identity(o, n) => Change::Update(Box::new(n.clone())),
            Some(_) => Change::Restart(Box::new(n.clone())),
        };
        out.push((name, change));
    }
    for o in old {
        if !new.iter().any(|n| n.cfg.name == o.cfg.name) {
            out.push((o.cfg.name.clone(), Change::Remove));
        }
    }
    out
}

fn same_identity(a: &InstancePlan, b: &InstancePlan) -> bool {
    a.cfg.vrid == b.cfg.vrid
        && a.cfg.version == b.cfg.version
        && a.family() == b.family()
        && a.interface == b.interface
        && a.use_vmac == b.use_vmac
        && a.unicast_src == b.unicast_src
        && a.cfg.unicast_peers.is_empty() == b.cfg.unicast_peers.is_empty()
        && a.track_interfaces == b.track_interfaces
        && a.dont_track_primary == b.dont_track_primary
        && a.checksum == b.checksum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::runtime::plan::build;
    use std::path::Path;

    fn plan(text: &str) -> Vec<InstancePlan> {
        let loaded = parse_str(Path::new("t.conf"), text).expect("valid config");
        build(&loaded.config, Some("n".into())).instances
    }

    fn conf(p1: u8, p2: u8, vrid2: u8, extra: &str) -> String {
        format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n priority {p1}\n \
             virtual_ipaddress {{\n 192.0.2.10/24\n }}\n}}\n\
             vrrp_instance VI_2 {{\n interface eth0\n virtual_router_id {vrid2}\n priority {p2}\n \
             virtual_ipaddress {{\n 192.0.2.20/24\n }}\n}}\n{extra}"
        )
    }

    #[test]
    fn priority_change_updates_only_that_instance() {
        let d = diff(
            &plan(&conf(100, 100, 52, "")),
            &plan(&conf(100, 90, 52, "")),
        );
        assert_eq!(d[0], ("VI_1".to_string(), Change::Keep));
        assert!(
            matches!(&d[1], (n, Change::Update(p)) if n == "VI_2" && p.cfg.priority.get() == 90)
        );
    }

    #[test]
    fn vrid_change_restarts_and_adds_and_removes() {
        let extra = "vrrp_instance VI_3 {\n interface eth0\n virtual_router_id 53\n \
                     virtual_ipaddress {\n 192.0.2.30/24\n }\n}\n";
        let d = diff(
            &plan(&conf(100, 100, 52, extra)),
            &plan(&conf(100, 100, 54, "")),
        );
        assert_eq!(d[0].1, Change::Keep);
        assert!(matches!(d[1].1, Change::Restart(_)));
        assert_eq!(d[2], ("VI_3".to_string(), Change::Remove));
        let d = diff(
            &plan(&conf(100, 100, 52, "")),
            &plan(&conf(100, 100, 52, extra)),
        );
        assert!(matches!(d[2].1, Change::Add(_)));
    }
}
