//! Table tests of the pure state: building, verdicts, quorum, overrides, ha_suspend,
//! omega, groups; the `in table` rule and the backend setting.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::model::Config;
use crate::config::parse_str;
use crate::lb::check::{CheckEvent, RsKey};
use crate::lb::dataplane::nft::service_object;
use crate::lb::dataplane::reconcile::ReconcileStatus;
use crate::lb::dataplane::{Forward, ServiceKey};

use super::*;

fn load(text: &str) -> Config {
    match parse_str(Path::new("k.conf"), text) {
        Ok(l) => l.config,
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn in_table_only_when_the_data_plane_programmed_it() {
    use crate::lb::dataplane::{ObjectStatus, Proto};
    let key = ServiceKey::Addr {
        proto: Proto::Tcp,
        addr: "192.0.2.10".parse().unwrap(),
        port: 80,
    };
    let rs: IpAddr = "192.0.2.11".parse().unwrap();
    let ok = |object: &str| ObjectStatus {
        object: object.into(),
        result: Ok(()),
    };
    let mut dp = ReconcileStatus::default();
    let keys = [key];
    assert!(!programmed(&dp, &keys, rs, 80), "no apply yet");
    dp.applies = 1;
    dp.objects = vec![
        ok("192.0.2.10:80/TCP"),
        ok("192.0.2.10:80/TCP -> 192.0.2.11:80"),
    ];
    assert!(programmed(&dp, &keys, rs, 80));
    // nft missing: the whole apply failed.
    dp.last_error = Some("nft: No such file or directory".into());
    assert!(!programmed(&dp, &keys, rs, 80));
    dp.last_error = None;
    // The destination (or its service) refused.
    dp.objects[1].result = Err("no neighbour".into());
    assert!(!programmed(&dp, &keys, rs, 80));
    assert!(programmed(&dp, &keys, "192.0.2.12".parse().unwrap(), 80));
    dp.objects[1].result = Ok(());
    dp.objects[0].result = Err("tunnel forwarding (TUN) needs IPVS".into());
    assert!(!programmed(&dp, &keys, rs, 80));
}

const CONF: &str = r#"
virtual_server 192.0.2.10 80 {
delay_loop 1
lb_algo wrr
lb_kind NAT
protocol TCP
quorum 3
hysteresis 0
sorry_server 198.51.100.99 8080
quorum_up "/bin/true up"
quorum_down "/bin/true down"
real_server 198.51.100.11 8080 {
    weight 3
    notify_down "/bin/true rs1down"
    TCP_CHECK {
        connect_timeout 1
    }
}
real_server 198.51.100.12 8080 {
    weight 1
    inhibit_on_failure
    TCP_CHECK {
        connect_timeout 1
    }
}
}
"#;

fn ev(vs: &str, last: u8, up: bool) -> CheckEvent {
    CheckEvent {
        rs: RsKey {
            vs: vs.into(),
            addr: format!("198.51.100.{last}").parse().unwrap(),
            port: 8080,
        },
        checker: 0,
        kind: "TCP_CHECK",
        up,
        detail: if up { "connected" } else { "refused" }.into(),
        latency: Duration::from_millis(1),
    }
}

fn weights(s: &LbState) -> Vec<(String, u32)> {
    let d = s.desired();
    d[0].destinations
        .iter()
        .map(|d| (d.addr.to_string(), d.weight))
        .collect()
}

fn scripts(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Script(c) => Some(c.command.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn builds_table_from_config() {
    let (s, errs) = LbState::from_config(&load(CONF));
    assert!(errs.is_empty(), "{errs:?}");
    let d = s.desired();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].scheduler, "wrr");
    assert_eq!(service_object(&d[0].key), "192.0.2.10:80/TCP");
    assert_eq!(
        weights(&s),
        vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 1)]
    );
    assert!(s.start().is_empty(), "quorum 3 <= 4 at start");
}

