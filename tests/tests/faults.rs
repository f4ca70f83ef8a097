//! The worst day, on one pair of ha-agents in namespaces: stray signals sent to a master,
//! a panic, kill -9 followed by `ha-agent --cleanup`, a backup stopped (SIGSTOP) for longer
//! than Master_Down_Interval while the master is healthy, and persisted overrides across a
//! start with an empty runtime directory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ha_tests::proc::{bin, wait_until, Agent, Daemon};
use ha_tests::scenario::{fast_inst, render, Classic, Impl, Inst, Node};

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(15);
/// An address of the operator's on the master's interface: never ours to remove.
const FOREIGN: &str = "192.0.2.77";

fn fast(state: &'static str, prio: u8, advert: &str) -> Inst {
    fast_inst(state, prio, advert)
}

/// lb1 MASTER (150), lb2 BACKUP (100), both settled.
fn pair(test: &str, advert: &str, lb1_extra: &[&str], vmac: bool) -> Result<Classic> {
    let mut c = Classic::new(test)?;
    let mut a = fast("MASTER", 150, advert);
    let mut b = fast("BACKUP", 100, advert);
    a.use_vmac = vmac;
    b.use_vmac = vmac;
    c.start_agent_with(0, &render("lb1", &[a]), lb1_extra)?;
    c.start(1, Impl::HaAgent, &render("lb2", &[b]))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    assert_eq!(c.holder(VIP)?, Some(0), "VIP holder after start");
    Ok(c)
}

fn agent_stats(c: &Classic, idx: usize) -> Result<serde_json::Value> {
    match c.node(idx) {
        Node::Agent(a) => a.stats(),
        Node::Keepalived(_) => anyhow::bail!("not an agent"),
    }
}

