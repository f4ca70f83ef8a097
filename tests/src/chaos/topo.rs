//! The chaos topology and the nemeses that act on it.
//!
//! ```text
//!   observer 192.0.2.100 (arping, hactl, stress-ng)   mgr 192.0.2.50 (ha-manager)
//!        |                                                |
//!   ------------------------ br0 (switch namespace) ------------------------
//!        |                      |                      |
//!   n1 192.0.2.1           n2 192.0.2.2           n3 192.0.2.3
//!   CH_V2 master           CH_V3 master           CH_V3F master
//! ```
//! Every daemon runs under libfaketime with its wall clock read from a file, so a clock
//! step rewrites the file while it runs. Each start of a daemon logs to a file of its own
//! (`n1/ha-agent-2.log`), which the observer reads for states and boot ids.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::chaos::invariants::{priority, INSTANCES, SPLIT_MARGIN_MS};
use crate::chaos::schedule::{Direction, Fault};
use crate::fleet::{agent_args, faketime_env, FakeClock, Security, MGR_ADDR, MGR_PORT};
use crate::lan::Lan;
use crate::measure::process_tree;
use crate::proc::{bin, Agent, Daemon};
use crate::scenario::{keepalived_args, Impl, Node, KEEPALIVED};

/// Index of the manager host in the LAN.
pub const MGR: usize = 3;
/// Index of the observer host in the LAN.
pub const OBSERVER: usize = 4;

/// The keepalived.conf of node `n`: the three instances, each VIP on eth0.
pub fn conf(n: usize) -> String {
    let insts: Vec<crate::scenario::Inst> = INSTANCES
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let prio = priority(n, i);
            let state = if prio == 150 { "MASTER" } else { "BACKUP" };
            let mut x = crate::scenario::Inst::new(v.name, v.vrid, state, prio);
            x.version = v.version;
            x.advert_int = v.advert_int.into();
            x.vips = vec![format!("{}/24", v.vip)];
            x
        })
        .collect();
    crate::scenario::render(&format!("n{}", n + 1), &insts)
}

/// The log of one daemon start, read incrementally.
#[derive(Debug)]
pub struct LogTail {
    /// The file.
    pub path: PathBuf,
    /// When the daemon started (ms from the schedule's start; 0 before it).
    pub t_ms: u64,
    pos: u64,
    partial: String,
    /// Last state per instance index.
    pub states: [Option<String>; 3],
    /// `boot_id=...` as the agent's link logs it.
    pub boot_id: Option<String>,
    /// Every `(X) Entering S STATE`, in order.
    pub transitions: Vec<(String, String)>,
}

impl LogTail {
    fn new(path: PathBuf, t_ms: u64) -> LogTail {
        LogTail {
            path,
            t_ms,
            pos: 0,
            partial: String::new(),
            states: [None, None, None],
            boot_id: None,
            transitions: Vec::new(),
        }
    }

    /// Read what was appended since the last call.
    pub fn poll(&mut self) {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.pos += buf.len() as u64;
        self.partial += &String::from_utf8_lossy(&buf);
        let Some(cut) = self.partial.rfind('\n') else {
            return;
        };
        let done: String = self.partial.drain(..=cut).collect();
        for line in done.lines() {
            self.line(line);
        }
    }

    fn line(&mut self, l: &str) {
        if self.boot_id.is_none() {
            if let Some(i) = l.find("boot_id=") {
                let rest = &l[i + "boot_id=".len()..];
                let id: String = rest
                    .trim_start_matches('"')
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
                    .collect();
                if !id.is_empty() {
                    self.boot_id = Some(id);
                }
            }
        }
        let Some(open) = l.find('(') else { return };
        let Some(close) = l[open..].find(") Entering ") else {
            return;
        };
        let name = &l[open + 1..open + close];
        let rest = &l[open + close + ") Entering ".len()..];
        let Some(state) = rest.split_whitespace().next() else {
            return;
        };
        if let Some(i) = INSTANCES.iter().position(|x| x.name == name) {
            self.states[i] = Some(state.to_string());
            self.transitions.push((name.to_string(), state.to_string()));
        }
    }
}

/// One node of the trio.
#[derive(Debug)]
pub struct Member {
    /// The daemon, if running.
    pub node: Option<Node>,
    /// Scratch directory (config, state, logs, clock file).
    pub dir: PathBuf,
    /// The libfaketime offset file.
    pub clock: PathBuf,
    /// One tail per start, the current one last.
    pub logs: Vec<LogTail>,
    /// SIGSTOPped right now.
    pub stopped: bool,
}

