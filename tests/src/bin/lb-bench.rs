//! lb-bench: the load-balancer benchmark (issue 5). Prints figures; asserts nothing.
//!
//! ```text
//! cargo build --release -p ha-agent --bin ha-agent -p ha-tests --bin lb-bench
//! lb-bench [--lb-bin PATH] [--n 1000] [--vs 4] [--warmup 5] [--settle 60] [--window 20]
//!          [--http] [--vm-n 1000,300] [--vm-warmup 5] [--vm-settle 60] [--vm-window 20]
//!          [--vm-http] [--wrk-secs 10] [--wrk-conns 32] [--rounds 2]
//!          [--skip host|vm|wrk]... [--keep]
//! lb-bench serve --ports FIRST-LAST [--count-file FILE]   # the real servers (internal)
//! lb-bench vm-guest                                       # inside the VM (internal)
//! ```
//!
//! `--lb-bin` is the program under test: `ha-agent` (default, next to this binary; run as
//! `--config F --state-dir D`) or `lb-run` (the same load-balancer code alone; run as
//! `--config F --status F`). Release builds give the meaningful CPU figures.
//!
//! 1. **Checkers, host**: N real servers (default 1000 = 4 virtual servers x 250, at
//!    198.51.100.11.. with 50 ports per address), each with `TCP_CHECK` (connect_timeout
//!    1, delay_loop 1), so N checks per second. Director and real servers are two
//!    namespaces joined by a veth pair; one `lb-bench serve` process holds every
//!    listening socket and counts accepted connections (= checks done). After the
//!    warm-up (and, where the table is observable, until all N destinations are in it,
//!    at most `--settle` s), over the window: CPU (utime + stime of every thread of the process tree,
//!    plus the children it reaped, from /proc/PID/stat), VmRSS (mean and max, sampled
//!    each second), VmHWM, checks/s.
//!    `--http` adds the same with `HTTP_GET` (the listener answers `200`).
//!    keepalived's checker cannot run on this host (no IPVS): it is measured in the VM.
//! 2. **Checkers, VM, side by side with keepalived**: tests/vm/bench-vm.sh boots the IPVS
//!    VM (see tests/vm/ipvs-vm.sh) with `rdinit=/bin/bench-init`; inside, `lb-bench
//!    vm-guest` holds the listeners on local addresses, then runs `keepalived -C -n -D`
//!    (checker only; parent plus checker child measured) and the program under test on
//!    the same generated config, one after the other (which goes first alternates per
//!    case), and prints one result line each (plus `ipvsadm -Ln`'s destination count). The VM is TCG-emulated on one vCPU,
//!    shared with the listener: 1000 checks/s are barely sustained there, so `--vm-n`
//!    takes a list (default 1000,300: the asked N, and one both programs sustain on a
//!    loaded 2-core host); a note flags any N whose checks/s stayed under 90 % of N.
//! 3. **Throughput**: clients -- director -- real server namespaces; nginx on the real
//!    server serving a small static file; the program under test on the director with a
//!    NAT virtual server (nftables here). `wrk` from one client against the VIP and from
//!    another (own veth, own address) against the real server directly (the director
//!    routes it: same hops), with
//!    keep-alive and with `Connection: close` (one NAT setup per request); req/s and the
//!    ratio VIP/direct.
//!
//! A summary block with every figure and ratio ends the output. Figures depend on the
//! machine's load (printed): run it twice before trusting a ratio.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::measure::{clock_ticks_per_sec, process_tree};
use ha_tests::netns::ip;
use ha_tests::proc::wait_until;
use ha_tests::{Daemon, Netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The virtual servers' address (ports 80, 81, ...).
const VIP: &str = "192.0.2.10";
/// Real-server ports per address.
const PORTS_PER_ADDR: usize = 50;
/// First real-server port.
const BASE_PORT: u16 = 8000;
/// Host part of the first real-server address (198.51.100.11).
const FIRST_HOST: usize = 11;
/// Real-server addresses available (198.51.100.11 ..= .254).
const MAX_ADDRS: usize = 254 - FIRST_HOST + 1;
/// The director's address on the real servers' side.
const DIRECTOR_RS_SIDE: &str = "198.51.100.1";
/// The listener's answer to an HTTP request (HTTP_GET runs).
const HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
/// Marker of a result line on the VM console.
const RESULT_MARK: &str = "=== LBB RESULT";
/// Hang guard on a daemon's clean stop.
const STOP_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Config generation (pure)

/// The health check every real server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `TCP_CHECK`.
    Tcp,
    /// `HTTP_GET` of `/`, expecting 200.
    Http,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Tcp => "TCP_CHECK",
            Probe::Http => "HTTP_GET",
        }
    }

    fn parse(s: &str) -> Result<Probe> {
        match s {
            "tcp" => Ok(Probe::Tcp),
            "http" => Ok(Probe::Http),
            _ => bail!("probe must be tcp or http, got {s:?}"),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http => "http",
        }
    }
}

/// Real server `i`: address 198.51.100.(11 + i / 50), port 8000 + i % 50.
fn real_server(i: usize) -> (Ipv4Addr, u16) {
    let host = FIRST_HOST + i / PORTS_PER_ADDR;
    let port = BASE_PORT + (i % PORTS_PER_ADDR) as u16;
    (Ipv4Addr::new(198, 51, 100, host as u8), port)
}

/// How many real-server addresses `n` real servers use.
fn addr_count(n: usize) -> usize {
    n.div_ceil(PORTS_PER_ADDR)
}

/// The ports the listener must hold for `n` real servers (on every address).
fn listen_ports(n: usize) -> (u16, u16) {
    let k = n.clamp(1, PORTS_PER_ADDR) as u16;
    (BASE_PORT, BASE_PORT + k - 1)
}

/// A keepalived.conf with `n` real servers spread round-robin over `vs` NAT virtual
/// servers (VIP:80, VIP:81, ...), each real server with one `probe` checker run every
/// second with a one-second connect timeout. keepalived and ha-agent read it alike.
fn checker_conf(n: usize, vs: usize, probe: Probe) -> Result<String> {
    if n == 0 || vs == 0 || vs > 100 {
        bail!("need n >= 1 and 1 <= vs <= 100 (n {n}, vs {vs})");
    }
    if addr_count(n) > MAX_ADDRS {
        bail!(
            "at most {} real servers (198.51.100.11-254, {PORTS_PER_ADDR} ports each)",
            MAX_ADDRS * PORTS_PER_ADDR
        );
    }
    let mut s = String::from("global_defs {\n    router_id lb_bench\n}\n");
    for v in 0..vs {
        let _ = write!(
            s,
            "\nvirtual_server {VIP} {} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n",
            80 + v
        );
        for i in (v..n).step_by(vs) {
            let (addr, port) = real_server(i);
            let _ = write!(
                s,
                "    real_server {addr} {port} {{\n        weight 1\n        {} {{\n",
                probe.name()
            );
            if probe == Probe::Http {
                s.push_str(
                    "            url {\n                path /\n                status_code 200\n            }\n",
                );
            }
            s.push_str("            connect_timeout 1\n        }\n    }\n");
        }
        s.push_str("}\n");
    }
    Ok(s)
}

