//! Conversions between the bridge types the engine speaks and the `ha.v1` wire messages.
//! Pure; parse errors name the field and the value.

use std::net::IpAddr;

use ha_proto::v1 as pb;

use super::bridge::{InstanceView, LocalEvent, OverrideSet, VipChange};
use crate::lb::service::{LbStatus, RsAction, RsOverride, VsStatus};
use crate::units::Priority;

/// A local event as the wire carries it, numbered `(node, boot_id, seq)`.
pub fn event_to_proto(node: &str, boot_id: &str, seq: u64, e: &LocalEvent) -> pb::Event {
    pb::Event {
        node: node.to_string(),
        boot_id: boot_id.to_string(),
        seq,
        wall_time_ms: e.wall_time_ms,
        kind: e.kind,
        instance: e.instance.clone(),
        from_state: e.from_state.clone(),
        to_state: e.to_state.clone(),
        reason: e.reason.clone(),
        detail: e.detail.clone(),
        history_id: 0,
        stored_ms: 0,
    }
}

/// One instance's state as the wire carries it.
pub fn instance_to_proto(v: &InstanceView) -> pb::InstanceState {
    pb::InstanceState {
        name: v.name.clone(),
        vrid: u32::from(v.vrid),
        interface: v.interface.clone(),
        state: v.state.clone(),
        base_priority: u32::from(v.base_priority),
        effective_priority: u32::from(v.effective_priority),
        vips: v.vips.clone(),
        override_priority: v.override_priority.map_or(0, u32::from),
        alerts: v.alerts.clone(),
        last_advert_from: v
            .last_advert_from
            .map(|a| a.to_string())
            .unwrap_or_default(),
        trackers: v
            .trackers
            .iter()
            .map(|(kind, name, ok, weight)| pb::TrackerState {
                kind: kind.clone(),
                name: name.clone(),
                ok: *ok,
                weight: *weight,
            })
            .collect(),
        last_notify: v.last_notify.clone(),
    }
}

/// Parse "addr/plen" (or a bare address: a host prefix, as keepalived takes it).
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let plen = match p {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
    };
    Ok((addr, plen))
}

/// The pushed set as the engine takes it; every syntax error found, joined with "; ".
/// Semantic checks (unknown instance, priority 0, VIP already present) are the engine's.
pub fn overrides_from_proto(o: &pb::Overrides) -> Result<OverrideSet, String> {
    let mut errors = Vec::new();
    let mut set = OverrideSet {
        generation: o.generation,
        request_id: o.request_id.clone(),
        ..OverrideSet::default()
    };
    for p in &o.priorities {
        match u8::try_from(p.priority) {
            Err(_) => errors.push(format!(
                "{}: priority {} out of range (1-255)",
                p.instance, p.priority
            )),
            Ok(v) => {
                if set
                    .priorities
                    .insert(p.instance.clone(), Priority(v))
                    .is_some()
                {
                    errors.push(format!("{}: priority given twice", p.instance));
                }
            }
        }
    }
    for v in &o.vips {
        match parse_prefix(&v.addr) {
            Ok((addr, prefix_len)) => set.vips.push(VipChange {
                instance: v.instance.clone(),
                addr,
                prefix_len,
                add: v.add,
            }),
            Err(e) => errors.push(format!("{}: vip {e}", v.instance)),
        }
    }
    for r in &o.real_servers {
        match rs_override_from_proto(r) {
            Ok(x) => set.real_servers.push(x),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors.join("; "))
    }
}

/// One real-server override; errors name the entry.
fn rs_override_from_proto(r: &pb::RealServerOverride) -> Result<RsOverride, String> {
    let what = format!(
        "real server {} port {} in {}",
        r.addr, r.port, r.virtual_server
    );
    let addr: IpAddr = r
        .addr
        .parse()
        .map_err(|_| format!("{what}: '{}' is not an IP address", r.addr))?;
    let port = u16::try_from(r.port).map_err(|_| format!("{what}: port out of range"))?;
    let action = match pb::RsAction::try_from(r.action) {
        Ok(pb::RsAction::RsAdd) => RsAction::Add { weight: r.weight },
        Ok(pb::RsAction::RsDel) => RsAction::Del,
        Ok(pb::RsAction::RsWeight) => RsAction::Weight(r.weight),
        Ok(pb::RsAction::RsDrain) => RsAction::Drain,
        _ => return Err(format!("{what}: action {} not applicable", r.action)),
    };
    Ok(RsOverride {
        vs: r.virtual_server.clone(),
        addr,
        port,
        action,
    })
}

