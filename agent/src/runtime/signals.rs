//! Signals, as keepalived or better. Every signal whose default action would end the
//! process is handled (the synchronous faults SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
//! SIGSYS and SIGTRAP excepted: they are crashes, and the unit's `ha-agent --cleanup`
//! covers them, as it covers SIGKILL):
//!
//! | signal            | action                                                      |
//! |-------------------|-------------------------------------------------------------|
//! | TERM, INT         | clean stop: priority 0, VIPs removed, notify_stop, exit      |
//! | HUP               | live reload (and log files reopened)                         |
//! | USR1              | data dump: `<runtime-dir>/keepalived.data` and `.json`       |
//! | USR2              | stats: `<runtime-dir>/stats.json`                            |
//! | QUIT, ALRM, PIPE, XFSZ, VTALRM, PROF, IO, PWR, XCPU, STKFLT, RTMIN..RTMAX | logged and ignored |
//!
//! Handlers (not SIG_IGN) are installed, so programs the agent starts (scripts) get the
//! default dispositions back at exec.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tracing::warn;

/// What a signal asks the engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// TERM or INT: stop cleanly (the name, for the log).
    Stop(&'static str),
    /// HUP: reload.
    Reload,
    /// USR1: data dump.
    Dump,
    /// USR2: stats dump.
    Stats,
}

/// The handled signals; the stray ones are logged by their own tasks.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

/// Signals that would kill the process by default and mean nothing to the agent.
fn stray() -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = [
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect();
    for n in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        v.push((n, format!("SIGRTMIN+{}", n - libc::SIGRTMIN())));
    }
    v
}

impl Signals {
    /// Install every handler (must run inside the tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        for (n, name) in stray() {
            let mut s = signal(SignalKind::from_raw(n))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name.clone()).is_err() {
                        return;
                    }
                }
            });
        }
        // One logger, rate-limited by the channel's natural batching: a burst of the same
        // signal is one line with a count.
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut more = 0u64;
                while let Ok(n) = rx.try_recv() {
                    if n == first {
                        more += 1;
                    }
                }
                warn!(signal = %first, repeats = more, "{first} received: ignored (SIGTERM stops the agent)");
            }
        });
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next handled signal.
    pub async fn recv(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Stop("SIGTERM"),
            _ = self.int.recv() => SignalEvent::Stop("SIGINT"),
            _ = self.hup.recv() => SignalEvent::Reload,
            _ = self.usr1.recv() => SignalEvent::Dump,
            _ = self.usr2.recv() => SignalEvent::Stats,
        }
    }
}

/// keepalived's `--signum=SIGFUNC`: the signal that asks for `func` (`STOP`, `RELOAD`,
/// `DATA`, `STATS`, `JSON`), as ha-agent handles it. keepalived writes its JSON dump on
/// SIGRTMIN+2; ha-agent writes keepalived.json with the SIGUSR1 data dump, so `JSON` is
/// SIGUSR1 here. `STATS_CLEAR` (SIGRTMAX-1) has no ha-agent counterpart: an error.
pub fn signum(func: &str) -> Result<i32, String> {
    match func {
        "STOP" => Ok(libc::SIGTERM),
        "RELOAD" => Ok(libc::SIGHUP),
        "DATA" | "JSON" => Ok(libc::SIGUSR1),
        "STATS" => Ok(libc::SIGUSR2),
        "STATS_CLEAR" => Err(format!(
            "sigfunc {func}: ha-agent has no signal to clear its statistics"
        )),
        _ => Err(format!("unknown sigfunc {func}")),
    }
}

#[cfg(test)]
mod signum_tests {
    use super::signum;

    #[test]
    fn keepalived_sigfuncs() {
        assert_eq!(signum("STOP"), Ok(15));
        assert_eq!(signum("RELOAD"), Ok(1));
        assert_eq!(signum("DATA"), Ok(10));
        assert_eq!(signum("STATS"), Ok(12));
        assert_eq!(signum("JSON"), Ok(10));
        assert!(signum("STATS_CLEAR").is_err());
        assert_eq!(signum("stop"), Err("unknown sigfunc stop".into()));
    }
}