/// The throughput run's config: one NAT virtual server VIP:80 -> 198.51.100.11:80.
fn nat_conf() -> String {
    format!(
        "global_defs {{\n    router_id lb_bench\n}}\n\nvirtual_server {VIP} 80 {{\n    delay_loop 1\n    \
         lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    real_server 198.51.100.11 80 {{\n        \
         weight 1\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\n"
    )
}

// ---------------------------------------------------------------------------------------
// The real servers: one process, one listening socket per port on every address.

/// Accept on every port of `first..=last` (all addresses) and count each connection.
/// With `http` set, read the request and answer 200 before closing; otherwise (TCP_CHECK)
/// close at once, the cheapest server so the checker's cost dominates. Runs until the
/// process ends.
async fn serve(first: u16, last: u16, count: Arc<AtomicU64>, http: Arc<AtomicBool>) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for port in first..=last {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .with_context(|| format!("listen on port {port}"))?;
        let c = Arc::clone(&count);
        let http = Arc::clone(&http);
        set.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        if http.load(Ordering::Relaxed) {
                            tokio::spawn(answer(s));
                        }
                    }
                    // EMFILE and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Read a request head (bounded in size and time); answer 200 if one came, then close.
async fn answer(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 2048];
    let mut got = 0;
    let head = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let k = s.read(&mut buf[got..]).await.unwrap_or(0);
            if k == 0 {
                return false;
            }
            got += k;
            if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                return true;
            }
            if got == buf.len() {
                return false;
            }
        }
    })
    .await;
    if head == Ok(true) {
        let _ = s.write_all(HTTP_ANSWER).await;
        let _ = s.shutdown().await;
    }
}

