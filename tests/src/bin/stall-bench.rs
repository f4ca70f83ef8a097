//! stall-bench: false takeovers under CPU starvation, ha-agent and keepalived side by side
//! in the same run. Prints figures; asserts nothing.
//!
//! ```text
//! cargo build -p ha-agent --bin ha-agent
//! cargo run -p ha-tests --bin stall-bench -- [--quick] [--windows W] [--window S]
//!     [--loads 2,4,8,16] [--only keepalived|ha-agent] [--keep]
//! ```
//!
//! Two pairs, each on its own classic topology (the idle pair of `ha_tests::idle`): 50
//! VRRPv3 instances at advert_int 0.01, lb1 MASTER of all at priority 100, lb2 BACKUP of
//! all at priority 90; one pair runs ha-agent, the other keepalived, both up at once so
//! that they share every load window. Per load N (default 2, 4, 8, 16) and window
//! (default 3 per load, `--quick` 1): `stress-ng --cpu N` for 15 s (in a namespace of its
//! own, so nothing outlives the bench), 3 s to recover, then the count of the backup's
//! `Entering MASTER STATE` lines during the window. The master is alive throughout, so
//! each is a false takeover. Both pairs settle again before the next window. If the agent's
//! stats.json has counters named like `stall`, their growth over the window is printed too
//! (skipped when absent).

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
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        windows: 3,
        window: Duration::from_secs(15),
        loads: vec![2, 4, 8, 16],
        impls: vec![Impl::Keepalived, Impl::HaAgent],
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
            "--only" => o.impls = vec![ha_tests::bench::parse_only(args.next().as_deref())?],
            "-h" | "--help" => {
                println!(
                    "stall-bench [--quick] [--windows W] [--window S] [--loads 2,4,8,16] [--only keepalived|ha-agent] [--keep]"
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
    fn start(which: Impl) -> Result<Pair> {
        let mut t = Classic::new(&format!("stall-{}", impl_name(which)))?;
        t.start(0, which, &idle::conf("MASTER", MASTER_PRIO))?;
        t.start(1, which, &idle::conf("BACKUP", BACKUP_PRIO))?;
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

#[derive(Debug, Clone, Copy)]
struct Counts {
    backup_masters: usize,
    master_demotions: usize,
    stalls: [Option<u64>; 2],
}

/// The sum of every numeric field whose name contains "stall" in an ha-agent's stats dump
/// (None for keepalived, or when the agent has no such counter).
fn stall_counter(n: &Node) -> Option<u64> {
    let Node::Agent(a) = n else { return None };
    let v = a.stats().ok()?;
    sum_stalls(&v)
}

fn sum_stalls(v: &Value) -> Option<u64> {
    match v {
        Value::Object(m) => {
            let mut found = None;
            for (k, x) in m {
                let here = if k.to_ascii_lowercase().contains("stall") {
                    x.as_u64().or_else(|| sum_stalls(x))
                } else {
                    sum_stalls(x)
                };
                if let Some(h) = here {
                    found = Some(found.unwrap_or(0) + h);
                }
            }
            found
        }
        Value::Array(a) => a.iter().filter_map(sum_stalls).reduce(|x, y| x + y),
        _ => None,
    }
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
    stalls: Vec<Option<u64>>,
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
        let total: u64 = self.stalls.iter().flatten().sum();
        format!("{total}")
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
        .map(|w| Pair::start(*w))
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
                                Some(a0.saturating_sub(b0) + a1.saturating_sub(b1))
                            }
                            _ => None,
                        };
                        c.takeovers.push(t);
                        c.demotions.push(d);
                        c.stalls.push(s);
                        eprintln!(
                            "[{:>5.0}s] stress-ng --cpu {n:<2} window {}/{} {:<10} false takeovers {t}, master demotions {d}, stalls {}",
                            started.elapsed().as_secs_f64(),
                            w + 1,
                            o.windows,
                            impl_name(p.which),
                            s.map_or_else(|| "n/a".into(), |s| s.to_string())
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
        "{:<8} | {:<28} | {:<28} | {:<22} | ha-agent stalls counted",
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
        println!("(ha-agent's stats.json has no counter named like `stall`: stall column skipped)");
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
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_counters_are_found_anywhere() {
        let v: Value = serde_json::json!({
            "dump_seq": 3,
            "stalls": 2,
            "instances": [{"name": "VI_1", "stall_count": 5}, {"name": "VI_2"}],
        });
        assert_eq!(sum_stalls(&v), Some(7));
        assert_eq!(sum_stalls(&serde_json::json!({"instances": []})), None);
    }
}