/// Three nodes, a manager (ha-agent runs only), an observer, on one bridge.
#[derive(Debug)]
pub struct Trio {
    /// n1..n3 (declared first: they stop before the namespaces go).
    pub members: Vec<Member>,
    /// The manager, when it runs.
    pub manager: Option<Daemon>,
    /// How many times the manager was started.
    pub manager_runs: u32,
    /// Running CPU hogs (stress-ng in the observer namespace).
    pub hogs: Vec<Child>,
    /// The LAN: n1, n2, n3, manager host, observer.
    pub lan: Lan,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Which implementation the nodes run.
    pub which: Impl,
    /// Whether `ha-agent --cleanup` exists (run after a kill -9, as systemd would).
    pub cleanup: bool,
    /// eth0 MACs of n1..n3.
    pub macs: [String; 3],
    /// Whether the kernel has sch_netem; without it a netem fault is random loss on the
    /// bridge (nftables numgen) with no delay or jitter.
    pub netem: bool,
}

/// The manager URL.
pub fn manager_url() -> String {
    format!("http://{MGR_ADDR}:{MGR_PORT}")
}

impl Trio {
    /// Build the LAN; start nothing.
    pub fn new(name: &str, which: Impl) -> Result<Trio> {
        let mut lan = Lan::new()?;
        for n in 0..3 {
            lan.add_host(
                &format!("hc{}", n + 1),
                &format!("192.0.2.{}/24", n + 1),
                None,
            )?;
        }
        lan.add_host("hcm", &format!("{MGR_ADDR}/24"), None)?;
        lan.add_host("hco", "192.0.2.100/24", None)?;
        let dir = std::env::temp_dir().join(format!("ha-chaos-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut members = Vec::new();
        let mut macs: [String; 3] = Default::default();
        for (n, mac) in macs.iter_mut().enumerate() {
            let d = dir.join(format!("n{}", n + 1));
            fs::create_dir_all(&d)?;
            let clock = d.join("clock");
            fs::write(&clock, "+0\n")?;
            fs::write(d.join("keepalived.conf"), conf(n))?;
            *mac = lan
                .ns(n)
                .sh("cat /sys/class/net/eth0/address")?
                .trim()
                .to_ascii_lowercase();
            members.push(Member {
                node: None,
                dir: d,
                clock,
                logs: Vec::new(),
                stopped: false,
            });
        }
        let cleanup = which == Impl::HaAgent
            && bin("ha-agent")
                .ok()
                .and_then(|b| Command::new(b).arg("--help").output().ok())
                .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("--cleanup"));
        let obs = lan.ns(OBSERVER);
        let netem = obs.ok("tc qdisc add dev lo root netem delay 1ms");
        if netem {
            let _ = obs.ok("tc qdisc del dev lo root");
        }
        Ok(Trio {
            netem,
            members,
            manager: None,
            manager_runs: 0,
            hogs: Vec::new(),
            lan,
            dir,
            which,
            cleanup,
            macs,
        })
    }

    /// Whether this trio has a manager (ha-agent runs).
    pub fn with_manager(&self) -> bool {
        self.which == Impl::HaAgent
    }

    /// Start (or restart) node `n`'s daemon; `t_ms` stamps its log.
    pub fn start_node(&mut self, n: usize, t_ms: u64) -> Result<()> {
        let m = &mut self.members[n];
        m.node = None;
        m.stopped = false;
        let run = m.logs.len() + 1;
        let cfg = m.dir.join("keepalived.conf");
        let state_dir = m.dir.join("state");
        let mut args = faketime_env(&FakeClock::File(&m.clock));
        let name = match self.which {
            Impl::HaAgent => {
                args.push(bin("ha-agent")?.to_string_lossy().into_owned());
                let node = format!("n{}", n + 1);
                args.extend(agent_args(
                    &cfg,
                    &state_dir,
                    &node,
                    &manager_url(),
                    &Security::Insecure,
                ));
                format!("ha-agent-{run}")
            }
            Impl::Keepalived => {
                args.push(KEEPALIVED.into());
                args.extend(keepalived_args(&m.dir));
                format!("keepalived-{run}")
            }
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let d = Daemon::start(
            self.lan.ns(n),
            &m.dir,
            &name,
            Path::new("/usr/bin/env"),
            &argv,
        )?;
        m.logs.push(LogTail::new(d.log.clone(), t_ms));
        m.node = Some(match self.which {
            Impl::HaAgent => Node::Agent(Agent {
                daemon: d,
                state_dir,
            }),
            Impl::Keepalived => Node::Keepalived(d),
        });
        Ok(())
    }

    /// Start the manager (same data directory every time); does not wait for it.
    pub fn start_manager(&mut self) -> Result<()> {
        self.manager = None;
        self.manager_runs += 1;
        let listen = format!("{MGR_ADDR}:{MGR_PORT}");
        let data = self.dir.join("mgr-data").to_string_lossy().into_owned();
        let d = Daemon::start(
            self.lan.ns(MGR),
            &self.dir.join("mgr"),
            &format!("ha-manager-{}", self.manager_runs),
            &bin("ha-manager")?,
            &[
                "--listen",
                &listen,
                "--data",
                &data,
                "--insecure",
                "--split-margin-ms",
                &SPLIT_MARGIN_MS.to_string(),
            ],
        )?;
        self.manager = Some(d);
        Ok(())
    }

    /// `hactl ARGS` from the observer, plaintext, bounded by `--timeout`.
    pub fn hactl(&self, args: &[&str]) -> Result<std::process::Output> {
        hactl_in(&self.lan.ns(OBSERVER).name, args)
    }

    /// Whether node `n`'s daemon process is alive (not exited).
    pub fn alive(&mut self, n: usize) -> bool {
        let Some(node) = self.members[n].node.as_mut() else {
            return false;
        };
        match node.daemon_mut().child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal_tree(&self, n: usize, sig: &str) -> Result<()> {
        let pid = self.members[n]
            .node
            .as_ref()
            .and_then(|x| x.daemon().pid())
            .context("not running")?;
        let pids: Vec<String> = process_tree(pid).iter().map(u32::to_string).collect();
        let mut c = Command::new("kill");
        c.arg(format!("-{sig}")).args(&pids);
        crate::netns::run(&mut c)?;
        Ok(())
    }

    /// A table `bridge chaos<id>` on the switch whose forward chain holds `rules`.
    fn bridge_rules(&self, id: usize, rules: &[String]) -> Result<()> {
        let t = format!("chaos{id}");
        let mut script = format!(
            "table bridge {t} {{\n chain forwarding {{\n  type filter hook forward priority 0; policy accept;\n"
        );
        for r in rules {
            script += &format!("  {r}\n");
        }
        script += " }\n}\n";
        let file = self.dir.join(format!("{t}.nft"));
        fs::write(&file, script)?;
        self.lan.switch.sh(&format!("nft -f {}", file.display()))?;
        Ok(())
    }

    fn drop_bridge_rules(&self, id: usize) -> Result<()> {
        self.lan
            .switch
            .sh(&format!("nft delete table bridge chaos{id}"))?;
        Ok(())
    }

    /// Apply `f` (action number `id`, unique in the run).
    pub fn apply(&mut self, id: usize, f: &Fault) -> Result<()> {
        match *f {
            Fault::LinkFlap { node, .. } => self.lan.set_link(node, false),
            Fault::Partition { node, dir } => {
                let me = &self.lan.hosts[node].port;
                let others: Vec<String> = (0..3)
                    .filter(|o| *o != node)
                    .map(|o| format!("\"{}\"", self.lan.hosts[o].port))
                    .collect();
                let others = others.join(", ");
                let mut rules = Vec::new();
                if dir != Direction::In {
                    rules.push(format!("iifname \"{me}\" oifname {{ {others} }} drop"));
                }
                if dir != Direction::Out {
                    rules.push(format!("iifname {{ {others} }} oifname \"{me}\" drop"));
                }
                self.bridge_rules(id, &rules)
            }
            Fault::Netem {
                node,
                loss_pct,
                delay_ms,
                jitter_ms,
            } if !self.netem => {
                // No sch_netem in this kernel: random loss on the bridge, no delay.
                let me = &self.lan.hosts[node].port;
                let rule = format!("iifname \"{me}\" numgen random mod 100 < {loss_pct} drop");
                let _ = (delay_ms, jitter_ms);
                self.bridge_rules(id, &[rule])
            }
            Fault::Netem {
                node,
                loss_pct,
                delay_ms,
                jitter_ms,
            } => {
                let jitter = if jitter_ms > 0 && delay_ms > 0 {
                    format!(" {jitter_ms}ms")
                } else {
                    String::new()
                };
                self.lan.ns(node).sh(&format!(
                    "tc qdisc replace dev eth0 root netem loss {loss_pct}% delay {delay_ms}ms{jitter}"
                ))?;
                Ok(())
            }
            Fault::Kill { node } => {
                self.signal_tree(node, "KILL")?;
                if let Some(x) = self.members[node].node.as_mut() {
                    let _ = x.daemon_mut().wait_exit(Duration::from_secs(5));
                }
                self.members[node].node = None;
                if self.cleanup {
                    let m = &self.members[node];
                    let agent = bin("ha-agent")?;
                    let cfg = m.dir.join("keepalived.conf");
                    let state = m.dir.join("state");
                    let _ = self.lan.ns(node).ok(&format!(
                        "timeout 10 {} --cleanup --config {} --state-dir {}",
                        agent.display(),
                        cfg.display(),
                        state.display()
                    ));
                }
                Ok(())
            }
            Fault::Pause { node } => {
                self.signal_tree(node, "STOP")?;
                self.members[node].stopped = true;
                Ok(())
            }
            Fault::ClockStep { node, secs } => {
                fs::write(&self.members[node].clock, format!("{secs:+}\n"))?;
                Ok(())
            }
            Fault::ManagerKill => {
                if let Some(m) = self.manager.as_mut() {
                    m.signal("KILL")?;
                    m.wait_exit(Duration::from_secs(10))?;
                }
                self.manager = None;
                Ok(())
            }
            Fault::CpuHog { workers } => {
                let child = self
                    .lan
                    .ns(OBSERVER)
                    .command("stress-ng")
                    .args(["--cpu", &workers.to_string(), "--timeout", "20s", "--quiet"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start stress-ng (Debian package stress-ng)")?;
                self.hogs.push(child);
                Ok(())
            }
        }
    }

    /// Undo `f` (action `id`); `t_ms` stamps a restarted daemon's log.
    pub fn heal(&mut self, id: usize, f: &Fault, t_ms: u64) -> Result<()> {
        match *f {
            Fault::LinkFlap { node, .. } => self.lan.set_link(node, true),
            Fault::Partition { .. } => self.drop_bridge_rules(id),
            Fault::Netem { .. } if !self.netem => self.drop_bridge_rules(id),
            Fault::Netem { node, .. } => {
                self.lan.ns(node).sh("tc qdisc del dev eth0 root")?;
                Ok(())
            }
            Fault::Kill { node } => self.start_node(node, t_ms),
            Fault::Pause { node } => {
                self.members[node].stopped = false;
                self.signal_tree(node, "CONT")
            }
            Fault::ClockStep { node, .. } => {
                fs::write(&self.members[node].clock, "+0\n")?;
                Ok(())
            }
            Fault::ManagerKill => {
                if self.with_manager() {
                    self.start_manager()?;
                }
                Ok(())
            }
            Fault::CpuHog { .. } => {
                for mut c in self.hogs.drain(..) {
                    let pids: Vec<String> =
                        process_tree(c.id()).iter().map(u32::to_string).collect();
                    let _ = Command::new("kill").arg("-KILL").args(&pids).status();
                    let _ = c.wait();
                }
                Ok(())
            }
        }
    }

    /// Wait (bounded) until the manager answers `hactl status`.
    pub fn wait_manager(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            crate::bench::check_interrupted()?;
            if self
                .hactl(&["status", "--json"])
                .is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("manager not answering after {limit:?}")
    }
}

impl Drop for Trio {
    fn drop(&mut self) {
        for n in 0..self.members.len() {
            if self.members[n].stopped {
                let _ = self.signal_tree(n, "CONT");
            }
        }
        for mut c in self.hogs.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `hactl --manager URL --insecure --timeout 3s ARGS` in namespace `ns`.
pub fn hactl_in(ns: &str, args: &[&str]) -> Result<std::process::Output> {
    let hactl = bin("hactl")?;
    let url = manager_url();
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(hactl)
        .args(["--manager", &url, "--insecure", "--timeout", "3s"])
        .args(args)
        .env_remove("HACTL_MANAGER")
        .stdin(Stdio::null())
        .output()
        .context("run hactl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confs_give_each_node_one_instance_to_master() {
        for n in 0..3 {
            let c = conf(n);
            assert_eq!(c.matches("vrrp_instance ").count(), 3);
            assert_eq!(c.matches("state MASTER").count(), 1, "{c}");
            assert!(c.contains("priority 150") && c.contains("priority 100"));
            assert!(c.contains("advert_int 0.01") && c.contains("version 2"));
        }
    }

    #[test]
    fn log_tail_reads_states_and_boot_id() {
        let dir = std::env::temp_dir().join(format!("ha-chaos-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        let p = dir.join("a.log");
        fs::write(
            &p,
            "x link started boot_id=abc123 node=n1\n(CH_V2) Entering BACK",
        )
        .expect("write");
        let mut t = LogTail::new(p.clone(), 0);
        t.poll();
        assert_eq!(t.boot_id.as_deref(), Some("abc123"));
        assert!(t.transitions.is_empty(), "partial line not read yet");
        let mut f = fs::OpenOptions::new().append(true).open(&p).expect("open");
        std::io::Write::write_all(&mut f, b"UP STATE\n(CH_V3F) Entering MASTER STATE\n")
            .expect("append");
        t.poll();
        assert_eq!(t.states[0].as_deref(), Some("BACKUP"));
        assert_eq!(t.states[2].as_deref(), Some("MASTER"));
        assert_eq!(t.transitions.len(), 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
