//! lb-run: the load-balancer runtime alone, for tests until ha-agent wires it in.
//! Loads a keepalived.conf, runs `lb::service` on the nftables data plane (real `nft`,
//! real packets) in the namespace it is started in, prints history events on stdout and
//! keeps a status dump in a file.
//!
//! ```text
//! lb-run --config FILE [--status FILE]
//! ```
//!
//! Checkers: the real checker module (`lb::check`) is written in parallel; until it is
//! merged this binary runs a stand-in TCP connect checker for every checker block
//! (`connect_ip`, `connect_port`, `connect_timeout`, `retry`, `delay_before_retry`, and
//! the virtual server's `delay_loop`), which is what TCP_CHECK does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_agent::config::model::{Checker, Node, RealServer, VirtualServer};
use ha_agent::lb::check::{CheckEvent, RsKey};
use ha_agent::lb::dataplane::nft::Nft;
use ha_agent::lb::service::{self, Backend, LbStatus, ServiceInput};
use tokio::sync::{mpsc, watch};

fn secs(nodes: &[Node], name: &str) -> Option<Duration> {
    let v: f64 = nodes
        .iter()
        .find(|n| n.name == name)?
        .arg(0)?
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(v).ok()
}

fn count(nodes: &[Node], name: &str) -> Option<u32> {
    nodes.iter().find(|n| n.name == name)?.arg(0)?.parse().ok()
}

/// TCP connect checker: one verdict per delay_loop, `retry` extra tries before "down".
fn spawn_tcp_checker(
    vs: &VirtualServer,
    rs: &RealServer,
    idx: usize,
    ck: &Checker,
    tx: mpsc::UnboundedSender<CheckEvent>,
) {
    let key: RsKey = service::rs_key(vs, rs);
    let target = SocketAddr::new(
        ck.connect_ip.unwrap_or(rs.addr),
        ck.connect_port.unwrap_or(key.port),
    );
    let delay = secs(&ck.other, "delay_loop")
        .or(vs.delay_loop)
        .unwrap_or(Duration::from_secs(60));
    let timeout = ck.connect_timeout.unwrap_or(Duration::from_secs(5));
    let retry = count(&ck.other, "retry").unwrap_or(1);
    let before_retry = secs(&ck.other, "delay_before_retry").unwrap_or(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last: Option<bool> = None;
        loop {
            let start = tokio::time::Instant::now();
            let mut up = false;
            let mut detail = String::new();
            for attempt in 0..=retry {
                if attempt > 0 {
                    tokio::time::sleep(before_retry).await;
                }
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                    Ok(Ok(_)) => {
                        up = true;
                        detail = format!("connected to {target}");
                        break;
                    }
                    Ok(Err(e)) => detail = format!("connect {target}: {e}"),
                    Err(_) => detail = format!("connect {target}: timeout after {timeout:?}"),
                }
            }
            if last != Some(up) {
                last = Some(up);
                let ev = CheckEvent {
                    rs: key.clone(),
                    checker: idx,
                    kind: "TCP_CHECK".into(),
                    up,
                    detail,
                    latency: start.elapsed(),
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
            tokio::time::sleep(delay).await;
        }
    });
}

fn dump(s: &LbStatus) -> String {
    let mut out = String::new();
    for vs in &s.virtual_servers {
        out.push_str(&format!(
            "vs {} quorum_up={} sorry={} live={} suspended={}\n",
            vs.name, vs.quorum_up, vs.sorry_active, vs.live_weight, vs.suspended
        ));
        for r in &vs.real_servers {
            out.push_str(&format!(
                "  rs {}:{} alive={} weight={} in_table={}\n",
                r.addr, r.port, r.alive, r.weight_effective, r.in_table
            ));
        }
    }
    for o in &s.dataplane.objects {
        out.push_str(&format!("obj {} {:?}\n", o.object, o.result));
    }
    if let Some(e) = &s.dataplane.last_error {
        out.push_str(&format!("error {e}\n"));
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut status_file: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--status" => status_file = args.next().map(PathBuf::from),
            other => bail!("unknown argument {other}"),
        }
    }
    let config = config.context("--config FILE is required")?;
    let loaded = match ha_agent::config::load(&config) {
        Ok(l) => l,
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            bail!("config rejected");
        }
    };
    let cfg = loaded.config;
    let backend = match service::choose_backend(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("lb-run: {e}; using nftables");
            Backend::Nft(Nft::new())
        }
    };

    let (check_tx, check_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (st_tx, mut st_rx) = watch::channel(LbStatus::default());
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    for vs in &cfg.virtual_servers {
        for rs in &vs.real_servers {
            for (i, ck) in rs.checkers.iter().enumerate() {
                spawn_tcp_checker(vs, rs, i, ck, check_tx.clone());
            }
        }
    }
    // VIPs of ha_suspend services are held here (no VRRP in this binary).
    for vs in &cfg.virtual_servers {
        if let ha_agent::config::model::VsTarget::Addr { addr, .. } = vs.target {
            let _ = in_tx.send(ServiceInput::VipState { addr, master: true });
        }
    }
    let task = service::spawn(&cfg, backend, check_rx, in_rx, st_tx, Some(ev_tx));
    println!("lb-run: started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            ev = ev_rx.recv() => if let Some(ev) = ev { println!("event {ev:?}") },
            ch = st_rx.changed() => {
                if ch.is_err() { break; }
                let text = dump(&st_rx.borrow_and_update());
                if let Some(f) = &status_file {
                    let tmp = f.with_extension("tmp");
                    std::fs::write(&tmp, &text)?;
                    std::fs::rename(&tmp, f)?;
                }
            }
            _ = term.recv() => break,
        }
    }
    let _ = in_tx.send(ServiceInput::Shutdown);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    println!("lb-run: stopped");
    Ok(())
}