#[test]
fn failure_removes_or_inhibits_and_quorum_brings_sorry_server() {
    let (mut s, _) = LbState::from_config(&load(CONF));
    let vs = "192.0.2.10:80/TCP";
    // rs2 (inhibit_on_failure) fails: stays with weight 0; live weight 3 >= quorum 3.
    let fx = s.on_check(&ev(vs, 12, false));
    assert!(scripts(&fx).is_empty());
    assert_eq!(
        weights(&s),
        vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 0)]
    );
    // rs1 fails: quorum lost, live servers replaced by the sorry server.
    let fx = s.on_check(&ev(vs, 11, false));
    assert_eq!(scripts(&fx), vec!["/bin/true rs1down", "/bin/true down"]);
    assert_eq!(
        weights(&s),
        vec![("198.51.100.12".into(), 0), ("198.51.100.99".into(), 1)]
    );
    assert!(s.status()[0].sorry_active);
    // rs1 back: quorum back, sorry server gone.
    let fx = s.on_check(&ev(vs, 11, true));
    assert_eq!(scripts(&fx), vec!["/bin/true up"]);
    assert_eq!(
        weights(&s),
        vec![("198.51.100.11".into(), 3), ("198.51.100.12".into(), 0)]
    );
    // An unchanged verdict changes nothing.
    assert!(s.on_check(&ev(vs, 11, true)).is_empty());
}

#[test]
fn alpha_starts_down_and_hysteresis_holds() {
    let conf = CONF
        .replace("quorum 3", "quorum 3\n    alpha")
        .replace("hysteresis 0", "hysteresis 1");
    let (mut s, _) = LbState::from_config(&load(&conf));
    let vs = "192.0.2.10:80/TCP";
    // All down at start: sorry server only (rs2 inhibited at 0).
    assert_eq!(scripts(&s.start()), vec!["/bin/true down"]);
    assert_eq!(
        weights(&s),
        vec![("198.51.100.12".into(), 0), ("198.51.100.99".into(), 1)]
    );
    // rs1 up: 3 < quorum + hysteresis = 4: still down.
    s.on_check(&ev(vs, 11, true));
    assert!(!s.status()[0].quorum_up);
    // rs2 up: 4: quorum gained.
    s.on_check(&ev(vs, 12, true));
    assert!(s.status()[0].quorum_up);
    // rs2 down: 3 >= quorum - hysteresis = 2: held.
    s.on_check(&ev(vs, 12, false));
    assert!(s.status()[0].quorum_up);
}

#[test]
fn overrides_add_drain_weight_and_delete() {
    let (mut s, _) = LbState::from_config(&load(CONF));
    let vs = "192.0.2.10:80/TCP".to_string();
    let a13: IpAddr = "198.51.100.13".parse().unwrap();
    let a11: IpAddr = "198.51.100.11".parse().unwrap();
    s.on_input(&ServiceInput::RsAdd {
        vs: vs.clone(),
        addr: a13,
        port: 8080,
        weight: 2,
    });
    assert!(weights(&s).contains(&("198.51.100.13".into(), 2)));
    s.on_input(&ServiceInput::RsDrain {
        vs: vs.clone(),
        addr: a11,
        port: 8080,
    });
    assert!(weights(&s).contains(&("198.51.100.11".into(), 0)));
    s.on_input(&ServiceInput::RsWeight {
        vs: vs.clone(),
        addr: a11,
        port: 8080,
        weight: Some(5),
    });
    assert!(weights(&s).contains(&("198.51.100.11".into(), 5)));
    s.on_input(&ServiceInput::RsDel {
        vs: vs.clone(),
        addr: a11,
        port: 8080,
    });
    assert!(!weights(&s).iter().any(|(a, _)| a == "198.51.100.11"));
    // Unknown targets are refused, with the reason in history.
    let fx = s.on_input(&ServiceInput::RsDel {
        vs: "nope".into(),
        addr: a11,
        port: 1,
    });
    assert!(matches!(
        &fx[0],
        Effect::Event(LbEvent::Override { error: Some(_), .. })
    ));
}

#[test]
fn override_sets_replace_each_other() {
    let (mut s, _) = LbState::from_config(&load(CONF));
    let vs = "192.0.2.10:80/TCP".to_string();
    let o = |last: u8, action| RsOverride {
        vs: vs.clone(),
        addr: format!("198.51.100.{last}").parse().unwrap(),
        port: 8080,
        action,
    };
    let before = weights(&s);
    s.on_input(&ServiceInput::SetOverrides {
        generation: 3,
        list: vec![
            o(13, RsAction::Add { weight: 5 }),
            o(11, RsAction::Drain),
            o(12, RsAction::Del),
        ],
    });
    assert_eq!(s.override_generation(), 3);
    let w = weights(&s);
    assert!(w.contains(&("198.51.100.13".into(), 5)), "{w:?}");
    assert!(w.contains(&("198.51.100.11".into(), 0)), "{w:?}");
    assert!(!w.iter().any(|(a, _)| a == "198.51.100.12"), "{w:?}");
    // The next set names only a weight: the added server goes, the drain and the
    // delete end, the configured servers are back as configured.
    s.on_input(&ServiceInput::SetOverrides {
        generation: 4,
        list: vec![o(12, RsAction::Weight(7))],
    });
    let w = weights(&s);
    assert!(!w.iter().any(|(a, _)| a == "198.51.100.13"), "{w:?}");
    assert!(w.contains(&("198.51.100.11".into(), 3)), "{w:?}");
    assert!(w.contains(&("198.51.100.12".into(), 7)), "{w:?}");
    // An empty set restores the config exactly.
    s.on_input(&ServiceInput::SetOverrides {
        generation: 5,
        list: Vec::new(),
    });
    assert_eq!(weights(&s), before);
}

