//! Processes inside namespaces: ha-agent and keepalived daemons, killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

/// Path of a workspace binary (`ha-agent`, `hactl`, ...) in the same target dir as the
/// running test; `HA_BIN_DIR` overrides. Fails with a hint when it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("HA_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe()?;
            // target/<profile>/deps/<test> -> target/<profile>
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .context("no target dir")?
        }
    };
    let p = dir.join(name);
    if !p.exists() {
        bail!("{} not built (run `cargo build --bins` first)", p.display());
    }
    Ok(p)
}

/// Poll `cond` every 10 ms until it is true or `limit` passes; Err names `what`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("timed out after {limit:?} waiting for: {what}")
}

/// A daemon process started in a namespace, with its log in a scratch directory.
#[derive(Debug)]
pub struct Daemon {
    /// The running process (`ip netns exec ...`, which execs the program).
    pub child: Option<Child>,
    /// Scratch directory: config, logs, state.
    pub dir: PathBuf,
    /// Log file (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Start `program args` in `ns`, logging to `<dir>/<name>.log`.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[&str],
    ) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = ns
            .command(&program.to_string_lossy())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send a signal by name (TERM, KILL, HUP, USR2...).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("not running")?;
        crate::netns::run(std::process::Command::new("kill").args(["-s", sig, &pid.to_string()]))?;
        Ok(())
    }

    /// Wait for exit up to `limit`; returns the exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>> {
        let child = self.child.as_mut().context("not running")?;
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(st.code());
            }
            if start.elapsed() > limit {
                bail!("process did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An ha-agent running a keepalived.conf in a namespace.
#[derive(Debug)]
pub struct Agent {
    /// The process.
    pub daemon: Daemon,
    /// Its state directory (stats.json lives here).
    pub state_dir: PathBuf,
}

impl Agent {
    /// Write `conf` to `<dir>/keepalived.conf` and start ha-agent on it.
    pub fn start(ns: &Netns, dir: &Path, conf: &str) -> Result<Agent> {
        Agent::start_with(ns, dir, conf, &[])
    }

    /// [`Agent::start`] with more command-line arguments (`--metrics-listen ADDR`...).
    pub fn start_with(ns: &Netns, dir: &Path, conf: &str, extra: &[&str]) -> Result<Agent> {
        fs::create_dir_all(dir)?;
        let cfg = dir.join("keepalived.conf");
        fs::write(&cfg, conf)?;
        let state_dir = dir.join("state");
        let bin = bin("ha-agent")?;
        let (c, s) = (cfg.to_string_lossy(), state_dir.to_string_lossy());
        let mut args = vec!["--config", &c, "--state-dir", &s, "--runtime-dir", &s];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(ns, dir, "ha-agent", &bin, &args)?;
        Ok(Agent { daemon, state_dir })
    }

    /// Ask for a stats dump (SIGUSR2) and return the parsed `stats.json`.
    pub fn stats(&self) -> Result<serde_json::Value> {
        let path = self.state_dir.join("stats.json");
        let before = read_json(&path).ok().and_then(|v| v["dump_seq"].as_u64());
        self.daemon.signal("USR2")?;
        let mut value = None;
        wait_until(
            "stats.json dump",
            Duration::from_secs(5),
            || match read_json(&path) {
                Ok(v) if v["dump_seq"].as_u64() != before => {
                    value = Some(v);
                    true
                }
                _ => false,
            },
        )?;
        value.context("no stats")
    }

    /// The state of `instance` as the agent reports it (MASTER, BACKUP, FAULT, INIT).
    pub fn state(&self, instance: &str) -> Result<String> {
        let s = self.stats()?;
        s["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == instance))
            .and_then(|i| i["state"].as_str())
            .map(str::to_string)
            .with_context(|| format!("instance {instance} not in stats: {s}"))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&fs::read_to_string(path)?)?)
}
