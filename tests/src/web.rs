//! Real servers for the load-balancer tests: busybox httpd serving one page that names
//! the server, the LVS-DR real-server helper, a curl loop from a client, and Debian's
//! nginx for the nginx HA tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::conf::{self, p};
use crate::netns::Netns;
use crate::proc::{wait_until, Daemon};

/// Debian's nginx.
pub const NGINX: &str = "/usr/sbin/nginx";
/// curl, for checks and clients.
pub const CURL: &str = "/usr/bin/curl";

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

/// Start Debian's nginx in the foreground in `ns`, serving a page that names `node`, with every
/// file it writes under `dir`; waits until it answers on 127.0.0.1.
pub fn start_nginx(ns: &Netns, dir: &Path, node: &str) -> Result<Daemon> {
    let www = conf::mkdir(&dir.join("www"))?;
    fs::write(www.join("index.html"), format!("served by {node}\n"))?;
    let tmp = conf::mkdir(&dir.join("tmp"))?;
    let d = p(dir);
    let t = p(&tmp);
    let cfg = dir.join("nginx.conf");
    fs::write(
        &cfg,
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {t}/body;\n  \
             proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  \
             uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             server {{\n    listen 80;\n    root {www};\n    index index.html;\n  }}\n}}\n",
            www = p(&www)
        ),
    )?;
    let daemon = Daemon::start(
        ns,
        dir,
        "nginx",
        Path::new(NGINX),
        &["-p", &d, "-e", &format!("{d}/error.log"), "-c", &p(&cfg)],
    )?;
    wait_until(
        &format!("nginx on {node} answers"),
        Duration::from_secs(15),
        || {
            ns.ok(&format!(
                "{CURL} -sf -o /dev/null --max-time 1 http://127.0.0.1/"
            ))
        },
    )
    .with_context(|| {
        format!(
            "nginx log:\n{}\nerror.log:\n{}",
            daemon.log_text(),
            fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        )
    })?;
    Ok(daemon)
}

/// Stop nginx (SIGTERM to the master: a fast shutdown that takes the workers down).
pub fn stop_nginx(d: &mut Daemon) -> Result<()> {
    d.signal("TERM")?;
    d.wait_exit(Duration::from_secs(15))?;
    Ok(())
}
