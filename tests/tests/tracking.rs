//! Trackers move the VIP: the hot switch with a `vrrp_script` testing that a file is
//! absent and with a `track_file` (weight -20 on the master: lb1 150 - 20 < lb2 140), a
//! failing weight-0 script putting the instance in FAULT, and a `track_interface` with a
//! weight lowering the priority instead of faulting.

use std::fs;
use std::time::Duration;

use anyhow::Result;
use ha_tests::conf::{self, effective_priority, global, instance, p, vrrp_script};
use ha_tests::proc::wait_until;
use ha_tests::scenario::{Classic, Impl};

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(15);

/// lb2: a plain backup at 140.
fn lb2_conf() -> String {
    format!(
        "{}{}",
        global("lb2", ""),
        instance("VI_1", 51, "BACKUP", 140, "192.0.2.10/24", "")
    )
}

/// lb1 (150, `lb1_extra` in its instance, `blocks` before it) and lb2 (140); waits for
/// lb1 MASTER, lb2 BACKUP.
fn start_pair(c: &mut Classic, blocks: &str, lb1_extra: &str) -> Result<()> {
    let lb1 = format!(
        "{}{blocks}{}",
        global("lb1", ""),
        instance("VI_1", 51, "MASTER", 150, "192.0.2.10/24", lb1_extra)
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2_conf())?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    Ok(())
}

/// lb`idx+1` serves the VIP: it is MASTER, the other BACKUP, it alone holds the VIP, and
/// the client reaches it.
fn serves(c: &Classic, idx: usize) -> Result<()> {
    c.wait_state(idx, "VI_1", "MASTER", LONG)?;
    c.wait_state(1 - idx, "VI_1", "BACKUP", LONG)?;
    wait_until(
        "VIP on the master only",
        LONG,
        || matches!(c.holder(VIP), Ok(Some(h)) if h == idx),
    )?;
    assert!(c.client_reaches(VIP), "client cannot reach the VIP");
    Ok(())
}

/// Wait until lb1 reports `prio` as its effective priority.
fn wait_priority(c: &Classic, prio: u64) -> Result<()> {
    let mut last = None;
    let r = wait_until(&format!("lb1 effective priority {prio}"), LONG, || {
        last = effective_priority(c.node(0), "VI_1").ok();
        last == Some(prio)
    });
    r.map_err(|e| e.context(format!("last seen {last:?}")))
}

#[test]
fn vrrp_script_file_absent_hot_switch() -> Result<()> {
    let mut c = Classic::new("trk-script")?;
    let flag = conf::mkdir(&c.dir)?.join("maintenance");
    let script = vrrp_script(
        "chk_flag",
        &format!("/usr/bin/test ! -e {}", p(&flag)),
        "interval 0.2\ntimeout 2\nweight -20",
    );
    start_pair(&mut c, &script, "track_script {\n    chk_flag\n}")?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;

    // The file appears: the script fails, lb1 drops to 130 < 140 and lb2 takes over.
    fs::write(&flag, "")?;
    serves(&c, 1)?;
    wait_priority(&c, 130)?;
    assert_eq!(
        c.node(0).state("VI_1").as_deref(),
        Some("BACKUP"),
        "a weighted script must lower the priority, not fault"
    );

    // It goes away: back to 150, lb1 preempts.
    fs::remove_file(&flag)?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;
    Ok(())
}

#[test]
fn track_file_weight_hot_switch() -> Result<()> {
    let mut c = Classic::new("trk-file")?;
    let file = c.dir.join("lb1-weight");
    fs::write(&file, "0\n")?;
    let blocks = format!(
        "vrrp_track_file tf_maint {{\n    file {}\n    weight -20\n}}\n\n",
        p(&file)
    );
    let lb1 = format!(
        "{}{blocks}{}",
        global("lb1", ""),
        instance(
            "VI_1",
            51,
            "MASTER",
            150,
            "192.0.2.10/24",
            "track_file {\n    tf_maint\n}"
        )
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2_conf())?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;

    // 1 x -20: lb1 at 130, lb2 takes the VIP.
    fs::write(&file, "1\n")?;
    serves(&c, 1)?;
    wait_priority(&c, 130)?;

    // 0: back to 150, lb1 preempts.
    fs::write(&file, "0\n")?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;

    // The value multiplies the weight: 2 x -20 = 110.
    fs::write(&file, "2\n")?;
    wait_priority(&c, 110)?;
    serves(&c, 1)?;
    Ok(())
}

#[test]
fn failing_weight_zero_script_is_fault() -> Result<()> {
    let mut c = Classic::new("trk-fault")?;
    let flag = conf::mkdir(&c.dir)?.join("broken");
    let script = vrrp_script(
        "chk_flag",
        &format!("/usr/bin/test ! -e {}", p(&flag)),
        "interval 0.2\ntimeout 2",
    );
    start_pair(&mut c, &script, "track_script {\n    chk_flag\n}")?;
    serves(&c, 0)?;

    fs::write(&flag, "")?;
    c.wait_state(0, "VI_1", "FAULT", LONG)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    wait_until("VIP left lb1", LONG, || !c.lan.ns(0).has_addr(VIP))?;
    assert_eq!(c.holder(VIP)?, Some(1));
    assert!(c.client_reaches(VIP), "client cannot reach the VIP on lb2");
    let st = conf::instance_stats(c.node(0), "VI_1")?;
    assert_eq!(st["state"], "FAULT", "stats disagree with the log: {st}");

    fs::remove_file(&flag)?;
    serves(&c, 0)?;
    Ok(())
}

#[test]
fn track_interface_with_weight_lowers_priority_not_fault() -> Result<()> {
    let mut c = Classic::new("trk-if")?;
    // A second link in lb1's namespace: a veth pair, trk0 tracked, its peer kept up.
    c.lan.ns(0).sh(
        "ip link add trk0 type veth peer name trk0p && ip link set trk0p up && ip link set trk0 up",
    )?;
    let lb1 = format!(
        "{}{}",
        global("lb1", ""),
        instance(
            "VI_1",
            51,
            "MASTER",
            150,
            "192.0.2.10/24",
            "track_interface {\n    trk0 weight -20\n}"
        )
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2_conf())?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;

    c.lan.ns(0).sh("ip link set trk0 down")?;
    serves(&c, 1)?;
    wait_priority(&c, 130)?;
    assert_eq!(
        c.node(0).entered("VI_1", "FAULT"),
        0,
        "a weighted interface must not fault the instance:\n{}",
        c.node(0).daemon().log_text()
    );

    c.lan.ns(0).sh("ip link set trk0 up")?;
    serves(&c, 0)?;
    wait_priority(&c, 150)?;
    Ok(())
}
