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

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::fleet::{connected, instance, node, state_of, Fleet, MGR_ADDR, MGR_PORT};
use ha_tests::scenario::fast_pair_conf;
use ha_tests::tmpfs::Tmpfs;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(30);

fn conf(idx: usize) -> String {
    fast_pair_conf(idx)
}

/// Start both agents and wait until the manager shows lb1 MASTER, lb2 BACKUP.
fn start_pair(f: &mut Fleet) -> Result<()> {
    f.start_pair(None)
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

/// Fails on duplicates, disorder and holes in any (node, boot) seq run, and on GAP
/// events; every run starts at seq 1. Returns the events per (node, boot).
fn check_history(events: &[Value]) -> Result<BTreeMap<(String, String), Vec<u64>>> {
    let mut last_id = 0;
    let mut seen = HashSet::new();
    let mut per_boot: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for e in events {
        let hid = e["history_id"].as_u64().context("history_id")?;
        if hid <= last_id {
            bail!("history out of order at history_id {hid} (after {last_id})");
        }
        last_id = hid;
        if e["kind"] == "GAP" {
            bail!("history records a gap: {e}");
        }
        if s(&e["boot_id"]).is_empty() {
            continue; // manager events carry no agent seq
        }
        let key = (s(&e["node"]).to_string(), s(&e["boot_id"]).to_string());
        let seq = e["seq"].as_u64().context("seq")?;
        if !seen.insert((key.clone(), seq)) {
            bail!("duplicate event {key:?} seq {seq}");
        }
        per_boot.entry(key).or_default().push(seq);
    }
    for (key, seqs) in &per_boot {
        if seqs.first() != Some(&1) {
            bail!("{key:?} does not start at seq 1: {seqs:?}");
        }
        for w in seqs.windows(2) {
            if w[1] != w[0] + 1 {
                bail!(
                    "{key:?}: seq {} follows {} (a silent gap): {seqs:?}",
                    w[1],
                    w[0]
                );
            }
        }
    }
    Ok(per_boot)
}

/// The agent's link metrics (`--metrics-listen 127.0.0.1:9464` in its namespace):
/// (buffered events, reconnects).
fn link_metrics(f: &Fleet, idx: usize) -> Result<(u64, u64)> {
    let text = f
        .classic
        .lan
        .ns(idx)
        .sh("curl -s --max-time 5 http://127.0.0.1:9464/metrics")?;
    let get = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .find_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map(|v| v as u64)
    };
    Ok((
        get("ha_link_buffered_events").context("ha_link_buffered_events")?,
        get("ha_link_reconnects").unwrap_or(0),
    ))
}

/// lb2 with track_files (weight -1 each) the test flips to make events.
fn conf_with_files(files: &[std::path::PathBuf]) -> String {
    let mut c = String::new();
    let mut names = String::new();
    for (i, file) in files.iter().enumerate() {
        c.push_str(&format!(
            "vrrp_track_file tf_load{i} {{\n    file {}\n    weight -1\n}}\n\n",
            file.display()
        ));
        names.push_str(&format!("        tf_load{i}\n"));
    }
    c.push_str(&conf(1).replace(
        "    virtual_ipaddress {",
        &format!("    track_file {{\n{names}    }}\n    virtual_ipaddress {{"),
    ));
    c
}

/// `n` load files in the test dir, all "0".
fn load_files(f: &Fleet, n: usize) -> Result<Vec<std::path::PathBuf>> {
    (0..n)
        .map(|i| {
            let p = f.classic.dir.join(format!("lb2-load{i}"));
            std::fs::write(&p, "0\n")?;
            Ok(p)
        })
        .collect()
}

