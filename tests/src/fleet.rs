//! The fleet topology: the classic pair plus ha-manager on its own host, and hactl run
//! from the client namespace.
//!
//! ```text
//!   client 192.0.2.100 (hactl)        mgr 192.0.2.50 (ha-manager :7400)
//!        |                                 |
//!   ------------------ br0 (switch namespace) ------------------
//!        |                                 |
//!   lb1 192.0.2.1 (ha-agent)          lb2 192.0.2.2 (ha-agent)
//! ```
//!
//! Everything is started through the CLI contract (DESIGN.md, issue 3):
//! - `ha-manager --listen ADDR --data DIR [--insecure | --tls-dir DIR]`
//! - `ha-manager pki init --dir DIR`, `ha-manager pki issue --dir DIR --name NAME
//!   --role agent|viewer|operator|admin [--san X]` (NAME.pem, NAME.key, ca.pem in DIR)
//! - `ha-agent --config F --state-dir D --manager URL [--insecure | --tls-ca F
//!   --tls-cert F --tls-key F] [--node NAME]`
//! - `hactl --manager URL [--insecure | --ca F --cert F --key F] ...`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::netns::{run, Netns};
use crate::proc::{bin, Agent, Daemon};
use crate::scenario::{fast_pair_conf, Classic, Node, CLIENT};

/// The manager host's address on the LAN.
pub const MGR_ADDR: &str = "192.0.2.50";
/// The manager's gRPC port.
pub const MGR_PORT: u16 = 7400;
/// Index of the manager host in the LAN (after lb1, lb2, client).
pub const MGR: usize = 3;
/// libfaketime, multi-threaded flavour (Debian package faketime / libfaketime).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// How the fleet talks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plaintext, `--insecure` everywhere.
    Insecure,
    /// mTLS with the CA and certificates in this directory.
    Tls(PathBuf),
}

/// What hactl printed and how it exited.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Fail with everything hactl said unless it exited 0.
    pub fn ok(self) -> Result<Out> {
        if self.code != 0 {
            bail!(
                "hactl exited {}:\nstdout: {}\nstderr: {}",
                self.code,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }

    /// Parse stdout as one JSON value.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("hactl stdout is not one JSON value:\n{}", self.stdout))
    }
}

/// Manager, two agents, a client for hactl.
#[derive(Debug)]
pub struct Fleet {
    /// The manager process (declared first: stops before the namespaces go).
    pub manager: Option<Daemon>,
    /// How many times the manager was started (names its log files).
    pub manager_runs: u32,
    /// lb1, lb2, client, and the manager host; `classic.nodes` holds the agents.
    pub classic: Classic,
    /// Manager data directory (sled); kept across manager restarts.
    pub data: PathBuf,
    /// Plaintext or mTLS.
    pub security: Security,
    /// More ha-manager arguments for every start (`--ping-interval-s 1`...).
    pub manager_args: Vec<String>,
    /// Program run in front of ha-manager with `manager_args` first (e.g. `prlimit`
    /// and its options ending in `--`); None runs ha-manager directly.
    pub manager_wrapper: Option<Vec<String>>,
    /// More ha-agent arguments for every agent start (`--metrics-listen ADDR`...).
    pub agent_args: Vec<String>,
    /// Environment (`NAME=value`) for every agent start, through /usr/bin/env.
    pub agent_env: Vec<String>,
}

