//! telemetry-bench: what telemetry costs ha-agent in CPU (issue 6 target: at most 5 %
//! more). Prints figures; asserts nothing.
//!
//! ```text
//! cargo build --release -p ha-agent --bin ha-agent     # else the debug build is used
//! cargo run -p ha-tests --bin telemetry-bench -- [--runs N] [--window SECS] [--detail] [--keep]
//! ```
//!
//! The idle pair of `ha_tests::idle` (lb1 MASTER, lb2 BACKUP of 50 v3 instances at
//! advert_int 0.01), measured twice per run on fresh namespaces:
//! - off: no telemetry flags;
//! - on: `--metrics-listen <own address>:9464` and `--otlp-endpoint
//!   http://192.0.2.100:4317`, a real OTLP/gRPC receiver run by this program in the client
//!   namespace (metrics exported every 5 s; spans only on transitions, none when idle),
//!   and the client scraping both agents' `/metrics` with curl every second, as
//!   Prometheus would.
//!
//! - `--detail` adds "scrape only" (no OTLP) and "otlp only" (no `/metrics`), to tell
//!   the two costs apart.
//!
//! After a 3 s warm-up, CPU (utime+stime of the agent's process tree) over a 10 s window
//! (`--window`: CPU is counted in clock ticks of 10 ms, so a 10 s window resolves 0.1 % of
//! a core, a 5 % difference on an agent at 3 % needs longer windows or more runs). Each
//! scrape's duration as curl sees it (`time_total`, on the client) is reported too.
//! Each run starts with the next mode (off/on, on/off, ...) so drift of the machine's
//! load does not favour one mode; the figures are medians over the runs.
//!
//! The binary is `$HA_BIN_DIR/ha-agent` if set, else `target/release/ha-agent` when
//! present, else the debug build next to this program.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::bench::{check_interrupted, install_signal_flag, interrupted, pause, wait_for};
use ha_tests::idle::{self, Usage, WARMUP, WINDOW};
use ha_tests::measure::{clock_ticks_per_sec, median};
use ha_tests::otlp::Receiver;
use ha_tests::scenario::{Classic, Node, CLIENT};
use ha_tests::Agent;

const CLIENT_ADDR: &str = "192.0.2.100";
const OTLP_PORT: u16 = 4317;
const METRICS_PORT: u16 = 9464;
/// Between two scrapes of each agent.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// `--keep`: keep the scratch directories (configs, logs).
static KEEP: AtomicBool = AtomicBool::new(false);
/// `--window`: measurement window in seconds.
static WINDOW_SECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The measurement window (`--window`, else the idle benchmarks' 10 s).
fn window() -> Duration {
    match WINDOW_SECS.load(Ordering::SeqCst) {
        0 => WINDOW,
        n => Duration::from_secs(n),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No telemetry flags.
    Off,
    /// Everything: `/metrics` scraped every second and OTLP export.
    On,
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
            Mode::Scrape => "scrape only",
            Mode::Otlp => "otlp only",
        }
    }

    fn metrics(self) -> bool {
        matches!(self, Mode::On | Mode::Scrape)
    }

    fn otlp(self) -> bool {
        matches!(self, Mode::On | Mode::Otlp)
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

fn measure_on(t: &mut Classic, mode: Mode, tck: u64) -> Result<Sample> {
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
    let node = |i: usize| t.nodes[i].as_ref().context("node not started");
    idle::wait_settled(&t.nodes)?;
    if mode.metrics() {
        wait_for(
            "first scrape of both agents",
            Duration::from_secs(10),
            || scrape(t).0 == 2,
        )?;
    }
    pause(WARMUP)?;
    let changes0 = idle::state_changes(node(0)?) + idle::state_changes(node(1)?);
    let exports0 = received.got().exports;
    let (mut scrapes, mut page_bytes, mut took) = (0, 0, Vec::new());
    let [master, backup] = idle::measure(idle::pids(&t.nodes)?, tck, || {
        let end = Instant::now() + window();
        while Instant::now() < end {
            let next = Instant::now() + SCRAPE_EVERY;
            if mode.metrics() {
                let (n, size, ms) = scrape(t);
                scrapes += n;
                page_bytes = page_bytes.max(size);
                took.extend(ms);
            }
            pause(next.min(end).saturating_duration_since(Instant::now()))?;
        }
        Ok(())
    })?;
    let changes = idle::state_changes(node(0)?) + idle::state_changes(node(1)?) - changes0;
    let exports = received.got().exports - exports0;
    Ok(Sample {
        master,
        backup,
        scrapes,
        page_bytes,
        scrape_ms: median(&took).unwrap_or(0.0),
        exports,
        changes,
    })
}

/// One measurement on fresh namespaces; the scratch directory is kept after a failure.
fn run(mode: Mode, rep: usize, tck: u64) -> Result<Sample> {
    let mut t = Classic::new(&format!("telbench-{}-{rep}", mode.name()))?;
    let dir = t.dir.clone();
    let r = measure_on(&mut t, mode, tck);
    drop(t);
    if r.is_ok() || interrupted() {
        if KEEP.load(Ordering::SeqCst) && !interrupted() {
            eprintln!("kept {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    r.with_context(|| format!("scratch directory {}", dir.display()))
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
    let mut modes = vec![Mode::Off, Mode::On];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs needs N")?.parse()?,
            "--detail" => modes.extend([Mode::Scrape, Mode::Otlp]),
            "--keep" => KEEP.store(true, Ordering::SeqCst),
            "--window" => {
                let n: u64 = args.next().context("--window needs SECS")?.parse()?;
                WINDOW_SECS.store(n.max(1), Ordering::SeqCst);
            }
            "-h" | "--help" => {
                println!("telemetry-bench [--runs N] [--window SECS] [--detail] [--keep]");
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
        // Each run starts with the next mode, so none always runs first or last.
        for k in 0..modes.len() {
            let m = (k + rep) % modes.len();
            let mode = modes[m];
            check_interrupted()?;
            let s = run(mode, rep, tck)?;
            eprintln!(
                "[{:>5.1}s] run {}/{runs} telemetry {:<11}: master {:.2} % backup {:.2} % \
                 (scrapes {}, page {} B, scrape {:.1} ms, OTLP exports {}, state changes {})",
                started.elapsed().as_secs_f64(),
                rep + 1,
                mode.name(),
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
        "on = --metrics-listen + --otlp-endpoint to a live OTLP/gRPC receiver (this program) + a /metrics scrape per agent every {} s",
        SCRAPE_EVERY.as_secs()
    );
    println!(
        "CPU over {} s after {} s warm-up, % of one core (utime+stime of the process tree); medians of {runs} run(s), modes in rotating order; (+x %) is against off",
        window().as_secs(),
        WARMUP.as_secs()
    );
    println!();
    let mut head = format!("{:<16}", "measure");
    for m in &modes {
        head += &format!(" | {:>20}", m.name());
    }
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    type Pick = fn(&Sample) -> f64;
    let rows: [(&str, Pick); 5] = [
        ("master CPU %", |s| s.master.cpu_pct),
        ("backup CPU %", |s| s.backup.cpu_pct),
        ("master RSS MiB", |s| s.master.rss_kib as f64 / 1024.0),
        ("backup RSS MiB", |s| s.backup.rss_kib as f64 / 1024.0),
        ("scrape ms", |s| s.scrape_ms),
    ];
    let med = |v: &[Sample], f: Pick| median(&v.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    for (label, pick) in rows {
        let base = med(&samples[0], pick);
        let mut line = format!("{label:<16}");
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