/// `lb-bench serve --ports A-B [--http] [--count-file F]`: the listener, writing its
/// accept count to F every 100 ms.
fn serve_main(args: &[String]) -> Result<()> {
    let mut ports = None;
    let mut count_file = None;
    let http = Arc::new(AtomicBool::new(false));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ports" => ports = it.next().cloned(),
            "--count-file" => count_file = it.next().map(PathBuf::from),
            "--http" => http.store(true, Ordering::Relaxed),
            other => bail!("serve: unknown argument {other}"),
        }
    }
    let ports = ports.context("serve: --ports FIRST-LAST is required")?;
    let (a, b) = ports.split_once('-').context("serve: --ports FIRST-LAST")?;
    let (first, last): (u16, u16) = (a.parse()?, b.parse()?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let count = Arc::new(AtomicU64::new(0));
    rt.block_on(async move {
        if let Some(f) = count_file {
            let c = Arc::clone(&count);
            tokio::spawn(async move {
                loop {
                    let tmp = f.with_extension("tmp");
                    if fs::write(&tmp, c.load(Ordering::Relaxed).to_string()).is_ok() {
                        let _ = fs::rename(&tmp, &f);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        serve(first, last, count, http).await
    })
}

// ---------------------------------------------------------------------------------------
// Measurement

/// What one measuring window saw of one program.
#[derive(Debug, Clone, Default)]
struct Usage {
    /// CPU (user + system, every thread and child) over the window, percent of one core.
    cpu_pct: f64,
    /// VmRSS summed over the process tree: mean and max of the per-second samples, KiB.
    rss_avg_kib: u64,
    /// See `rss_avg_kib`.
    rss_max_kib: u64,
    /// VmHWM (peak RSS) summed over the process tree at the end, KiB.
    hwm_kib: u64,
    /// Connections the real servers accepted per second (= checks per second).
    checks_per_s: Option<f64>,
    /// Processes in the tree.
    procs: usize,
    /// Window length, seconds.
    secs: f64,
    /// Seconds from start until the data plane held all N destinations (None: not seen
    /// within the settle limit, or not observable).
    table_full_s: Option<f64>,
}

impl Usage {
    /// One line of `key=value` pairs (also the VM's result line format).
    fn kv(&self) -> String {
        format!(
            "cpu_pct={:.2} rss_avg_kib={} rss_max_kib={} hwm_kib={} checks_per_s={} procs={} secs={:.1} table_full_s={}",
            self.cpu_pct,
            self.rss_avg_kib,
            self.rss_max_kib,
            self.hwm_kib,
            opt(self.checks_per_s, 1),
            self.procs,
            self.secs,
            opt(self.table_full_s, 1)
        )
    }

    /// Parse [`Usage::kv`] fields out of a `key=value` map.
    fn from_kv(m: &BTreeMap<String, String>) -> Option<Usage> {
        let f = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
        let u = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
        Some(Usage {
            cpu_pct: f("cpu_pct")?,
            rss_avg_kib: u("rss_avg_kib")?,
            rss_max_kib: u("rss_max_kib")?,
            hwm_kib: u("hwm_kib")?,
            checks_per_s: f("checks_per_s"),
            procs: u("procs").unwrap_or(0) as usize,
            secs: f("secs").unwrap_or(0.0),
            table_full_s: f("table_full_s"),
        })
    }

    /// CPU time per check, microseconds (CPU share over checks per second).
    fn us_per_check(&self) -> Option<f64> {
        self.checks_per_s
            .filter(|c| *c > 0.0)
            .map(|c| self.cpu_pct / 100.0 * 1e6 / c)
    }

    fn human(&self) -> String {
        format!(
            "cpu {:6.2} % ({} us/check)  rss avg {:7.1} MiB  max {:7.1} MiB  hwm {:7.1} MiB  checks/s {}  ({} proc, {:.0} s){}",
            self.cpu_pct,
            self.us_per_check()
                .map(|u| format!("{u:.0}"))
                .unwrap_or_else(|| "na".into()),
            mib(self.rss_avg_kib),
            mib(self.rss_max_kib),
            mib(self.hwm_kib),
            self.checks_per_s
                .map(|c| format!("{c:7.1}"))
                .unwrap_or_else(|| "     na".into()),
            self.procs,
            self.secs,
            self.table_full_s
                .map(|t| format!("  table full after {t:.0} s"))
                .unwrap_or_default()
        )
    }
}

/// `v` with `digits` decimals, or `na`.
fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "na".into())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU ticks of `pid`: utime + stime (every thread) + cutime + cstime (children it
/// reaped, e.g. short-lived `nft` runs), from `/proc/PID/stat`.
fn cpu_ticks_with_children(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields start after the last ')'.
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    // After ')': index 0 is field 3 (state); utime (14) is index 11, up to cstime (17).
    f.get(11..15)?
        .iter()
        .map(|v| v.parse::<u64>().ok())
        .sum::<Option<u64>>()
}

/// CPU ticks and resident memory of a process tree at one instant.
#[derive(Debug, Default)]
struct Sample {
    /// Ticks per live pid of the tree (see [`cpu_ticks_with_children`]).
    ticks: BTreeMap<u32, u64>,
    /// VmRSS summed over the tree, KiB.
    rss_kib: u64,
}

impl Sample {
    fn take(root: u32) -> Sample {
        let mut s = Sample::default();
        for pid in process_tree(root) {
            if let Some(t) = cpu_ticks_with_children(pid) {
                s.ticks.insert(pid, t);
                s.rss_kib += status_kib(pid, "VmRSS").unwrap_or(0);
            }
        }
        s
    }

    /// Ticks spent since `earlier` (a process that appeared meanwhile counts in full).
    fn ticks_since(&self, earlier: &Sample) -> u64 {
        self.ticks
            .iter()
            .map(|(pid, t)| t.saturating_sub(earlier.ticks.get(pid).copied().unwrap_or(0)))
            .sum()
    }
}

/// Clock ticks per second; USER_HZ is 100 on Linux wherever `getconf` is missing (the VM).
fn ticks_per_sec() -> u64 {
    clock_ticks_per_sec().unwrap_or(100)
}

/// Sleep `d` while `pid` lives; Err if it exits.
fn watch_alive(pid: u32, d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if !Path::new(&format!("/proc/{pid}/stat")).exists() {
            bail!("process {pid} exited");
        }
        std::thread::sleep(Duration::from_millis(100).min(end - Instant::now()));
    }
    Ok(())
}

/// The warm-up: at least `warmup`, and until `table()` shows all `n` destinations (polled
/// each second from the start) or `limit` passes. Returns when the table was first full.
fn settle(
    pid: u32,
    warmup: Duration,
    limit: Duration,
    n: usize,
    table: &dyn Fn() -> Option<usize>,
) -> Result<Option<f64>> {
    let t0 = Instant::now();
    let mut full = None;
    loop {
        if full.is_none() {
            match table() {
                Some(k) if k >= n => full = Some(t0.elapsed().as_secs_f64()),
                // Not observable: the fixed warm-up only.
                None if t0.elapsed() >= warmup => return Ok(None),
                _ => {}
            }
        }
        let e = t0.elapsed();
        if e >= warmup && (full.is_some() || e >= limit) {
            return Ok(full);
        }
        watch_alive(pid, Duration::from_secs(1))?;
    }
}

/// Measure the process tree rooted at `root` over `window`: CPU, RSS each second, HWM at
/// the end, and the rate of `counter` (accepted connections).
fn measure(root: u32, window: Duration, counter: &dyn Fn() -> Option<u64>) -> Result<Usage> {
    let hz = ticks_per_sec() as f64;
    let s0 = Sample::take(root);
    let c0 = counter();
    let t0 = Instant::now();
    let mut rss = Vec::new();
    let mut next = t0;
    while t0.elapsed() < window {
        next += Duration::from_secs(1);
        watch_alive(root, next.saturating_duration_since(Instant::now()))?;
        rss.push(Sample::take(root).rss_kib);
    }
    let s1 = Sample::take(root);
    let c1 = counter();
    let secs = t0.elapsed().as_secs_f64();
    let tree = process_tree(root);
    let hwm_kib = tree.iter().filter_map(|p| status_kib(*p, "VmHWM")).sum();
    Ok(Usage {
        cpu_pct: s1.ticks_since(&s0) as f64 / hz / secs * 100.0,
        rss_avg_kib: rss.iter().sum::<u64>() / rss.len().max(1) as u64,
        rss_max_kib: rss.iter().copied().max().unwrap_or(0),
        hwm_kib,
        checks_per_s: match (c0, c1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / secs),
            _ => None,
        },
        procs: s1.ticks.len(),
        secs,
        table_full_s: None,
    })
}

/// Whether `bin` is lb-run (`--status FILE`) rather than ha-agent (`--state-dir DIR`).
fn is_lb_run(bin: &Path) -> bool {
    bin.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("lb-run"))
}

/// The arguments that run `bin` on `cfg`, with its state under `state`.
fn lb_args(bin: &Path, cfg: &Path, state: &Path) -> Vec<String> {
    let cfg = cfg.to_string_lossy().into_owned();
    if is_lb_run(bin) {
        let status = state.join("lb.status").to_string_lossy().into_owned();
        vec!["--config".into(), cfg, "--status".into(), status]
    } else {
        let state = state.to_string_lossy().into_owned();
        vec![
            "--config".into(),
            cfg,
            "--state-dir".into(),
            state.clone(),
            "--runtime-dir".into(),
            state,
        ]
    }
}

/// Real servers lb-run's status file shows with `what` (`alive=true`, `in_table=true`);
/// None for ha-agent (no such file).
fn count_in_status(state: &Path, what: &str) -> Option<usize> {
    let s = fs::read_to_string(state.join("lb.status")).ok()?;
    Some(s.lines().filter(|l| l.contains(what)).count())
}

/// The last `n` lines of a log, for error context.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    lb_bin: PathBuf,
    n: usize,
    vs: usize,
    warmup: u64,
    window: u64,
    settle: u64,
    http: bool,
    vm_n: Vec<usize>,
    vm_warmup: u64,
    vm_window: u64,
    vm_settle: u64,
    vm_http: bool,
    wrk_secs: u64,
    wrk_conns: u32,
    rounds: u32,
    skip: Vec<String>,
    keep: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let here = std::env::current_exe()?;
    let dir = here.parent().context("no target dir")?;
    let mut o = Opts {
        lb_bin: dir.join("ha-agent"),
        n: 1000,
        vs: 4,
        warmup: 5,
        window: 20,
        settle: 60,
        http: false,
        vm_n: vec![1000, 300],
        vm_warmup: 5,
        vm_window: 20,
        vm_settle: 60,
        vm_http: false,
        wrk_secs: 10,
        wrk_conns: 32,
        rounds: 2,
        skip: Vec::new(),
        keep: false,
    };
    let mut it = args.iter();
    fn val<T: std::str::FromStr>(it: &mut std::slice::Iter<'_, String>, flag: &str) -> Result<T> {
        it.next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag}: bad value"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lb-bin" => o.lb_bin = PathBuf::from(val::<String>(&mut it, a)?),
            "--n" => o.n = val(&mut it, a)?,
            "--vs" => o.vs = val(&mut it, a)?,
            "--warmup" => o.warmup = val(&mut it, a)?,
            "--window" => o.window = val(&mut it, a)?,
            "--settle" => o.settle = val(&mut it, a)?,
            "--http" => o.http = true,
            "--vm-n" => {
                let v: String = val(&mut it, a)?;
                o.vm_n = v
                    .split(',')
                    .map(|x| x.parse().context("--vm-n N[,N...]"))
                    .collect::<Result<_>>()?;
            }
            "--vm-warmup" => o.vm_warmup = val(&mut it, a)?,
            "--vm-window" => o.vm_window = val(&mut it, a)?,
            "--vm-settle" => o.vm_settle = val(&mut it, a)?,
            "--vm-http" => o.vm_http = true,
            "--wrk-secs" => o.wrk_secs = val(&mut it, a)?,
            "--wrk-conns" => o.wrk_conns = val(&mut it, a)?,
            "--rounds" => o.rounds = val(&mut it, a)?,
            "--skip" => {
                let s: String = val(&mut it, a)?;
                if !["host", "vm", "wrk"].contains(&s.as_str()) {
                    bail!("--skip host|vm|wrk");
                }
                o.skip.push(s);
            }
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                println!(
                    "lb-bench [--lb-bin PATH] [--n N] [--vs V] [--warmup S] [--window S] [--http]\n         \
                     [--vm-n N] [--vm-warmup S] [--vm-window S] [--vm-http]\n         \
                     [--wrk-secs S] [--wrk-conns C] [--rounds R] [--skip host|vm|wrk]... [--keep]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (--help)"),
        }
    }
    checker_conf(o.n, o.vs, Probe::Tcp)?;
    for n in &o.vm_n {
        checker_conf(*n, o.vs, Probe::Tcp)?;
    }
    if !o.lb_bin.exists() {
        bail!(
            "{} not found: build it (cargo build -p ha-agent --bin ha-agent) or pass --lb-bin",
            o.lb_bin.display()
        );
    }
    o.lb_bin = fs::canonicalize(&o.lb_bin)?;
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// 1. Checkers on the host

