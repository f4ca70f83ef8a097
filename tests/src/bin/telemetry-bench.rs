//! telemetry-bench: what telemetry costs ha-agent in CPU (issue 6 target: at most 5 %
//! more). Prints figures; asserts nothing.
//!
//! ```text
//! cargo build --release -p ha-agent --bin ha-agent     # else the debug build is used
//! cargo run -p ha-tests --bin telemetry-bench -- [--runs N] [--window SECS] [--detail] [--keep]
//!                                                [--modes off,on,on-fast,scrape,otlp]
//! ```
//!
//! The idle pair of `ha_tests::idle` (lb1 MASTER, lb2 BACKUP of 50 v3 instances at
//! advert_int 0.01), one pair per mode, each on its own fresh namespaces, all running at
//! once and measured over the same window (so the machine's load and its drift, which
//! move a 3 % agent by more than the 5 % sought, hit every mode alike):
//! - off: no telemetry flags;
//! - on: `--metrics-listen <own address>:9464` and `--otlp-endpoint
//!   http://192.0.2.100:4317`, a real OTLP/gRPC receiver run by this program in the client
//!   namespace (metrics exported at the agent's default interval, 15 s; spans only on
//!   transitions, none when idle), and the client scraping both agents' `/metrics` with
//!   curl every 5 s, the `scrape_interval` of the lab's Prometheus;
//! - on, 1s scrape: the same with a scrape every second (a stress).
//!
//! - `--detail` adds "scrape only" (no OTLP) and "otlp only" (no `/metrics`), to tell
//!   the two costs apart; `--modes` picks the modes (the first is the baseline;
//!   `--modes off,off` shows the method's own noise).
//!
//! After a 3 s warm-up, CPU (utime+stime of the agent's process tree) over a 30 s window
//! (`--window`). Each scrape's duration as curl sees it (`time_total`, on the client) is
//! reported too.
//! The order the pairs start in rotates from run to run. Figures: medians over the runs
//! of each mode, and the median over the runs of each run's change against off (the
//! paired figure, the one to read).
//!
//! The binary is `$HA_BIN_DIR/ha-agent` if set, else `target/release/ha-agent` when
//! present, else the debug build next to this program.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::bench::{check_interrupted, install_signal_flag, interrupted, pause, wait_for};
use ha_tests::idle::{self, Usage, WARMUP};
use ha_tests::measure::{clock_ticks_per_sec, median};
use ha_tests::otlp::Receiver;
use ha_tests::scenario::{Classic, Node, CLIENT};
use ha_tests::Agent;

