//! Log rotation (issue 6): logrotate renames `--log-file`, then sends SIGHUP; ha-agent and
//! ha-manager must go on writing to a new file at the original path, the renamed file
//! keeping only what came before.
//!
//! No namespace needed: the agent runs a config without VRRP instances (it sends nothing
//! and adds no address), the manager listens on 127.0.0.1 port 0 without TLS.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::bin;
use ha_tests::proc::wait_until;
use ha_tests::scratch::Scratch;

const LIMIT: Duration = Duration::from_secs(20);

/// A child process killed on drop.
struct Proc(Child);

impl Proc {
    fn start(program: &Path, args: &[&str], out: &Path) -> Result<Proc> {
        let stderr = fs::File::create(out)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Proc(child))
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .args(["-s", sig, &self.0.id().to_string()])
            .status()?;
        anyhow::ensure!(st.success(), "kill -s {sig} failed");
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// Wait until `path` holds a line containing `needle`.
fn wait_line(path: &Path, needle: &str) -> Result<()> {
    wait_until(&format!("{needle:?} in {}", path.display()), LIMIT, || {
        read(path).contains(needle)
    })
    .with_context(|| format!("{} holds:\n{}", path.display(), read(path)))
}

/// Rename `log` as logrotate does, SIGHUP `p`, and check that `after` (a line the process
/// writes once SIGHUP is handled) lands in a new file at the original path while
/// the renamed one keeps `before`.
fn rotate_and_check(p: &Proc, log: &Path, before: &str, after: &str) -> Result<()> {
    wait_line(log, before)?;
    let rotated = log.with_extension("log.1");
    fs::rename(log, &rotated)?;
    p.signal("HUP")?;
    wait_line(log, after)?;
    let old = read(&rotated);
    let new = read(log);
    assert!(old.contains(before), "rotated file lost its lines:\n{old}");
    assert!(
        !old.contains(after),
        "a line written after SIGHUP went to the rotated file:\n{old}"
    );
    assert!(!new.contains(before), "new file has old lines:\n{new}");
    Ok(())
}

#[test]
fn agent_reopens_its_log_file_on_sighup() -> Result<()> {
    let dir = Scratch::new("log-reopen-agent")?;
    let conf = dir.0.join("keepalived.conf");
    fs::write(&conf, "global_defs {\n    router_id logtest\n}\n")?;
    let log = dir.0.join("agent.log");
    let (c, s, l) = (
        conf.to_string_lossy().into_owned(),
        dir.0.join("state").to_string_lossy().into_owned(),
        log.to_string_lossy().into_owned(),
    );
    let p = Proc::start(
        &bin("ha-agent")?,
        &[
            "--config",
            &c,
            "--state-dir",
            &s,
            "--runtime-dir",
            &s,
            "--log-file",
            &l,
            "--log-format",
            "json",
        ],
        &dir.0.join("stderr"),
    )?;
    rotate_and_check(&p, &log, "ha-agent started", "configuration reloaded")?;
    // The new file is in the same format (one JSON object a line).
    for line in read(&log).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        assert!(v["message"].is_string(), "{line}");
    }
    // And logging goes on there.
    p.signal("TERM")?;
    wait_line(&log, "SIGTERM: stopping")?;
    Ok(())
}

#[test]
fn manager_reopens_its_log_file_on_sighup() -> Result<()> {
    let dir = Scratch::new("log-reopen-mgr")?;
    let log = dir.0.join("manager.log");
    let (d, l) = (
        dir.0.join("data").to_string_lossy().into_owned(),
        log.to_string_lossy().into_owned(),
    );
    let p = Proc::start(
        &bin("ha-manager")?,
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            &d,
            "--insecure",
            "--log-file",
            &l,
        ],
        &dir.0.join("stderr"),
    )?;
    rotate_and_check(&p, &log, "listening", "SIGHUP: log file reopened")?;
    p.signal("TERM")?;
    wait_line(&log, "history flushed")?;
    Ok(())
}
