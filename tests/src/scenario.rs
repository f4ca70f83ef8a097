//! The classic topology and the keepalived.conf both implementations run.
//!
//! ```text
//!        client (192.0.2.100, 2001:db8::100)
//!           |
//!   ------ br0 (switch namespace) ------
//!       |                       |
//!   lb1 192.0.2.1           lb2 192.0.2.2
//!   2001:db8::1             2001:db8::2
//!   VIP 192.0.2.10 / 2001:db8::10 floats between them
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lan::Lan;
use crate::netns::Netns;
use crate::proc::{wait_until, Agent, Daemon};

/// Which implementation runs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Our ha-agent.
    HaAgent,
    /// Debian's keepalived.
    Keepalived,
}

/// One VRRP instance of the generated keepalived.conf.
#[derive(Debug, Clone)]
pub struct Inst {
    /// Instance name (VI_1).
    pub name: String,
    /// MASTER or BACKUP.
    pub state: &'static str,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// advert_int as written in the file ("1", "0.01").
    pub advert_int: String,
    /// 2 or 3.
    pub version: u8,
    /// PASS password, v2 only.
    pub auth_pass: Option<String>,
    /// Virtual addresses with prefix ("192.0.2.10/24").
    pub vips: Vec<String>,
    /// Unicast: (our source, peers).
    pub unicast: Option<(String, Vec<String>)>,
    /// nopreempt.
    pub nopreempt: bool,
    /// preempt_delay seconds.
    pub preempt_delay: Option<u32>,
    /// use_vmac.
    pub use_vmac: bool,
}

impl Inst {
    /// VI_1-style defaults: v2, 1 s, VIP 192.0.2.10/24.
    pub fn new(name: &str, vrid: u8, state: &'static str, priority: u8) -> Inst {
        Inst {
            name: name.to_string(),
            state,
            vrid,
            priority,
            advert_int: "1".into(),
            version: 2,
            auth_pass: None,
            vips: vec!["192.0.2.10/24".into()],
            unicast: None,
            nopreempt: false,
            preempt_delay: None,
            use_vmac: false,
        }
    }
}

/// VI_1, VRID 51, v3 with `advert` adverts, VIP 192.0.2.10/24: the fast pair most
/// namespace tests run.
pub fn fast_inst(state: &'static str, prio: u8, advert: &str) -> Inst {
    let mut i = Inst::new("VI_1", 51, state, prio);
    i.version = 3;
    i.advert_int = advert.into();
    i
}

/// The fast pair's configs at 100 ms adverts: lb1 (idx 0) MASTER 150, lb2 BACKUP 100.
pub fn fast_pair_conf(idx: usize) -> String {
    match idx {
        0 => render("lb1", &[fast_inst("MASTER", 150, "0.1")]),
        _ => render("lb2", &[fast_inst("BACKUP", 100, "0.1")]),
    }
}

/// Render a keepalived.conf with these instances on eth0.
pub fn render(router_id: &str, insts: &[Inst]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "global_defs {{\n    router_id {router_id}\n}}\n");
    for i in insts {
        let _ = writeln!(s, "vrrp_instance {} {{", i.name);
        let _ = writeln!(s, "    state {}", i.state);
        let _ = writeln!(s, "    interface eth0");
        let _ = writeln!(s, "    virtual_router_id {}", i.vrid);
        let _ = writeln!(s, "    priority {}", i.priority);
        let _ = writeln!(s, "    advert_int {}", i.advert_int);
        let _ = writeln!(s, "    version {}", i.version);
        if let Some(p) = &i.auth_pass {
            let _ = writeln!(
                s,
                "    authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}"
            );
        }
        if let Some((src, peers)) = &i.unicast {
            let _ = writeln!(s, "    unicast_src_ip {src}");
            let _ = writeln!(s, "    unicast_peer {{");
            for p in peers {
                let _ = writeln!(s, "        {p}");
            }
            let _ = writeln!(s, "    }}");
        }
        if i.nopreempt {
            let _ = writeln!(s, "    nopreempt");
        }
        if let Some(d) = i.preempt_delay {
            let _ = writeln!(s, "    preempt_delay {d}");
        }
        if i.use_vmac {
            let _ = writeln!(s, "    use_vmac");
        }
        let _ = writeln!(s, "    virtual_ipaddress {{");
        for v in &i.vips {
            let _ = writeln!(s, "        {v} dev eth0");
        }
        let _ = writeln!(s, "    }}\n}}\n");
    }
    s
}

/// Debian's keepalived binary.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// keepalived's arguments to run `<dir>/keepalived.conf` in the foreground, logging to the
/// console, with its pid files in `dir`.
pub fn keepalived_args(dir: &Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let mut v: Vec<String> = ["-n", "-l", "-D", "-P", "-G", "-f"]
        .map(String::from)
        .into();
    v.push(p("keepalived.conf"));
    for (flag, file) in [("-p", "k.pid"), ("-r", "v.pid"), ("-c", "c.pid")] {
        v.push(flag.into());
        v.push(p(file));
    }
    v
}

/// A node running one implementation.
#[derive(Debug)]
pub enum Node {
    /// ha-agent.
    Agent(Agent),
    /// keepalived.
    Keepalived(Daemon),
}

impl Node {
    /// Start `which` in `ns` with `conf`, scratch files under `dir`.
    pub fn start(which: Impl, ns: &Netns, dir: &Path, conf: &str) -> Result<Node> {
        match which {
            Impl::HaAgent => Ok(Node::Agent(Agent::start(ns, dir, conf)?)),
            Impl::Keepalived => {
                fs::create_dir_all(dir)?;
                let cfg = dir.join("keepalived.conf");
                fs::write(&cfg, conf)?;
                let args = keepalived_args(dir);
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let d = Daemon::start(ns, dir, "keepalived", Path::new(KEEPALIVED), &argv)?;
                Ok(Node::Keepalived(d))
            }
        }
    }

