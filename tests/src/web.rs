//! Real servers for the load-balancer tests: busybox httpd serving one page that names
//! the server, the LVS-DR real-server helper, and a curl loop from a client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::netns::Netns;
use crate::proc::{wait_until, Daemon};

/// deploy/lvs-dr-realserver.sh (VIP on lo, arp_ignore / arp_announce).
pub fn dr_helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lvs-dr-realserver.sh")
}

/// busybox httpd on `port` in `ns` serving one page that says `who`; returns once it
/// listens.
pub fn httpd(ns: &Netns, dir: &Path, who: &str, port: u16) -> Result<Daemon> {
    let root = dir.join(format!("www-{who}"));
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), format!("{who}\n"))?;
    let d = Daemon::start(
        ns,
        dir,
        &format!("httpd-{who}"),
        Path::new("/usr/bin/busybox"),
        &[
            "httpd",
            "-f",
            "-p",
            &port.to_string(),
            "-h",
            &root.to_string_lossy(),
        ],
    )?;
    wait_until(&format!("{who} listens"), Duration::from_secs(5), || {
        ns.ok(&format!("ss -ltn | grep -q ':{port} '"))
    })?;
    Ok(d)
}

/// `n` requests from `client` to `http://{host}/`, one answer each (the page's text, ""
/// for a failure), in order.
pub fn ask(client: &Netns, host: &str, n: usize) -> Result<Vec<String>> {
    let out = client.sh(&format!(
        "for i in $(seq {n}); do r=$(curl -s --max-time 2 http://{host}/) || r=; echo \"x$r\"; done"
    ))?;
    Ok(out
        .lines()
        .map(|l| l.trim_start_matches('x').to_string())
        .collect())
}
