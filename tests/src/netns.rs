//! One named network namespace, removed with its processes on drop.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// The name given to `ip netns`.
    pub name: String,
}

/// Run a command and fail with its stderr if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip ARGS...` in the root namespace.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

impl Netns {
    /// A fresh namespace named `<prefix><pid>x<n>` (short: interface names derive from it).
    pub fn new(prefix: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}{}x{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// A `Command` that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `ip ARGS...` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Run a shell line inside the namespace; error on non-zero exit.
    pub fn sh(&self, line: &str) -> Result<String> {
        let out = run(self.command("sh").args(["-c", line]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run a shell line inside the namespace; return whether it succeeded.
    pub fn ok(&self, line: &str) -> bool {
        self.command("sh")
            .args(["-c", line])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Runs `f` on a thread of its own moved into this namespace (sockets it makes stay
    /// in the namespace; the thread ends with `f`, so nothing else ever runs in it).
    pub fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || -> Result<T> {
            let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            enter_netns(&file)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
    }

    /// Whether `addr` is configured on any interface of this namespace.
    pub fn has_addr(&self, addr: &str) -> bool {
        self.sh("ip -o addr show")
            .map(|s| {
                s.split_whitespace()
                    .any(|w| w.split('/').next() == Some(addr))
            })
            .unwrap_or(false)
    }
}

/// Moves the calling thread into the network namespace of `f`.
#[allow(unsafe_code)]
fn enter_netns(f: &std::fs::File) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) takes a file descriptor and a namespace type and touches no memory
    // of ours; `f` stays open for the whole call, and the change applies to the calling
    // thread only (a thread spawned for this and ended right after).
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then delete the namespace.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!("ip netns pids {0} | xargs -r kill -9", self.name),
            ])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
