//! `notify_fifo` / `vrrp_notify_fifo` and their `*_script` readers.
//!
//! As keepalived: the FIFO is created (mode 0644) if missing, the reader script (if any)
//! is started with the FIFO path appended as its last argument and no timeout, then the
//! FIFO is opened read-write and non-blocking (no reader is needed, a writer never
//! waits; `O_NOFOLLOW`). One line per event, each a single write (shorter than
//! PIPE_BUF, so atomic). A full FIFO drops the line and counts it. At shutdown the
//! reader's process group is stopped and a FIFO we created is removed first.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::model::{GlobalDefs, ScriptUser};
use crate::script::{self, RunOptions, ScriptDefaults, ScriptError, ScriptSpec};

/// One FIFO to write notifications to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoConfig {
    /// The FIFO path.
    pub path: PathBuf,
    /// Reader started with the path appended.
    pub script: Option<ScriptSpec>,
}

fn script_user(args: &[String]) -> Option<ScriptUser> {
    args.first().map(|u| ScriptUser {
        user: u.clone(),
        group: args.get(1).cloned(),
    })
}

/// The VRRP FIFOs of `global_defs` (`notify_fifo` and `vrrp_notify_fifo`, with their
/// `*_script`), from its raw statements; errors are for scripts that cannot be set up.
pub fn fifo_configs(g: &GlobalDefs, d: &ScriptDefaults) -> (Vec<FifoConfig>, Vec<ScriptError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (fifo_kw, script_kw) in [
        ("notify_fifo", "notify_fifo_script"),
        ("vrrp_notify_fifo", "vrrp_notify_fifo_script"),
    ] {
        let Some(f) = g.other.iter().rev().find(|n| n.name == fifo_kw) else {
            continue;
        };
        let Some(path) = f.arg(0) else { continue };
        let script = g
            .other
            .iter()
            .rev()
            .find(|n| n.name == script_kw)
            .and_then(|n| {
                let cmd = n.arg(0)?;
                let user = script_user(n.args.get(1..).unwrap_or(&[]));
                match ScriptSpec::from_command(cmd, user.as_ref(), d) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            });
        out.push(FifoConfig {
            path: PathBuf::from(path),
            script,
        });
    }
    (out, errors)
}

#[allow(unsafe_code)]
fn mkfifo(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call; mkfifo only
    // reads it.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A running FIFO writer.
#[derive(Debug)]
pub(super) struct FifoWriter {
    pub(super) tx: mpsc::UnboundedSender<String>,
    pub(super) task: JoinHandle<()>,
}

/// Start a writer task; `dropped` counts lines lost to a full FIFO or a write error.
pub(super) fn spawn_writer(cfg: FifoConfig, dropped: Arc<AtomicU64>) -> FifoWriter {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        let path = cfg.path.clone();
        let created = match fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_fifo() => false,
            Ok(_) => {
                tracing::error!(fifo = %path.display(), "notify fifo path exists and is not a fifo");
                while rx.recv().await.is_some() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(_) => match mkfifo(&path) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(fifo = %path.display(), error = %e, "cannot create notify fifo");
                    false
                }
            },
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let reader = cfg.script.as_ref().map(|s| {
            let spec = s.with_args([path.to_string_lossy().into_owned()]);
            tokio::spawn(async move {
                let opts = RunOptions { timeout: None, ..RunOptions::timeout(std::time::Duration::ZERO) };
                let r = script::run_with(&spec, opts, async {
                    let _ = stop_rx.await;
                })
                .await;
                tracing::info!(script = %spec.display(), exit = ?r.exit, "notify fifo script ended");
            })
        });
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path);
        if let Err(e) = &file {
            tracing::error!(fifo = %path.display(), error = %e, "cannot open notify fifo");
        }
        while let Some(line) = rx.recv().await {
            let ok = match &mut file {
                Ok(f) => f.write(line.as_bytes()).is_ok_and(|n| n == line.len()),
                Err(_) => false,
            };
            if !ok {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if created {
            let _ = fs::remove_file(&path);
        }
        drop(file);
        drop(stop_tx);
        if let Some(r) = reader {
            let _ = r.await;
        }
    });
    FifoWriter { tx, task }
}
