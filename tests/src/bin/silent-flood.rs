//! silent-flood: open many TCP connections that never send a byte (no TLS ClientHello),
//! hold them, and report how the server closed them.
//!
//! ```text
//! silent-flood --to ADDR:PORT --count N [--sources A,B,...] [--wait-s S]
//! ```
//! Connects N sockets (bound round-robin to the source addresses), prints
//! `connected <n>` on its own line once done, then watches every socket until all are
//! closed by the peer or `--wait-s` passes, and prints one JSON object: connected,
//! failed connects, closed within 1 s of the end of the connect phase, closed later,
//! still open, and the time the last one closed. Run it with enough descriptors
//! (`prlimit --nofile=...`).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Socket, Type};

struct Args {
    to: SocketAddr,
    count: usize,
    sources: Vec<IpAddr>,
    wait: Duration,
}

fn args() -> Result<Args> {
    let mut to = None;
    let mut count = 2000;
    let mut sources = Vec::new();
    let mut wait = Duration::from_secs(30);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--to" => to = Some(val()?.parse().context("--to ADDR:PORT")?),
            "--count" => count = val()?.parse().context("--count N")?,
            "--sources" => {
                for s in val()?.split(',').filter(|s| !s.is_empty()) {
                    sources.push(s.parse().with_context(|| format!("source {s}"))?);
                }
            }
            "--wait-s" => wait = Duration::from_secs(val()?.parse().context("--wait-s S")?),
            other => bail!("unknown argument {other} (see the module doc)"),
        }
    }
    Ok(Args {
        to: to.context("--to ADDR:PORT is required")?,
        count,
        sources,
        wait,
    })
}

fn connect(to: SocketAddr, src: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    if let Some(ip) = src {
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect_timeout(&to.into(), Duration::from_secs(3))?;
    let t: TcpStream = s.into();
    t.set_nonblocking(true)?;
    Ok(t)
}

fn main() -> Result<()> {
    let a = args()?;
    let mut open: Vec<TcpStream> = Vec::with_capacity(a.count);
    let mut failed = 0usize;
    for i in 0..a.count {
        let src = (!a.sources.is_empty()).then(|| a.sources[i % a.sources.len()]);
        match connect(a.to, src) {
            Ok(s) => open.push(s),
            Err(_) => failed += 1,
        }
    }
    let connected = open.len();
    println!("connected {connected}");
    std::io::stdout().flush()?;
    let start = Instant::now();
    let mut closed_early = 0usize;
    let mut closed_later = 0usize;
    let mut last_close_ms = 0u128;
    let mut buf = [0u8; 64];
    while !open.is_empty() && start.elapsed() < a.wait {
        let before = open.len();
        open.retain_mut(|s| match s.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => false,
        });
        let gone = before - open.len();
        if gone > 0 {
            last_close_ms = start.elapsed().as_millis();
            if start.elapsed() < Duration::from_secs(1) {
                closed_early += gone;
            } else {
                closed_later += gone;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{}",
        serde_json::json!({
            "connected": connected,
            "failed": failed,
            "closed_within_1s": closed_early,
            "closed_later": closed_later,
            "still_open": open.len(),
            "last_close_ms": last_close_ms,
        })
    );
    Ok(())
}