#[test]
fn stray_signals_never_kill_a_master_and_usr1_dumps_the_state() -> Result<()> {
    let mut c = pair("sigs", "0.1", &[], false)?;
    for sig in [
        "QUIT", "ALRM", "PIPE", "XFSZ", "XCPU", "VTALRM", "PROF", "IO", "PWR", "STKFLT", "37",
        "64", "USR2", "HUP",
    ] {
        c.node(0).daemon().signal(sig)?;
        // A few advert intervals: long enough for a dead master to be noticed.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            c.node_mut(0).daemon_mut().running(),
            "SIG{sig} killed the master; log:\n{}",
            c.node(0).daemon().log_text()
        );
        assert_eq!(c.holder(VIP)?, Some(0), "VIP holder after SIG{sig}");
    }
    assert_eq!(c.node(1).entered("VI_1", "MASTER"), 0, "lb2 took over");
    let log = c.node(0).daemon().log_text();
    assert!(
        log.contains("SIGQUIT received: ignored"),
        "no log of SIGQUIT:\n{log}"
    );

    // SIGUSR1: keepalived's data dump, text and JSON, without disturbing VRRP.
    let dir = c.dir.join("lb1").join("state");
    let text_path = dir.join("keepalived.data");
    let _ = std::fs::remove_file(&text_path);
    c.node(0).daemon().signal("USR1")?;
    wait_until("keepalived.data", Duration::from_secs(5), || {
        text_path.exists()
    })?;
    let text = std::fs::read_to_string(&text_path)?;
    for want in [
        " VRRP Instance = VI_1",
        "   State = MASTER",
        "   Virtual Router ID = 51",
        "   Priority = 150",
        "   Virtual IP (1):",
        "     192.0.2.10/24 dev eth0",
    ] {
        assert!(text.contains(want), "data dump lacks '{want}':\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("keepalived.json"))?)?;
    assert_eq!(json["instances"][0]["state"], "MASTER", "{json}");
    assert_eq!(json["instances"][0]["vips"][0], "192.0.2.10/24", "{json}");
    assert!(c.node_mut(0).daemon_mut().running());
    assert_eq!(c.node(1).entered("VI_1", "MASTER"), 0, "lb2 took over");
    Ok(())
}

#[test]
fn a_panic_resigns_and_removes_only_our_addresses() -> Result<()> {
    let mut c = Classic::new("panic")?;
    c.lan
        .ns(0)
        .ip(&["addr", "add", &format!("{FOREIGN}/32"), "dev", "eth0"])?;
    let (a, b) = (fast("MASTER", 150, "1"), fast("BACKUP", 100, "1"));
    // The panic comes from a thread of its own, a few seconds after lb1 is master.
    c.start_agent_with(0, &render("lb1", &[a]), &["--test-panic-after-ms", "6000"])?;
    c.start(1, Impl::HaAgent, &render("lb2", &[b]))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    let code = c.node_mut(0).daemon_mut().wait_exit(LONG)?;
    assert_eq!(code, Some(70), "exit status after a panic");
    // Priority 0 went out: lb2 takes over after Skew_Time, not Master_Down_Interval, and
    // counts it.
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    let s = agent_stats(&c, 1)?;
    assert!(
        s["instances"][0]["counters"]["prio0_received"].as_u64() >= Some(1),
        "lb2 heard no priority 0: {s}"
    );
    assert!(
        !c.lan.ns(0).has_addr(VIP),
        "the VIP was left on lb1:\n{}",
        c.node(0).daemon().log_text()
    );
    assert!(
        c.lan.ns(0).has_addr(FOREIGN),
        "the operator's address was removed"
    );
    assert_eq!(c.holder(VIP)?, Some(1));
    let log = c.node(0).daemon().log_text();
    assert!(
        log.contains("--cleanup: removed 1 address"),
        "cleanup log:\n{log}"
    );
    Ok(())
}

#[test]
fn kill_9_then_cleanup_removes_ours_and_nothing_else() -> Result<()> {
    let mut c = pair("kill9", "0.1", &[], true)?;
    let ns = c.lan.ns(0);
    ns.ip(&["addr", "add", &format!("{FOREIGN}/32"), "dev", "eth0"])?;
    // nftables: a table of ours (the data plane's name) and one of the operator's.
    let nft = ns.ok("nft -f - <<'EOF'\ntable ip ha_lb {\n}\ntable ip operator_t {\n}\nEOF");
    c.node(0).daemon().signal("KILL")?;
    c.node_mut(0).daemon_mut().wait_exit(LONG)?;
    // kill -9 runs no code: the VIP and the vmac are still there.
    assert!(c.lan.ns(0).has_addr(VIP), "VIP gone before cleanup?");
    assert!(
        c.lan.ns(0).ok("ip link show vrrp.51"),
        "vmac gone before cleanup?"
    );
    let conf = c.dir.join("lb1").join("keepalived.conf");
    let out = c
        .lan
        .ns(0)
        .command(&bin("ha-agent")?.to_string_lossy())
        .args(["--cleanup", "--config", &conf.to_string_lossy()])
        .output()
        .context("run --cleanup")?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "--cleanup failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("1 vmac"), "{said}");
    let ns = c.lan.ns(0);
    assert!(!ns.has_addr(VIP), "VIP left after --cleanup");
    assert!(!ns.ok("ip link show vrrp.51"), "vmac left after --cleanup");
    assert!(
        ns.has_addr(FOREIGN),
        "--cleanup removed the operator's address"
    );
    assert!(
        ns.has_addr("192.0.2.1"),
        "--cleanup removed the primary address"
    );
    if nft {
        assert!(!ns.ok("nft list table ip ha_lb"), "our nft table left");
        assert!(
            ns.ok("nft list table ip operator_t"),
            "--cleanup removed another table"
        );
    }
    // lb2 took over meanwhile (no priority 0 from a kill -9).
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    Ok(())
}

#[test]
fn a_stalled_backup_does_not_take_over_from_a_healthy_master() -> Result<()> {
    // 100 ms adverts: at 10 ms a debug-build master on a busy 2-core machine stalls for
    // longer than Master_Down_Interval on its own, and the backup's takeover is then right
    // (stall-bench measures 10 ms under CPU hogs, release build).
    for (advert, stop) in [("0.1", 1000u64), ("0.1", 700)] {
        let c = pair(&format!("stall{stop}"), advert, &[], false)?;
        let before = agent_stats(&c, 1)?["stalls"].as_u64().unwrap_or(0);
        for _ in 0..5 {
            // Stopped for several Master_Down_Intervals while lb1 keeps advertising; the
            // adverts wait in lb2's socket.
            c.node(1).daemon().signal("STOP")?;
            std::thread::sleep(Duration::from_millis(stop));
            c.node(1).daemon().signal("CONT")?;
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = c.node(1).daemon().log_text();
        assert_eq!(
            c.node(1).entered("VI_1", "MASTER"),
            0,
            "advert {advert}: the stalled backup took over:\n{log}"
        );
        assert_eq!(c.holder(VIP)?, Some(0));
        let s = agent_stats(&c, 1)?;
        let stalls = s["stalls"].as_u64().unwrap_or(0) - before;
        assert!(
            stalls >= 5,
            "advert {advert}: {stalls} stalls counted of 5: {s}"
        );
        assert!(log.contains("a stall"), "no stall log line:\n{log}");
        drop(c);
    }
    Ok(())
}

#[test]
fn persisted_overrides_survive_an_empty_runtime_dir() -> Result<()> {
    use ha_agent::link::bridge::OverrideSet;
    let mut c = Classic::new("persist")?;
    let dir = c.dir.join("lb1");
    let state = dir.join("var-lib");
    let run = dir.join("run");
    let mut set = OverrideSet {
        generation: 7,
        ..OverrideSet::default()
    };
    set.priorities
        .insert("VI_1".into(), ha_agent::units::Priority(200));
    ha_agent::link::persist::store(&state, &set)?;
    let conf = render("lb1", &[fast("BACKUP", 100, "0.1")]);
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("keepalived.conf");
    std::fs::write(&cfg, conf)?;
    let (f, s, r) = (
        cfg.to_string_lossy(),
        state.to_string_lossy(),
        run.to_string_lossy(),
    );
    let start = Instant::now();
    let daemon = Daemon::start(
        c.lan.ns(0),
        &dir,
        "ha-agent",
        &bin("ha-agent")?,
        &["--config", &f, "--state-dir", &s, "--runtime-dir", &r],
    )?;
    c.nodes[0] = Some(Node::Agent(Agent {
        daemon,
        state_dir: run.clone(),
    }));
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    // stats.json lands in the runtime dir; the override is in force from the first advert.
    let stats_path = run.join("stats.json");
    c.node(0).daemon().signal("USR2")?;
    wait_until("stats.json in --runtime-dir", LONG, || stats_path.exists())?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_path)?)?;
    assert_eq!(v["instances"][0]["override_priority"], 200, "{v}");
    assert_eq!(v["instances"][0]["effective_priority"], 200, "{v}");
    assert!(
        !state.join("stats.json").exists(),
        "runtime file in the state dir"
    );
    let log = c.node(0).daemon().log_text();
    assert!(log.contains("persisted overrides re-applied"), "{log}");
    eprintln!("override in force after {:?}", start.elapsed());
    Ok(())
}