/// `ip link add <a> netns A type veth peer name <b> netns B`.
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])?;
    Ok(())
}

fn host_checkers(o: &Opts, probe: Probe, scratch: &Path) -> Result<(Usage, Option<String>)> {
    let dir = scratch.join(format!("host-{}", probe.word()));
    fs::create_dir_all(&dir)?;
    let director = Netns::new("lbd")?;
    let servers = Netns::new("lbs")?;
    veth(&director, "eth0", &servers, "eth0")?;
    director.sh(&format!(
        "ip addr add {DIRECTOR_RS_SIDE}/24 dev eth0 && ip link set eth0 up"
    ))?;
    let mut addrs = String::from("set -e;");
    for a in 0..addr_count(o.n) {
        let _ = write!(
            addrs,
            " ip addr add 198.51.100.{}/24 dev eth0;",
            FIRST_HOST + a
        );
    }
    addrs.push_str(" ip link set eth0 up");
    servers.sh(&addrs)?;

    let (first, last) = listen_ports(o.n);
    let count_file = dir.join("accepted");
    let me = std::env::current_exe()?;
    let ports = format!("{first}-{last}");
    let count_arg = count_file.to_string_lossy();
    let mut serve_args = vec!["serve", "--ports", &ports, "--count-file", &count_arg];
    if probe == Probe::Http {
        serve_args.push("--http");
    }
    let _serve = Daemon::start(&servers, &dir, "serve", &me, &serve_args)?;
    wait_until("the listener is up", Duration::from_secs(10), || {
        count_file.exists()
    })?;
    let counter = || {
        fs::read_to_string(&count_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };

    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, checker_conf(o.n, o.vs, probe)?)?;
    let state = dir.join("state");
    fs::create_dir_all(&state)?;
    let args = lb_args(&o.lb_bin, &cfg, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut lb = Daemon::start(&director, &dir, "lb", &o.lb_bin, &args)?;
    let pid = lb.pid().context("no pid")?;
    println!(
        "host {}: {} real servers, {} virtual servers, warm-up {} s, window {} s ({})",
        probe.name(),
        o.n,
        o.vs,
        o.warmup,
        o.window,
        o.lb_bin.display()
    );
    let in_table = || {
        if is_lb_run(&o.lb_bin) {
            Some(count_in_status(&state, "in_table=true").unwrap_or(0))
        } else {
            None
        }
    };
    let usage = settle(
        pid,
        Duration::from_secs(o.warmup),
        Duration::from_secs(o.settle),
        o.n,
        &in_table,
    )
    .and_then(|full| {
        let mut u = measure(pid, Duration::from_secs(o.window), &counter)?;
        u.table_full_s = full;
        Ok(u)
    })
    .with_context(|| format!("log:\n{}", tail(&lb.log_text(), 30)))?;
    let end = if is_lb_run(&o.lb_bin) {
        count_in_status(&state, "alive=true").map(|a| {
            let t = count_in_status(&state, "in_table=true").unwrap_or(0);
            format!("real servers alive {a}/{n}, in the table {t}/{n}", n = o.n)
        })
    } else {
        agent_lb_summary(&lb, &state, o.n)
    };
    lb.signal("TERM")?;
    if lb.wait_exit(STOP_LIMIT).is_err() {
        println!("  (did not stop within {STOP_LIMIT:?}; killed)");
    }
    println!("  {}", usage.human());
    if let Some(e) = &end {
        println!("  at the end: {e}");
    }
    Ok((usage, end))
}

/// ha-agent's load balancer at the end of the window, from `stats.json` (SIGUSR2): real
/// servers alive and in the table, data-plane applies and backend.
fn agent_lb_summary(lb: &Daemon, state: &Path, n: usize) -> Option<String> {
    let path = state.join("stats.json");
    let read = || -> Option<serde_json::Value> {
        serde_json::from_str(&fs::read_to_string(&path).ok()?).ok()
    };
    let before = read().and_then(|v| v["dump_seq"].as_u64());
    lb.signal("USR2").ok()?;
    let mut dump = None;
    wait_until("stats.json dump", Duration::from_secs(5), || {
        dump = read().filter(|v| v["dump_seq"].as_u64() != before);
        dump.is_some()
    })
    .ok()?;
    let v = dump?;
    let lb = &v["lb"];
    let rs: Vec<&serde_json::Value> = lb["virtual_servers"]
        .as_array()?
        .iter()
        .filter_map(|vs| vs["real_servers"].as_array())
        .flatten()
        .collect();
    let count = |k: &str| rs.iter().filter(|r| r[k] == true).count();
    Some(format!(
        "real servers alive {}/{n}, in the table {}/{n}, {} data-plane applies ({})",
        count("alive"),
        count("in_table"),
        lb["applies"],
        lb["backend"].as_str().unwrap_or("?")
    ))
}

// ---------------------------------------------------------------------------------------
// 2. Checkers in the VM, side by side with keepalived

/// `lbb.KEY=VALUE` words of a kernel command line.
fn cmdline_params(cmdline: &str) -> BTreeMap<String, String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("lbb."))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `key=value` words of a line.
fn kv_words(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Result of one program in the VM.
#[derive(Debug, Clone)]
struct VmResult {
    /// `keepalived` or the program under test's name.
    who: String,
    /// Checker kind word (tcp, http).
    probe: String,
    /// Real servers.
    n: usize,
    /// Its figures.
    usage: Usage,
    /// Destinations in IPVS at the end of the window.
    ipvs_dests: Option<u64>,
}

fn vm_bench(o: &Opts, scratch: &Path) -> Result<(Vec<VmResult>, Vec<String>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/bench-vm.sh");
    let work = scratch.join("vm");
    let keepalived = Path::new("/usr/sbin/keepalived");
    if !keepalived.exists() {
        bail!("/usr/sbin/keepalived missing (apt-get install keepalived)");
    }
    let bin_name = o
        .lb_bin
        .file_name()
        .and_then(|n| n.to_str())
        .context("--lb-bin has no file name")?;
    let probes = if o.vm_http { "tcp,http" } else { "tcp" };
    let ns = o
        .vm_n
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let params = format!(
        "lbb.n={ns} lbb.vs={} lbb.warmup={} lbb.settle={} lbb.window={} lbb.bin={bin_name} \
         lbb.probes={probes}",
        o.vs, o.vm_warmup, o.vm_settle, o.vm_window
    );
    let runs = (if o.vm_http { 4 } else { 2 }) * o.vm_n.len() as u64;
    // Boot and initramfs unpacking (about 30 s under TCG), each run's warm-up, window,
    // start and stop, with slack: a hang guard, not a measurement.
    let timeout = 120 + runs * (o.vm_warmup.max(o.vm_settle) + o.vm_window + 30);
    let me = std::env::current_exe()?;
    println!(
        "vm: booting the IPVS VM (TCG, 1 vCPU): keepalived -C then {bin_name}, N={ns} real servers, \
         {probes}, warm-up {} s, window {} s (timeout {timeout} s)",
        o.vm_warmup, o.vm_window
    );
    let t0 = Instant::now();
    let out = Command::new(&script)
        .arg(&work)
        .arg(&params)
        .arg(&me)
        .arg(&o.lb_bin)
        .arg(keepalived)
        .env("HA_VM_TIMEOUT", timeout.to_string())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    fs::create_dir_all(scratch)?;
    let log = scratch.join("vm-console.log");
    fs::write(&log, format!("{console}\n--- stderr ---\n{stderr}"))?;
    println!(
        "vm: ran {:.0} s, console in {}",
        t0.elapsed().as_secs_f64(),
        log.display()
    );
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if line.contains("=== LBB ERROR") {
            errors.push(line.to_string());
        }
        let Some(rest) = line
            .find(RESULT_MARK)
            .map(|i| &line[i + RESULT_MARK.len()..])
        else {
            continue;
        };
        let m = kv_words(rest.trim_end_matches("==="));
        let (Some(who), Some(usage)) = (m.get("who"), Usage::from_kv(&m)) else {
            errors.push(format!("unparsed result line: {line}"));
            continue;
        };
        results.push(VmResult {
            who: who.clone(),
            probe: m.get("probe").cloned().unwrap_or_default(),
            n: m.get("n").and_then(|v| v.parse().ok()).unwrap_or(0),
            usage,
            ipvs_dests: m.get("ipvs_dests").and_then(|v| v.parse().ok()),
        });
    }
    for line in console.lines().filter(|l| l.contains("lb-bench:")) {
        println!("vm: {}", line.trim_end_matches('\r'));
    }
    if results.is_empty() {
        bail!(
            "the VM printed no result ({}):\n{}\n{}",
            out.status,
            tail(&console, 40),
            tail(&stderr, 10)
        );
    }
    Ok((results, errors))
}

