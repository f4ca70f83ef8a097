//! systemd integration (issue 12): the readiness protocol the `Type=notify` unit relies on,
//! and `systemd-analyze verify` on deploy/systemd's units.
//!
//! The agent runs in a namespace with `NOTIFY_SOCKET` naming a datagram socket this test
//! binds (a path: abstract names are per network namespace, so the agent could not reach
//! one bound out here). Every datagram must come in order: READY=1 once VRRP runs,
//! RELOADING=1 with MONOTONIC_USEC then READY=1 around each SIGHUP (an invalid config
//! too: the running one stays and the agent is ready again), STOPPING=1 on SIGTERM.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ha_tests::proc::{wait_until, Agent, Daemon};
use ha_tests::scenario::{fast_inst, render};
use ha_tests::scratch::Scratch;
use ha_tests::systemd::verify;
use ha_tests::{bin, Lan};

const LIMIT: Duration = Duration::from_secs(20);

/// The next datagram on `sock` as text (fails after the socket's read timeout).
fn next(sock: &UnixDatagram, what: &str) -> Result<String> {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .with_context(|| format!("no sd_notify datagram while waiting for {what}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The value of `KEY=` in a notify message.
fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The next datagram, which must carry `key=1`.
fn expect(sock: &UnixDatagram, key: &str) -> Result<String> {
    let m = next(sock, key)?;
    ensure!(field(&m, key) == Some("1"), "expected {key}=1, got {m:?}");
    Ok(m)
}

fn monotonic_usec(msg: &str) -> Result<u64> {
    field(msg, "MONOTONIC_USEC")
        .with_context(|| format!("RELOADING=1 without MONOTONIC_USEC: {msg:?}"))?
        .parse()
        .with_context(|| format!("MONOTONIC_USEC not a number: {msg:?}"))
}

fn priority(agent: &Agent) -> Result<u64> {
    let s = agent.stats()?;
    s["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "VI_1"))
        .and_then(|i| i["effective_priority"].as_u64())
        .with_context(|| format!("no VI_1 priority in {s}"))
}

#[test]
fn notify_ready_reload_and_stop_in_order() -> Result<()> {
    let mut lan = Lan::new()?;
    lan.add_host("hsd", "192.0.2.1/24", None)?;
    let scratch = Scratch::new("systemd-notify")?;
    let dir = &scratch.0;
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, render("lb1", &[fast_inst("MASTER", 150, "0.1")]))?;
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    sock.set_read_timeout(Some(LIMIT))?;

    let state_dir = dir.join("state");
    let agent_bin = bin("ha-agent")?;
    let notify_env = format!("NOTIFY_SOCKET={}", sock_path.display());
    let (a, c, s) = (
        agent_bin.to_string_lossy(),
        cfg.to_string_lossy(),
        state_dir.to_string_lossy(),
    );
    // `env` execs the agent, so the pid systemd would watch is the agent's.
    let daemon = Daemon::start(
        lan.ns(0),
        dir,
        "ha-agent",
        Path::new("/usr/bin/env"),
        &[
            &notify_env,
            &a,
            "--config",
            &c,
            "--state-dir",
            &s,
            "--runtime-dir",
            &s,
        ],
    )?;
    let mut agent = Agent { daemon, state_dir };

    // The first datagram is READY=1, and by then the instance runs (it is in the stats
    // the engine loop answers).
    let ready = expect(&sock, "READY").with_context(|| agent.daemon.log_text())?;
    ensure!(ready.ends_with('\n'), "{ready:?}");
    ensure!(priority(&agent)? == 150);
    wait_until("VI_1 MASTER", LIMIT, || {
        agent.state("VI_1").is_ok_and(|s| s == "MASTER")
    })?;
    ensure!(lan.ns(0).has_addr("192.0.2.10"), "VIP not added");

    // A valid reload: RELOADING=1 (stamped), then READY=1 with the new priority applied.
    fs::write(&cfg, render("lb1", &[fast_inst("MASTER", 140, "0.1")]))?;
    agent.daemon.signal("HUP")?;
    let first = monotonic_usec(&expect(&sock, "RELOADING")?)?;
    ensure!(first > 0);
    expect(&sock, "READY")?;
    ensure!(
        priority(&agent)? == 140,
        "reload not applied before READY=1"
    );

    // An invalid config: refused, the running one stays, ready again; a later stamp.
    fs::write(&cfg, "vrrp_instance VI_1 {\n    priority 300\n")?;
    agent.daemon.signal("HUP")?;
    let second = monotonic_usec(&expect(&sock, "RELOADING")?)?;
    ensure!(
        second > first,
        "MONOTONIC_USEC went back: {first} then {second}"
    );
    expect(&sock, "READY")?;
    ensure!(
        priority(&agent)? == 140,
        "a refused reload changed the priority"
    );
    ensure!(agent.daemon.running(), "agent died on an invalid reload");

    // SIGTERM: STOPPING=1, then a clean exit that removed the VIP.
    agent.daemon.signal("TERM")?;
    expect(&sock, "STOPPING")?;
    let code = agent.daemon.wait_exit(LIMIT)?;
    ensure!(
        code == Some(0),
        "exit {code:?}: {}",
        agent.daemon.log_text()
    );
    ensure!(!lan.ns(0).has_addr("192.0.2.10"), "VIP left after stop");
    // Nothing after STOPPING=1.
    sock.set_nonblocking(true)?;
    let mut buf = [0u8; 64];
    if let Ok(n) = sock.recv(&mut buf) {
        bail!(
            "datagram after STOPPING=1: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    Ok(())
}

/// deploy/systemd, relative to this crate.
fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

/// Copy both units into `dir` with the packaged binary paths pointing at the built ones.
fn rewritten_units(dir: &Path) -> Result<Vec<PathBuf>> {
    let agent = bin("ha-agent")?;
    let manager = bin("ha-manager")?;
    let mut out = Vec::new();
    for name in ["ha-agent.service", "ha-manager.service"] {
        let text = fs::read_to_string(unit_dir().join(name))?
            .replace("/usr/sbin/ha-agent", &agent.to_string_lossy())
            .replace("/usr/sbin/ha-manager", &manager.to_string_lossy());
        let p = dir.join(name);
        fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

#[test]
fn units_pass_systemd_analyze_verify() -> Result<()> {
    let scratch = Scratch::new("systemd-verify")?;
    let units = rewritten_units(&scratch.0)?;
    // The man pages of Documentation= are checked by tests/packaging.rs, where they exist.
    verify(&units, &["--man=no"], &[])?;

    // The check can fail: a misspelt key in a copy is reported.
    let text = fs::read_to_string(&units[0])?.replace("Type=notify", "Tpye=notify");
    let bad = scratch.0.join("bad").join("ha-agent.service");
    fs::create_dir_all(bad.parent().context("parent")?)?;
    fs::write(&bad, text)?;
    ensure!(
        verify(&[bad], &["--man=no"], &[]).is_err(),
        "a misspelt key passed verify"
    );
    Ok(())
}
