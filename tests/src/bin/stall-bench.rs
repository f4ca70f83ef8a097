//! stall-bench: false takeovers under CPU starvation, ha-agent and keepalived side by side
//! in the same run. Prints figures; asserts nothing.
//!
//! ```text
//! cargo build -p ha-agent --bin ha-agent
//! cargo run -p ha-tests --bin stall-bench -- [--quick] [--windows W] [--window S]
//!     [--loads 2,4,8,16] [--only keepalived|ha-agent] [--keep] [--global STMT]...
//! ```
//!
//! `--global STMT` adds a statement to both pairs' global_defs (for an A/B of process
//! tuning such as `vrrp_priority 0`, `vrrp_priority -20` or `vrrp_rt_priority 50`).
//!
//! Two pairs, each on its own classic topology (the idle pair of `ha_tests::idle`): 50
//! VRRPv3 instances at advert_int 0.01, lb1 MASTER of all at priority 100, lb2 BACKUP of
//! all at priority 90; one pair runs ha-agent, the other keepalived, both up at once so
//! that they share every load window. Per load N (default 2, 4, 8, 16) and window
//! (default 3 per load, `--quick` 1): `stress-ng --cpu N` for 15 s (in a namespace of its
//! own, so nothing outlives the bench), 3 s to recover, then the count of the backup's
//! `Entering MASTER STATE` lines during the window. The master is alive throughout, so
//! each is a false takeover. Both pairs settle again before the next window. The growth of each
//! ha-agent's late wake-ups (stats.json `stalls`: the engine woke more than one advert
//! interval after a deadline) is printed per side, with the worst lateness.

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::bench::{check_interrupted, impl_name, install_signal_flag, pause};
use ha_tests::idle;
use ha_tests::netns::Netns;
use ha_tests::scenario::{Classic, Impl, Node};
use serde_json::Value;

/// Priority of the master side.
const MASTER_PRIO: u8 = 100;
/// Priority of the backup side.
const BACKUP_PRIO: u8 = 90;
/// Time to recover after a load window before counting.
const RECOVER: Duration = Duration::from_secs(3);

/// `--keep`: keep scratch directories.
static KEEP: AtomicBool = AtomicBool::new(false);