/// `lb-bench vm-guest`: inside the VM (PID 1 is tests/vm/bench-init). Parameters come
/// from the kernel command line (`lbb.n=`, `lbb.vs=`, `lbb.warmup=`, `lbb.window=`,
/// `lbb.bin=`, `lbb.probes=`).
fn vm_guest() -> Result<()> {
    let p = cmdline_params(&fs::read_to_string("/proc/cmdline")?);
    let get = |k: &str, d: &str| p.get(k).cloned().unwrap_or_else(|| d.to_string());
    let ns: Vec<usize> = get("n", "1000")
        .split(',')
        .map(|v| v.parse().context("lbb.n"))
        .collect::<Result<_>>()?;
    let max_n = ns.iter().copied().max().unwrap_or(1);
    let vs: usize = get("vs", "4").parse()?;
    let warmup = Duration::from_secs(get("warmup", "5").parse()?);
    let window = Duration::from_secs(get("window", "20").parse()?);
    let settle_limit = Duration::from_secs(get("settle", "60").parse()?);
    let bin = PathBuf::from("/bin").join(get("bin", "ha-agent"));
    let probes: Vec<Probe> = get("probes", "tcp")
        .split(',')
        .map(Probe::parse)
        .collect::<Result<_>>()?;
    println!("lb-bench: guest n={ns:?} vs={vs} bin={}", bin.display());

    for a in 0..addr_count(max_n) {
        let addr = format!("198.51.100.{}/32", FIRST_HOST + a);
        ha_tests::netns::run(Command::new("ip").args(["addr", "add", &addr, "dev", "lo"]))?;
    }
    let (first, last) = listen_ports(max_n);
    let count = Arc::new(AtomicU64::new(0));
    let http = Arc::new(AtomicBool::new(false));
    let c = Arc::clone(&count);
    let h = Arc::clone(&http);
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return println!("=== LBB ERROR listener runtime: {e} ==="),
        };
        if let Err(e) = rt.block_on(serve(first, last, c, h)) {
            println!("=== LBB ERROR listener: {e:#} ===");
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let counter = || Some(count.load(Ordering::Relaxed));

    fs::create_dir_all("/tmp/lbb")?;
    let cases = ns.iter().flat_map(|n| probes.iter().map(move |p| (*n, *p)));
    for (case, (n, probe)) in cases.enumerate() {
        http.store(probe == Probe::Http, Ordering::Relaxed);
        let cfg = PathBuf::from(format!("/tmp/lbb/{}-{n}.conf", probe.word()));
        fs::write(&cfg, checker_conf(n, vs, probe)?)?;
        let who_bin = bin
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("ha-agent")
            .to_string();
        let state = PathBuf::from(format!("/tmp/lbb/state-{}-{n}", probe.word()));
        fs::create_dir_all(&state)?;
        let cfg_s = cfg.to_string_lossy().into_owned();
        // Logs go to syslog (bench-init starts busybox syslogd into /tmp/lbb/syslog): -l
        // would write every line to the emulated serial console.
        let keepalived_args: Vec<String> = [
            "-C",
            "-n",
            "-D",
            "-f",
            &cfg_s,
            "-p",
            "/run/lbb-keepalived.pid",
            "-c",
            "/run/lbb-checkers.pid",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut plan: [(String, PathBuf, Vec<String>); 2] = [
            (
                "keepalived".into(),
                PathBuf::from("/bin/keepalived"),
                keepalived_args,
            ),
            (who_bin, bin.clone(), lb_args(&bin, &cfg, &state)),
        ];
        // Alternate who goes first, so a drift in the host's load (which TCG turns into
        // guest CPU time) does not always favour the same program.
        if case % 2 == 1 {
            plan.reverse();
        }
        for (who, program, args) in plan {
            match guest_run(
                &who,
                &program,
                &args,
                n,
                (warmup, settle_limit, window),
                &counter,
            ) {
                Ok((u, dests)) => println!(
                    "{RESULT_MARK} who={who} probe={} n={n} {} ipvs_dests={} ===",
                    probe.word(),
                    u.kv(),
                    dests.map(|d| d.to_string()).unwrap_or_else(|| "na".into())
                ),
                Err(e) => println!(
                    "=== LBB ERROR who={who} probe={}: {} ===",
                    probe.word(),
                    format!("{e:#}").replace('\n', " | ")
                ),
            }
            let _ = Command::new("ipvsadm").arg("-C").status();
        }
    }
    Ok(())
}

/// Destinations in IPVS (`ipvsadm -Ln` lines starting with `->`, header excluded).
fn ipvs_dests() -> Option<u64> {
    let out = Command::new("ipvsadm").arg("-Ln").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
            .count() as u64,
    )
}