/// The load-balancer runtime's view of one virtual server, for the manager.
pub fn vs_to_proto(v: &VsStatus, st: &LbStatus) -> pb::VirtualServerState {
    let error = st
        .dataplane
        .objects
        .iter()
        .filter(|o| {
            v.services
                .iter()
                .any(|s| o.object == *s || o.object.starts_with(&format!("{s} ->")))
        })
        .find_map(|o| o.result.as_ref().err().cloned())
        .or_else(|| st.dataplane.last_error.clone())
        .unwrap_or_default();
    pb::VirtualServerState {
        name: v.name.clone(),
        backend: st.dataplane.backend.to_string(),
        scheduler: v.scheduler.clone(),
        method: v.method.clone(),
        quorum: v.quorum,
        live_weight: v.live_weight,
        quorum_up: v.quorum_up,
        sorry_active: v.sorry_active,
        suspended: v.suspended,
        real_servers: v
            .real_servers
            .iter()
            .map(|r| pb::RealServerState {
                addr: r.addr.to_string(),
                port: u32::from(r.port),
                alive: r.alive,
                weight_base: r.weight_base,
                weight_effective: r.weight_effective,
                in_table: r.in_table,
                drained: r.drained,
                from_override: r.from_override,
                checkers: r
                    .checkers
                    .iter()
                    .map(|c| pb::CheckerState {
                        kind: c.kind.clone(),
                        up: c.up,
                        detail: c.detail.clone(),
                        latency_us: u64::try_from(c.latency.as_micros()).unwrap_or(u64::MAX),
                    })
                    .collect(),
            })
            .collect(),
        dataplane_error: error,
    }
}

/// Every virtual server of a status.
pub fn lb_to_proto(st: &LbStatus) -> Vec<pb::VirtualServerState> {
    st.virtual_servers
        .iter()
        .map(|v| vs_to_proto(v, st))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("192.0.2.10/24"),
            Ok(("192.0.2.10".parse().unwrap(), 24))
        );
        assert_eq!(
            parse_prefix("2001:db8::1"),
            Ok(("2001:db8::1".parse().unwrap(), 128))
        );
        assert_eq!(
            parse_prefix("198.51.100.1"),
            Ok(("198.51.100.1".parse().unwrap(), 32))
        );
        assert!(parse_prefix("192.0.2.10/33").is_err());
        assert!(parse_prefix("192.0.2/24").is_err());
        assert!(parse_prefix("2001:db8::1/129").is_err());
    }

    #[test]
    fn overrides_parse_or_name_every_error() {
        let o = pb::Overrides {
            generation: 4,
            request_id: "r1".into(),
            instance: "VI_1".into(),
            priorities: vec![pb::PriorityOverride {
                instance: "VI_1".into(),
                priority: 150,
            }],
            vips: vec![pb::VipOverride {
                instance: "VI_1".into(),
                addr: "203.0.113.7/24".into(),
                add: true,
            }],
            traceparent: String::new(),
            ..Default::default()
        };
        let s = overrides_from_proto(&o).unwrap();
        assert_eq!(s.generation, 4);
        assert_eq!(s.request_id, "r1");
        assert_eq!(s.priorities["VI_1"], Priority(150));
        assert_eq!(s.vips[0].prefix_len, 24);
        assert!(s.vips[0].add);

        let bad = pb::Overrides {
            priorities: vec![
                pb::PriorityOverride {
                    instance: "VI_1".into(),
                    priority: 300,
                },
                pb::PriorityOverride {
                    instance: "VI_2".into(),
                    priority: 10,
                },
                pb::PriorityOverride {
                    instance: "VI_2".into(),
                    priority: 20,
                },
            ],
            vips: vec![pb::VipOverride {
                instance: "VI_1".into(),
                addr: "not-an-ip/24".into(),
                add: true,
            }],
            ..o
        };
        let e = overrides_from_proto(&bad).unwrap_err();
        assert!(e.contains("VI_1: priority 300 out of range"), "{e}");
        assert!(e.contains("VI_2: priority given twice"), "{e}");
        assert!(e.contains("VI_1: vip 'not-an-ip/24'"), "{e}");
    }

    #[test]
    fn instance_view_to_wire() {
        let v = InstanceView {
            name: "VI_1".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: "MASTER".into(),
            base_priority: 100,
            effective_priority: 150,
            override_priority: Some(150),
            vips: vec!["192.0.2.10/24".into()],
            last_advert_from: Some("192.0.2.2".parse().unwrap()),
            trackers: vec![("script".into(), "chk".into(), true, -20)],
            ..InstanceView::default()
        };
        let p = instance_to_proto(&v);
        assert_eq!(p.vrid, 51);
        assert_eq!(p.override_priority, 150);
        assert_eq!(p.last_advert_from, "192.0.2.2");
        assert_eq!(p.trackers[0].weight, -20);
        assert_eq!(
            instance_to_proto(&InstanceView::default()).override_priority,
            0
        );
    }
}
