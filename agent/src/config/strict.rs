//! `vrrp_strict` / `strict_mode`: the corrections keepalived makes to an instance in strict
//! mode, applied to the draft the same way, each said as a `--check` warning with
//! file:line (and logged at start, as every note is).
//!
//! Every rule keepalived 2.2.7 applies (vrrp.c `vrrp_complete_instance`; the same in
//! 2.4.3), with its message; "reset" rules load the corrected value, "error" rules reject
//! the config:
//! 1. IPv6 with `version 2` -> version 3:
//!    "(%s) cannot use IPv6 with VRRP version 2; setting version 3".
//! 2. `state` must match being address owner (priority 255), else reset:
//!    "(%s) State MASTER must match being address owner".
//! 3. Authentication is dropped:
//!    "(%s) Strict mode does not support authentication. Ignoring.".
//! 4. Unicast peers are refused (error):
//!    "(%s) Unicast peers are not supported in strict mode".
//! 5. The first IPv6 VIP must be link local (said, loaded as is):
//!    "(%s) the first IPv6 VIP address must be link local".
//! 6. `preempt_delay` is reset to 0:
//!    "(%s) preempt_delay is incompatible with strict mode - resetting".
//! 7. `down_timer_adverts` other than 3 is reset to 3:
//!    "(%s) down_timer_adverts is incompatible with strict mode - resetting".
//! 8. `accept` for VRRPv2 below priority 255 is reset to no_accept:
//!    "(%s) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting".
//!    (Unset, accept defaults to off in strict mode unless address owner: build.rs.)
//! 9. `garp_lower_prio_repeat` must be 0 (default 0):
//!    "(%s) Strict mode requires no repeat garps. resetting".
//! 10. `garp_lower_prio_delay` must be 0 (default 0):
//!     "(%s) Strict mode requires no repeat garp delay. resetting".
//! 11. `lower_prio_no_advert` must be on (default on, whatever the global says):
//!     "(%s) Strict mode requires no lower priority advert. resetting".
//! 12. `higher_prio_send_advert` must be off (default off, whatever the global says):
//!     "(%s) strict mode requires higher_prio_send_advert to be clear. resetting".
//! 13. `vmac_xmit_base` with `use_vmac` is reset:
//!     "(%s) xmit_base is incompatible with strict mode - resetting".
//! 14. `no_virtual_ipaddress` is cleared (then no VIP is an error, validate.rs):
//!     "(%s) no_virtual_ipaddress and strict mode incompatible, clearing no_virtual_ipaddress".
//! 15. An address owner always ignores lower adverts (build.rs `owner_ignore_adverts`):
//!     "(%s) strict_mode with priority %d requires owner_ignore_adverts".
//! 16. `auth_hmac` needs mode enforce (error, validate.rs):
//!     "(%s) strict mode requires auth_hmac mode enforce".
//!
//! Not here: keepalived's "cannot specify MAC address with strict mode - clearing" (a VMAC
//! with an explicit MAC, which ha-agent's `use_vmac` does not parse), and its firewall
//! default ("use_vmac or no_accept/strict specified, but no firewall configured - using
//! nftables"), which needs the nftables drop rules ha-agent does not install yet.

use std::time::Duration;

use super::build::{effective_version, InstanceDraft};
use super::lexer::Loc;
use super::model::{GlobalDefs, InitialState};
use super::tree::Node;
use super::Diagnostic;
use crate::units::{Priority, Version};

/// keepalived's default and only strict value of `down_timer_adverts`.
const DOWN_TIMER_ADVERTS: &str = "3";