/// Run one program in the VM: start, warm up, measure, stop.
fn guest_run(
    who: &str,
    program: &Path,
    args: &[String],
    n: usize,
    (warmup, settle_limit, window): (Duration, Duration, Duration),
    counter: &dyn Fn() -> Option<u64>,
) -> Result<(Usage, Option<u64>)> {
    let log = PathBuf::from(format!("/tmp/lbb/{who}.log"));
    let out = fs::File::create(&log)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let mut child = Reaped(Some(child));
    let pid = child.0.as_ref().map(Child::id).context("no pid")?;
    println!("lb-bench: {who} started (pid {pid})");
    let table = || ipvs_dests().map(|d| d as usize);
    let r = settle(pid, warmup, settle_limit, n, &table)
        .and_then(|full| {
            let mut u = measure(pid, window, counter)?;
            u.table_full_s = full;
            Ok(u)
        })
        .map(|u| (u, ipvs_dests()));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopped = child.wait_for(STOP_LIMIT);
    if !stopped {
        println!("lb-bench: {who} did not stop within {STOP_LIMIT:?}; killed");
    }
    let mut text = fs::read_to_string(&log).unwrap_or_default();
    if who == "keepalived" {
        text = fs::read_to_string("/tmp/lbb/syslog").unwrap_or_default();
    }
    r.with_context(|| format!("{who} log: {}", tail(&text, 15)))
}

/// A child process killed and reaped on drop.
struct Reaped(Option<Child>);

impl Reaped {
    /// Wait for the exit up to `limit`; true if it exited.
    fn wait_for(&mut self, limit: Duration) -> bool {
        let Some(c) = self.0.as_mut() else {
            return true;
        };
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                self.0 = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Throughput: NAT VIP against direct

/// `Requests/sec:` of wrk's output.
fn wrk_rps(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Error lines of wrk's output (socket errors, non-2xx answers).
fn wrk_errors(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .map(str::to_string)
        .collect()
}

/// nginx in the foreground in `ns` on port 80, serving `index.html` (612 bytes).
fn start_nginx(ns: &Netns, dir: &Path) -> Result<Daemon> {
    let www = dir.join("www");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&www)?;
    fs::create_dir_all(&tmp)?;
    fs::write(www.join("index.html"), "x".repeat(611) + "\n")?;
    let d = dir.to_string_lossy();
    let t = tmp.to_string_lossy();
    let cfg = dir.join("nginx.conf");
    fs::write(
        &cfg,
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  \
             client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  \
             scgi_temp_path {t}/scgi;\n  \
             server {{\n    listen 80 backlog=4096;\n    root {www};\n  }}\n}}\n",
            www = www.to_string_lossy()
        ),
    )?;
    let daemon = Daemon::start(
        ns,
        dir,
        "nginx",
        Path::new("/usr/sbin/nginx"),
        &[
            "-p",
            &d,
            "-e",
            &format!("{d}/error.log"),
            "-c",
            &cfg.to_string_lossy(),
        ],
    )?;
    wait_until("nginx answers", Duration::from_secs(10), || {
        ns.ok("curl -sf -o /dev/null --max-time 1 http://127.0.0.1/index.html")
    })
    .with_context(|| daemon.log_text())?;
    Ok(daemon)
}

/// Req/s per (path, connection mode), every round.
type WrkTable = BTreeMap<(String, String), Vec<f64>>;