type Stop = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// Flips every file between 0 and 1 every 100 ms until the flag is set (each flip the
/// agent sees is a TRACKER event).
fn flipper(files: Vec<std::path::PathBuf>) -> (Stop, std::thread::JoinHandle<()>) {
    let stop: Stop = Default::default();
    let st = stop.clone();
    let h = std::thread::spawn(move || {
        let mut v = 0;
        while !st.load(std::sync::atomic::Ordering::SeqCst) {
            v = 1 - v;
            for file in &files {
                let _ = std::fs::write(file, format!("{v}\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for file in &files {
            let _ = std::fs::write(file, "0\n");
        }
    });
    (stop, h)
}

#[test]
fn a_full_disk_stops_acks_and_the_manager_catches_up_without_a_restart() -> Result<()> {
    let mut f = Fleet::new("mfdisk", false)?;
    let mnt = f.classic.dir.join("mgr-mnt");
    let tmpfs = Tmpfs::mount(&mnt, "40m")?;
    f.data = mnt.join("data");
    f.manager_args = ["--ping-interval-s", "1"].map(String::from).to_vec();
    f.agent_args = ["--metrics-listen", "127.0.0.1:9464"]
        .map(String::from)
        .to_vec();
    f.start_manager()?;
    let files = load_files(&f, 2)?;
    f.start_agent(0, &conf(0), None)?;
    f.start_agent(1, &conf_with_files(&files), None)?;
    f.wait_status("both agents connected", SETTLE, |s| {
        connected(s, "lb1") && connected(s, "lb2") && state_of(s, "lb1", "VI_1") == "MASTER"
    })?;
    let (stop, flip) = flipper(files);

    // Fill the disk.
    let filler = tmpfs.fill("filler")?;
    let (_, reconnects_before) = link_metrics(&f, 1)?;
    let full_at = Instant::now();
    let st = f.wait_status("store-unavailable alert", SETTLE, |s| {
        s["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["kind"] == "store-unavailable"))
    })?;
    println!(
        "store-unavailable after {:?} of a full disk",
        full_at.elapsed()
    );
    println!("alert: {}", st["alerts"]);
    // Nothing is acked while full: lb2's buffer only grows.
    let (b1, _) = link_metrics(&f, 1)?;
    let grew = {
        let start = Instant::now();
        loop {
            let (b, _) = link_metrics(&f, 1)?;
            if b > b1 + 5 {
                break b;
            }
            if start.elapsed() > SETTLE {
                bail!("lb2's unacked buffer did not grow while the disk is full ({b1} -> {b})");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // Commands are refused with a clear error, nothing changed.
    let out = f.hactl(&["set-priority", "lb2", "VI_1", "120"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("not writable") && out.stderr.contains("nothing changed"),
        "{out:?}"
    );
    assert!(out.stderr.contains("disk full"), "{out:?}");
    let st = f.status()?;
    assert_eq!(
        instance(&st, "lb2", "VI_1").map(|i| i["override_priority"].clone()),
        Some(Value::Null),
        "a refused command changed nothing"
    );
    // Status still answers and lb2's stream stays up.
    assert!(connected(&st, "lb2"));
    std::thread::sleep(Duration::from_secs(3));
    let (b_full, reconnects_full) = link_metrics(&f, 1)?;
    println!(
        "while full: lb2 unacked {b1} -> {grew} -> {b_full}, reconnects {}",
        reconnects_full - reconnects_before
    );
    assert_eq!(
        reconnects_full, reconnects_before,
        "agent streams were dropped"
    );

    // Space comes back: without a restart, the manager writes again and catches up.
    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    f.wait_status("store-unavailable cleared", SETTLE, |s| {
        s["alerts"]
            .as_array()
            .is_some_and(|a| !a.iter().any(|x| x["kind"] == "store-unavailable"))
    })?;
    println!("writable again {:?} after space was freed", freed.elapsed());
    let mut ok = 0;
    for p in [
        "120", "clear", "130", "clear", "125", "clear", "121", "clear", "122", "clear",
    ] {
        if f.hactl(&["set-priority", "lb2", "VI_1", p])?.code == 0 {
            ok += 1;
        }
    }
    println!("{ok} of 10 commands ok after space was freed");
    assert_eq!(ok, 10);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = flip.join();
    // Everything acked, history complete: no duplicate, no hole, no gap.
    let start = Instant::now();
    loop {
        let (b, _) = link_metrics(&f, 1)?;
        if b == 0 {
            break;
        }
        if start.elapsed() > SETTLE {
            bail!("lb2 still has {b} unacked events");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, reconnects_after) = link_metrics(&f, 1)?;
    assert_eq!(
        reconnects_after, reconnects_before,
        "agent streams were dropped"
    );
    let events = f.history(&[])?;
    let runs = check_history(&events)?;
    let lb2: usize = runs
        .iter()
        .filter(|((n, _), _)| n == "lb2")
        .map(|(_, v)| v.len())
        .sum();
    println!(
        "history: {} events, lb2 {lb2}, no duplicate, no gap",
        events.len()
    );
    assert!(lb2 as u64 > grew, "lb2's buffered events reached history");
    let cmds = f.history(&["--kind", "command"])?;
    assert!(
        cmds.len() >= 10,
        "the 10 commands are audited: {}",
        cmds.len()
    );
    Ok(())
}

#[test]
fn kill_9_five_times_under_load_loses_and_duplicates_nothing() -> Result<()> {
    let mut f = Fleet::new("mfkill", false)?;
    f.manager_args = ["--ping-interval-s", "1"].map(String::from).to_vec();
    f.agent_args = ["--metrics-listen", "127.0.0.1:9464"]
        .map(String::from)
        .to_vec();
    f.start_manager()?;
    let files = load_files(&f, 8)?;
    f.start_agent(0, &conf(0), None)?;
    f.start_agent(1, &conf_with_files(&files), None)?;
    f.wait_status("both agents connected", SETTLE, |s| {
        connected(s, "lb1") && connected(s, "lb2") && state_of(s, "lb1", "VI_1") == "MASTER"
    })?;
    let (stop, flip) = flipper(files);
    let mut stored = f.history(&[])?.len();
    for round in 1..=5 {
        // Some of the load is in history, then the manager dies mid-stream.
        let before = stored;
        let evs = f.wait_history("more events stored", &[], SETTLE, |e| e.len() > before + 40)?;
        f.kill_manager()?;
        // It starts each time (start_manager waits for a status answer).
        f.start_manager()
            .with_context(|| format!("manager start after kill -9 number {round}"))?;
        f.wait_status("both agents back", SETTLE, |s| {
            connected(s, "lb1") && connected(s, "lb2")
        })?;
        stored = evs.len();
        println!("kill -9 #{round}: {stored} events in history before it");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = flip.join();
    let start = Instant::now();
    loop {
        let (b, _) = link_metrics(&f, 1)?;
        if b == 0 {
            break;
        }
        if start.elapsed() > SETTLE {
            bail!("lb2 still has {b} unacked events");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let events = f.history(&[])?;
    let runs = check_history(&events)?;
    let lb2: usize = runs
        .iter()
        .filter(|((n, _), _)| n == "lb2")
        .map(|(_, v)| v.len())
        .sum();
    let (_, reconnects) = link_metrics(&f, 1)?;
    println!(
        "after 5 kills: {} events, lb2 {lb2} in one run 1..={lb2}, lb2 reconnects {reconnects}, no duplicate, no gap",
        events.len()
    );
    assert!(
        reconnects >= 5,
        "lb2 reconnected after each kill: {reconnects}"
    );
    Ok(())
}

/// VI_1 of an agent's stats.json (SIGUSR2).
fn agent_vi1(f: &Fleet, idx: usize) -> Result<Value> {
    let stats = f.agent(idx)?.stats()?;
    stats["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "VI_1"))
        .cloned()
        .with_context(|| format!("VI_1 in stats: {stats}"))
}

/// Whether the manager's view of VI_1 on `node` says what the agent's stats say.
fn view_matches(status: &Value, node: &str, stats: &Value) -> bool {
    let Some(i) = instance(status, node, "VI_1") else {
        return false;
    };
    i["state"] == stats["state"]
        && i["effective_priority"] == stats["effective_priority"]
        && i["base_priority"] == stats["base_priority"]
        && i["override_priority"] == stats["override_priority"]
}

#[test]
fn status_shows_what_the_agent_runs_after_a_re_push() -> Result<()> {
    let mut f = Fleet::new("mfrepush", false)?;
    f.manager_args = ["--ping-interval-s", "1"].map(String::from).to_vec();
    f.start_manager()?;
    start_pair(&mut f)?;
    f.hactl(&["set-priority", "lb2", "VI_1", "200"])?.ok()?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;

    // No manager; lb2 restarts with an empty state dir: it forgets the override.
    f.kill_manager()?;
    f.classic.node_mut(1).stop()?;
    f.start_agent_fresh(1, &conf(1))?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    let forgot = agent_vi1(&f, 1)?;
    assert_eq!(forgot["effective_priority"], 100, "{forgot}");
    assert_eq!(forgot["override_priority"], Value::Null, "{forgot}");

    // The manager comes back and re-pushes the stored override: lb2 runs 200, MASTER.
    f.start_manager()?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    let runs = agent_vi1(&f, 1)?;
    assert_eq!(runs["effective_priority"], 200, "{runs}");
    assert_eq!(runs["override_priority"], 200, "{runs}");
    // The manager's view is rebuilt from the agent's report: the same numbers.
    let st = f.wait_status("lb2 as the agent runs it", SETTLE, |s| {
        view_matches(s, "lb2", &runs)
    })?;
    let table = f.hactl(&["status"])?.ok()?.stdout;
    let lb2_line = table
        .lines()
        .find(|l| l.starts_with("lb2"))
        .context("lb2 row")?;
    assert!(lb2_line.contains("200 (override)"), "{table}");
    // And it stays so (a later report does not bring back stale numbers).
    std::thread::sleep(Duration::from_secs(3));
    let again = agent_vi1(&f, 1)?;
    assert!(
        view_matches(&f.status()?, "lb2", &again),
        "{st:#}\nagent: {again}"
    );

    // A reconnect (manager restart, nothing to re-push) keeps it true; so does a push.
    f.kill_manager()?;
    f.start_manager()?;
    f.wait_status("lb2 after a reconnect", SETTLE, |s| {
        connected(s, "lb2") && view_matches(s, "lb2", &again)
    })?;
    f.hactl(&["set-priority", "lb2", "VI_1", "clear"])?.ok()?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    let cleared = agent_vi1(&f, 1)?;
    f.wait_status("lb2 after the clear", SETTLE, |s| {
        view_matches(s, "lb2", &cleared)
    })?;
    Ok(())
}