/// Apply strict mode to one instance draft (`inst` is its block, for the lines of the
/// keywords). Corrections go to `notes` as warnings, refusals to `errors`.
pub(super) fn apply(
    d: &mut InstanceDraft,
    inst: &Node,
    g: &GlobalDefs,
    notes: &mut Vec<Diagnostic>,
    errors: &mut Vec<Diagnostic>,
) {
    if !d.strict_mode.unwrap_or(g.vrrp_strict) {
        return;
    }
    let name = d.name.clone();
    // The line of the last `kw` in the block, else the instance's own line.
    let at = |kw: &str| -> Loc {
        inst.children()
            .iter()
            .rev()
            .find(|n| n.name == kw)
            .map_or_else(|| d.loc.clone(), |n| n.loc.clone())
    };
    let mut warn = |loc: Loc, msg: &str| {
        notes.push(loc.diag(format!("warning: strict mode: ({name}) {msg}")));
    };
    let ipv6 = d.native_ipv6 || d.vips.first().is_some_and(|v| v.addr.is_ipv6());

    // 1.
    if ipv6 && d.version == Some(Version::V2) {
        warn(
            at("version"),
            "cannot use IPv6 with VRRP version 2; setting version 3",
        );
        d.version = Some(Version::V3);
    }
    // 2. keepalived compares with the configured priority (default 100).
    let owner = d
        .priority
        .as_ref()
        .is_some_and(|(p, _)| *p == i64::from(Priority::OWNER.0));
    if d.state_loc.is_some() && (d.state == InitialState::Master) != owner {
        warn(at("state"), "State MASTER must match being address owner");
        d.state = if owner {
            InitialState::Master
        } else {
            InitialState::Backup
        };
    }
    // 3.
    if d.auth.take().is_some() {
        warn(
            at("authentication"),
            "Strict mode does not support authentication. Ignoring.",
        );
    }
    // 4.
    if !d.unicast_peers.is_empty() {
        errors.push(at("unicast_peer").diag(format!(
            "({name}) Unicast peers are not supported in strict mode"
        )));
    }
    // 5.
    if ipv6 && d.unicast_peers.is_empty() {
        if let Some(first) = d.vips.first() {
            let link_local = match first.addr {
                std::net::IpAddr::V6(a) => a.is_unicast_link_local(),
                std::net::IpAddr::V4(_) => false,
            };
            if !link_local {
                warn(
                    vip_loc(first),
                    "the first IPv6 VIP address must be link local",
                );
            }
        }
    }
    // 6.
    if !d.preempt_delay.is_zero() {
        warn(
            at("preempt_delay"),
            "preempt_delay is incompatible with strict mode - resetting",
        );
        d.preempt_delay = Duration::ZERO;
    }
    // 7.
    if let Some(i) = d.other.iter().rposition(|n| n.name == "down_timer_adverts") {
        if d.other[i].arg(0) != Some(DOWN_TIMER_ADVERTS) {
            let loc = d.other[i].loc.clone();
            warn(
                loc,
                "down_timer_adverts is incompatible with strict mode - resetting",
            );
            d.other.retain(|n| n.name != "down_timer_adverts");
        }
    }
    // 8.
    let version = effective_version(d, g);
    if d.accept == Some(true) && !owner && version == Version::V2 {
        warn(
            at("accept"),
            "warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting",
        );
        d.accept = Some(false);
    }
    // 9.
    if d.garp_lower_prio_repeat.is_some_and(|r| r != 0) {
        warn(
            at("garp_lower_prio_repeat"),
            "Strict mode requires no repeat garps. resetting",
        );
    }
    d.garp_lower_prio_repeat = Some(0);
    // 10.
    if d.garp_lower_prio_delay.is_some_and(|v| v.is_some()) {
        warn(
            at("garp_lower_prio_delay"),
            "Strict mode requires no repeat garp delay. resetting",
        );
    }
    d.garp_lower_prio_delay = Some(None);
    // 11.
    if d.lower_prio_no_advert == Some(false) {
        warn(
            at("lower_prio_no_advert"),
            "Strict mode requires no lower priority advert. resetting",
        );
    }
    d.lower_prio_no_advert = Some(true);
    // 12.
    if d.higher_prio_send_advert == Some(true) {
        warn(
            at("higher_prio_send_advert"),
            "strict mode requires higher_prio_send_advert to be clear. resetting",
        );
    }
    d.higher_prio_send_advert = Some(false);
    // 13.
    if d.vmac_xmit_base && d.use_vmac.is_some() {
        warn(
            at("vmac_xmit_base"),
            "xmit_base is incompatible with strict mode - resetting",
        );
        d.vmac_xmit_base = false;
    }
    // 14.
    if let Some(loc) = d.no_vips.take() {
        warn(
            loc,
            "no_virtual_ipaddress and strict mode incompatible, clearing no_virtual_ipaddress",
        );
    }
}