fn throughput(o: &Opts, scratch: &Path) -> Result<WrkTable> {
    for b in ["wrk", "nginx", "curl"] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {b} || test -x /usr/sbin/{b}")])
            .stdout(Stdio::null())
            .status()?
            .success()
        {
            bail!("{b} is missing (apt-get install {b})");
        }
    }
    let dir = scratch.join("wrk");
    fs::create_dir_all(&dir)?;
    // Two clients, one per path, each on its own veth to the director: with one client
    // address, a VIP connection's reply tuple (RS:80 -> client:port) collides with the
    // conntrack and TIME_WAIT entries a direct run left for the same ports, and NAT drops
    // those SYNs (new connections stall for seconds), which would measure the bench.
    let client = Netns::new("lbc")?;
    let direct_client = Netns::new("lbk")?;
    let director = Netns::new("lbd")?;
    let rs = Netns::new("lbr")?;
    veth(&client, "eth0", &director, "eth1")?;
    veth(&direct_client, "eth0", &director, "eth2")?;
    veth(&director, "eth0", &rs, "eth0")?;
    client.sh("ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up && ip route add default via 192.0.2.1")?;
    direct_client.sh(
        "ip addr add 203.0.113.2/24 dev eth0 && ip link set eth0 up && ip route add default via 203.0.113.1",
    )?;
    director.sh(&format!(
        "ip addr add 192.0.2.1/24 dev eth1 && ip addr add {VIP}/32 dev eth1 && ip link set eth1 up \
         && ip addr add 203.0.113.1/24 dev eth2 && ip link set eth2 up \
         && ip addr add {DIRECTOR_RS_SIDE}/24 dev eth0 && ip link set eth0 up \
         && sysctl -qw net.ipv4.ip_forward=1"
    ))?;
    rs.sh(&format!(
        "ip addr add 198.51.100.11/24 dev eth0 && ip link set eth0 up \
         && ip route add default via {DIRECTOR_RS_SIDE}"
    ))?;
    let _nginx = start_nginx(&rs, &dir.join("nginx"))?;
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, nat_conf())?;
    let state = dir.join("state");
    fs::create_dir_all(&state)?;
    let args = lb_args(&o.lb_bin, &cfg, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lb = Daemon::start(&director, &dir, "lb", &o.lb_bin, &args)?;
    let vip_url = format!("http://{VIP}/index.html");
    let direct_url = "http://198.51.100.11/index.html".to_string();
    for (ns, url) in [(&direct_client, &direct_url), (&client, &vip_url)] {
        wait_until(
            &format!("the client gets {url}"),
            Duration::from_secs(30),
            || ns.ok(&format!("curl -sf -o /dev/null --max-time 1 {url}")),
        )
        .with_context(|| tail(&lb.log_text(), 30))?;
    }
    println!(
        "wrk: clients (one per path) -- director ({}) -- nginx, {} s per run, {} connections, 1 thread, {} rounds",
        o.lb_bin
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        o.wrk_secs,
        o.wrk_conns,
        o.rounds
    );
    let mut table = WrkTable::new();
    for round in 0..o.rounds {
        for mode in ["keep-alive", "close"] {
            // Alternate which path goes first, so a drift in machine load hits both.
            let order = if round % 2 == 0 {
                [
                    ("direct", &direct_client, &direct_url),
                    ("vip", &client, &vip_url),
                ]
            } else {
                [
                    ("vip", &client, &vip_url),
                    ("direct", &direct_client, &direct_url),
                ]
            };
            for (path, ns, url) in order {
                let mut cmd = ns.command("wrk");
                cmd.args([
                    "-t1",
                    "-c",
                    &o.wrk_conns.to_string(),
                    "-d",
                    &format!("{}s", o.wrk_secs),
                ]);
                if mode == "close" {
                    cmd.args(["-H", "Connection: close"]);
                }
                let out = ha_tests::netns::run(cmd.arg(url.as_str()))?;
                let text = String::from_utf8_lossy(&out.stdout);
                let rps = wrk_rps(&text)
                    .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
                let errs = wrk_errors(&text);
                println!(
                    "  round {} {mode:10} {path:6} {rps:10.0} req/s{}",
                    round + 1,
                    if errs.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", errs.join("; "))
                    }
                );
                table
                    .entry((mode.to_string(), path.to_string()))
                    .or_default()
                    .push(rps);
            }
        }
    }
    Ok(table)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