struct Opts {
    windows: usize,
    window: Duration,
    loads: Vec<u32>,
    impls: Vec<Impl>,
    global: Vec<String>,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        windows: 3,
        window: Duration::from_secs(15),
        loads: vec![2, 4, 8, 16],
        impls: vec![Impl::Keepalived, Impl::HaAgent],
        global: Vec::new(),
    };
    let mut windows = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--keep" => KEEP.store(true, Ordering::SeqCst),
            "--windows" => windows = Some(args.next().context("--windows needs W")?.parse()?),
            "--window" => {
                let s: u64 = args.next().context("--window needs S")?.parse()?;
                o.window = Duration::from_secs(s.clamp(1, 600));
            }
            "--loads" => {
                let v = args.next().context("--loads needs a list")?;
                o.loads = v
                    .split(',')
                    .map(|n| n.trim().parse::<u32>().map(|n| n.clamp(1, 64)))
                    .collect::<Result<_, _>>()
                    .context("--loads 2,4,8,16")?;
            }
            "--global" => o
                .global
                .push(args.next().context("--global needs a statement")?),
            "--only" => o.impls = vec![ha_tests::bench::parse_only(args.next().as_deref())?],
            "-h" | "--help" => {
                println!(
                    "stall-bench [--quick] [--windows W] [--window S] [--loads 2,4,8,16] [--only keepalived|ha-agent] [--keep] [--global STMT]..."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    o.windows = windows.unwrap_or(if quick { 1 } else { 3 }).clamp(1, 100);
    Ok(o)
}

/// One running pair.
struct Pair {
    which: Impl,
    t: Classic,
}

impl Pair {
    fn start(which: Impl, global: &[String]) -> Result<Pair> {
        let mut t = Classic::new(&format!("stall-{}", impl_name(which)))?;
        t.start(
            0,
            which,
            &with_global(idle::conf("MASTER", MASTER_PRIO), global)?,
        )?;
        t.start(
            1,
            which,
            &with_global(idle::conf("BACKUP", BACKUP_PRIO), global)?,
        )?;
        Ok(Pair { which, t })
    }

    fn node(&self, idx: usize) -> Result<&Node> {
        self.t.nodes[idx].as_ref().context("node not started")
    }

    /// Backup MASTER entries, master BACKUP entries, stall counters (master, backup).
    fn counts(&self) -> Result<Counts> {
        let (m, b) = (self.node(0)?, self.node(1)?);
        Ok(Counts {
            backup_masters: idle::entries(b, "MASTER"),
            master_demotions: idle::entries(m, "BACKUP"),
            stalls: [stall_counter(m), stall_counter(b)],
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if KEEP.load(Ordering::SeqCst) {
            eprintln!("kept {}", self.t.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.t.dir);
        }
    }
}

/// `conf` with `extra` statements after the router_id line of its global_defs.
fn with_global(conf: String, extra: &[String]) -> Result<String> {
    if extra.is_empty() {
        return Ok(conf);
    }
    let at = conf
        .find("router_id")
        .and_then(|i| conf[i..].find('\n').map(|j| i + j + 1))
        .context("config without a router_id line")?;
    let lines: String = extra.iter().map(|l| format!("    {l}\n")).collect();
    Ok(format!("{}{lines}{}", &conf[..at], &conf[at..]))
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    backup_masters: usize,
    master_demotions: usize,
    stalls: [Option<(u64, f64)>; 2],
}

/// An ha-agent's engine wake-ups that came much later than their deadline (its stats
/// dump's `stalls`), and the worst lateness so far in ms (None for keepalived).
fn stall_counter(n: &Node) -> Option<(u64, f64)> {
    let Node::Agent(a) = n else { return None };
    let v = a.stats().ok()?;
    stall_fields(&v)
}

fn stall_fields(v: &Value) -> Option<(u64, f64)> {
    let late = v.get("stalls")?.as_u64()?;
    let worst_us = v.get("stall_max_us").and_then(Value::as_u64).unwrap_or(0);
    Some((late, worst_us as f64 / 1000.0))
}

/// stress-ng in a namespace of its own; its processes die with the namespace.
struct Hog {
    child: Child,
    _ns: Netns,
}

impl Hog {
    fn start(workers: u32, secs: u64) -> Result<Hog> {
        let ns = Netns::new("hhog")?;
        let child = ns
            .command("stress-ng")
            .args([
                "--cpu",
                &workers.to_string(),
                "--timeout",
                &format!("{secs}s"),
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start stress-ng (Debian package stress-ng)")?;
        Ok(Hog { child, _ns: ns })
    }

    /// Wait for stress-ng to end on its own (bounded), then make sure it is gone.
    fn finish(mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            pause(Duration::from_millis(50))?;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

/// Per (load, implementation): false takeovers and stall growth of each window.
#[derive(Debug, Default, Clone)]
struct Cell {
    takeovers: Vec<usize>,
    demotions: Vec<usize>,
    /// Stall growth per window: [master, backup].
    stalls: Vec<Option<[u64; 2]>>,
    errors: Vec<String>,
}

impl Cell {
    fn total(&self) -> Option<usize> {
        (!self.takeovers.is_empty()).then(|| self.takeovers.iter().sum())
    }

    fn show(&self) -> String {
        match self.total() {
            Some(t) if self.takeovers.len() > 1 => format!("{t} ({:?})", self.takeovers),
            Some(t) => t.to_string(),
            None => "failed".into(),
        }
    }

    fn show_stalls(&self) -> String {
        if self.stalls.is_empty() || self.stalls.iter().all(Option::is_none) {
            return "-".into();
        }
        let (m, b) = self
            .stalls
            .iter()
            .flatten()
            .fold((0, 0), |(m, b), [x, y]| (m + x, b + y));
        format!("master {m}, backup {b}")
    }
}

fn main() -> Result<()> {
    install_signal_flag();
    let o = parse_opts()?;
    ha_tests::bench::use_own_bin_dir()?;
    let mut impls = o.impls.clone();
    if impls.contains(&Impl::HaAgent) {
        if let Err(e) = ha_tests::bin("ha-agent") {
            eprintln!("skipping ha-agent: {e:#}");
            impls.retain(|i| *i != Impl::HaAgent);
        }
    }
    let started = Instant::now();
    let pairs: Vec<Pair> = impls
        .iter()
        .map(|w| Pair::start(*w, &o.global))
        .collect::<Result<_>>()?;
    for p in &pairs {
        idle::wait_settled(&p.t.nodes)
            .with_context(|| format!("{} pair did not settle", impl_name(p.which)))?;
    }
    pause(idle::WARMUP)?;
    let mut table: Vec<(u32, Vec<Cell>)> = Vec::new();
    for &n in &o.loads {
        let mut cells = vec![Cell::default(); pairs.len()];
        for w in 0..o.windows {
            check_interrupted()?;
            let before: Vec<Result<Counts>> = pairs.iter().map(Pair::counts).collect();
            let hog = Hog::start(n, o.window.as_secs())?;
            pause(o.window)?;
            hog.finish(Duration::from_secs(10))?;
            pause(RECOVER)?;
            for (i, p) in pairs.iter().enumerate() {
                let c = &mut cells[i];
                match (&before[i], p.counts()) {
                    (Ok(b), Ok(a)) => {
                        let t = a.backup_masters.saturating_sub(b.backup_masters);
                        let d = a.master_demotions.saturating_sub(b.master_demotions);
                        let s = match (b.stalls, a.stalls) {
                            ([Some(b0), Some(b1)], [Some(a0), Some(a1)]) => {
                                Some([a0.0.saturating_sub(b0.0), a1.0.saturating_sub(b1.0)])
                            }
                            _ => None,
                        };
                        let worst = match a.stalls {
                            [Some(m), Some(b)] => {
                                format!(" (worst so far {:.1}/{:.1} ms)", m.1, b.1)
                            }
                            _ => String::new(),
                        };
                        c.takeovers.push(t);
                        c.demotions.push(d);
                        c.stalls.push(s);
                        eprintln!(
                            "[{:>5.0}s] stress-ng --cpu {n:<2} window {}/{} {:<10} false takeovers {t}, master demotions {d}, late wake-ups master/backup {}{worst}",
                            started.elapsed().as_secs_f64(),
                            w + 1,
                            o.windows,
                            impl_name(p.which),
                            s.map_or_else(|| "n/a".into(), |[m, b]| format!("{m}/{b}"))
                        );
                    }
                    (Err(e), _) => c.errors.push(format!("{e:#}")),
                    (_, Err(e)) => c.errors.push(format!("{e:#}")),
                }
            }
            for p in &pairs {
                if let Err(e) = idle::wait_settled(&p.t.nodes) {
                    eprintln!("{} pair not settled again: {e:#}", impl_name(p.which));
                }
            }
            pause(Duration::from_secs(1))?;
        }
        table.push((n, cells));
    }

    let col = |which: Impl| pairs.iter().position(|p| p.which == which);
    let (ka, ha) = (col(Impl::Keepalived), col(Impl::HaAgent));
    println!();
    println!(
        "False takeovers under CPU load: {} v3 instances at advert_int 0.01, master prio {MASTER_PRIO} alive throughout, backup prio {BACKUP_PRIO}",
        idle::INSTANCES
    );
    println!(
        "(backup `Entering MASTER STATE` lines per load; {} window(s) of {} s of stress-ng --cpu N each, totals with per-window counts; {} cores)",
        o.windows,
        o.window.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<8} | {:<28} | {:<28} | {:<22} | ha-agent late wake-ups",
        "load", "keepalived", "ha-agent", "ratio ha-agent/keepal."
    );
    println!(
        "{:-<8}-+-{:-<28}-+-{:-<28}-+-{:-<22}-+-{:-<23}",
        "", "", "", "", ""
    );
    let empty = Cell::default();
    for (n, cells) in &table {
        let k = ka.map_or(&empty, |i| &cells[i]);
        let h = ha.map_or(&empty, |i| &cells[i]);
        let ratio = match (h.total(), k.total()) {
            (Some(h), Some(k)) if k > 0 => format!("{:.3}", h as f64 / k as f64),
            (Some(0), Some(0)) => "- (both 0)".into(),
            (Some(_), Some(0)) => "- (keepalived 0)".into(),
            _ => "-".into(),
        };
        let show = |i: Option<usize>, c: &Cell| i.map_or_else(|| "not run".into(), |_| c.show());
        println!(
            "{:<8} | {:<28} | {:<28} | {:<22} | {}",
            format!("--cpu {n}"),
            show(ka, k),
            show(ha, h),
            ratio,
            if ha.is_some() {
                h.show_stalls()
            } else {
                "-".into()
            }
        );
        for (name, c) in [("keepalived", k), ("ha-agent", h)] {
            if c.demotions.iter().any(|d| *d > 0) {
                println!(
                    "{:<8} |   {name}: master demoted to BACKUP {:?}",
                    "", c.demotions
                );
            }
            for e in &c.errors {
                println!("{:<8} |   {name}: error: {e}", "");
            }
        }
    }
    if ha.is_some()
        && table
            .iter()
            .all(|(_, c)| ha.is_some_and(|i| c[i].stalls.iter().all(Option::is_none)))
    {
        println!("(ha-agent's stats.json has no `stalls` counter: late wake-up column skipped)");
    }
    if let Ok(b) = ha_tests::bin("ha-agent") {
        let b = b.display().to_string();
        let profile = if b.contains("/release/") {
            "release build"
        } else {
            "debug build"
        };
        println!("ha-agent: {b} ({profile})");
    }
    if !o.global.is_empty() {
        println!(
            "global_defs of both pairs also had: {}",
            o.global.join("; ")
        );
    }
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_fields_are_read_from_the_top_level() {
        let v: Value = serde_json::json!({
            "dump_seq": 3,
            "stalls": 2,
            "stall_max_us": 12500,
            "instances": [{"name": "VI_1", "stalls": 5, "stall_deferrals": 1}],
        });
        assert_eq!(stall_fields(&v), Some((2, 12.5)));
        assert_eq!(stall_fields(&serde_json::json!({"instances": []})), None);
    }

    #[test]
    fn global_statements_go_into_global_defs() -> Result<()> {
        let c = with_global(
            "global_defs {\n    router_id lb\n}\n".into(),
            &["vrrp_priority -20".into()],
        )?;
        assert_eq!(
            c,
            "global_defs {\n    router_id lb\n    vrrp_priority -20\n}\n"
        );
        Ok(())
    }
}
