//! Two ha-agents in the classic topology: election, failover, handover, preemption,
//! virtual MAC; the client pings the VIP after every step.

use std::time::Duration;

use anyhow::Result;
use ha_tests::scenario::{render, Classic, Impl, Inst, Node};

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(15);

fn pair(test: &str, a: Inst, b: Inst) -> Result<Classic> {
    let mut c = Classic::new(test)?;
    c.start(0, Impl::HaAgent, &render("lb1", &[a]))?;
    c.start(1, Impl::HaAgent, &render("lb2", &[b]))?;
    Ok(c)
}

fn fast(state: &'static str, prio: u8) -> Inst {
    let mut i = Inst::new("VI_1", 51, state, prio);
    i.version = 3;
    i.advert_int = "0.1".into();
    i
}

fn assert_serves(c: &Classic, idx: usize) -> Result<()> {
    assert_eq!(c.holder(VIP)?, Some(idx), "VIP holder");
    assert!(c.client_reaches(VIP), "client cannot reach the VIP");
    Ok(())
}

#[test]
fn election_by_priority_and_link_failover_v2() -> Result<()> {
    let a = Inst::new("VI_1", 51, "MASTER", 150);
    let b = Inst::new("VI_1", 51, "BACKUP", 100);
    let c = pair("elect", a, b)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_serves(&c, 0)?;

    // Cut lb1's link: it goes FAULT and gives up the VIP, lb2 takes over.
    c.lan.set_link(0, false)?;
    c.wait_state(0, "VI_1", "FAULT", LONG)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert_serves(&c, 1)?;

    // Restore it: lb1 (higher priority, preempt) takes the VIP back.
    c.lan.set_link(0, true)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_serves(&c, 0)?;
    Ok(())
}

#[test]
fn sigterm_hands_over_with_priority_zero() -> Result<()> {
    let mut c = pair("term", fast("MASTER", 150), fast("BACKUP", 100))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_serves(&c, 0)?;

    c.node_mut(0).stop()?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert_serves(&c, 1)?;
    // lb1 removed its VIP on the way out and told lb2 with priority 0.
    assert!(!c.lan.ns(0).has_addr(VIP));
    let log = c.node(0).daemon().log_text();
    assert!(log.contains("priority 0"), "no priority-0 log line:\n{log}");
    if let Node::Agent(b) = c.node(1) {
        let s = b.stats()?;
        let got = s["instances"][0]["counters"]["prio0_received"].as_u64();
        assert!(got >= Some(1), "lb2 did not count a priority-0 advert: {s}");
    }
    Ok(())
}

#[test]
fn nopreempt_keeps_the_new_master() -> Result<()> {
    let mut a = fast("BACKUP", 150);
    a.nopreempt = true;
    let mut b = fast("BACKUP", 100);
    b.nopreempt = true;
    let c = pair("nopre", a, b)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;

    c.lan.set_link(0, false)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    c.lan.set_link(0, true)?;
    c.wait_state(0, "VI_1", "BACKUP", LONG)?;
    // Many master-down intervals later lb1 still has not preempted.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.node(0).state("VI_1").as_deref(), Some("BACKUP"));
    assert_eq!(c.node(1).state("VI_1").as_deref(), Some("MASTER"));
    assert_serves(&c, 1)?;
    Ok(())
}

#[test]
fn preempt_delay_defers_the_takeover() -> Result<()> {
    let mut c = Classic::new("pdelay")?;
    c.start(1, Impl::HaAgent, &render("lb2", &[fast("BACKUP", 100)]))?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    // lb1 has the higher priority but waits preempt_delay (4 s) after startup before it
    // preempts; without the delay it would take over within a master-down interval (~0.35 s).
    let mut a = fast("BACKUP", 150);
    a.preempt_delay = Some(4);
    c.start(0, Impl::HaAgent, &render("lb1", &[a]))?;
    c.wait_state(0, "VI_1", "BACKUP", LONG)?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.node(0).state("VI_1").as_deref(),
        Some("BACKUP"),
        "preempted too early"
    );
    assert_eq!(c.node(1).state("VI_1").as_deref(), Some("MASTER"));
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_serves(&c, 0)?;
    Ok(())
}

#[test]
fn use_vmac_client_sees_the_virtual_mac_across_failover() -> Result<()> {
    let mut a = fast("MASTER", 150);
    a.use_vmac = true;
    let mut b = fast("BACKUP", 100);
    b.use_vmac = true;
    let c = pair("vmac", a, b)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    let vmac = "00:00:5e:00:01:33"; // VRID 51
    assert!(c.client_reaches(VIP));
    assert_eq!(
        c.client_neigh(VIP).as_deref(),
        Some(vmac),
        "lb1 eth0 {}, lb2 eth0 {}",
        c.mac(0)?,
        c.mac(1)?
    );

    c.lan.set_link(0, false)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert!(c.client_reaches(VIP), "VIP unreachable after failover");
    assert_eq!(c.client_neigh(VIP).as_deref(), Some(vmac));
    Ok(())
}

#[test]
fn ipv6_vip_v3_failover() -> Result<()> {
    let v6 = "2001:db8::10";
    let mut a = fast("MASTER", 150);
    a.vips = vec![format!("{v6}/64")];
    let mut b = fast("BACKUP", 100);
    b.vips = a.vips.clone();
    let c = pair("v6", a, b)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_eq!(c.holder(v6)?, Some(0));
    assert!(c.client_reaches(v6));
    c.lan.set_link(0, false)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert_eq!(c.holder(v6)?, Some(1));
    assert!(c.client_reaches(v6));
    Ok(())
}

#[test]
fn crash_leftover_vip_is_removed_at_restart() -> Result<()> {
    let mut c = pair("crash", fast("MASTER", 150), fast("BACKUP", 100))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    // kill -9: no priority 0, no cleanup; the VIP stays behind on lb1.
    c.node(0).daemon().signal("KILL")?;
    c.node_mut(0).daemon_mut().wait_exit(LONG)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert!(c.lan.ns(0).has_addr(VIP), "the crash left no VIP behind");
    // A manually added address on lb1 is not ours and must survive the cleanup.
    c.lan.ns(0).sh("ip addr add 198.51.100.7/32 dev eth0")?;
    // Restart lb1 as a low-priority backup: it removes the leftover at start.
    c.start(0, Impl::HaAgent, &render("lb1", &[fast("BACKUP", 50)]))?;
    c.wait_state(0, "VI_1", "BACKUP", LONG)?;
    ha_tests::proc::wait_until("leftover VIP removed", LONG, || !c.lan.ns(0).has_addr(VIP))?;
    assert!(
        c.lan.ns(0).has_addr("198.51.100.7"),
        "a foreign address was removed"
    );
    assert_serves(&c, 1)?;
    Ok(())
}