/// The place of a VIP line.
fn vip_loc(v: &super::model::VipSpec) -> Loc {
    Loc {
        file: v.origin.file.clone(),
        line: v.origin.line,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::model::{InitialState, VrrpInstance};
    use crate::config::parse_str;

    /// A strict instance with `body` (lines 3 on), and its strict-mode warnings.
    fn strict(body: &str) -> Result<(VrrpInstance, Vec<String>), Vec<String>> {
        let text = format!(
            "global_defs {{\n vrrp_strict\n}}\nvrrp_instance VI_1 {{\ninterface eth0\nvirtual_router_id 51\n{body}\n}}\n"
        );
        match parse_str(Path::new("k.conf"), &text) {
            Ok(l) => Ok((
                l.config.vrrp_instances[0].clone(),
                l.notes
                    .iter()
                    .map(ToString::to_string)
                    .filter(|n| n.contains("strict mode:"))
                    .collect(),
            )),
            Err(e) => Err(e.iter().map(ToString::to_string).collect()),
        }
    }

    const VIP: &str = "virtual_ipaddress {\n192.0.2.16\n}";

    fn warned(body: &str) -> (VrrpInstance, Vec<String>) {
        strict(body).expect("loads")
    }

    #[test]
    fn the_shipped_sample_loads_as_keepalived_loads_it() {
        // keepalived's own /etc/keepalived/keepalived.conf.sample instance.
        let (i, w) = warned(&format!(
            "state MASTER\npriority 100\nadvert_int 1\nauthentication {{\nauth_type PASS\nauth_pass 1111\n}}\n{VIP}"
        ));
        assert_eq!(i.state, InitialState::Backup);
        assert!(i.auth.is_none());
        assert!(!i.accept);
        assert_eq!(
            w,
            vec![
                "k.conf:7: warning: strict mode: (VI_1) State MASTER must match being address owner",
                "k.conf:10: warning: strict mode: (VI_1) Strict mode does not support authentication. Ignoring.",
            ]
        );
    }

    #[test]
    fn state_follows_address_ownership() {
        // An owner stays (or becomes) master; MASTER below 255 becomes BACKUP.
        let (i, w) = warned(&format!("state BACKUP\npriority 255\n{VIP}"));
        assert_eq!(i.state, InitialState::Master);
        assert_eq!(
            w,
            vec!["k.conf:7: warning: strict mode: (VI_1) State MASTER must match being address owner"]
        );
        let (i, w) = warned(&format!("state MASTER\npriority 255\n{VIP}"));
        assert_eq!(i.state, InitialState::Master);
        assert!(w.is_empty());
        let (i, w) = warned(&format!("state BACKUP\npriority 90\n{VIP}"));
        assert_eq!(i.state, InitialState::Backup);
        assert!(w.is_empty());
    }

    #[test]
    fn authentication_is_dropped() {
        let (i, w) = warned(&format!(
            "authentication {{\nauth_type PASS\nauth_pass secret\n}}\n{VIP}"
        ));
        assert!(i.auth.is_none());
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("k.conf:7: "), "{w:?}");
    }

    #[test]
    fn unicast_peers_are_refused() {
        let e = strict(&format!("unicast_peer {{\n192.0.2.2\n}}\n{VIP}")).unwrap_err();
        assert_eq!(
            e,
            vec!["k.conf:7: (VI_1) Unicast peers are not supported in strict mode"]
        );
    }

    #[test]
    fn accept_for_v2_is_reset_below_owner_only() {
        let (i, w) = warned(&format!("accept\n{VIP}"));
        assert!(!i.accept);
        assert_eq!(
            w,
            vec!["k.conf:7: warning: strict mode: (VI_1) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting"]
        );
        // v3 may accept; so may the address owner.
        let (i, w) = warned(&format!("version 3\naccept\n{VIP}"));
        assert!(i.accept && w.is_empty());
        let (i, w) = warned(&format!("priority 255\naccept\n{VIP}"));
        assert!(i.accept && w.is_empty());
        // Unset: no accept unless owner.
        let (i, _) = warned(VIP);
        assert!(!i.accept);
    }

    #[test]
    fn preempt_delay_and_down_timer_adverts_are_reset() {
        let (i, w) = warned(&format!("preempt_delay 5\n{VIP}"));
        assert!(i.preempt_delay.is_zero());
        assert_eq!(
            w,
            vec!["k.conf:7: warning: strict mode: (VI_1) preempt_delay is incompatible with strict mode - resetting"]
        );
        let (i, w) = warned(&format!("down_timer_adverts 5\n{VIP}"));
        assert!(i.other.iter().all(|n| n.name != "down_timer_adverts"));
        assert_eq!(
            w,
            vec!["k.conf:7: warning: strict mode: (VI_1) down_timer_adverts is incompatible with strict mode - resetting"]
        );
        let (_, w) = warned(&format!("down_timer_adverts 3\n{VIP}"));
        assert!(w.is_empty());
    }

    #[test]
    fn lower_priority_garps_are_off() {
        let (i, w) = warned(&format!(
            "garp_lower_prio_repeat 5\ngarp_lower_prio_delay 2\n{VIP}"
        ));
        assert_eq!(i.garp.lower_prio_repeat, 0);
        assert_eq!(i.garp.lower_prio_delay, None);
        assert_eq!(
            w,
            vec![
                "k.conf:7: warning: strict mode: (VI_1) Strict mode requires no repeat garps. resetting",
                "k.conf:8: warning: strict mode: (VI_1) Strict mode requires no repeat garp delay. resetting",
            ]
        );
        // Unset, they are 0 too, whatever global_defs says (no warning).
        let text = format!(
            "global_defs {{\n vrrp_strict\n vrrp_garp_lower_prio_repeat 4\n}}\nvrrp_instance VI_1 {{\ninterface eth0\nvirtual_router_id 51\n{VIP}\n}}\n"
        );
        let l = parse_str(Path::new("k.conf"), &text).unwrap();
        assert_eq!(l.config.vrrp_instances[0].garp.lower_prio_repeat, 0);
    }

    #[test]
    fn advert_rules_are_forced() {
        let (i, w) = warned(&format!(
            "lower_prio_no_advert off\nhigher_prio_send_advert on\n{VIP}"
        ));
        assert!(i.lower_prio_no_advert);
        assert!(!i.higher_prio_send_advert);
        assert_eq!(
            w,
            vec![
                "k.conf:7: warning: strict mode: (VI_1) Strict mode requires no lower priority advert. resetting",
                "k.conf:8: warning: strict mode: (VI_1) strict mode requires higher_prio_send_advert to be clear. resetting",
            ]
        );
        // The globals do not override strict mode's defaults.
        let text = format!(
            "global_defs {{\n vrrp_strict\n vrrp_lower_prio_no_advert false\n vrrp_higher_prio_send_advert true\n}}\nvrrp_instance VI_1 {{\ninterface eth0\nvirtual_router_id 51\n{VIP}\n}}\n"
        );
        let i = &parse_str(Path::new("k.conf"), &text)
            .unwrap()
            .config
            .vrrp_instances[0];
        assert!(i.lower_prio_no_advert && !i.higher_prio_send_advert);
    }

    #[test]
    fn vmac_xmit_base_is_reset() {
        let (i, w) = warned(&format!("use_vmac\nvmac_xmit_base\n{VIP}"));
        assert!(!i.vmac_xmit_base);
        assert_eq!(
            w,
            vec!["k.conf:8: warning: strict mode: (VI_1) xmit_base is incompatible with strict mode - resetting"]
        );
    }

    #[test]
    fn no_virtual_ipaddress_is_cleared() {
        let (i, w) = warned(&format!("no_virtual_ipaddress\n{VIP}"));
        assert!(!i.no_virtual_ipaddress);
        assert_eq!(
            w,
            vec!["k.conf:7: warning: strict mode: (VI_1) no_virtual_ipaddress and strict mode incompatible, clearing no_virtual_ipaddress"]
        );
    }

    #[test]
    fn ipv6_rules() {
        let six = "virtual_ipaddress {\n2001:db8::16\n}";
        let (i, w) = warned(&format!("version 2\n{six}"));
        assert_eq!(i.version, crate::units::Version::V3);
        assert_eq!(
            w,
            vec![
                "k.conf:7: warning: strict mode: (VI_1) cannot use IPv6 with VRRP version 2; setting version 3",
                "k.conf:9: warning: strict mode: (VI_1) the first IPv6 VIP address must be link local",
            ]
        );
        let (_, w) = warned("virtual_ipaddress {\nfe80::16\n2001:db8::16\n}");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn instance_strict_mode_off_overrides_the_global() {
        let (i, w) = warned(&format!(
            "strict_mode off\nstate MASTER\nauthentication {{\nauth_type PASS\nauth_pass 1111\n}}\n{VIP}"
        ));
        assert_eq!(i.state, InitialState::Master);
        assert!(i.auth.is_some());
        assert!(w.is_empty());
    }
}
