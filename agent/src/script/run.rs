//! One script run, safely.
//!
//! - execve of the file itself, no shell (a file without `#!` runs as `/bin/sh FILE`,
//!   as execvp does; keepalived's `<`-redirection test runs under `/bin/sh -c`);
//! - credentials dropped to the script user (supplementary groups cleared, primary gid);
//! - a new process group per run (`setpgid(0, 0)` in the child, through std's
//!   `process_group`), so the timeout reaches every process the script started;
//! - environment scrubbed to `PATH=/usr/sbin:/usr/bin:/sbin:/bin`, stdin `/dev/null`;
//! - stdout and stderr captured up to a bound (the rest is read and dropped, so the
//!   script never blocks on a full pipe);
//! - if the run future is dropped (its task aborted), SIGKILL to the group;
//! - at the timeout: SIGTERM to the group, SIGKILL to the group after a grace period
//!   (keepalived: SIGTERM, then SIGKILL), then the leader is reaped; members that were
//!   re-parented to us (see [`become_subreaper`]) are reaped too.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::security::{ExecMode, SCRIPT_PATH};
use super::{split, ScriptError, ScriptSpec};

/// Default bound of captured stdout and of stderr.
pub const OUTPUT_LIMIT: usize = 4096;
/// Default time between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Never started (refused, missing, spawn failure).
    NotRun(ScriptError),
}

/// Bounded capture of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes.
    pub bytes: Vec<u8>,
    /// More was written than kept.
    pub truncated: bool,
}

impl Captured {
    /// As text, lossy, for logs.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    /// Exit status, signal, or why it did not run.
    pub exit: Exit,
    /// Killed because it ran past its timeout (or was cancelled).
    pub timed_out: bool,
    /// From spawn to reaping.
    pub duration: Duration,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// Unsafe path tolerated because `enable_script_security` is off.
    pub insecure: Option<String>,
}

impl ScriptResult {
    /// keepalived's notion of success: exit status 0, not timed out.
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit == Exit::Code(0)
    }

    fn not_run(e: ScriptError, start: Instant) -> ScriptResult {
        ScriptResult {
            exit: Exit::NotRun(e),
            timed_out: false,
            duration: start.elapsed(),
            stdout: Captured::default(),
            stderr: Captured::default(),
            insecure: None,
        }
    }
}

/// Options of [`run_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Kill after this long (`None`: no limit, e.g. a `notify_fifo_script`).
    pub timeout: Option<Duration>,
    /// SIGTERM to SIGKILL delay.
    pub grace: Duration,
    /// Bytes kept of stdout and of stderr each.
    pub output_limit: usize,
}

impl RunOptions {
    /// A timeout with the default grace and output bound.
    pub fn timeout(t: Duration) -> RunOptions {
        RunOptions {
            timeout: Some(t),
            grace: KILL_GRACE,
            output_limit: OUTPUT_LIMIT,
        }
    }
}

/// Run a script with a timeout (SIGTERM, then SIGKILL after [`KILL_GRACE`]).
pub async fn run(spec: &ScriptSpec, timeout: Duration) -> ScriptResult {
    run_with(
        spec,
        RunOptions::timeout(timeout),
        std::future::pending::<()>(),
    )
    .await
}