/// Fields of `/proc/<pid>/task/<tid>/stat` after the command name: (nice, rt_priority,
/// policy) (fields 19, 40 and 41 of proc(5)).
fn sched_of(pid: u32, tid: &str) -> Result<(i64, i64, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat without a command name")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<i64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("stat field {} in {stat}", i + 3))
    };
    Ok((num(16)?, num(37)?, num(38)?))
}

#[test]
fn vrrp_process_tuning_applies_to_the_vrrp_thread_only() -> Result<()> {
    // keepalived's vrrp_priority (nice), vrrp_rt_priority (SCHED_RR) and vrrp_no_swap
    // (mlockall) on a running master.
    let mut c = Classic::new("sched")?;
    let conf = render("lb1", &[fast("MASTER", 150, "0.1")]).replacen(
        "router_id lb1\n",
        "router_id lb1\n    vrrp_priority -5\n    vrrp_rt_priority 10\n    vrrp_no_swap\n",
        1,
    );
    // The metrics endpoint runs on a thread of its own, started before the tuning.
    c.start_agent_with(0, &conf, &["--metrics-listen", "127.0.0.1:9464"])?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    let pid = c.node(0).daemon().pid().context("agent pid")?;
    // The engine runs on the main thread (tid = pid).
    let (nice, rt, policy) = sched_of(pid, &pid.to_string())?;
    let log = c.node(0).daemon().log_text();
    assert_eq!(
        (policy, rt),
        (i64::from(libc::SCHED_RR), 10),
        "VRRP thread not SCHED_RR 10; log:\n{log}"
    );
    assert_eq!(nice, -5, "VRRP thread nice; log:\n{log}");
    // Threads made before it (load balancer, telemetry, tokio's blocking pool) keep
    // the default class.
    let others: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|t| *t != pid.to_string())
        .collect();
    assert!(!others.is_empty(), "the agent has other threads");
    for t in &others {
        let (_, _, p) = sched_of(pid, t)?;
        assert_eq!(p, 0, "thread {t} left SCHED_OTHER");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmLck in /proc/pid/status")?;
    assert!(locked_kb > 0, "vrrp_no_swap locked nothing:\n{status}");
    // A master that still works: the VIP is held.
    assert_eq!(c.holder(VIP)?, Some(0));
    Ok(())
}

