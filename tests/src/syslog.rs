//! A private rsyslogd for the syslog tests: its own config, socket, pid file and work
//! directory under a scratch directory, so the system's /dev/log is never touched (agents
//! get the socket through the hidden `--log-socket`). Needs Debian's `rsyslog` package.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::proc::{wait_until, Daemon};

/// Debian's rsyslogd.
pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Start rsyslogd in `ns` listening on `<dir>/log.sock`, with `rules` (rsyslog config
/// lines: templates, filters, actions) after the input; returns it and the socket path.
pub fn start_rsyslogd(ns: &Netns, dir: &Path, rules: &str) -> Result<(Daemon, PathBuf)> {
    anyhow::ensure!(
        Path::new(RSYSLOGD).exists(),
        "{RSYSLOGD} missing: install Debian's rsyslog package"
    );
    let work = dir.join("work");
    fs::create_dir_all(&work)?;
    let sock = dir.join("log.sock");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let conf = format!(
        "global(workDirectory=\"{work}\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\")\n{rules}\n",
        work = work.display(),
        sock = sock.display(),
    );
    fs::write(dir.join("rsyslog.conf"), conf)?;
    let d = Daemon::start(
        ns,
        dir,
        "rsyslogd",
        Path::new(RSYSLOGD),
        &["-n", "-f", &p("rsyslog.conf"), "-i", &p("rsyslogd.pid")],
    )?;
    wait_until("rsyslogd socket", Duration::from_secs(20), || sock.exists())
        .with_context(|| format!("rsyslogd output:\n{}", d.log_text()))?;
    Ok((d, sock))
}