#[test]
fn ha_suspend_programs_only_with_the_vip() {
    let conf = CONF.replace("quorum 3", "quorum 1\n    ha_suspend");
    let (mut s, _) = LbState::from_config(&load(&conf));
    assert!(s.desired().is_empty());
    let vip: IpAddr = "192.0.2.10".parse().unwrap();
    s.on_input(&ServiceInput::VipState {
        addr: vip,
        master: true,
    });
    assert_eq!(s.desired().len(), 1);
    s.on_input(&ServiceInput::VipState {
        addr: vip,
        master: false,
    });
    assert!(s.desired().is_empty());
}

#[test]
fn groups_expand_and_methods_parse() {
    let conf = r#"
virtual_server_group G {
192.0.2.20-22 80
fwmark 7
}
virtual_server group G {
lb_algo rr
lb_kind DR
persistence_timeout 60
persistence_granularity 255.255.255.0
real_server 198.51.100.11 80 {
}
}
"#;
    let (s, errs) = LbState::from_config(&load(conf));
    assert!(errs.is_empty(), "{errs:?}");
    let d = s.desired();
    assert_eq!(d.len(), 4);
    assert!(d.iter().all(|x| x.persistence_granularity == Some(24)));
    assert!(d.iter().all(|x| x.destinations[0].forward == Forward::Dr));
    assert_eq!(s.status()[0].name, "group G");
}

#[test]
fn omega_runs_down_notifiers_at_shutdown() {
    let conf = CONF.replace("quorum 3", "quorum 3\n    omega");
    let (mut s, _) = LbState::from_config(&load(&conf));
    let fx = s.on_input(&ServiceInput::Shutdown);
    assert_eq!(scripts(&fx), vec!["/bin/true rs1down", "/bin/true down"]);
    let (mut s, _) = LbState::from_config(&load(CONF));
    assert!(scripts(&s.on_input(&ServiceInput::Shutdown)).is_empty());
}

#[test]
fn misc_dynamic_weight_and_portless_real_servers() {
    let conf = r#"
virtual_server 192.0.2.10 80 {
lb_algo wrr
real_server 198.51.100.11 {
    weight 5
    MISC_CHECK {
        misc_path "/bin/true"
        misc_dynamic
    }
}
}
"#;
    let (mut s, _) = LbState::from_config(&load(conf));
    // The checker names it with port 0; the data plane uses the service port.
    let mut e = ev("192.0.2.10:80/TCP", 11, true);
    e.rs.port = 0;
    e.detail = "exit 4; dynamic_weight=2".into();
    s.on_check(&e);
    let d = s.desired();
    assert_eq!(d[0].destinations[0].port, 80);
    assert_eq!(d[0].destinations[0].weight, 2);
}

#[test]
fn backend_setting_parses() {
    assert_eq!(backend_setting(&load(CONF)), Ok(BackendKind::Auto));
}

#[test]
fn refused_overrides_change_nothing_and_say_why() {
    let (mut s, _) = LbState::from_config(&load(CONF));
    let before = weights(&s);
    let addr: IpAddr = "198.51.100.77".parse().unwrap();
    let refused = |fx: Vec<Effect>| match fx.as_slice() {
        [Effect::Event(LbEvent::Override { error: Some(e), .. })] => e.clone(),
        other => panic!("{other:?}"),
    };
    let e = refused(s.on_input(&ServiceInput::RsDrain {
        vs: "192.0.2.10:80/TCP".into(),
        addr,
        port: 8080,
    }));
    assert_eq!(e, "no real server 198.51.100.77:8080 in 192.0.2.10:80/TCP");
    let e = refused(s.on_input(&ServiceInput::RsAdd {
        vs: "192.0.2.99:80/TCP".into(),
        addr,
        port: 8080,
        weight: 1,
    }));
    assert_eq!(e, "no virtual server 192.0.2.99:80/TCP");
    assert_eq!(weights(&s), before);
}
