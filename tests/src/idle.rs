//! The idle pair of the CPU benchmarks (failover-bench's idle cost, telemetry-bench): on
//! the classic topology, lb1 MASTER and lb2 BACKUP of [`INSTANCES`] VRRP v3 instances at
//! advert_int 0.01 (VRIDs 1..50, VIPs 203.0.113.1..50/24); CPU (utime+stime over the
//! whole process tree) and VmRSS of each node over a window.
//!
//! States are read from the log lines both implementations print
//! (`(VI_7) Entering MASTER STATE`). Nothing here asserts on figures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::measure::TreeSample;
use crate::scenario::{render, Inst, Node};

/// Instances of the pair.
pub const INSTANCES: u8 = 50;
/// Wait this long once every instance settled, before measuring.
pub const WARMUP: Duration = Duration::from_secs(3);
/// Measurement window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The keepalived.conf of one side: every instance in `state` at priority `prio`.
pub fn conf(state: &'static str, prio: u8) -> String {
    let insts: Vec<Inst> = (1..=INSTANCES)
        .map(|v| {
            let mut i = Inst::new(&format!("VI_{v}"), v, state, prio);
            i.version = 3;
            i.advert_int = "0.01".into();
            i.vips = vec![format!("203.0.113.{v}/24")];
            i
        })
        .collect();
    render("lb", &insts)
}

/// Last state of every instance in a log (one pass over the text).
pub fn last_states(log: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for l in log.lines() {
        let Some(open) = l.find('(') else { continue };
        let Some(close) = l[open..].find(") Entering ") else {
            continue;
        };
        let name = &l[open + 1..open + close];
        let rest = &l[open + close + ") Entering ".len()..];
        if let Some(st) = rest.split_whitespace().next() {
            m.insert(name.to_string(), st.to_string());
        }
    }
    m
}

/// Whether every instance of the pair last entered `state` on `n`.
pub fn all_in(n: &Node, state: &str) -> bool {
    let s = last_states(&n.daemon().log_text());
    (1..=INSTANCES).all(|v| s.get(&format!("VI_{v}")).map(String::as_str) == Some(state))
}

/// State changes `n` logged so far.
pub fn state_changes(n: &Node) -> usize {
    n.daemon()
        .log_text()
        .lines()
        .filter(|l| l.contains(") Entering "))
        .count()
}

/// How many times `n` logged entering `state` (any instance): `) Entering MASTER STATE`.
pub fn entries(n: &Node, state: &str) -> usize {
    let needle = format!(") Entering {state} STATE");
    n.daemon()
        .log_text()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Wait (30 s at most) until lb1 is MASTER and lb2 BACKUP of every instance; the error
/// carries the tail of both logs.
pub fn wait_settled(nodes: &[Option<Node>; 2]) -> Result<()> {
    crate::bench::wait_for(
        "all 50 instances MASTER on lb1 and BACKUP on lb2",
        Duration::from_secs(30),
        || {
            nodes[0].as_ref().is_some_and(|n| all_in(n, "MASTER"))
                && nodes[1].as_ref().is_some_and(|n| all_in(n, "BACKUP"))
        },
    )
    .with_context(|| log_tails(nodes, 15))
}

/// The last `lines` lines of each running node's log, under a header per node.
pub fn log_tails(nodes: &[Option<Node>; 2], lines: usize) -> String {
    let mut s = String::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(n) = n {
            let log = n.daemon().log_text();
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            s += &format!("--- lb{} log tail ---\n", i + 1);
            for l in tail.iter().rev() {
                s += l;
                s += "\n";
            }
        }
    }
    s
}

/// CPU and memory of one node's process tree over a window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// CPU time over the window as a percentage of one core.
    pub cpu_pct: f64,
    /// VmRSS summed over the tree at the end of the window, KiB.
    pub rss_kib: u64,
    /// Processes in the tree.
    pub procs: usize,
}

/// Usage of the process trees rooted at `pids` while `during` runs (it is the window:
/// sleep, or do the work whose cost is measured); `tck` is clock ticks per second.
pub fn measure<const N: usize>(
    pids: [u32; N],
    tck: u64,
    during: impl FnOnce() -> Result<()>,
) -> Result<[Usage; N]> {
    let v = measure_all(&pids, tck, during)?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("one usage per process tree"))
}

/// [`measure`] for any number of process trees, all over the same window.
pub fn measure_all(
    pids: &[u32],
    tck: u64,
    during: impl FnOnce() -> Result<()>,
) -> Result<Vec<Usage>> {
    let before: Vec<TreeSample> = pids.iter().copied().map(TreeSample::take).collect();
    let start = Instant::now();
    during()?;
    let after: Vec<TreeSample> = pids.iter().copied().map(TreeSample::take).collect();
    let secs = start.elapsed().as_secs_f64();
    Ok(after
        .iter()
        .zip(&before)
        .map(|(z, a)| Usage {
            cpu_pct: z.ticks_since(a) as f64 / tck as f64 / secs * 100.0,
            rss_kib: z.rss_kib,
            procs: z.ticks.len(),
        })
        .collect())
}

/// The pids of the daemons on both nodes.
pub fn pids(nodes: &[Option<Node>; 2]) -> Result<[u32; 2]> {
    let pid = |i: usize| {
        nodes[i]
            .as_ref()
            .and_then(|n| n.daemon().pid())
            .with_context(|| format!("lb{} not running", i + 1))
    };
    Ok([pid(0)?, pid(1)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_states_follow_the_log() {
        let log = "x (VI_1) Entering BACKUP STATE\n(VI_2) Entering MASTER STATE\n\
                   y (VI_1) Entering MASTER STATE\nnoise (VI_3) nothing\n";
        let s = last_states(log);
        assert_eq!(s.get("VI_1").map(String::as_str), Some("MASTER"));
        assert_eq!(s.get("VI_2").map(String::as_str), Some("MASTER"));
        assert_eq!(s.get("VI_3"), None);
    }

    #[test]
    fn conf_has_every_instance() {
        let c = conf("BACKUP", 100);
        assert_eq!(c.matches("vrrp_instance ").count(), usize::from(INSTANCES));
        assert!(c.contains("virtual_router_id 50") && c.contains("203.0.113.50/24"));
        assert!(c.contains("advert_int 0.01") && c.contains("version 3"));
    }
}