impl Fleet {
    /// Build the LAN with a manager host; start nothing. With `tls`, create a CA and the
    /// certificates: manager (SAN 192.0.2.50), agents lb1 and lb2, and an operator, a
    /// viewer and an admin for hactl.
    pub fn new(test: &str, tls: bool) -> Result<Fleet> {
        let mut classic = Classic::new(test)?;
        let idx =
            classic
                .lan
                .add_host("hmg", &format!("{MGR_ADDR}/24"), Some("2001:db8::50/64"))?;
        assert_eq!(idx, MGR, "manager host index");
        let data = classic.dir.join("mgr-data");
        let security = if tls {
            let pki = classic.dir.join("pki");
            pki_init(&pki)?;
            issue_manager_cert(&pki)?;
            for (name, role) in [
                ("lb1", "agent"),
                ("lb2", "agent"),
                ("operator", "operator"),
                ("viewer", "viewer"),
                ("admin", "admin"),
            ] {
                pki_issue(&pki, name, role, &[])?;
            }
            Security::Tls(pki)
        } else {
            Security::Insecure
        };
        Ok(Fleet {
            manager: None,
            manager_runs: 0,
            classic,
            data,
            security,
            manager_args: Vec::new(),
            manager_wrapper: None,
            agent_args: Vec::new(),
            agent_env: Vec::new(),
        })
    }

    /// Manager, then lb1 (MASTER 150) and lb2 (BACKUP 100) on the fast pair's configs
    /// (`lb2_clock`: a libfaketime offset for lb2), both connected and settled as
    /// `hactl status` shows them.
    pub fn settled_pair(test: &str, tls: bool, lb2_clock: Option<&str>) -> Result<Fleet> {
        let mut f = Fleet::new(test, tls)?;
        f.start_manager()?;
        f.start_pair(lb2_clock)?;
        Ok(f)
    }

    /// Start lb1 (MASTER 150) and lb2 (BACKUP 100) on the fast pair's configs and wait
    /// until the manager shows both connected, lb1 MASTER and lb2 BACKUP.
    pub fn start_pair(&mut self, lb2_clock: Option<&str>) -> Result<()> {
        let long = Duration::from_secs(20);
        self.start_agent(0, &fast_pair_conf(0), None)?;
        self.start_agent(1, &fast_pair_conf(1), lb2_clock)?;
        self.classic.wait_state(0, "VI_1", "MASTER", long)?;
        self.classic.wait_state(1, "VI_1", "BACKUP", long)?;
        self.wait_status(
            "both agents connected, lb1 MASTER, lb2 BACKUP",
            Duration::from_secs(30),
            |s| {
                connected(s, "lb1")
                    && connected(s, "lb2")
                    && state_of(s, "lb1", "VI_1") == "MASTER"
                    && state_of(s, "lb2", "VI_1") == "BACKUP"
            },
        )?;
        Ok(())
    }

    /// The manager URL for this fleet's security.
    pub fn url(&self) -> String {
        match self.security {
            Security::Insecure => format!("http://{MGR_ADDR}:{MGR_PORT}"),
            Security::Tls(_) => format!("https://{MGR_ADDR}:{MGR_PORT}"),
        }
    }

    /// The manager host's namespace.
    pub fn mgr_ns(&self) -> &Netns {
        self.classic.lan.ns(MGR)
    }

