//! Nothing left behind by a panic. A panic in any thread runs this hook before the
//! process ends: every instance that is MASTER sends its priority-0 advert (prebuilt when
//! it became master, so nothing here needs the engine, which may be the thread that
//! panicked), then `ha-agent --cleanup` removes our addresses, vmacs and data-plane tables
//! (a child process, bounded by [`CLEANUP_LIMIT`]), then the process exits with status 70.
//!
//! The registry is a std mutex taken with `try_lock` in the hook: a panic while it is held
//! skips the adverts (the backups then take over after Master_Down_Interval) but never
//! deadlocks. kill -9 and OOM kills run no code at all: the unit's ExecStopPost runs
//! `--cleanup` for those, and the next start removes marked leftovers too.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::net::socket::VrrpSocket;

/// Longest the hook waits for the cleanup child.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(3);
/// Exit status after a panic (EX_SOFTWARE).
pub const PANIC_EXIT: i32 = 70;

/// One instance's resignation: its socket and the priority-0 advert per destination.
struct Resign {
    sock: Arc<VrrpSocket>,
    packets: Vec<(IpAddr, Vec<u8>)>,
}

#[derive(Default)]
struct Registry {
    /// The cleanup command line (program, args).
    cleanup: Option<(PathBuf, Vec<String>)>,
    /// Instances that are MASTER now, by name.
    masters: BTreeMap<String, Resign>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::default()))
}

/// Install the panic hook; `cleanup_args` are passed to our own executable
/// (`--cleanup --config FILE`).
pub fn install(cleanup_args: Vec<String>) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    if let Ok(mut r) = registry().lock() {
        r.cleanup = Some((exe, cleanup_args));
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("ha-agent: panic: resigning as master and removing our addresses");
        on_panic();
        std::process::exit(PANIC_EXIT);
    }));
}

/// Instance `name` became MASTER: what to send if we crash.
pub fn master(name: &str, sock: Arc<VrrpSocket>, packets: Vec<(IpAddr, Vec<u8>)>) {
    if let Ok(mut r) = registry().lock() {
        r.masters.insert(name.to_string(), Resign { sock, packets });
    }
}

/// Instance `name` is not MASTER any more.
pub fn not_master(name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.masters.remove(name);
    }
}

fn on_panic() {
    // The other threads run on while this hook does: the netlink task must not heal the
    // VIPs back after the cleanup removed them.
    crate::net::netlink::freeze();
    let cleanup = match registry().try_lock() {
        Ok(r) => {
            for (name, res) in &r.masters {
                for (dst, bytes) in &res.packets {
                    if let Err(e) = res.sock.send_to(bytes, *dst) {
                        eprintln!("ha-agent: ({name}) priority 0 to {dst}: {e}");
                    }
                }
            }
            r.cleanup.clone()
        }
        Err(_) => None,
    };
    let Some((exe, args)) = cleanup else {
        return;
    };
    let child = std::process::Command::new(&exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ha-agent: cannot run {} --cleanup: {e}", exe.display());
            return;
        }
    };
    let deadline = Instant::now() + CLEANUP_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("ha-agent: cleanup did not finish in {CLEANUP_LIMIT:?}");
                return;
            }
        }
    }
}