// ---------------------------------------------------------------------------------------
// Main

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => return serve_main(&args[1..]),
        Some("vm-guest") => return vm_guest(),
        _ => {}
    }
    let o = parse_opts(&args)?;
    let scratch = std::env::temp_dir().join(format!("lb-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let load_start = loadavg();
    println!(
        "lb-bench: program under test {} (load average {load_start}, {} cores)",
        o.lb_bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut summary = Vec::new();
    let mut host: Vec<(Probe, Usage, Option<String>)> = Vec::new();
    if !o.skip.iter().any(|s| s == "host") {
        let mut probes = vec![Probe::Tcp];
        if o.http {
            probes.push(Probe::Http);
        }
        for p in probes {
            match host_checkers(&o, p, &scratch) {
                Ok((u, end)) => host.push((p, u, end)),
                Err(e) => {
                    println!("host {}: FAILED: {e:#}", p.name());
                    summary.push(format!("host {}: failed: {e}", p.name()));
                }
            }
        }
    }
    let mut vm = None;
    if !o.skip.iter().any(|s| s == "vm") {
        match vm_bench(&o, &scratch) {
            Ok(r) => vm = Some(r),
            Err(e) => {
                println!("vm: FAILED: {e:#}");
                summary.push(format!("vm: failed: {e}"));
            }
        }
    }
    let mut wrk = None;
    if !o.skip.iter().any(|s| s == "wrk") {
        match throughput(&o, &scratch) {
            Ok(t) => wrk = Some(t),
            Err(e) => {
                println!("wrk: FAILED: {e:#}");
                summary.push(format!("wrk: failed: {e}"));
            }
        }
    }

    let name = o
        .lb_bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("\n==================== lb-bench summary ====================");
    println!("program under test: {}", o.lb_bin.display());
    println!(
        "load average: {load_start} at start, {} at end (2 cores shared)",
        loadavg()
    );
    for (p, u, end) in &host {
        println!("host  {:9} N={:<5} {name:9} {}", p.name(), o.n, u.human());
        if let Some(e) = end {
            println!("host  {:9} N={:<5} {name:9} at the end: {e}", p.name(), o.n);
        }
    }
    if !host.is_empty() {
        println!("host  keepalived's checker: not run here (no IPVS in this kernel; see vm)");
    }
    if let Some((results, errors)) = &vm {
        for r in results {
            println!(
                "vm    {:9} N={:<5} {:9} {}  ipvs dests {}",
                r.probe,
                r.n,
                r.who,
                r.usage.human(),
                r.ipvs_dests
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "na".into())
            );
        }
        for h in results.iter().filter(|r| r.who != "keepalived") {
            let Some(k) = results
                .iter()
                .find(|r| r.probe == h.probe && r.n == h.n && r.who == "keepalived")
            else {
                continue;
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "na".into(),
            };
            let (hu, ku) = (&h.usage, &k.usage);
            println!(
                "vm    {:9} N={:<5} ratio {}/keepalived: cpu {}  cpu/check {}  rss avg {}  hwm {}  (target <= 1)",
                h.probe,
                h.n,
                h.who,
                ratio(Some(hu.cpu_pct), Some(ku.cpu_pct)),
                ratio(hu.us_per_check(), ku.us_per_check()),
                ratio(Some(hu.rss_avg_kib as f64), Some(ku.rss_avg_kib as f64)),
                ratio(Some(hu.hwm_kib as f64), Some(ku.hwm_kib as f64)),
            );
            let sustained = |u: &Usage| u.checks_per_s.is_some_and(|c| c >= 0.9 * h.n as f64);
            if !sustained(ku) || !sustained(hu) {
                println!(
                    "vm    {:9} N={:<5} note: checks/s below 90 % of N: the emulated vCPU did not sustain N checks/s",
                    h.probe, h.n
                );
            }
        }
        for e in errors {
            println!("vm    error: {e}");
        }
    }
    if let Some(t) = &wrk {
        for mode in ["keep-alive", "close"] {
            let get = |p: &str| t.get(&(mode.to_string(), p.to_string()));
            if let (Some(d), Some(v)) = (get("direct"), get("vip")) {
                let (d, v) = (mean(d), mean(v));
                println!(
                    "wrk   {mode:10} direct {d:9.0} req/s  vip {v:9.0} req/s  ratio vip/direct {:.3}",
                    if d > 0.0 { v / d } else { 0.0 }
                );
            }
        }
    }
    for s in &summary {
        println!("{s}");
    }
    println!("==========================================================");
    if o.keep {
        println!("scratch kept in {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use ha_agent::lb::check::CheckerSpec;
    use ha_agent::lb::service::vs_name;
    use ha_agent::script::ScriptDefaults;

    /// The generated config is accepted by ha-agent's parser with 1000 real servers, each
    /// one checker that builds, every (address, port) distinct and in 198.51.100.0/24.
    #[test]
    fn generated_config_has_1000_checked_real_servers() {
        for probe in [Probe::Tcp, Probe::Http] {
            let text = checker_conf(1000, 4, probe).unwrap();
            let loaded = ha_agent::config::parse_str(Path::new("bench.conf"), &text)
                .unwrap_or_else(|e| panic!("{probe:?}: {e:?}"));
            let cfg = loaded.config;
            assert_eq!(cfg.virtual_servers.len(), 4);
            let defaults = ScriptDefaults::from_global(&cfg.global);
            let mut seen = BTreeSet::new();
            for vs in &cfg.virtual_servers {
                assert_eq!(vs.real_servers.len(), 250);
                assert_eq!(vs.delay_loop, Some(Duration::from_secs(1)));
                for rs in &vs.real_servers {
                    assert_eq!(rs.checkers.len(), 1);
                    let spec = CheckerSpec::from_config_with(
                        &vs_name(vs),
                        vs,
                        rs,
                        0,
                        &rs.checkers[0],
                        &defaults,
                    )
                    .unwrap();
                    assert_eq!(spec.delay_loop, Duration::from_secs(1));
                    assert_eq!(spec.connect_timeout, Duration::from_secs(1));
                    match rs.addr {
                        std::net::IpAddr::V4(a) => {
                            assert_eq!(&a.octets()[..3], &[198, 51, 100])
                        }
                        other => panic!("{other}"),
                    }
                    assert!(seen.insert((rs.addr, rs.port)), "{} twice", rs.addr);
                }
            }
            assert_eq!(seen.len(), 1000);
        }
    }

    #[test]
    fn nat_config_parses() {
        let loaded = ha_agent::config::parse_str(Path::new("nat.conf"), &nat_conf()).unwrap();
        assert_eq!(loaded.config.virtual_servers.len(), 1);
    }

    #[test]
    fn real_server_layout_and_limits() {
        assert_eq!(real_server(0), (Ipv4Addr::new(198, 51, 100, 11), 8000));
        assert_eq!(real_server(49), (Ipv4Addr::new(198, 51, 100, 11), 8049));
        assert_eq!(real_server(50), (Ipv4Addr::new(198, 51, 100, 12), 8000));
        assert_eq!(real_server(999), (Ipv4Addr::new(198, 51, 100, 30), 8049));
        assert_eq!(addr_count(1000), 20);
        assert_eq!(listen_ports(1000), (8000, 8049));
        assert_eq!(listen_ports(7), (8000, 8006));
        let max = MAX_ADDRS * PORTS_PER_ADDR;
        assert_eq!(real_server(max - 1).0, Ipv4Addr::new(198, 51, 100, 254));
        assert!(checker_conf(max, 4, Probe::Tcp).is_ok());
        assert!(checker_conf(max + 1, 4, Probe::Tcp).is_err());
        assert!(checker_conf(0, 4, Probe::Tcp).is_err());
    }

    #[test]
    fn parses_console_and_tool_output() {
        let p = cmdline_params("console=ttyS0 quiet lbb.n=400 lbb.bin=lb-run rdinit=/x");
        assert_eq!(p.get("n").map(String::as_str), Some("400"));
        assert_eq!(p.get("bin").map(String::as_str), Some("lb-run"));
        assert_eq!(p.len(), 2);

        let u = Usage {
            cpu_pct: 12.5,
            rss_avg_kib: 100,
            rss_max_kib: 120,
            hwm_kib: 130,
            checks_per_s: Some(998.0),
            procs: 2,
            secs: 20.0,
            table_full_s: None,
        };
        let line = format!("{RESULT_MARK} who=keepalived probe=tcp {} ===", u.kv());
        let m = kv_words(&line);
        let back = Usage::from_kv(&m).unwrap();
        assert_eq!(back.rss_max_kib, 120);
        assert_eq!(back.checks_per_s, Some(998.0));
        assert_eq!(back.table_full_s, None);
        assert_eq!(m.get("who").map(String::as_str), Some("keepalived"));

        let wrk = "Running 10s test @ http://192.0.2.10/\n  Socket errors: connect 0, read 3\n\
                   Requests/sec:  12345.67\nTransfer/sec:      9.80MB\n";
        assert_eq!(wrk_rps(wrk), Some(12345.67));
        assert_eq!(wrk_errors(wrk).len(), 1);
        assert_eq!(wrk_rps("nothing"), None);
    }
}