    /// Start ha-manager on the manager host (same `--data` every time) and wait until
    /// hactl gets a status from it.
    pub fn start_manager(&mut self) -> Result<()> {
        self.manager = None;
        self.manager_runs += 1;
        let listen = format!("{MGR_ADDR}:{MGR_PORT}");
        let data = self.data.to_string_lossy().into_owned();
        let mut args = vec!["--listen", listen.as_str(), "--data", data.as_str()];
        let tls_dir;
        match &self.security {
            Security::Insecure => args.push("--insecure"),
            Security::Tls(pki) => {
                tls_dir = pki.to_string_lossy().into_owned();
                args.extend(["--tls-dir", tls_dir.as_str()]);
            }
        }
        args.extend(self.manager_args.iter().map(String::as_str));
        let name = format!("ha-manager-{}", self.manager_runs);
        let manager = bin("ha-manager")?;
        let manager_s = manager.to_string_lossy().into_owned();
        let (program, argv): (PathBuf, Vec<&str>) = match &self.manager_wrapper {
            Some(w) if !w.is_empty() => {
                let mut v: Vec<&str> = w[1..].iter().map(String::as_str).collect();
                v.push(manager_s.as_str());
                v.extend(args.iter().copied());
                (PathBuf::from(&w[0]), v)
            }
            _ => (manager.clone(), args.clone()),
        };
        let d = Daemon::start(
            self.classic.lan.ns(MGR),
            &self.classic.dir.join("mgr"),
            &name,
            &program,
            &argv,
        )?;
        self.manager = Some(d);
        let limit = Duration::from_secs(20);
        let start = Instant::now();
        loop {
            let out = self.hactl(&["status", "--json"])?;
            if out.code == 0 {
                return Ok(());
            }
            if let Some(m) = self.manager.as_mut() {
                if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    bail!("ha-manager exited ({st}):\n{}", m.log_text());
                }
            }
            if start.elapsed() > limit {
                bail!(
                    "manager not answering after {limit:?}: {}\nlog:\n{}",
                    out.stderr,
                    self.manager_log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// kill -9 the manager and reap it.
    pub fn kill_manager(&mut self) -> Result<()> {
        let m = self.manager.as_mut().context("manager not running")?;
        m.signal("KILL")?;
        m.wait_exit(Duration::from_secs(10))?;
        self.manager = None;
        Ok(())
    }

    /// The current manager log (empty if none runs).
    pub fn manager_log(&self) -> String {
        self.manager
            .as_ref()
            .map(Daemon::log_text)
            .unwrap_or_default()
    }

    /// Write `conf` and start ha-agent on lb`idx+1` as node `lb<idx+1>`, linked to the
    /// manager. `wall_offset` runs it under libfaketime with its wall clock shifted by
    /// that offset (e.g. "+5s"); the monotonic clock is left alone. The state directory
    /// is kept across restarts.
    pub fn start_agent(&mut self, idx: usize, conf: &str, wall_offset: Option<&str>) -> Result<()> {
        let name = format!("lb{}", idx + 1);
        let dir = self.classic.dir.join(&name);
        fs::create_dir_all(&dir)?;
        let cfg = dir.join("keepalived.conf");
        fs::write(&cfg, conf)?;
        let state_dir = dir.join("state");
        let url = self.url();
        let agent = bin("ha-agent")?;
        let mut env = self.agent_env.clone();
        if let Some(off) = wall_offset {
            env.extend(faketime_env(&FakeClock::Offset(off)));
        }
        let (program, mut args) = if env.is_empty() {
            (agent, Vec::new())
        } else {
            env.push(agent.to_string_lossy().into_owned());
            (PathBuf::from("/usr/bin/env"), env)
        };
        args.extend(agent_args(&cfg, &state_dir, &name, &url, &self.security));
        args.extend(self.agent_args.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // Drop (and so stop) any earlier process on this node first.
        self.classic.nodes[idx] = None;
        let daemon = Daemon::start(self.classic.lan.ns(idx), &dir, "ha-agent", &program, &argv)?;
        self.classic.nodes[idx] = Some(Node::Agent(Agent { daemon, state_dir }));
        Ok(())
    }

    /// The agent on lb`idx+1`.
    pub fn agent(&self, idx: usize) -> Result<&Agent> {
        match self.classic.nodes[idx].as_ref() {
            Some(Node::Agent(a)) => Ok(a),
            _ => bail!("no ha-agent on lb{}", idx + 1),
        }
    }

    /// Run hactl in the client namespace with this fleet's connection options (as the
    /// operator when TLS).
    pub fn hactl(&self, args: &[&str]) -> Result<Out> {
        self.hactl_as("operator", args)
    }

    /// Run hactl with the certificate of `identity` (ignored without TLS).
    pub fn hactl_as(&self, identity: &str, args: &[&str]) -> Result<Out> {
        let mut conn: Vec<String> = vec![
            "--manager".into(),
            self.url(),
            "--timeout".into(),
            "20s".into(),
        ];
        match &self.security {
            Security::Insecure => conn.push("--insecure".into()),
            Security::Tls(pki) => {
                let p = |f: String| pki.join(f).to_string_lossy().into_owned();
                conn.extend([
                    "--ca".into(),
                    p("ca.pem".into()),
                    "--cert".into(),
                    p(format!("{identity}.pem")),
                    "--key".into(),
                    p(format!("{identity}.key")),
                ]);
            }
        }
        let mut all: Vec<&str> = conn.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        self.hactl_raw(&all)
    }

    /// Run hactl in the client namespace with exactly these arguments.
    pub fn hactl_raw(&self, args: &[&str]) -> Result<Out> {
        let hactl = bin("hactl")?;
        let out = self
            .classic
            .lan
            .ns(CLIENT)
            .command(&hactl.to_string_lossy())
            .args(args)
            .env_remove("HACTL_MANAGER")
            .env_remove("HACTL_CA")
            .env_remove("HACTL_CERT")
            .env_remove("HACTL_KEY")
            .stdin(std::process::Stdio::null())
            .output()
            .context("run hactl")?;
        Ok(Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `hactl status --json`, parsed.
    pub fn status(&self) -> Result<Value> {
        self.hactl(&["status", "--json"])?.ok()?.json()
    }

    /// Poll `hactl status --json` every 200 ms until `cond` holds; returns that status.
    pub fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let start = Instant::now();
        let mut last = Value::Null;
        loop {
            if let Ok(v) = self.status() {
                if cond(&v) {
                    return Ok(v);
                }
                last = v;
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for: {what}\nlast status: {last:#}\nmanager log:\n{}",
                    self.manager_log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `hactl history --json ARGS`: the events, oldest first.
    pub fn history(&self, args: &[&str]) -> Result<Vec<Value>> {
        let mut all = vec!["history", "--json"];
        all.extend_from_slice(args);
        let v = self.hactl(&all)?.ok()?.json()?;
        v["events"]
            .as_array()
            .cloned()
            .with_context(|| format!("history has no events array: {v}"))
    }

    /// Poll history (200 ms) until `cond` holds on the events; returns them.
    pub fn wait_history(
        &self,
        what: &str,
        args: &[&str],
        limit: Duration,
        mut cond: impl FnMut(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let start = Instant::now();
        let mut last = Vec::new();
        loop {
            if let Ok(ev) = self.history(args) {
                if cond(&ev) {
                    return Ok(ev);
                }
                last = ev;
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for: {what}\nlast history: {:#}",
                    Value::Array(last)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Start ha-agent on lb`idx+1` with an empty state directory (forgets persisted
    /// overrides), otherwise like [`Fleet::start_agent`].
    pub fn start_agent_fresh(&mut self, idx: usize, conf: &str) -> Result<()> {
        self.classic.nodes[idx] = None;
        let state = self
            .classic
            .dir
            .join(format!("lb{}", idx + 1))
            .join("state");
        if state.exists() {
            fs::remove_dir_all(&state)?;
        }
        self.start_agent(idx, conf, None)
    }

    /// Drop (or let through again) VRRP, IP protocol 112, arriving at lb`idx+1`.
    pub fn block_vrrp(&self, idx: usize, block: bool) -> Result<()> {
        let ns = self.classic.lan.ns(idx);
        if block {
            ns.sh(
                "nft add table inet hatest && \
                 nft 'add chain inet hatest input { type filter hook input priority 0; policy accept; }' && \
                 nft add rule inet hatest input meta l4proto 112 drop",
            )?;
        } else {
            ns.sh("nft delete table inet hatest")?;
        }
        Ok(())
    }
}

/// How libfaketime shifts a process's wall clock; the monotonic clock is never faked.
#[derive(Debug, Clone, Copy)]
pub enum FakeClock<'a> {
    /// A fixed offset for the process's whole life ("+5s").
    Offset(&'a str),
    /// An offset read from this file (re-read every second), so a running process can be
    /// stepped by rewriting it ("+30", "-3600", "+0").
    File(&'a Path),
}

/// The `env` arguments that preload libfaketime with `clock`; the program and its
/// arguments follow them (run through `/usr/bin/env`).
pub fn faketime_env(clock: &FakeClock) -> Vec<String> {
    let mut v = vec![format!("LD_PRELOAD={LIBFAKETIME}")];
    match clock {
        FakeClock::Offset(off) => {
            v.push(format!("FAKETIME={off}"));
            v.push("FAKETIME_NO_CACHE=1".into());
        }
        FakeClock::File(f) => {
            v.push(format!("FAKETIME_TIMESTAMP_FILE={}", f.display()));
            v.push("FAKETIME_CACHE_DURATION=1".into());
        }
    }
    v.push("FAKETIME_DONT_FAKE_MONOTONIC=1".into());
    v.push("DONT_FAKE_MONOTONIC=1".into());
    v
}

/// ha-agent's arguments for node `name` on `cfg`, linked to the manager at `url`.
pub fn agent_args(
    cfg: &Path,
    state_dir: &Path,
    name: &str,
    url: &str,
    security: &Security,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--config".into(),
        cfg.to_string_lossy().into_owned(),
        "--state-dir".into(),
        state_dir.to_string_lossy().into_owned(),
        "--runtime-dir".into(),
        state_dir.to_string_lossy().into_owned(),
        "--node".into(),
        name.into(),
        "--manager".into(),
        url.into(),
    ];
    match security {
        Security::Insecure => args.push("--insecure".into()),
        Security::Tls(pki) => {
            let p = |f: String| pki.join(f).to_string_lossy().into_owned();
            args.extend([
                "--tls-ca".into(),
                p("ca.pem".into()),
                "--tls-cert".into(),
                p(format!("{name}.pem")),
                "--tls-key".into(),
                p(format!("{name}.key")),
            ]);
        }
    }
    args
}

/// A node of a status JSON by name.
pub fn node<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

/// An instance of a node in a status JSON.
pub fn instance<'a>(status: &'a Value, node_name: &str, inst: &str) -> Option<&'a Value> {
    node(status, node_name)?["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == inst)
}

/// The state of an instance in a status JSON ("" if absent).
pub fn state_of(status: &Value, node_name: &str, inst: &str) -> String {
    instance(status, node_name, inst)
        .and_then(|i| i["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Whether a node is connected in a status JSON.
pub fn connected(status: &Value, node_name: &str) -> bool {
    node(status, node_name).is_some_and(|n| n["connected"] == true)
}

/// Alerts of a status JSON whose kind is `kind`.
pub fn alerts_of<'a>(status: &'a Value, kind: &str) -> Vec<&'a Value> {
    status["alerts"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["kind"] == kind).collect())
        .unwrap_or_default()
}

/// `ha-manager pki init --dir DIR`.
pub fn pki_init(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    run(Command::new(bin("ha-manager")?).args(["pki", "init", "--dir", &dir.to_string_lossy()]))?;
    Ok(())
}

/// `ha-manager pki issue --dir DIR --name NAME --role ROLE [--san X]...`.
pub fn pki_issue(dir: &Path, name: &str, role: &str, sans: &[&str]) -> Result<()> {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "pki",
        "issue",
        "--dir",
        d.as_str(),
        "--name",
        name,
        "--role",
        role,
    ];
    for s in sans {
        args.extend(["--san", s]);
    }
    run(Command::new(bin("ha-manager")?).args(&args))?;
    Ok(())
}

/// The manager's server certificate: `manager.pem` / `manager.key` in the TLS dir, valid
/// for 192.0.2.50 (the address agents and hactl dial). Assumption about the manager:
/// `--tls-dir` serves `manager.pem` and trusts `ca.pem`; if `pki init` already wrote a
/// server certificate, this one replaces it with the LAN address among its names.
pub fn issue_manager_cert(dir: &Path) -> Result<()> {
    pki_issue(dir, "manager", "manager", &[MGR_ADDR, "localhost"])
}
