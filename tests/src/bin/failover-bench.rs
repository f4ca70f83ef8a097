//! failover-bench: keepalived and ha-agent side by side in the same run, on the same
//! namespace topology. Prints figures; asserts nothing.
//!
//! ```text
//! cargo build -p ha-agent --bin ha-agent
//! cargo run -p ha-tests --bin failover-bench -- [--quick] [--runs N] [--json FILE]
//!     [--only keepalived|ha-agent] [--no-failover] [--no-idle] [--keep] [--pcap]
//!     [--point v2cut|v2stop|v3cut|v3stop]... [--probe]
//! ```
//!
//! 1. Failover gap: the classic topology (lb1 MASTER prio 150, lb2 BACKUP prio 100,
//!    VIP 192.0.2.10, client 192.0.2.100 pinging the VIP every 5 ms). Per scenario (master
//!    link cut at the switch, master SIGTERM; v2 advert_int 1 and v3 advert_int 0.01):
//!    settle, start the pinger, trigger, wait until lb2 is MASTER and replies have resumed
//!    for 1 s, and keep the largest gap between consecutive echo replies. N runs per
//!    point (default 3, `--quick` 1): median and max. With `--pcap`, tcpdump on the
//!    client's interface times each takeover on the wire: the old master's last advert,
//!    the new master's first advert, its first gratuitous ARP, the first echo reply.
//!    `ping` sends only every 10 ms once replies stop (iputils' minimum wait with probes in
//!    flight), so its gaps come in 10 ms steps; `--probe` replaces it with an echo request
//!    every 1 ms on a fixed schedule (a raw socket in the client namespace).
//! 2. Idle cost: a pair (lb1 MASTER of all, lb2 BACKUP of all) with 50 v3 instances at
//!    advert_int 0.01 (VRIDs 1..50, VIPs 203.0.113.1..50/24); after a 3 s warm-up, CPU
//!    (utime+stime over the whole process tree) over 10 s and VmRSS summed over the tree,
//!    for the master and the backup separately (the pair of `ha_tests::idle`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use ha_tests::bench::{
    check_interrupted, impl_name, install_signal_flag, interrupted, pause, wait_for,
};
use ha_tests::idle::{self, Usage, WARMUP, WINDOW};
use ha_tests::measure::{
    clock_ticks_per_sec, echo_reply_seq, echo_request, largest_gap, median, parse_tcpdump,
    Breakdown, Capture, Pinger,
};
use ha_tests::scenario::{render, Classic, Impl, Inst, Node, CLIENT};
use serde_json::{json, Value};

const VIP: &str = "192.0.2.10";
/// How long replies must flow again after the takeover before a run ends.
const RESUMED_FOR: f64 = 1.0;
/// A silence this long between replies counts as an outage (8 missed pings).
const OUTAGE: f64 = 0.040;

