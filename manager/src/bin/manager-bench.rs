//! manager-bench: starts a real `ha-manager` child process (insecure, fresh data dir)
//! and drives it over loopback with simulated agents, then prints figures:
//! durable events per second and ack latency (p50/p99) with N agent connections,
//! `Status` latency with N agents x M instances (idle and while streaming), and the
//! manager's RSS. A program that prints figures, not a test.
//!
//! `manager-bench [--agents 100,1000] [--secs 10] [--batch 20] [--window 4] [--rate N]
//!  [--instances 10] [--status-calls 200] [--manager PATH]`
//!
//! Closed loop (default) measures saturation throughput; the ack latency is then
//! mostly queueing (Little's law). `--rate N` offers N events/s in total (open loop) for
//! the latency at a given load.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ha_common::time::wall_ms as now_ms;
use ha_proto::v1::agent_link_client::AgentLinkClient;
use ha_proto::v1::control_client::ControlClient;
use ha_proto::v1::{
    agent_msg, manager_msg, AgentMsg, Event, EventBatch, EventKind, Heartbeat, Hello,
    InstanceState, InstanceSummary, Snapshot, StatusRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Benchmark options.
#[derive(Debug, Parser)]
#[command(name = "manager-bench")]
struct Opts {
    /// Agent counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    agents: Vec<usize>,
    /// Seconds of streaming per run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Unacked batches each agent keeps in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Instances per agent.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Open loop: total events/s offered by all agents together (0 = closed loop, each
    /// agent keeps `window` batches unacked).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Sequential Status calls per measurement.
    #[arg(long, default_value_t = 200)]
    status_calls: usize,
    /// ha-manager binary (default: next to this program).
    #[arg(long)]
    manager: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct ManagerProc {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl ManagerProc {
    fn start(bin: &PathBuf, tag: &str) -> Result<ManagerProc, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let dir = std::env::temp_dir().join(format!("manager-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let child = Command::new(bin)
            .args(["--listen", &addr.to_string(), "--insecure", "--data"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(ManagerProc { child, addr, dir })
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let get = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (get("VmRSS:"), get("VmHWM:"))
    }

    async fn channel(&self) -> Result<Channel, BoxError> {
        let url = format!("http://{}", self.addr);
        for _ in 0..200 {
            if let Ok(ch) = Channel::from_shared(url.clone())?.connect().await {
                return Ok(ch);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("manager at {url} did not come up").into())
    }
}

impl Drop for ManagerProc {
    fn drop(&mut self) {
        // SIGTERM for a clean flush, then reap.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn vrid(agent: usize, k: usize) -> u32 {
    // Pairs share VRIDs, spread over 1..=255 like a large fleet would.
    (1 + (agent / 2 + k * 7) % 255) as u32
}

fn instance_state(agent: usize, k: usize) -> InstanceState {
    let pair = agent / 2;
    InstanceState {
        name: format!("VI_{k}"),
        vrid: vrid(agent, k),
        interface: "eth0".into(),
        state: if agent.is_multiple_of(2) {
            "MASTER"
        } else {
            "BACKUP"
        }
        .into(),
        base_priority: if agent.is_multiple_of(2) { 150 } else { 100 },
        effective_priority: if agent.is_multiple_of(2) { 150 } else { 100 },
        vips: vec![format!("2001:db8:{:x}:{:x}::1/64", pair, k)],
        ..Default::default()
    }
}

struct AgentResult {
    acked_events: u64,
    latencies_us: Vec<u32>,
    last_ack: Option<Instant>,
}

/// One simulated agent: hello, snapshot, then batches with a window of unacked ones.
async fn agent(
    ch: Channel,
    idx: usize,
    instances: usize,
    batch: usize,
    window: usize,
    pace: Option<Duration>,
    until: Instant,
) -> Result<AgentResult, BoxError> {
    let (tx, rx) = mpsc::channel(window * 2 + 8);
    let node = format!("bench{idx:04}");
    tx.send(AgentMsg {
        msg: Some(agent_msg::Msg::Hello(Hello {
            node: node.clone(),
            boot_id: format!("boot-{idx}"),
            version: "bench".into(),
            config_digest: "x".into(),
            instances: (0..instances)
                .map(|k| InstanceSummary {
                    name: format!("VI_{k}"),
                    vrid: vrid(idx, k),
                    interface: "eth0".into(),
                    advert_interval_ms: 0,
                })
                .collect(),
            override_generation: 0,
        })),
    })
    .await?;
    tx.send(AgentMsg {
        msg: Some(agent_msg::Msg::Snapshot(Snapshot {
            seq: 0,
            instances: (0..instances).map(|k| instance_state(idx, k)).collect(),
            wall_time_ms: now_ms(),
            virtual_servers: Vec::new(),
        })),
    })
    .await?;
    let mut inbound = AgentLinkClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut seq = 0u64;
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut res = AgentResult {
        acked_events: 0,
        latencies_us: Vec::new(),
        last_ack: None,
    };
    let mut acked = 0u64;
    // Open loop: a batch per tick, phase spread over the agents.
    let mut tick = pace.map(|p| {
        let phase = p.mul_f64((idx % 97) as f64 / 97.0);
        tokio::time::interval_at((Instant::now() + phase).into(), p)
    });
    let window = if tick.is_some() { usize::MAX } else { window };
    loop {
        if let Some(t) = &mut tick {
            if Instant::now() < until {
                tokio::select! {
                    _ = t.tick() => {}
                    m = inbound.message() => {
                        let Some(m) = m? else { break };
                        handle(m, &tx, &mut inflight, &mut res, &mut acked);
                        continue;
                    }
                }
            }
        }
        while inflight.len() < window && Instant::now() < until {
            let events = (0..batch)
                .map(|_| {
                    seq += 1;
                    let k = (seq as usize) % instances.max(1);
                    let transition = seq.is_multiple_of(10);
                    Event {
                        seq,
                        wall_time_ms: now_ms(),
                        kind: if transition {
                            EventKind::Transition
                        } else {
                            EventKind::Checker
                        } as i32,
                        instance: format!("VI_{k}"),
                        to_state: if transition {
                            if idx.is_multiple_of(2) {
                                "MASTER"
                            } else {
                                "BACKUP"
                            }
                            .into()
                        } else {
                            String::new()
                        },
                        reason: "bench".into(),
                        detail: "real server [2001:db8::10]:80 tcp check ok".into(),
                        ..Default::default()
                    }
                })
                .collect();
            tx.send(AgentMsg {
                msg: Some(agent_msg::Msg::Events(EventBatch { events })),
            })
            .await?;
            inflight.push_back((seq, Instant::now()));
            if tick.is_some() {
                break;
            }
        }
        if tick.is_some() && Instant::now() < until {
            continue;
        }
        if inflight.is_empty() {
            break;
        }
        let Some(m) = tokio::time::timeout(Duration::from_secs(30), inbound.message()).await??
        else {
            break;
        };
        handle(m, &tx, &mut inflight, &mut res, &mut acked);
    }
    Ok(res)
}

/// Handles one manager message: acks retire batches, pings get heartbeats.
fn handle(
    m: ha_proto::v1::ManagerMsg,
    tx: &mpsc::Sender<AgentMsg>,
    inflight: &mut VecDeque<(u64, Instant)>,
    res: &mut AgentResult,
    acked: &mut u64,
) {
    match m.msg {
        Some(manager_msg::Msg::Ack(a)) => {
            let now = Instant::now();
            while let Some((s, t)) = inflight.front().copied() {
                if s > a.seq {
                    break;
                }
                inflight.pop_front();
                res.latencies_us
                    .push(now.duration_since(t).as_micros().min(u32::MAX as u128) as u32);
            }
            res.acked_events += a.seq.saturating_sub(*acked);
            *acked = a.seq.max(*acked);
            res.last_ack = Some(now);
        }
        Some(manager_msg::Msg::Ping(p)) => {
            let hb = Heartbeat {
                wall_time_ms: now_ms(),
                ping_id: p.ping_id,
                ping_manager_ms: p.manager_ms,
            };
            let _ = tx.try_send(AgentMsg {
                msg: Some(agent_msg::Msg::Heartbeat(hb)),
            });
        }
        _ => {}
    }
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i]) / 1000.0
}

async fn status_latency(ch: Channel, calls: usize) -> Result<(f64, f64, usize), BoxError> {
    let mut c = ControlClient::new(ch).max_decoding_message_size(64 << 20);
    let mut lat = Vec::with_capacity(calls);
    let mut nodes = 0;
    for _ in 0..calls {
        let t = Instant::now();
        let st = c.status(StatusRequest {}).await?.into_inner();
        lat.push(t.elapsed().as_micros() as u32);
        nodes = st.nodes.len();
    }
    Ok((pct(&mut lat, 0.5), pct(&mut lat, 0.99), nodes))
}

async fn run(o: &Opts, bin: &PathBuf, n: usize) -> Result<(), BoxError> {
    let m = ManagerProc::start(bin, &n.to_string())?;
    let control = m.channel().await?;
    // One connection per agent, as real agents have.
    let mut chans = Vec::with_capacity(n);
    for _ in 0..n {
        chans.push(m.channel().await?);
    }
    let (rss0, _) = m.rss_mib();
    let start = Instant::now() + Duration::from_millis(500);
    let until = start + Duration::from_secs(o.secs);
    let mut tasks = Vec::with_capacity(n);
    for (i, ch) in chans.into_iter().enumerate() {
        let (inst, batch, window) = (o.instances, o.batch, o.window);
        let pace =
            (o.rate > 0).then(|| Duration::from_secs_f64((n * o.batch) as f64 / o.rate as f64));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            agent(ch, i, inst, batch, window, pace, until).await
        }));
    }
    // Status while streaming.
    tokio::time::sleep_until((start + Duration::from_secs(o.secs / 2)).into()).await;
    let busy = status_latency(control.clone(), o.status_calls.min(50)).await?;
    let mut lat = Vec::new();
    let mut events = 0u64;
    let mut last = start;
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(r) => {
                events += r.acked_events;
                lat.extend(r.latencies_us);
                if let Some(l) = r.last_ack {
                    last = last.max(l);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("agent failed: {e}");
            }
        }
    }
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    let (rss, hwm) = m.rss_mib();
    println!(
        "agents={n:<5} durable_events={events} in {secs:.1}s -> {:.0} events/s; ack latency p50={:.1} ms p99={:.1} ms (batch {}, {}); failed agents {failed}",
        events as f64 / secs,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        o.batch,
        if o.rate > 0 { format!("open loop {} events/s offered", o.rate) } else { format!("closed loop, window {}", o.window) },
    );
    println!(
        "agents={n:<5} status while streaming ({} nodes x {} instances): p50={:.1} ms p99={:.1} ms",
        busy.2, o.instances, busy.0, busy.1
    );
    // The agents have stopped (their nodes stay in status, disconnected).
    let idle = status_latency(control, o.status_calls).await?;
    println!(
        "agents={n:<5} status idle ({} nodes): p50={:.1} ms p99={:.1} ms",
        idle.2, idle.0, idle.1
    );
    println!("agents={n:<5} manager RSS: {rss0:.1} MiB connected, {rss:.1} MiB after streaming, peak {hwm:.1} MiB");
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let o = Opts::parse();
    let bin = match &o.manager {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or("no parent directory")?
            .join("ha-manager"),
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found; build ha-manager first or pass --manager",
            bin.display()
        )
        .into());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for &n in &o.agents {
            run(&o, &bin, n).await?;
        }
        Ok::<(), BoxError>(())
    })
}
