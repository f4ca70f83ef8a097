//! lb-run: the load-balancer runtime alone, for tests until ha-agent wires it in.
//! Loads a keepalived.conf, runs `lb::service` on the data plane `lvs_backend` picks
//! (nftables on this machine: real `nft`,
//! real packets) in the namespace it is started in, prints history events on stdout and
//! keeps a status dump in a file.
//!
//! ```text
//! lb-run --config FILE [--status FILE]
//! ```
//!
//! Checkers are the real ones (`lb::check`), one task per checker block.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_agent::config::model::VsTarget;
use ha_agent::lb::check::{self, CheckerSpec};
use ha_agent::lb::dataplane::nft::Nft;
use ha_agent::lb::service::{self, Backend, LbStatus, ServiceInput};
use ha_agent::script::ScriptDefaults;
use tokio::sync::{mpsc, watch};

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
    let backend = match service::choose_backend(&cfg).await {
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
    let defaults = ScriptDefaults::from_global(&cfg.global);
    for vs in &cfg.virtual_servers {
        let name = service::vs_name(vs);
        for rs in &vs.real_servers {
            for (i, ck) in rs.checkers.iter().enumerate() {
                match CheckerSpec::from_config_with(&name, vs, rs, i, ck, &defaults) {
                    Ok(spec) => drop(check::spawn(spec, check_tx.clone())),
                    Err(e) => eprintln!("lb-run: checker skipped: {e}"),
                }
            }
        }
    }
    // VIPs of ha_suspend services are held here (no VRRP in this binary).
    for vs in &cfg.virtual_servers {
        if let VsTarget::Addr { addr, .. } = vs.target {
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