#[test]
fn a_full_disk_under_the_agent_dirs_stops_nothing_that_runs() -> Result<()> {
    use ha_tests::fleet::{instance, Fleet};
    use ha_tests::scenario::fast_pair_conf;
    use ha_tests::tmpfs::Tmpfs;
    // lb1's state and runtime directory on a tiny tmpfs, filled to the last block.
    let mut f = Fleet::new("agentfull", false)?;
    let disk = Tmpfs::mount(&f.classic.dir.join("lb1").join("state"), "256k")?;
    f.start_manager()?;
    f.start_agent(0, &fast_pair_conf(0), None)?;
    f.start_agent(1, &fast_pair_conf(1), None)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status("lb1 connected", LONG, |s| {
        instance(s, "lb1", "VI_1").is_some()
    })?;
    let ballast = disk.fill("ballast")?;
    let state = f.agent(0)?.state_dir.clone();

    // A push is applied (VRRP runs it) and the operator is told it is not persisted.
    let out = f.hactl(&["set-priority", "lb1", "VI_1", "200"])?;
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("not persisted"), "hactl: {out:?}");
    f.wait_status("priority 200 in force", LONG, |s| {
        instance(s, "lb1", "VI_1").is_some_and(|i| i["effective_priority"] == 200)
    })?;
    // Dumps fail with a log line, not with the agent.
    for sig in ["USR1", "USR2"] {
        f.agent(0)?.daemon.signal(sig)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = f.agent(0)?.daemon.log_text();
    assert!(
        f.classic.node_mut(0).daemon_mut().running(),
        "full disk killed the agent:\n{log}"
    );
    assert!(
        log.to_lowercase().contains("no space left"),
        "no log of the failed writes:\n{log}"
    );
    assert_eq!(f.classic.holder(VIP)?, Some(0), "VIP holder on a full disk");
    assert_eq!(
        f.classic.node(1).entered("VI_1", "MASTER"),
        0,
        "lb2 took over"
    );

    // Space again: the next push persists and the dump is written.
    std::fs::remove_file(&ballast)?;
    f.hactl(&["set-priority", "lb1", "VI_1", "210"])?.ok()?;
    let persisted = ha_agent::link::persist::load_persisted(&state)?
        .context("overrides.json after space returned")?;
    assert_eq!(
        persisted.priorities.get("VI_1").map(|p| p.0),
        Some(210),
        "{persisted:?}"
    );
    f.agent(0)?.daemon.signal("USR1")?;
    wait_until("keepalived.data once space returned", LONG, || {
        state.join("keepalived.data").exists()
    })?;
    Ok(())
}

/// `se.slice` of a task, ns (`/proc/<pid>/task/<tid>/sched`).
fn slice_of(pid: u32, tid: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched"))?;
    text.lines()
        .find(|l| l.starts_with("se.slice"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("se.slice in\n{text}"))
}

#[test]
fn the_vrrp_thread_asks_for_a_short_time_slice() -> Result<()> {
    // Without vrrp_rt_priority the VRRP thread asks EEVDF for a 0.5 ms slice, so its
    // wake-ups preempt CPU hogs, and without vrrp_priority it runs at the agent's default
    // niceness; the other threads keep the defaults.
    let mut c = Classic::new("slice")?;
    let conf = render("lb1", &[fast("MASTER", 150, "0.1")]);
    c.start_agent_with(0, &conf, &["--metrics-listen", "127.0.0.1:9464"])?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    let pid = c.node(0).daemon().pid().context("agent pid")?;
    let main = slice_of(pid, &pid.to_string())?;
    let wanted = u64::try_from(ha_agent::runtime::sched::VRRP_SLICE.as_nanos())?;
    assert_eq!(main, wanted, "VRRP thread slice");
    let (nice, _, policy) = sched_of(pid, &pid.to_string())?;
    assert_eq!(policy, 0, "still SCHED_OTHER");
    // No vrrp_priority: the agent's default niceness for the VRRP thread only.
    assert_eq!(
        nice,
        i64::from(ha_agent::runtime::sched::DEFAULT_VRRP_NICE),
        "VRRP thread nice"
    );
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))?.filter_map(|e| e.ok()) {
        let tid = t.file_name().to_string_lossy().into_owned();
        if tid != pid.to_string() {
            assert_ne!(
                slice_of(pid, &tid)?,
                wanted,
                "thread {tid} got the short slice"
            );
            assert_eq!(
                sched_of(pid, &tid)?.0,
                0,
                "thread {tid} got the VRRP niceness"
            );
        }
    }
    Ok(())
}
