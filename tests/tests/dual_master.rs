//! Dual master: two instances with crossing priorities (VI_1 vrid 51 192.0.2.10 mastered
//! by lb1, VI_2 vrid 52 192.0.2.20 by lb2); one node's link down, the other holds both;
//! link up, they split again; the client reaches both VIPs after every step while two
//! background pingers count replies (printed, not asserted: no timing asserts).
//! And a sync group: a weight-0 tracker failing on one member takes both members to FAULT
//! on that node, and the peer takes both.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::Result;
use ha_tests::conf::{self, global, instance, p, sync_group, transitions, vrrp_script};
use ha_tests::measure::{largest_gap, Pinger};
use ha_tests::proc::wait_until;
use ha_tests::scenario::{Classic, Impl, CLIENT};

const VIP1: &str = "192.0.2.10";
const VIP2: &str = "192.0.2.20";
const LONG: Duration = Duration::from_secs(15);

/// Both instances on one node: VI_1 at `p1`, VI_2 at `p2`, `extra` blocks before them
/// and `vi1_extra` inside VI_1.
fn two_instances(node: &str, p1: u8, p2: u8, blocks: &str, vi1_extra: &str) -> String {
    let state = |p: u8| if p > 120 { "MASTER" } else { "BACKUP" };
    format!(
        "{}{blocks}{}{}",
        global(node, ""),
        instance("VI_1", 51, state(p1), p1, "192.0.2.10/24", vi1_extra),
        instance("VI_2", 52, state(p2), p2, "192.0.2.20/24", "")
    )
}

/// Wait until `vip` is on lb`idx+1` only, then check the client reaches it.
fn held_by(c: &Classic, vip: &str, idx: usize) -> Result<()> {
    wait_until(
        &format!("{vip} on lb{} only", idx + 1),
        LONG,
        || matches!(c.holder(vip), Ok(Some(h)) if h == idx),
    )?;
    assert!(c.client_reaches(vip), "client cannot reach {vip}");
    Ok(())
}

