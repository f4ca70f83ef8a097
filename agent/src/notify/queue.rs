//! The [`Notifier`]: ordered, non-blocking delivery of notifications.
//!
//! Each instance or group with scripts has its own unbounded queue and worker task; the
//! worker runs the event's scripts one at a time (specific then generic) and only then
//! takes the next event, so scripts of one instance always see events in order, while
//! instances never wait on each other. keepalived starts notify scripts without waiting
//! (and so can reorder them); here each run has a timeout instead (default
//! [`DEFAULT_TIMEOUT`]) so a hung script delays only its own instance's queue.
//! [`Notifier::notify`] never blocks: past `queue_limit` pending events for one target,
//! new events are dropped, counted and reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::JoinHandle;

use super::event::{NotifyEvent, NotifyKind};
use super::fifo::{spawn_writer, FifoConfig, FifoWriter};
use super::scripts::{NotifyScripts, ScriptRole};
use crate::script::{self, ScriptResult};

/// Default limit of one notify script run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit of pending events per instance or group.
pub const DEFAULT_QUEUE_LIMIT: usize = 10_000;

/// Settings of a [`Notifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Limit of one script run (SIGTERM then SIGKILL to its group).
    pub timeout: Duration,
    /// Pending events per target before new ones are dropped.
    pub queue_limit: usize,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            timeout: DEFAULT_TIMEOUT,
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

/// The scripts of one instance or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// Instance or group.
    pub kind: NotifyKind,
    /// Its name.
    pub name: String,
    /// Its scripts.
    pub scripts: NotifyScripts,
}

/// One finished notify script run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyResult {
    /// The event it was run for.
    pub event: NotifyEvent,
    /// Which script.
    pub role: ScriptRole,
    /// The command line run (with appended arguments), for history.
    pub command: String,
    /// Exit, duration, timeout flag, output.
    pub result: ScriptResult,
}

/// What the notifier reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyReport {
    /// A script ran.
    Ran(Box<NotifyResult>),
    /// The target's queue was full: the event's scripts were not run.
    Dropped(NotifyEvent),
}

#[derive(Debug)]
struct Worker {
    tx: UnboundedSender<NotifyEvent>,
    pending: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Handle the engine keeps; dropping it lets queued events finish, then tasks end.
#[derive(Debug)]
pub struct Notifier {
    workers: HashMap<(NotifyKind, String), Worker>,
    fifos: Vec<FifoWriter>,
    limit: usize,
    dropped: Arc<AtomicU64>,
    fifo_dropped: Arc<AtomicU64>,
    reports: UnboundedSender<NotifyReport>,
}

impl Notifier {
    /// Start one worker per target that has scripts and one writer per FIFO.
    pub fn spawn(
        targets: Vec<NotifyTarget>,
        fifos: Vec<FifoConfig>,
        cfg: NotifierConfig,
        reports: UnboundedSender<NotifyReport>,
    ) -> Notifier {
        let fifo_dropped = Arc::new(AtomicU64::new(0));
        let mut workers = HashMap::new();
        for t in targets.into_iter().filter(|t| !t.scripts.is_empty()) {
            let (tx, rx) = mpsc::unbounded_channel();
            let pending = Arc::new(AtomicUsize::new(0));
            let task = tokio::spawn(work(
                t.scripts,
                rx,
                pending.clone(),
                cfg.timeout,
                reports.clone(),
            ));
            workers.insert((t.kind, t.name), Worker { tx, pending, task });
        }
        Notifier {
            workers,
            fifos: fifos
                .into_iter()
                .map(|f| spawn_writer(f, fifo_dropped.clone()))
                .collect(),
            limit: cfg.queue_limit.max(1),
            dropped: Arc::new(AtomicU64::new(0)),
            fifo_dropped,
            reports,
        }
    }

    /// Queue a notification; never blocks.
    pub fn notify(&self, ev: NotifyEvent) {
        for f in &self.fifos {
            let _ = f.tx.send(ev.fifo_line());
        }
        let Some(w) = self.workers.get(&(ev.kind, ev.name.clone())) else {
            return;
        };
        if w.pending.fetch_add(1, Ordering::AcqRel) >= self.limit {
            w.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %ev.name, event = %ev, "notify queue full, event dropped");
            let _ = self.reports.send(NotifyReport::Dropped(ev));
            return;
        }
        if w.tx.send(ev).is_err() {
            w.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Events dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// FIFO lines dropped (FIFO full or unwritable).
    pub fn fifo_dropped(&self) -> u64 {
        self.fifo_dropped.load(Ordering::Relaxed)
    }

    /// Stop taking events, let every queued one run (each bounded by its timeout), stop
    /// FIFO readers, and wait for all tasks.
    pub async fn shutdown(mut self) {
        self.drain().await;
    }

    /// [`Notifier::shutdown`] through a reference (for an owner that implements `Drop`);
    /// later events are ignored.
    pub async fn drain(&mut self) {
        let mut tasks = Vec::new();
        for (_, w) in std::mem::take(&mut self.workers) {
            drop(w.tx);
            tasks.push(w.task);
        }
        for f in std::mem::take(&mut self.fifos) {
            drop(f.tx);
            tasks.push(f.task);
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn work(
    scripts: NotifyScripts,
    mut rx: mpsc::UnboundedReceiver<NotifyEvent>,
    pending: Arc<AtomicUsize>,
    timeout: Duration,
    reports: UnboundedSender<NotifyReport>,
) {
    while let Some(ev) = rx.recv().await {
        for (role, spec) in scripts.for_event(&ev) {
            let result = script::run(&spec, timeout).await;
            if !result.success() {
                tracing::warn!(event = %ev, script = %spec.display(), exit = ?result.exit, timed_out = result.timed_out, "notify script failed");
            }
            let _ = reports.send(NotifyReport::Ran(Box::new(NotifyResult {
                event: ev.clone(),
                role,
                command: spec.display(),
                result,
            })));
        }
        pending.fetch_sub(1, Ordering::AcqRel);
    }
}