const CLIENT_ADDR: &str = "192.0.2.100";
const OTLP_PORT: u16 = 4317;
const METRICS_PORT: u16 = 9464;
/// Between two scrapes of each agent: the lab's Prometheus `scrape_interval`
/// (deploy/prometheus/prometheus.yml).
const SCRAPE_EVERY: u64 = 5;
/// The stress mode's scrape interval.
const SCRAPE_FAST: u64 = 1;
/// Default window: two OTLP exports (every 15 s by default), six scrapes.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// `--keep`: keep the scratch directories (configs, logs).
static KEEP: AtomicBool = AtomicBool::new(false);
/// `--window`: measurement window in seconds.
static WINDOW_SECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The measurement window (`--window`, else the idle benchmarks' 10 s).
fn window() -> Duration {
    match WINDOW_SECS.load(Ordering::SeqCst) {
        0 => DEFAULT_WINDOW,
        n => Duration::from_secs(n),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No telemetry flags.
    Off,
    /// Everything: `/metrics` scraped every 5 s and OTLP export.
    On,
    /// As `On`, with a scrape every second (a stress: 5 times the lab's Prometheus).
    OnFast,
    /// `--detail`: `/metrics` scraped every second, no OTLP.
    Scrape,
    /// `--detail`: OTLP export only (no `--metrics-listen`).
    Otlp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
            Mode::OnFast => "on, 1s scrape",
            Mode::Scrape => "scrape only",
            Mode::Otlp => "otlp only",
        }
    }

    fn metrics(self) -> bool {
        matches!(self, Mode::On | Mode::OnFast | Mode::Scrape)
    }

    /// Seconds between two scrapes.
    fn scrape_every(self) -> u64 {
        if self == Mode::OnFast {
            SCRAPE_FAST
        } else {
            SCRAPE_EVERY
        }
    }

    fn otlp(self) -> bool {
        matches!(self, Mode::On | Mode::OnFast | Mode::Otlp)
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    master: Usage,
    backup: Usage,
    /// Scrapes that returned a page (on only), and the size of the last page in bytes.
    scrapes: usize,
    page_bytes: usize,
    /// Median duration of a scrape as curl saw it, milliseconds (0 without scrapes).
    scrape_ms: f64,
    /// OTLP export requests the receiver answered during the window (on only).
    exports: u64,
    /// State changes logged during the window by both nodes (0 when stable).
    changes: usize,
    /// On-CPU time of each agent's main thread (the VRRP loop), % of one core, master
    /// then backup; the rest of `Usage::cpu_pct` is its other threads (telemetry, SDK).
    main_pct: [f64; 2],
}

/// On-CPU nanoseconds of thread `tid` of `pid` so far (`schedstat`, exact).
fn thread_ns(pid: u32, tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

fn agent_args(idx: usize, mode: Mode) -> Vec<String> {
    let mut a = Vec::new();
    if mode.metrics() {
        a.push("--metrics-listen".into());
        a.push(format!("192.0.2.{}:{METRICS_PORT}", idx + 1));
    }
    if mode.otlp() {
        a.push("--otlp-endpoint".into());
        a.push(format!("http://{CLIENT_ADDR}:{OTLP_PORT}"));
    }
    a
}

/// Scrape `/metrics` of both agents from the client; returns pages fetched, the last
/// page's size, and each fetch's duration in milliseconds (curl's `time_total`).
fn scrape(t: &Classic) -> (usize, usize, Vec<f64>) {
    let mut ok = 0;
    let mut size = 0;
    let mut took = Vec::new();
    for idx in 0..2 {
        let url = format!("http://192.0.2.{}:{METRICS_PORT}/metrics", idx + 1);
        let out = t
            .lan
            .ns(CLIENT)
            .command("curl")
            .args(["-sf", "--max-time", "2", "-o", "/dev/null"])
            .args(["-w", "%{size_download} %{time_total}", &url])
            .output();
        let Ok(o) = out else { continue };
        let text = String::from_utf8_lossy(&o.stdout);
        let mut w = text.split_whitespace();
        let len: usize = w.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        if o.status.success() && len > 0 {
            ok += 1;
            size = len;
            if let Some(s) = w.next().and_then(|x| x.parse::<f64>().ok()) {
                took.push(s * 1000.0);
            }
        }
    }
    (ok, size, took)
}

/// One scenario (its own namespaces: lb1, lb2, client) running the pair in `mode`.
struct Setup {
    mode: Mode,
    t: Classic,
    /// The OTLP receiver (serving only when the mode exports), and its runtime.
    received: Receiver,
    _rt: tokio::runtime::Runtime,
}

impl Setup {
    fn start(mode: Mode, rep: usize, slot: usize) -> Result<Setup> {
        let name = format!("telbench-{}-{rep}-{slot}", mode.name().replace(' ', "-"));
        let mut t = Classic::new(&name)?;
        let rt = tokio::runtime::Runtime::new()?;
        let received = Receiver::default();
        if mode.otlp() {
            received.serve_in(&rt, t.lan.ns(CLIENT), &format!("{CLIENT_ADDR}:{OTLP_PORT}"))?;
        }
        for (idx, state, prio) in [(0, "MASTER", 150), (1, "BACKUP", 100)] {
            let dir = t.dir.join(format!("lb{}", idx + 1));
            let args = agent_args(idx, mode);
            let extra: Vec<&str> = args.iter().map(String::as_str).collect();
            t.nodes[idx] = None;
            let a = Agent::start_with(t.lan.ns(idx), &dir, &idle::conf(state, prio), &extra)?;
            t.nodes[idx] = Some(Node::Agent(a));
        }
        Ok(Setup {
            mode,
            t,
            received,
            _rt: rt,
        })
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.t.nodes[i].as_ref().context("node not started")
    }

    fn changes(&self) -> Result<usize> {
        Ok(idle::state_changes(self.node(0)?) + idle::state_changes(self.node(1)?))
    }

    /// Settled, and (with `/metrics`) both agents answer a scrape.
    fn ready(&self) -> Result<()> {
        idle::wait_settled(&self.t.nodes)?;
        if self.mode.metrics() {
            wait_for(
                "first scrape of both agents",
                Duration::from_secs(10),
                || scrape(&self.t).0 == 2,
            )?;
        }
        Ok(())
    }

    /// Remove the scratch directory (unless `--keep`, or after a failure).
    fn finish(self, ok: bool) {
        let dir = self.t.dir.clone();
        drop(self.t);
        if ok && KEEP.load(Ordering::SeqCst) {
            eprintln!("kept {}", dir.display());
        } else if ok {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!("scratch directory kept: {}", dir.display());
        }
    }
}

/// One run: every mode's pair on its own namespaces, all at once, measured over the
/// same window (machine load and drift hit every mode alike).
fn run(modes: &[Mode], rep: usize, tck: u64) -> Result<Vec<Sample>> {
    let mut setups = Vec::new();
    for (slot, &m) in modes.iter().enumerate() {
        setups.push(Setup::start(m, rep, slot)?);
    }
    let r = measure_all(&setups, tck);
    let ok = r.is_ok() && !interrupted();
    for s in setups {
        s.finish(ok);
    }
    r
}

fn measure_all(setups: &[Setup], tck: u64) -> Result<Vec<Sample>> {
    for s in setups {
        s.ready()?;
    }
    pause(WARMUP)?;
    let changes0 = setups
        .iter()
        .map(Setup::changes)
        .collect::<Result<Vec<_>>>()?;
    let exports0: Vec<u64> = setups.iter().map(|s| s.received.got().exports).collect();
    let mut pids = Vec::new();
    for s in setups {
        pids.extend(idle::pids(&s.t.nodes)?);
    }
    let n = setups.len();
    let mut scrapes = vec![0usize; n];
    let mut page_bytes = vec![0usize; n];
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); n];
    let main0: Vec<u64> = pids.iter().map(|&p| thread_ns(p, p)).collect();
    let t0 = Instant::now();
    let usage = idle::measure_all(&pids, tck, || {
        let end = Instant::now() + window();
        let mut second = 0u64;
        while Instant::now() < end {
            let next = Instant::now() + Duration::from_secs(1);
            for (i, s) in setups.iter().enumerate() {
                if s.mode.metrics() && second.is_multiple_of(s.mode.scrape_every()) {
                    let (k, size, ms) = scrape(&s.t);
                    scrapes[i] += k;
                    page_bytes[i] = page_bytes[i].max(size);
                    took[i].extend(ms);
                }
            }
            pause(next.min(end).saturating_duration_since(Instant::now()))?;
            second += 1;
        }
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let main_pct: Vec<f64> = pids
        .iter()
        .zip(&main0)
        .map(|(&p, &a)| thread_ns(p, p).saturating_sub(a) as f64 / 1e9 / secs * 100.0)
        .collect();
    let mut out = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        out.push(Sample {
            main_pct: [main_pct[2 * i], main_pct[2 * i + 1]],
            master: usage[2 * i],
            backup: usage[2 * i + 1],
            scrapes: scrapes[i],
            page_bytes: page_bytes[i],
            scrape_ms: median(&took[i]).unwrap_or(0.0),
            exports: s.received.got().exports - exports0[i],
            changes: s.changes()? - changes0[i],
        });
    }
    Ok(out)
}

/// `$HA_BIN_DIR`, else the release build if present, else this program's directory.
fn choose_bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("HA_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let here = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .context("no directory of the program")?;
    let release = here.parent().map(|t| t.join("release"));
    match release {
        Some(r) if r.join("ha-agent").exists() => Ok(r),
        _ => Ok(here),
    }
}

fn pct_over(on: f64, off: f64) -> String {
    if off > 0.0 {
        format!("{:+.0} %", (on / off - 1.0) * 100.0)
    } else {
        "-".into()
    }
}

fn main() -> Result<()> {
    install_signal_flag();
    let mut runs = 3usize;
    let mut modes = vec![Mode::Off, Mode::On, Mode::OnFast];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs needs N")?.parse()?,
            "--detail" => modes.extend([Mode::Scrape, Mode::Otlp]),
            "--modes" => {
                // The first is the baseline; `--modes off,off` measures the method's
                // own noise (two identical pairs side by side).
                let list = args.next().context("--modes needs LIST")?;
                modes = list
                    .split(',')
                    .map(|m| match m {
                        "off" => Ok(Mode::Off),
                        "on" => Ok(Mode::On),
                        "on-fast" => Ok(Mode::OnFast),
                        "scrape" => Ok(Mode::Scrape),
                        "otlp" => Ok(Mode::Otlp),
                        other => bail!("--modes: off|on|scrape|otlp, not {other:?}"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--keep" => KEEP.store(true, Ordering::SeqCst),
            "--window" => {
                let n: u64 = args.next().context("--window needs SECS")?.parse()?;
                WINDOW_SECS.store(n.max(1), Ordering::SeqCst);
            }
            "-h" | "--help" => {
                println!("telemetry-bench [--runs N] [--window SECS] [--detail | --modes off,on,on-fast,scrape,otlp] [--keep]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let runs = runs.max(1);
    let dir = choose_bin_dir()?;
    std::env::set_var("HA_BIN_DIR", &dir);
    let bin = ha_tests::bin("ha-agent")?;
    let tck = clock_ticks_per_sec()?;
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); modes.len()];
    for rep in 0..runs {
        check_interrupted()?;
        // Modes side by side; the order they start in rotates from run to run.
        let order: Vec<usize> = (0..modes.len()).map(|k| (k + rep) % modes.len()).collect();
        let ms: Vec<Mode> = order.iter().map(|&m| modes[m]).collect();
        let got = run(&ms, rep, tck)?;
        for (&m, s) in order.iter().zip(got) {
            eprintln!(
                "[{:>5.1}s] run {}/{runs} telemetry {:<11}: master {:.2} % backup {:.2} % \
                 (scrapes {}, page {} B, scrape {:.1} ms, OTLP exports {}, state changes {})",
                started.elapsed().as_secs_f64(),
                rep + 1,
                modes[m].name(),
                s.master.cpu_pct,
                s.backup.cpu_pct,
                s.scrapes,
                s.page_bytes,
                s.scrape_ms,
                s.exports,
                s.changes
            );
            samples[m].push(s);
        }
    }

    println!();
    println!(
        "Telemetry cost: pair of {} v3 instances at advert_int 0.01 (lb1 MASTER, lb2 BACKUP)",
        idle::INSTANCES
    );
    println!(
        "on = --metrics-listen + --otlp-endpoint to a live OTLP/gRPC receiver (this program; export interval: the agent's default) + a /metrics scrape per agent every {SCRAPE_EVERY} s (the lab's Prometheus); \"on, 1s scrape\" scrapes every {SCRAPE_FAST} s"
    );
    println!(
        "CPU over {} s after {} s warm-up, % of one core (utime+stime of the process tree); medians of {runs} run(s), every mode side by side in each run's window; (+x %) is against off",
        window().as_secs(),
        WARMUP.as_secs()
    );
    println!();
    let mut head = format!("{:<17}", "measure");
    for m in &modes {
        head += &format!(" | {:>20}", m.name());
    }
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    type Pick = fn(&Sample) -> f64;
    let rows: [(&str, Pick); 9] = [
        ("master CPU %", |s| s.master.cpu_pct),
        ("backup CPU %", |s| s.backup.cpu_pct),
        ("master main thr %", |s| s.main_pct[0]),
        ("backup main thr %", |s| s.main_pct[1]),
        ("master others %", |s| {
            (s.master.cpu_pct - s.main_pct[0]).max(0.0)
        }),
        ("backup others %", |s| {
            (s.backup.cpu_pct - s.main_pct[1]).max(0.0)
        }),
        ("master RSS MiB", |s| s.master.rss_kib as f64 / 1024.0),
        ("backup RSS MiB", |s| s.backup.rss_kib as f64 / 1024.0),
        ("scrape ms", |s| s.scrape_ms),
    ];
    let med = |v: &[Sample], f: Pick| median(&v.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    for (label, pick) in rows {
        let base = med(&samples[0], pick);
        let mut line = format!("{label:<17}");
        for (i, v) in samples.iter().enumerate() {
            let x = med(v, pick);
            let cell = if i == 0 {
                format!("{x:.2}")
            } else {
                format!("{x:.2} ({})", pct_over(x, base))
            };
            line += &format!(" | {cell:>20}");
        }
        println!("{line}");
    }
    println!();
    // Each run measured every mode in the same window: the change against off within a
    // run is the figure machine drift does not move.
    for (m, v) in modes.iter().zip(&samples).skip(1) {
        let paired = |f: Pick| {
            let r: Vec<f64> = v
                .iter()
                .zip(&samples[0])
                .filter(|(_, off)| f(off) > 0.0)
                .map(|(on, off)| (f(on) / f(off) - 1.0) * 100.0)
                .collect();
            let each = r.iter().map(|x| format!("{x:+.0}")).collect::<Vec<_>>();
            format!(
                "{:+.1} % (runs: {} %)",
                median(&r).unwrap_or(0.0),
                each.join(" ")
            )
        };
        println!(
            "{:<11} vs off, same window, median of runs: master {}, backup {}",
            m.name(),
            paired(|s| s.master.cpu_pct),
            paired(|s| s.backup.cpu_pct)
        );
    }
    println!();
    for (m, v) in modes.iter().zip(&samples) {
        let each = |f: Pick| {
            v.iter()
                .map(|s| format!("{:.2}", f(s)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{:<11} CPU % per run: master [{}], backup [{}]",
            m.name(),
            each(|s| s.master.cpu_pct),
            each(|s| s.backup.cpu_pct)
        );
    }
    let profile = if bin.to_string_lossy().contains("/release/") {
        "release build"
    } else {
        "debug build: unoptimised, CPU figures are pessimistic"
    };
    println!("ha-agent: {} ({profile})", bin.display());
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", l.trim());
    }
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
