//! Plumbing of the benchmark programs (src/bin): SIGINT/SIGTERM become a flag checked
//! between steps, so an interrupted benchmark still unwinds and the harness removes its
//! namespaces and processes; sleeps and waits that stop early on that flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::scenario::Impl;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT/SIGTERM into the flag [`interrupted`] reads.
#[allow(unsafe_code)]
pub fn install_signal_flag() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to a static atomic, which is async-signal-safe, and
    // it is a plain `extern "C" fn` that lives for the whole program.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Err("interrupted") once SIGINT or SIGTERM arrived.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleep `d` in short slices, bailing out early on interruption.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    Ok(())
}

/// Poll `cond` every 10 ms for up to `limit`; Err names `what`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        if cond() {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// "ha-agent" or "keepalived".
pub fn impl_name(i: Impl) -> &'static str {
    match i {
        Impl::HaAgent => "ha-agent",
        Impl::Keepalived => "keepalived",
    }
}

/// The value of `--only keepalived|ha-agent`.
pub fn parse_only(v: Option<&str>) -> Result<Impl> {
    match v {
        Some("keepalived") => Ok(Impl::Keepalived),
        Some("ha-agent") => Ok(Impl::HaAgent),
        other => bail!("--only keepalived|ha-agent, not {other:?}"),
    }
}

/// Point [`crate::bin`] at the running program's own directory (a benchmark binary lives in
/// target/<profile>/, next to ha-agent) unless `HA_BIN_DIR` says otherwise.
pub fn use_own_bin_dir() -> Result<()> {
    if std::env::var_os("HA_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("HA_BIN_DIR", dir);
        }
    }
    Ok(())
}