/// `--keep`: keep every scratch directory (configs, logs), not only those of failed runs.
static KEEP: AtomicBool = AtomicBool::new(false);
/// `--pcap`: capture each failover on the client and break the takeover down.
static PCAP: AtomicBool = AtomicBool::new(false);
/// `--probe`: the client sends an echo request every millisecond on a fixed schedule
/// instead of running `ping -i 0.005` (which, once replies stop, sends only every 10 ms,
/// so its gaps come in steps of 10 ms).
static PROBE: AtomicBool = AtomicBool::new(false);
/// Interval of the `--probe` client.
const PROBE_EVERY: Duration = Duration::from_millis(1);

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Opts {
    runs: usize,
    quick: bool,
    json: Option<PathBuf>,
    impls: Vec<Impl>,
    failover: bool,
    idle: bool,
    /// `--point TAG` (repeatable): only these failover points; empty means all.
    points: Vec<String>,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        runs: 3,
        quick: false,
        json: None,
        impls: vec![Impl::Keepalived, Impl::HaAgent],
        failover: true,
        idle: true,
        points: Vec::new(),
    };
    let mut runs = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--no-failover" => o.failover = false,
            "--no-idle" => o.idle = false,
            "--keep" => KEEP.store(true, Ordering::SeqCst),
            "--pcap" => PCAP.store(true, Ordering::SeqCst),
            "--probe" => PROBE.store(true, Ordering::SeqCst),
            "--point" => {
                let tag = args.next().context("--point needs a tag")?;
                if !POINTS.iter().any(|p| p.tag() == tag) {
                    bail!("--point v2cut|v2stop|v3cut|v3stop, not {tag}");
                }
                o.points.push(tag);
            }
            "--runs" => runs = Some(args.next().context("--runs needs N")?.parse()?),
            "--json" => o.json = Some(args.next().context("--json needs FILE")?.into()),
            "--only" => o.impls = vec![ha_tests::bench::parse_only(args.next().as_deref())?],
            "-h" | "--help" => {
                println!(
                    "failover-bench [--quick] [--runs N] [--json FILE] [--only keepalived|ha-agent] [--no-failover] [--no-idle] [--keep] [--pcap] [--point v2cut|v2stop|v3cut|v3stop]... [--probe]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    o.runs = runs.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    Ok(o)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// lb1's switch port goes down.
    LinkCut,
    /// lb1's daemon gets SIGTERM (a clean stop: priority 0 advert, VIP removed).
    Stop,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    version: u8,
    advert_int: &'static str,
    trigger: Trigger,
}

impl Point {
    fn label(&self) -> String {
        let adv = if self.version == 2 { "1 s" } else { "10 ms" };
        let t = match self.trigger {
            Trigger::LinkCut => "link cut",
            Trigger::Stop => "SIGTERM stop",
        };
        format!("v{} {adv}, {t}", self.version)
    }

    fn tag(&self) -> String {
        let t = match self.trigger {
            Trigger::LinkCut => "cut",
            Trigger::Stop => "stop",
        };
        format!("v{}{t}", self.version)
    }

    /// How long a takeover may take before the run is declared failed.
    fn limit(&self) -> Duration {
        if self.version == 2 {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(8)
        }
    }
}

const POINTS: [Point; 4] = [
    Point {
        version: 2,
        advert_int: "1",
        trigger: Trigger::LinkCut,
    },
    Point {
        version: 2,
        advert_int: "1",
        trigger: Trigger::Stop,
    },
    Point {
        version: 3,
        advert_int: "0.01",
        trigger: Trigger::LinkCut,
    },
    Point {
        version: 3,
        advert_int: "0.01",
        trigger: Trigger::Stop,
    },
];

fn inst(name: &str, vrid: u8, state: &'static str, prio: u8, version: u8, adv: &str) -> Inst {
    let mut i = Inst::new(name, vrid, state, prio);
    i.version = version;
    i.advert_int = adv.to_string();
    i
}

/// Whether node `idx` of `t` last entered `state` for VI_1 (false if it is not running).
fn in_state(t: &Classic, idx: usize, state: &str) -> bool {
    t.nodes[idx]
        .as_ref()
        .and_then(|n| n.state("VI_1"))
        .as_deref()
        == Some(state)
}

/// One failover run; returns the largest reply gap in seconds.
/// Build the classic topology, run `f` on it, tear it down; the scratch directory (configs,
/// logs) is removed after a success and kept, and named, after a failure.
fn with_topology<T>(name: &str, f: impl FnOnce(&mut Classic) -> Result<T>) -> Result<T> {
    let mut t = Classic::new(name)?;
    let dir = t.dir.clone();
    let r = f(&mut t);
    drop(t);
    match r {
        Ok(v) => {
            if KEEP.load(Ordering::SeqCst) {
                eprintln!("kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(v)
        }
        Err(e) if interrupted() => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
        Err(e) => Err(e.context(format!("logs kept in {}", dir.display()))),
    }
}

/// The result of one failover run: the largest reply gap (seconds) and, with `--pcap`,
/// the takeover as the capture saw it, relative to the trigger.
type RunResult = (f64, Option<Steps>);

fn failover_run(which: Impl, p: Point, rep: usize) -> Result<RunResult> {
    let name = format!("bench-{}-{}-{rep}", impl_name(which), p.tag());
    with_topology(&name, |t| failover_on(t, which, p))
}

fn failover_on(t: &mut Classic, which: Impl, p: Point) -> Result<RunResult> {
    let conf = |state, prio| {
        render(
            "lb",
            &[inst("VI_1", 51, state, prio, p.version, p.advert_int)],
        )
    };
    t.start(0, which, &conf("MASTER", 150))?;
    t.start(1, which, &conf("BACKUP", 100))?;
    let settle = Duration::from_secs(15);
    wait_for("lb1 MASTER, lb2 BACKUP", settle, || {
        in_state(t, 0, "MASTER") && in_state(t, 1, "BACKUP")
    })
    .with_context(|| logs(t))?;
    wait_for("client reaching the VIP", settle, || t.client_reaches(VIP))?;
    // Started before the settle pause, so that it holds the master's adverts before the
    // trigger even at a 1 s interval.
    let capture = if PCAP.load(Ordering::SeqCst) {
        Some(Capture::start(
            t.lan.ns(CLIENT),
            "eth0",
            &t.dir.join("client.pcap"),
        )?)
    } else {
        None
    };
    pause(Duration::from_secs(2))?;
    if t.holder(VIP)? != Some(0) || !in_state(t, 0, "MASTER") || !in_state(t, 1, "BACKUP") {
        bail!(
            "not settled after 2 s (VIP holder {:?})\n{}",
            t.holder(VIP),
            logs(t)
        );
    }

    let pinger = if PROBE.load(Ordering::SeqCst) {
        let mut cmd = t
            .lan
            .ns(CLIENT)
            .command(&std::env::current_exe()?.display().to_string());
        cmd.args(["--probe-child", VIP]);
        Pinger::spawn(cmd)?
    } else {
        Pinger::start(t.lan.ns(CLIENT), VIP, "0.005")?
    };
    wait_for("first 40 echo replies", Duration::from_secs(5), || {
        pinger.replies().len() >= 40
    })?;
    let trig = now_secs();
    match p.trigger {
        Trigger::LinkCut => t.lan.set_link(0, false)?,
        Trigger::Stop => node(t, 0)?.daemon().signal("TERM")?,
    }
    let mut master_at = None;
    let waited = wait_for(
        "lb2 MASTER and echo replies flowing again",
        p.limit(),
        || {
            if master_at.is_none() && in_state(t, 1, "MASTER") {
                master_at = Some(now_secs());
            }
            let Some(m) = master_at else { return false };
            let r = pinger.replies();
            let after: Vec<f64> = r.iter().copied().filter(|ts| *ts > trig).collect();
            // The end of the last outage after the trigger, if any.
            let resumed = after
                .windows(2)
                .filter(|w| w[1] - w[0] > OUTAGE)
                .map(|w| w[1])
                .fold(m, f64::max);
            after
                .last()
                .is_some_and(|last| last - resumed >= RESUMED_FOR)
        },
    );
    let replies = pinger.stop();
    waited.with_context(|| {
        format!(
            "{} replies, {} after the trigger; {}\n{}",
            replies.len(),
            replies.iter().filter(|ts| **ts > trig).count(),
            diagnose(t),
            logs(t)
        )
    })?;
    // From the last reply before the trigger on: earlier hiccups are not the failover.
    let from = replies
        .iter()
        .copied()
        .filter(|ts| *ts <= trig)
        .max_by(f64::total_cmp)
        .unwrap_or(trig);
    let window: Vec<f64> = replies.into_iter().filter(|ts| *ts >= from).collect();
    let gap = largest_gap(&window).context("fewer than two replies")?;
    let steps = match capture {
        Some(c) => {
            let packets: Vec<_> = c.stop()?.iter().filter_map(|l| parse_tcpdump(l)).collect();
            let b = Breakdown::find(&packets, "192.0.2.1", "192.0.2.2", VIP, trig);
            if b.is_none() {
                eprintln!("        no takeover found in the capture");
            }
            b.map(|b| Steps::new(&b, trig))
        }
        None => None,
    };
    Ok((gap, steps))
}

/// A takeover on the wire in milliseconds, each step from the previous one.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// Old master's last advert -> trigger (negative: the advert came after the trigger,
    /// e.g. the priority-0 advert of a clean stop).
    advert_to_trigger: f64,
    /// Old master's last advert -> new master's first advert.
    down: f64,
    /// New master's first advert -> its first gratuitous ARP.
    garp: Option<f64>,
    /// First gratuitous ARP (or first advert) -> first echo reply.
    reply: Option<f64>,
    /// Last echo reply before the outage -> old master's last advert (negative: the master
    /// advertised once more after the last reply got through).
    reply_to_advert: Option<f64>,
}

impl Steps {
    fn new(b: &Breakdown, trig: f64) -> Steps {
        let ms = |a: f64, z: f64| (z - a) * 1000.0;
        let base = b.first_garp.unwrap_or(b.first_new_advert);
        Steps {
            advert_to_trigger: ms(b.last_old_advert, trig),
            down: ms(b.last_old_advert, b.first_new_advert),
            garp: b.first_garp.map(|g| ms(b.first_new_advert, g)),
            reply: b.first_reply.map(|r| ms(base, r)),
            reply_to_advert: b.last_reply.map(|r| ms(r, b.last_old_advert)),
        }
    }

    fn show(&self) -> String {
        let o = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        format!(
            "last reply->last advert {} ms, last advert->trigger {:.2}, last advert->first advert {:.2}, ->GARP {}, ->first reply {}",
            o(self.reply_to_advert),
            self.advert_to_trigger,
            self.down,
            o(self.garp),
            o(self.reply)
        )
    }
}

/// Who holds the VIP and where the client sends it, to tell a missing takeover from a
/// missing gratuitous ARP.
fn diagnose(t: &Classic) -> String {
    let mac = |i| t.mac(i).unwrap_or_else(|_| "?".into());
    format!(
        "lb2 state {:?}, VIP on lb1 {} / lb2 {}, client neighbour for the VIP {} (lb1 {}, lb2 {})",
        t.nodes[1].as_ref().and_then(|n| n.state("VI_1")),
        t.lan.ns(0).has_addr(VIP),
        t.lan.ns(1).has_addr(VIP),
        t.client_neigh(VIP).unwrap_or_else(|| "none".into()),
        mac(0),
        mac(1)
    )
}

fn node(t: &Classic, idx: usize) -> Result<&Node> {
    t.nodes[idx].as_ref().context("node not started")
}

fn logs(t: &Classic) -> String {
    idle::log_tails(&t.nodes, 15)
}

/// The figures of one (scenario, implementation) cell.
#[derive(Debug, Default)]
struct Cell {
    gaps: Vec<f64>,
    errors: Vec<String>,
    steps: Vec<Steps>,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        median(&self.gaps)
    }

    fn max(&self) -> Option<f64> {
        self.gaps.iter().copied().max_by(f64::total_cmp)
    }

    /// Median of old master's last advert -> new master's first GARP, ms (`--pcap`).
    fn wire(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .steps
            .iter()
            .filter_map(|s| s.garp.map(|g| s.down + g))
            .collect();
        median(&v)
    }

    /// Median of each capture step, as text (empty without `--pcap`).
    fn show_steps(&self) -> String {
        if self.steps.is_empty() {
            return String::new();
        }
        let med = |f: fn(&Steps) -> Option<f64>| {
            let v: Vec<f64> = self.steps.iter().filter_map(f).collect();
            median(&v).map_or_else(|| "-".into(), |m| format!("{m:.2}"))
        };
        format!(
            "last advert->first advert {} ms, first advert->GARP {} ms, GARP->first reply {} ms (last reply->last advert {} ms)",
            med(|s| Some(s.down)),
            med(|s| s.garp),
            med(|s| s.reply),
            med(|s| s.reply_to_advert),
        )
    }

    fn show(&self) -> String {
        let ms = |s: f64| fmt_ms(s * 1000.0);
        let mut s = match (self.median(), self.max()) {
            (Some(m), Some(x)) => format!("{} / {} ms", ms(m), ms(x)),
            _ => "failed".to_string(),
        };
        if !self.errors.is_empty() && !self.gaps.is_empty() {
            s += &format!(" ({} failed)", self.errors.len());
        }
        s
    }

    fn json(&self) -> Value {
        json!({
            "gaps_ms": self.gaps.iter().map(|g| round3(g * 1000.0)).collect::<Vec<_>>(),
            "median_ms": self.median().map(|g| round3(g * 1000.0)),
            "wire_median_ms": self.wire().map(round3),
            "max_ms": self.max().map(|g| round3(g * 1000.0)),
            "errors": self.errors,
        })
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ratio(ha: Option<f64>, ka: Option<f64>) -> Option<f64> {
    match (ha, ka) {
        (Some(h), Some(k)) if k > 0.0 => Some(h / k),
        _ => None,
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

/// Idle figures of one implementation: master and backup of 50 instances.
#[derive(Debug, Clone, Copy)]
struct Idle {
    master: Usage,
    backup: Usage,
    /// State changes logged by the master during the measurement window (0 when stable).
    master_changes: usize,
    /// State changes logged by the backup during the window: a backup taking over because
    /// adverts came late shows up here (0 when stable).
    backup_changes: usize,
}

const IDLE_INSTANCES: u8 = idle::INSTANCES;

fn idle_run(which: Impl, tck: u64) -> Result<Idle> {
    let name = format!("bench-{}-idle", impl_name(which));
    with_topology(&name, |t| idle_on(t, which, tck))
}

fn idle_on(t: &mut Classic, which: Impl, tck: u64) -> Result<Idle> {
    t.start(0, which, &idle::conf("MASTER", 150))?;
    t.start(1, which, &idle::conf("BACKUP", 100))?;
    idle::wait_settled(&t.nodes)?;
    pause(WARMUP)?;
    let (m, b) = (node(t, 0)?, node(t, 1)?);
    let (mc0, bc0) = (idle::state_changes(m), idle::state_changes(b));
    let [master, backup] = idle::measure(idle::pids(&t.nodes)?, tck, || pause(WINDOW))?;
    Ok(Idle {
        master,
        backup,
        master_changes: idle::state_changes(m).saturating_sub(mc0),
        backup_changes: idle::state_changes(b).saturating_sub(bc0),
    })
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu_pct": round3(u.cpu_pct), "rss_kib": u.rss_kib, "processes": u.procs})
}

/// `--probe-child ADDR` (run by the bench inside the client namespace): send an ICMP echo
/// request to ADDR every [`PROBE_EVERY`] on a fixed schedule, whatever comes back, and print
/// each reply as ping -D would, until killed.
fn probe_child(target: &str) -> Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let addr: std::net::Ipv4Addr = target.parse().context("--probe-child IPv4 address")?;
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let rx = sock.try_clone()?;
    let id = (std::process::id() & 0xffff) as u16;
    let dst = SockAddr::from(std::net::SocketAddrV4::new(addr, 0));
    std::thread::spawn(move || {
        let start = Instant::now();
        for n in 0u64.. {
            let _ = sock.send_to(&echo_request(id, n as u16), &dst);
            let next = start + PROBE_EVERY * u32::try_from(n + 1).unwrap_or(u32::MAX);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let mut buf = [0u8; 1500];
    loop {
        let n = std::io::Read::read(&mut &rx, &mut buf)?;
        let ts = now_secs();
        let bytes = &buf[..n];
        if let Some(seq) = echo_reply_seq(bytes, id) {
            println!("[{ts:.6}] 64 bytes from {target}: icmp_seq={seq}");
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--probe-child") {
        return probe_child(args.get(2).context("--probe-child ADDR")?);
    }
    install_signal_flag();
    let o = parse_opts()?;
    ha_tests::bench::use_own_bin_dir()?;
    let mut impls = o.impls.clone();
    let mut skipped: HashMap<&str, String> = HashMap::new();
    if impls.contains(&Impl::HaAgent) {
        if let Err(e) = ha_tests::bin("ha-agent") {
            eprintln!("skipping ha-agent: {e:#} (cargo build -p ha-agent --bin ha-agent)");
            skipped.insert("ha-agent", format!("{e:#}"));
            impls.retain(|i| *i != Impl::HaAgent);
        }
    }
    let ha_bin = ha_tests::bin("ha-agent")
        .ok()
        .filter(|_| impls.contains(&Impl::HaAgent))
        .map(|p| p.display().to_string());
    let keepalived_version = Command::new("/usr/sbin/keepalived")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned()
                + &String::from_utf8_lossy(&o.stdout);
            text.lines().next().map(str::to_string)
        })
        .unwrap_or_else(|| "keepalived (version unknown)".into());
    let started = Instant::now();
    let runs = o.runs;

    // 1. Failover gaps, implementations interleaved run by run.
    let mut cells: Vec<HashMap<&str, Cell>> = Vec::new();
    let points: Vec<Point> = POINTS
        .iter()
        .copied()
        .filter(|p| o.failover && (o.points.is_empty() || o.points.contains(&p.tag())))
        .collect();
    for &p in &points {
        let mut row: HashMap<&str, Cell> = HashMap::new();
        for rep in 0..runs {
            for &which in &impls {
                check_interrupted()?;
                let name = impl_name(which);
                let cell = row.entry(name).or_default();
                let t0 = Instant::now();
                match failover_run(which, p, rep) {
                    Ok((g, steps)) => {
                        eprintln!(
                            "[{:>5.1}s] {:<28} {:<10} run {}/{runs}: gap {} ms ({:.1} s)",
                            started.elapsed().as_secs_f64(),
                            p.label(),
                            name,
                            rep + 1,
                            fmt_ms(g * 1000.0),
                            t0.elapsed().as_secs_f64()
                        );
                        cell.gaps.push(g);
                        if let Some(s) = steps {
                            eprintln!("        {}", s.show());
                            cell.steps.push(s);
                        }
                    }
                    Err(e) => {
                        check_interrupted()?;
                        eprintln!(
                            "[{:>5.1}s] {:<28} {:<10} run {}/{runs}: FAILED: {e:#}",
                            started.elapsed().as_secs_f64(),
                            p.label(),
                            name,
                            rep + 1
                        );
                        cell.errors.push(format!("{e:#}"));
                    }
                }
            }
        }
        cells.push(row);
    }

    // 2. Idle cost.
    let tck = clock_ticks_per_sec()?;
    let mut idle: HashMap<&str, Result<Idle, String>> = HashMap::new();
    let idle_impls: &[Impl] = if o.idle { &impls } else { &[] };
    for &which in idle_impls {
        check_interrupted()?;
        let r = idle_run(which, tck);
        check_interrupted()?;
        match &r {
            Ok(i) => eprintln!(
                "[{:>5.1}s] idle {:<10} master {:.1} % {} KiB, backup {:.1} % {} KiB",
                started.elapsed().as_secs_f64(),
                impl_name(which),
                i.master.cpu_pct,
                i.master.rss_kib,
                i.backup.cpu_pct,
                i.backup.rss_kib
            ),
            Err(e) => eprintln!("idle {} FAILED: {e:#}", impl_name(which)),
        }
        idle.insert(impl_name(which), r.map_err(|e| format!("{e:#}")));
    }

    // Report.
    let ka = "keepalived";
    let ha = "ha-agent";
    let empty = Cell::default();
    println!();
    let client = if PROBE.load(Ordering::SeqCst) {
        "client probing {VIP} every 1 ms on a fixed schedule"
    } else {
        "client pinging {VIP} every 5 ms (every 10 ms while replies are missing)"
    };
    println!(
        "Failover gap: largest interval between echo replies, {}",
        client.replace("{VIP}", VIP)
    );
    println!("({runs} run(s) per point; cells are median / max; ratio on medians)");
    println!();
    let w = 30;
    println!(
        "{:<w$} | {:<20} | {:<20} | ratio ha-agent/keepalived",
        "scenario", ka, ha
    );
    println!("{:-<w$}-+-{:-<20}-+-{:-<20}-+-{:-<25}", "", "", "", "");
    let mut failover_json = Vec::new();
    for (p, row) in points.iter().zip(&cells) {
        let k = row.get(ka).unwrap_or(&empty);
        let h = row.get(ha).unwrap_or(&empty);
        let r = ratio(h.median(), k.median());
        let show = |name: &str, c: &Cell| {
            if impls.iter().any(|i| impl_name(*i) == name) {
                c.show()
            } else {
                "not run".to_string()
            }
        };
        println!(
            "{:<w$} | {:<20} | {:<20} | {}",
            p.label(),
            show(ka, k),
            show(ha, h),
            show_ratio(r)
        );
        for (name, c) in [(ka, k), (ha, h)] {
            let s = c.show_steps();
            if !s.is_empty() {
                println!("{:<w$} |   {name}: {s}", "");
            }
        }
        let (kw, hw) = (k.wire(), h.wire());
        if kw.is_some() || hw.is_some() {
            let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2} ms"));
            println!(
                "{:<w$} |   on the wire (last advert -> first GARP, median): keepalived {}, ha-agent {}, ratio {}",
                "",
                ms(kw),
                ms(hw),
                show_ratio(ratio(hw, kw))
            );
        }
        failover_json.push(json!({
            "scenario": p.label(),
            "version": p.version,
            "advert_int": p.advert_int,
            "trigger": p.tag(),
            ka: k.json(),
            ha: h.json(),
            "ratio_median": r.map(round3),
        }));
    }

    println!();
    println!(
        "Idle cost: pair, {IDLE_INSTANCES} v3 instances at advert_int 0.01 (lb1 MASTER of all, lb2 BACKUP of all)"
    );
    println!(
        "CPU over {} s after {} s warm-up (% of one core, utime+stime of the whole process tree); RSS = VmRSS summed over the tree",
        WINDOW.as_secs(),
        WARMUP.as_secs()
    );
    println!();
    println!(
        "{:<w$} | {:<20} | {:<20} | ratio ha-agent/keepalived",
        "measure", ka, ha
    );
    println!("{:-<w$}-+-{:-<20}-+-{:-<20}-+-{:-<25}", "", "", "", "");
    let get = |name: &str| idle.get(name).and_then(|r| r.as_ref().ok()).copied();
    let (ki, hi) = (get(ka), get(ha));
    let cell = |name: &str, v: Option<String>| match (v, idle.get(name)) {
        (Some(v), _) => v,
        (None, Some(Err(_))) => "failed".to_string(),
        (None, _) => "not run".to_string(),
    };
    type Pick = fn(&Idle) -> f64;
    let rows: [(&str, Pick); 4] = [
        ("master CPU %", |i| i.master.cpu_pct),
        ("backup CPU %", |i| i.backup.cpu_pct),
        ("master RSS MiB", |i| i.master.rss_kib as f64 / 1024.0),
        ("backup RSS MiB", |i| i.backup.rss_kib as f64 / 1024.0),
    ];
    for (label, pick) in rows {
        let k = ki.as_ref().map(pick);
        let h = hi.as_ref().map(pick);
        println!(
            "{:<w$} | {:<20} | {:<20} | {}",
            label,
            cell(ka, k.map(|v| format!("{v:.2}"))),
            cell(ha, h.map(|v| format!("{v:.2}"))),
            show_ratio(ratio(h, k))
        );
    }
    let procs = |i: Option<Idle>| i.map(|i| format!("{} + {}", i.master.procs, i.backup.procs));
    println!(
        "{:<w$} | {:<20} | {:<20} |",
        "processes (master + backup)",
        cell(ka, procs(ki)),
        cell(ha, procs(hi))
    );
    let trans = |i: Option<Idle>| i.map(|i| format!("{} + {}", i.master_changes, i.backup_changes));
    println!(
        "{:<w$} | {:<20} | {:<20} |",
        "state changes (m + b)",
        cell(ka, trans(ki)),
        cell(ha, trans(hi))
    );
    println!();
    println!("{keepalived_version}");
    if let Some(b) = &ha_bin {
        let profile = if b.contains("/release/") {
            "release build"
        } else {
            "debug build: unoptimised, CPU figures are pessimistic"
        };
        println!("ha-agent: {b} ({profile})");
    }
    println!("total time {:.0} s", started.elapsed().as_secs_f64());

    if let Some(path) = &o.json {
        let idle_json = |name: &str| match idle.get(name) {
            Some(Ok(i)) => json!({
                "master": usage_json(&i.master),
                "backup": usage_json(&i.backup),
                "master_state_changes_during_window": i.master_changes,
                "backup_state_changes_during_window": i.backup_changes,
            }),
            Some(Err(e)) => json!({"error": e}),
            None => {
                json!({"error": skipped.get(name).cloned().unwrap_or_else(|| "not run".into())})
            }
        };
        let doc = json!({
            "runs_per_point": runs,
            "keepalived": keepalived_version,
            "ha_agent_binary": ha_bin,
            "quick": o.quick,
            "ping_interval_ms": if PROBE.load(Ordering::SeqCst) { 1 } else { 5 },
            "failover": failover_json,
            "idle": {
                "instances": IDLE_INSTANCES,
                "version": 3,
                "advert_int": "0.01",
                "topology": "pair: lb1 MASTER of all, lb2 BACKUP of all",
                "warmup_s": WARMUP.as_secs(),
                "window_s": WINDOW.as_secs(),
                ka: idle_json(ka),
                ha: idle_json(ha),
                "ratio_master_cpu": ratio(hi.map(|i| i.master.cpu_pct), ki.map(|i| i.master.cpu_pct)).map(round3),
                "ratio_backup_cpu": ratio(hi.map(|i| i.backup.cpu_pct), ki.map(|i| i.backup.cpu_pct)).map(round3),
                "ratio_master_rss": ratio(hi.map(|i| i.master.rss_kib as f64), ki.map(|i| i.master.rss_kib as f64)).map(round3),
                "ratio_backup_rss": ratio(hi.map(|i| i.backup.rss_kib as f64), ki.map(|i| i.backup.rss_kib as f64)).map(round3),
            },
            "total_s": round3(started.elapsed().as_secs_f64()),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
