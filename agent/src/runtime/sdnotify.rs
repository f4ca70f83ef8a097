//! systemd readiness protocol (sd_notify(3)) without libsystemd: one datagram per state
//! change to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). The unit is `Type=notify`:
//!
//! - `READY=1` once every VRRP instance is set up and the engine loop is about to run;
//! - `RELOADING=1` with `MONOTONIC_USEC` (the CLOCK_MONOTONIC time the reload began, as
//!   systemd 253 and later want) when SIGHUP arrives, then `READY=1` when it is applied
//!   (or refused: the running config stays, the agent is ready again);
//! - `STOPPING=1` when SIGTERM or SIGINT begins the clean stop.
//!
//! Formatting and address parsing are pure; the only I/O is [`Notifier::notify`], a
//! non-blocking send that never stalls the VRRP loop (a lost datagram is logged).

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

use tracing::{debug, warn};

/// The environment variable systemd sets for `Type=notify` services.
pub const ENV: &str = "NOTIFY_SOCKET";

/// A state the agent reports to its service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Startup or a reload is complete.
    Ready,
    /// A reload began at this CLOCK_MONOTONIC time, in microseconds.
    Reloading {
        /// `MONOTONIC_USEC=`: when the reload began.
        monotonic_usec: u64,
    },
    /// The clean stop began.
    Stopping,
}

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(PathBuf),
    /// An abstract-namespace name (`@name`; the leading `@` stands for the NUL byte).
    Abstract(Vec<u8>),
}

/// The datagram for `state`, with an optional `STATUS=` line (newlines in it become spaces,
/// since each line is one assignment).
pub fn message(state: State, status: Option<&str>) -> String {
    let mut m = match state {
        State::Ready => "READY=1".to_string(),
        State::Reloading { monotonic_usec } => {
            format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
        }
        State::Stopping => "STOPPING=1".to_string(),
    };
    if let Some(s) = status {
        m.push_str("\nSTATUS=");
        m.push_str(&s.replace('\n', " "));
    }
    m.push('\n');
    m
}

/// Parse `$NOTIFY_SOCKET`: an absolute path or `@name`. Anything else (empty, relative,
/// `vsock:` which we do not speak) is `None`.
pub fn target(raw: &OsStr) -> Option<Target> {
    let b = raw.as_bytes();
    match b.first()? {
        b'/' => Some(Target::Path(PathBuf::from(raw))),
        b'@' if b.len() > 1 => Some(Target::Abstract(b[1..].to_vec())),
        _ => None,
    }
}

/// Sends states to the service manager; does nothing when not started by one.
#[derive(Debug)]
pub struct Notifier {
    /// The socket and address, when `$NOTIFY_SOCKET` named a usable one.
    dest: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a disabled notifier when unset or unusable (logged).
    pub fn from_env() -> Notifier {
        let Some(raw) = std::env::var_os(ENV) else {
            return Notifier { dest: None };
        };
        let Some(t) = target(&raw) else {
            warn!(socket = ?raw, "{ENV} is not a path or @name: no readiness notification");
            return Notifier { dest: None };
        };
        match Notifier::open(&t) {
            Ok(dest) => Notifier { dest: Some(dest) },
            Err(e) => {
                warn!(socket = ?raw, error = %e, "cannot use {ENV}: no readiness notification");
                Notifier { dest: None }
            }
        }
    }

    /// A notifier sending to `target` (tests; [`Notifier::from_env`] otherwise).
    pub fn to(target: &Target) -> std::io::Result<Notifier> {
        Ok(Notifier {
            dest: Some(Notifier::open(target)?),
        })
    }

    fn open(t: &Target) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        let addr = match t {
            Target::Path(p) => SocketAddr::from_pathname(p)?,
            Target::Abstract(name) => SocketAddr::from_abstract_name(name)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok((sock, addr))
    }

    /// Whether a service manager is listening.
    pub fn enabled(&self) -> bool {
        self.dest.is_some()
    }

    /// Report `state` (for a reload's start, [`Notifier::reloading`] stamps the time).
    pub fn notify(&self, state: State, status: Option<&str>) {
        let Some((sock, addr)) = &self.dest else {
            return;
        };
        let m = message(state, status);
        match sock.send_to_addr(m.as_bytes(), addr) {
            Ok(_) => debug!(message = %m.trim_end().replace('\n', " "), "sd_notify sent"),
            Err(e) => warn!(error = %e, "sd_notify failed"),
        }
    }

    /// `RELOADING=1` stamped with the current CLOCK_MONOTONIC time.
    pub fn reloading(&self) {
        if self.enabled() {
            self.notify(
                State::Reloading {
                    monotonic_usec: monotonic_usec(),
                },
                Some("reloading"),
            );
        }
    }
}

/// CLOCK_MONOTONIC now, in microseconds (0 if the clock cannot be read, which Linux never
/// does for this clock).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live, properly
    // aligned local; CLOCK_MONOTONIC is always supported on Linux.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or_default();
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or_default();
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_newline_separated_assignments() {
        assert_eq!(message(State::Ready, None), "READY=1\n");
        assert_eq!(message(State::Stopping, None), "STOPPING=1\n");
        assert_eq!(
            message(
                State::Reloading {
                    monotonic_usec: 1_234_567
                },
                Some("reloading\nnow")
            ),
            "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=reloading now\n"
        );
    }

    #[test]
    fn targets_are_paths_or_abstract_names() {
        assert_eq!(
            target(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            target(OsStr::new("@/org/freedesktop/systemd1/notify/1")),
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        for bad in ["", "@", "relative/sock", "vsock:2:1234"] {
            assert_eq!(target(OsStr::new(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a, "{a} {b}");
    }

    /// The datagram arrives whole at an abstract socket, as systemd's own is.
    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("ha-agent-sdnotify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        let n = Notifier::to(&Target::Abstract(name.into_bytes())).expect("notifier");
        n.notify(State::Ready, Some("2 instances"));
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("first datagram");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=2 instances\n");
        let len = rx.recv(&mut buf).expect("second datagram");
        let text = std::str::from_utf8(&buf[..len]).expect("utf-8");
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
    }

    #[test]
    fn disabled_without_a_socket() {
        let n = Notifier { dest: None };
        assert!(!n.enabled());
        n.notify(State::Ready, None);
    }
}