    /// The process.
    pub fn daemon(&self) -> &Daemon {
        match self {
            Node::Agent(a) => &a.daemon,
            Node::Keepalived(d) => d,
        }
    }

    /// The process, mutably.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        match self {
            Node::Agent(a) => &mut a.daemon,
            Node::Keepalived(d) => d,
        }
    }

    /// The state `inst` last entered, from the log line both implementations print:
    /// `(VI_1) Entering MASTER STATE`.
    pub fn state(&self, inst: &str) -> Option<String> {
        last_state(&self.daemon().log_text(), inst)
    }

    /// How many times `inst` entered `state`, from the log.
    pub fn entered(&self, inst: &str, state: &str) -> usize {
        let needle = format!("({inst}) Entering {state} STATE");
        self.daemon()
            .log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// Stop gracefully (SIGTERM) and wait.
    pub fn stop(&mut self) -> Result<()> {
        self.daemon().signal("TERM")?;
        self.daemon_mut().wait_exit(Duration::from_secs(10))?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // keepalived forks a VRRP child: a graceful stop takes both down.
        if let Node::Keepalived(d) = self {
            if d.child.is_some() && d.signal("TERM").is_ok() {
                let _ = d.wait_exit(Duration::from_secs(5));
            }
        }
    }
}

/// The last `(inst) Entering X STATE` in a log.
pub fn last_state(log: &str, inst: &str) -> Option<String> {
    let needle = format!("({inst}) Entering ");
    log.lines().rev().find_map(|l| {
        let rest = &l[l.find(&needle)? + needle.len()..];
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// The classic topology: index 0 = lb1, 1 = lb2, 2 = client.
#[derive(Debug)]
pub struct Classic {
    /// Nodes lb1, lb2 (declared first so they stop before the namespaces go).
    pub nodes: [Option<Node>; 2],
    /// The LAN.
    pub lan: Lan,
    /// Scratch directory.
    pub dir: PathBuf,
}

/// Index of the client host in [`Classic::lan`].
pub const CLIENT: usize = 2;

impl Classic {
    /// Build the LAN (lb1, lb2, client) without starting anything.
    pub fn new(test: &str) -> Result<Classic> {
        let mut lan = Lan::new()?;
        lan.add_host("hla", "192.0.2.1/24", Some("2001:db8::1/64"))?;
        lan.add_host("hlb", "192.0.2.2/24", Some("2001:db8::2/64"))?;
        lan.add_host("hcl", "192.0.2.100/24", Some("2001:db8::100/64"))?;
        let dir = std::env::temp_dir().join(format!("ha-tests-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(Classic {
            nodes: [None, None],
            lan,
            dir,
        })
    }

    /// Start `which` on lb`idx+1` with `conf`.
    pub fn start(&mut self, idx: usize, which: Impl, conf: &str) -> Result<()> {
        let dir = self.dir.join(format!("lb{}", idx + 1));
        self.nodes[idx] = None;
        self.nodes[idx] = Some(Node::start(which, self.lan.ns(idx), &dir, conf)?);
        Ok(())
    }

    /// Start ha-agent on lb`idx+1` with `conf` and more arguments.
    pub fn start_agent_with(&mut self, idx: usize, conf: &str, extra: &[&str]) -> Result<()> {
        let dir = self.dir.join(format!("lb{}", idx + 1));
        self.nodes[idx] = None;
        let a = Agent::start_with(self.lan.ns(idx), &dir, conf, extra)?;
        self.nodes[idx] = Some(Node::Agent(a));
        Ok(())
    }

    /// The node running on lb`idx+1` (panics if none was started: a test bug).
    pub fn node(&self, idx: usize) -> &Node {
        self.nodes[idx].as_ref().expect("node not started")
    }

    /// The node running on lb`idx+1`, mutably.
    pub fn node_mut(&mut self, idx: usize) -> &mut Node {
        self.nodes[idx].as_mut().expect("node not started")
    }

    /// Wait until node `idx` reports `state` for `inst`.
    pub fn wait_state(&self, idx: usize, inst: &str, state: &str, limit: Duration) -> Result<()> {
        wait_until(&format!("lb{} {inst} {state}", idx + 1), limit, || {
            self.node(idx).state(inst).as_deref() == Some(state)
        })
        .with_context(|| {
            format!(
                "log of lb{}:\n{}",
                idx + 1,
                self.node(idx).daemon().log_text()
            )
        })
    }

    /// Whether the client gets an echo reply from `vip` within a second.
    pub fn client_reaches(&self, vip: &str) -> bool {
        self.lan.ns(CLIENT).ok(&format!("ping -c1 -W1 {vip}"))
    }

    /// Which lb holds `vip` right now (None if none, Err if both).
    pub fn holder(&self, vip: &str) -> Result<Option<usize>> {
        let holders: Vec<usize> = (0..2).filter(|i| self.lan.ns(*i).has_addr(vip)).collect();
        match holders.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => anyhow::bail!("{vip} on both directors"),
        }
    }

    /// The MAC address of lb`idx+1`'s eth0.
    pub fn mac(&self, idx: usize) -> Result<String> {
        Ok(self
            .lan
            .ns(idx)
            .sh("cat /sys/class/net/eth0/address")?
            .trim()
            .to_string())
    }

    /// The client's neighbour entry (MAC) for `addr`, after pinging it.
    pub fn client_neigh(&self, addr: &str) -> Option<String> {
        let out = self
            .lan
            .ns(CLIENT)
            .sh(&format!("ip neigh show {addr}"))
            .ok()?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(str::to_string);
            }
        }
        None
    }
}