/// Send a signal to a whole process group; never to group 0 or 1 (ourselves, everyone).
#[allow(unsafe_code)]
fn kill_group(pgid: i32, sig: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory; a negative pid names
    // the process group `pgid`, which we created for this run (pgid > 1 is checked, so
    // this can never be kill(0) or kill(-1)).
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// `waitpid(-pgid, WNOHANG)`: `Some(true)` reaped one, `Some(false)` members still
/// running, `None` no child of ours left in the group.
#[allow(unsafe_code)]
fn reap_one(pgid: i32) -> Option<bool> {
    if pgid <= 1 {
        return None;
    }
    let mut status = 0;
    // SAFETY: waitpid(2) with a valid out pointer to a local; -pgid only matches our
    // children in the group we created, whose leader has already been reaped by tokio,
    // so no status owned by another Child handle can be taken.
    let rc = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
    match rc {
        0 => Some(false),
        r if r > 0 => Some(true),
        _ => None,
    }
}

/// Make this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`), so the runner can reap every member of a killed script's
/// group even when PID 1 does not. Call once at startup.
#[allow(unsafe_code)]
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Kills the run's group if the run future is dropped midway (an aborted task).
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

async fn capture<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> Captured {
    let mut out = Captured::default();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = limit.saturating_sub(out.bytes.len());
                out.bytes.extend_from_slice(&buf[..n.min(room)]);
                out.truncated |= n > room;
            }
        }
    }
}

/// Run a script with options; `cancel` completing ends the run like a timeout.
pub async fn run_with<C: Future<Output = ()>>(
    spec: &ScriptSpec,
    opts: RunOptions,
    cancel: C,
) -> ScriptResult {
    let start = Instant::now();
    let checked = match spec.check() {
        Ok(c) => c,
        Err(e) => return ScriptResult::not_run(e, start),
    };
    let rest = spec.argv.get(1..).unwrap_or(&[]);
    let (program, args): (PathBuf, Vec<String>) = match &checked.mode {
        ExecMode::Direct(p) => (p.clone(), rest.to_vec()),
        ExecMode::ShellFile(p) => {
            let mut a = vec![p.to_string_lossy().into_owned()];
            a.extend_from_slice(rest);
            ("/bin/sh".into(), a)
        }
        ExecMode::ShellLine => (
            "/bin/sh".into(),
            vec!["-c".into(), split::shell_quote(&spec.argv)],
        ),
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .env("PATH", SCRIPT_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if effective_uid() == 0 {
        // As root, std clears supplementary groups (setgroups(0)) then sets gid and uid.
        cmd.uid(spec.run_as.uid).gid(spec.run_as.gid);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let err = ScriptError::Spawn {
                script: program,
                reason: e.to_string(),
            };
            return ScriptResult::not_run(err, start);
        }
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let mut guard = GroupGuard { pgid, armed: true };
    let limit = opts.output_limit;
    let out_task = child.stdout.take().map(|s| tokio::spawn(capture(s, limit)));
    let err_task = child.stderr.take().map(|s| tokio::spawn(capture(s, limit)));

    let deadline = async {
        match opts.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        st = child.wait() => Some(st),
        () = deadline => None,
        () = cancel => None,
    };
    let timed_out = first.is_none();
    let status = match first {
        Some(st) => st,
        None => {
            kill_group(pgid, libc::SIGTERM);
            match tokio::time::timeout(opts.grace, child.wait()).await {
                Ok(st) => st,
                Err(_) => {
                    kill_group(pgid, libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    guard.armed = false;
    if timed_out {
        // The leader may have died of SIGTERM while members ignore it.
        kill_group(pgid, libc::SIGKILL);
        let until = Instant::now() + opts.grace;
        while let Some(progress) = reap_one(pgid) {
            if !progress {
                if Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    } else {
        while reap_one(pgid) == Some(true) {}
    }
    let duration = start.elapsed();
    // A background process may still hold the pipes: wait briefly, then give up.
    let collect = |t: Option<tokio::task::JoinHandle<Captured>>| async move {
        match t {
            Some(mut h) => match tokio::time::timeout(Duration::from_millis(100), &mut h).await {
                Ok(Ok(c)) => c,
                _ => {
                    h.abort();
                    Captured::default()
                }
            },
            None => Captured::default(),
        }
    };
    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    let exit = match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        },
        Err(e) => Exit::NotRun(ScriptError::Spawn {
            script: program,
            reason: e.to_string(),
        }),
    };
    ScriptResult {
        exit,
        timed_out,
        duration,
        stdout,
        stderr,
        insecure: checked.insecure,
    }
}
