//! Interop with Debian's keepalived, each way round, on the same keepalived.conf:
//! keepalived master with ha-agent backup, and the reverse. For each: both settle into
//! the right roles, the client reaches the VIP, the master's link is cut and the backup
//! takes over, the link comes back and the master preempts again.

use std::time::Duration;

use anyhow::Result;
use ha_tests::scenario::{render, Classic, Impl, Inst};

const LONG: Duration = Duration::from_secs(20);

fn roundtrip(test: &str, master: Impl, backup: Impl, a: Inst, b: Inst, vip: &str) -> Result<()> {
    let mut c = Classic::new(test)?;
    let name = a.name.clone();
    // The master first: at 10 ms adverts a backup started alongside would time out
    // before a slow-starting peer sends its first advert.
    c.start(0, master, &render("lb1", &[a]))?;
    c.wait_state(0, &name, "MASTER", LONG)?;
    c.start(1, backup, &render("lb2", &[b]))?;
    c.wait_state(1, &name, "BACKUP", LONG)?;
    assert_eq!(c.holder(vip)?, Some(0));
    assert!(c.client_reaches(vip), "client cannot reach {vip} on lb1");
    // Both keep their roles: no flapping once settled.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.node(0).entered(&name, "MASTER"), 1, "lb1 flapped");
    assert_eq!(c.node(1).entered(&name, "MASTER"), 0, "lb2 became master");

    c.lan.set_link(0, false)?;
    c.wait_state(1, &name, "MASTER", LONG)?;
    assert_eq!(c.holder(vip)?, Some(1));
    assert!(c.client_reaches(vip), "client cannot reach {vip} on lb2");

    c.lan.set_link(0, true)?;
    c.wait_state(0, &name, "MASTER", LONG)?;
    c.wait_state(1, &name, "BACKUP", LONG)?;
    assert_eq!(c.holder(vip)?, Some(0));
    assert!(
        c.client_reaches(vip),
        "client cannot reach {vip} after preemption"
    );
    Ok(())
}

fn both_ways(test: &str, a: Inst, b: Inst, vip: &str) -> Result<()> {
    roundtrip(
        &format!("{test}k"),
        Impl::Keepalived,
        Impl::HaAgent,
        a.clone(),
        b.clone(),
        vip,
    )?;
    roundtrip(
        &format!("{test}h"),
        Impl::HaAgent,
        Impl::Keepalived,
        a,
        b,
        vip,
    )
}

fn inst(state: &'static str, prio: u8) -> Inst {
    Inst::new("VI_1", 51, state, prio)
}

#[test]
fn v2_pass_auth_1s() -> Result<()> {
    let mut a = inst("MASTER", 150);
    a.auth_pass = Some("s3cret".into());
    let mut b = inst("BACKUP", 100);
    b.auth_pass = a.auth_pass.clone();
    both_ways("v2", a, b, "192.0.2.10")
}

#[test]
fn v3_10ms() -> Result<()> {
    let mut a = inst("MASTER", 150);
    a.version = 3;
    a.advert_int = "0.01".into();
    let mut b = inst("BACKUP", 100);
    b.version = 3;
    b.advert_int = "0.01".into();
    both_ways("v3", a, b, "192.0.2.10")
}

#[test]
fn v3_ipv6_vip() -> Result<()> {
    let mut a = inst("MASTER", 150);
    a.version = 3;
    a.vips = vec!["2001:db8::10/64".into()];
    let mut b = inst("BACKUP", 100);
    b.version = 3;
    b.vips = a.vips.clone();
    both_ways("v6", a, b, "2001:db8::10")
}

#[test]
fn v2_unicast_peers() -> Result<()> {
    let mut a = inst("MASTER", 150);
    a.unicast = Some(("192.0.2.1".into(), vec!["192.0.2.2".into()]));
    let mut b = inst("BACKUP", 100);
    b.unicast = Some(("192.0.2.2".into(), vec!["192.0.2.1".into()]));
    both_ways("uc", a, b, "192.0.2.10")
}
