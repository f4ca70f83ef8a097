//! ipvs-apply: program IPVS from desired-state files through ha-agent's IPVS data plane,
//! one file after the other in one process (so services created by an earlier file are
//! ours and a later file without them deletes them). Runs inside the IPVS test VM.
//!
//! ```text
//! ipvs-apply [--exec CMD] FILE...
//! ```
//! After each file it prints the statuses, the changes made, `read()` and the counters
//! (`stats OBJECT = CONNS INPKTS OUTPKTS INBYTES OUTBYTES`), then runs CMD
//! with `sh -c` and `HA_STATE=<file index, from 1>` in its environment.
//!
//! File format, one object a line (`#` starts a comment):
//! ```text
//! service tcp|udp|sctp ADDR PORT SCHED [persistent SECONDS] [granularity PREFIX]
//! service fwmark MARK ipv4|ipv6 SCHED [persistent SECONDS] [granularity PREFIX]
//! dest ADDR PORT WEIGHT nat|dr|tun        # belongs to the service above
//! ```

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_agent::lb::dataplane::ipvs::Ipvs;
use ha_agent::lb::dataplane::{DataPlane, Destination, Forward, Proto, Service, ServiceKey};

fn parse_state(text: &str) -> Result<Vec<Service>> {
    let mut out: Vec<Service> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let w: Vec<&str> = line.split_whitespace().collect();
        let at = || format!("line {}", n + 1);
        match w.as_slice() {
            [] => {}
            ["service", kind, a, b, sched, rest @ ..] => {
                let key = match *kind {
                    "fwmark" => ServiceKey::Fwmark {
                        mark: a.parse().with_context(at)?,
                        ipv6: match *b {
                            "ipv4" => false,
                            "ipv6" => true,
                            o => bail!("{}: family {o}", at()),
                        },
                    },
                    p => ServiceKey::Addr {
                        proto: match p {
                            "tcp" => Proto::Tcp,
                            "udp" => Proto::Udp,
                            "sctp" => Proto::Sctp,
                            o => bail!("{}: protocol {o}", at()),
                        },
                        addr: a.parse::<IpAddr>().with_context(at)?,
                        port: b.parse().with_context(at)?,
                    },
                };
                let mut svc = Service {
                    key,
                    scheduler: sched.to_string(),
                    persistence: None,
                    persistence_granularity: None,
                    destinations: Vec::new(),
                };
                for opt in rest.chunks(2) {
                    match opt {
                        ["persistent", s] => {
                            svc.persistence = Some(Duration::from_secs(s.parse().with_context(at)?))
                        }
                        ["granularity", g] => {
                            svc.persistence_granularity = Some(g.parse().with_context(at)?)
                        }
                        o => bail!("{}: option {o:?}", at()),
                    }
                }
                out.push(svc);
            }
            ["dest", addr, port, weight, fwd] => {
                let Some(svc) = out.last_mut() else {
                    bail!("{}: dest before any service", at());
                };
                svc.destinations.push(Destination {
                    addr: addr.parse().with_context(at)?,
                    port: port.parse().with_context(at)?,
                    weight: weight.parse().with_context(at)?,
                    forward: match *fwd {
                        "nat" => Forward::Nat,
                        "dr" => Forward::Dr,
                        "tun" => Forward::Tun,
                        o => bail!("{}: forwarding {o}", at()),
                    },
                });
            }
            _ => bail!("{}: cannot parse {line:?}", at()),
        }
    }
    Ok(out)
}

async fn run() -> Result<bool> {
    let mut args = std::env::args().skip(1).peekable();
    let mut exec = None;
    if args.peek().map(String::as_str) == Some("--exec") {
        args.next();
        exec = Some(args.next().context("--exec needs a command")?);
    }
    let files: Vec<String> = args.collect();
    if files.is_empty() {
        bail!("usage: ipvs-apply [--exec CMD] FILE...");
    }
    let t0 = std::time::Instant::now();
    let mut ipvs = Ipvs::new().await?;
    println!(
        "ipvs-apply: ipvs {} opened in {:?}",
        ipvs.info(),
        t0.elapsed()
    );
    let mut all_ok = true;
    for (i, file) in files.iter().enumerate() {
        let n = i + 1;
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        let desired = parse_state(&text).with_context(|| format!("parsing {file}"))?;
        let t = std::time::Instant::now();
        let statuses = ipvs.apply(&desired).await?;
        println!(
            "ipvs-apply: state {n} ({file}): {} objects, {} changes in {:?}",
            statuses.len(),
            ipvs.last_ops().len(),
            t.elapsed()
        );
        for op in ipvs.last_ops() {
            println!("ipvs-apply: state {n} op {op}");
        }
        for s in &statuses {
            match &s.result {
                Ok(()) => println!("ipvs-apply: state {n} status ok {}", s.object),
                Err(e) => {
                    all_ok = false;
                    println!("ipvs-apply: state {n} status error {}: {e}", s.object)
                }
            }
        }
        let read = ipvs.read().await?;
        let same = read.len() == desired.len();
        println!(
            "ipvs-apply: state {n} read {} services (desired {})",
            read.len(),
            desired.len()
        );
        if !same {
            all_ok = false;
        }
        for st in ipvs.stats().await? {
            println!(
                "ipvs-apply: state {n} stats {} = {} {} {} {} {}",
                st.object, st.connections, st.packets_in, st.packets_out, st.bytes_in, st.bytes_out
            );
        }
        if let Some(cmd) = &exec {
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .env("HA_STATE", n.to_string())
                .status()
                .with_context(|| format!("running {cmd}"))?;
            if !status.success() {
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipvs-apply: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("ipvs-apply: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