#[test]
fn crossing_priorities_split_merge_and_split_again() -> Result<()> {
    let mut c = Classic::new("dual")?;
    c.start(0, Impl::HaAgent, &two_instances("lb1", 150, 100, "", ""))?;
    c.start(1, Impl::HaAgent, &two_instances("lb2", 100, 150, "", ""))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(0, "VI_2", "BACKUP", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    c.wait_state(1, "VI_2", "MASTER", LONG)?;
    held_by(&c, VIP1, 0)?;
    held_by(&c, VIP2, 1)?;

    let start = Instant::now();
    let ping1 = Pinger::start(c.lan.ns(CLIENT), VIP1, "0.05")?;
    let ping2 = Pinger::start(c.lan.ns(CLIENT), VIP2, "0.05")?;
    std::thread::sleep(Duration::from_millis(300));

    // lb1's link down: it faults, lb2 holds both.
    c.lan.set_link(0, false)?;
    c.wait_state(0, "VI_1", "FAULT", LONG)?;
    c.wait_state(0, "VI_2", "FAULT", LONG)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_2", "MASTER", LONG)?;
    held_by(&c, VIP1, 1)?;
    held_by(&c, VIP2, 1)?;

    // Link up: lb1 preempts VI_1 back, VI_2 stays on lb2.
    c.lan.set_link(0, true)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(0, "VI_2", "BACKUP", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    c.wait_state(1, "VI_2", "MASTER", LONG)?;
    held_by(&c, VIP1, 0)?;
    held_by(&c, VIP2, 1)?;
    std::thread::sleep(Duration::from_millis(300));

    let secs = start.elapsed().as_secs_f64();
    let sent = (secs / 0.05) as usize;
    for (vip, ping) in [(VIP1, ping1), (VIP2, ping2)] {
        let replies = ping.stop();
        println!(
            "{vip}: {} replies in {secs:.1} s (about {} lost), largest gap {:.3} s",
            replies.len(),
            sent.saturating_sub(replies.len()),
            largest_gap(&replies).unwrap_or(f64::NAN)
        );
        assert!(!replies.is_empty(), "{vip} never answered the pinger");
    }
    // VI_2 never left lb2: no transition there beyond its startup.
    assert_eq!(
        transitions(c.node(1), "VI_2")
            .iter()
            .filter(|s| *s == "MASTER")
            .count(),
        1,
        "VI_2 moved: {:?}",
        transitions(c.node(1), "VI_2")
    );
    Ok(())
}

#[test]
fn sync_group_member_fault_takes_the_group_to_the_peer() -> Result<()> {
    let mut c = Classic::new("syncgrp")?;
    let d = conf::mkdir(&c.dir.join("scripts"))?;
    let flag = d.join("broken");
    let group_log = d.join("group.log");
    let notify = conf::write_script(
        &d.join("group-notify.sh"),
        &format!("echo \"$*\" >> {}", p(&group_log)),
    )?;
    // lb1: both members master at 150; VI_1 alone tracks a weight-0 script.
    let lb1_blocks = format!(
        "{}{}",
        vrrp_script(
            "chk_vi1",
            &format!("/usr/bin/test ! -e {}", p(&flag)),
            "interval 0.2\ntimeout 2"
        ),
        sync_group("G1", &["VI_1", "VI_2"], &format!("notify {}", p(&notify)))
    );
    let lb1 = two_instances(
        "lb1",
        150,
        150,
        &lb1_blocks,
        "track_script {\n    chk_vi1\n}",
    );
    let lb2 = two_instances(
        "lb2",
        100,
        100,
        &sync_group("G1", &["VI_1", "VI_2"], ""),
        "",
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2)?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "MASTER", LONG)?;
        c.wait_state(1, inst, "BACKUP", LONG)?;
    }
    held_by(&c, VIP1, 0)?;
    held_by(&c, VIP2, 0)?;

    // VI_1's tracker fails: VI_2 has no tracker of its own but follows its group.
    fs::write(&flag, "")?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "FAULT", LONG)?;
        c.wait_state(1, inst, "MASTER", LONG)?;
    }
    held_by(&c, VIP1, 1)?;
    held_by(&c, VIP2, 1)?;
    wait_until("group FAULT notified", LONG, || {
        fs::read_to_string(&group_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("GROUP G1 FAULT"))
    })
    .map_err(|e| {
        e.context(format!(
            "group.log: {:?}\n{}",
            fs::read_to_string(&group_log).unwrap_or_default(),
            c.node(0).daemon().log_text()
        ))
    })?;

    // It recovers: the whole group comes back to lb1.
    fs::remove_file(&flag)?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "MASTER", LONG)?;
        c.wait_state(1, inst, "BACKUP", LONG)?;
    }
    held_by(&c, VIP1, 0)?;
    held_by(&c, VIP2, 0)?;
    Ok(())
}

#[test]
fn sync_group_own_track_script_faults_every_member() -> Result<()> {
    // keepalived: a vrrp_sync_group may track scripts itself (`track_script` inside the
    // group, weight 0): a failure puts every member in FAULT.
    let mut c = Classic::new("syncgrp-trk")?;
    let d = conf::mkdir(&c.dir.join("scripts"))?;
    let flag = d.join("broken");
    let lb1_blocks = format!(
        "{}{}",
        vrrp_script(
            "chk_group",
            &format!("/usr/bin/test ! -e {}", p(&flag)),
            "interval 0.2\ntimeout 2"
        ),
        sync_group("G1", &["VI_1", "VI_2"], "track_script {\n    chk_group\n}")
    );
    let lb1 = two_instances("lb1", 150, 150, &lb1_blocks, "");
    let lb2 = two_instances(
        "lb2",
        100,
        100,
        &sync_group("G1", &["VI_1", "VI_2"], ""),
        "",
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2)?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "MASTER", LONG)?;
        c.wait_state(1, inst, "BACKUP", LONG)?;
    }

    fs::write(&flag, "")?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "FAULT", Duration::from_secs(8))?;
        c.wait_state(1, inst, "MASTER", LONG)?;
    }
    held_by(&c, VIP1, 1)?;
    held_by(&c, VIP2, 1)?;

    fs::remove_file(&flag)?;
    for inst in ["VI_1", "VI_2"] {
        c.wait_state(0, inst, "MASTER", LONG)?;
        c.wait_state(1, inst, "BACKUP", LONG)?;
    }
    Ok(())
}
