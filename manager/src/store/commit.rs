//! Group commit: one thread owns the writes of events. Sessions submit batches; the
//! thread takes everything queued (waiting up to `window` for more while under
//! `max_events`), appends it in one store call, flushes once, then answers every batch.
//! An answer means durable: sessions ack agents only after it.
//!
//! A failed write (a full disk) is never answered as done: the thread keeps the group,
//! asks the store to recover (sled must be reopened) and retries it every `retry` until
//! it succeeds, so nothing queued is lost and nothing is acked early. Meanwhile the
//! queue fills and submitters wait (backpressure: agents keep their events in their
//! rings). [`Committer::health`] says since when writes fail and why.
//!
//! ```text
//!  session 1 ─┐ submit(batch) ┌────────────────────────┐ append+flush  ┌───────┐
//!  session 2 ─┼──────────────▶│ committer thread (sync)│──────────────▶│ store │
//!  manager  ──┘  (bounded)    └──────────┬─────────────┘               └───────┘
//!                  oneshot per batch ◀───┤ on_durable(events) -> watch broadcast
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ha_proto::v1::Event;
use tokio::sync::{mpsc, oneshot};

use super::{Appended, HistoryStore};

/// Why a batch was not made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store failed (message of the store error).
    #[error("history store: {0}")]
    Store(String),
    /// The committer has stopped.
    #[error("history committer stopped")]
    Stopped,
}

/// Group commit tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOptions {
    /// Stop collecting once this many events are pending.
    pub max_events: usize,
    /// How long to wait for more batches when under `max_events`.
    pub window: Duration,
    /// Batches that may wait in the queue (backpressure beyond).
    pub queue: usize,
    /// Pause between attempts while writes fail.
    pub retry: Duration,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            max_events: 4096,
            window: Duration::from_millis(2),
            queue: 4096,
            retry: Duration::from_secs(1),
        }
    }
}

/// Called on the committer thread with each durable group, in history order.
pub type OnDurable = Box<dyn Fn(&[Event]) + Send>;

/// The answer to one submitted batch.
pub type Outcome = Result<Vec<Appended>, CommitError>;

/// A submitted batch.
struct Job {
    /// Events to append.
    events: Vec<Event>,
    /// Where to answer (`None` = fire and forget).
    reply: Option<oneshot::Sender<Outcome>>,
    /// Stop after this group.
    stop: bool,
}

/// How history writes are doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Manager time writes started failing, ms; `None` while they succeed.
    pub failing_since_ms: Option<i64>,
    /// The last write error.
    pub last_error: String,
    /// The last error was a full disk.
    pub disk_full: bool,
    /// Failed write attempts since start.
    pub failures: u64,
    /// Events of the group being retried.
    pub waiting: usize,
}

impl Health {
    /// Writes are failing.
    pub fn failing(&self) -> bool {
        self.failing_since_ms.is_some()
    }
}

/// Handle to the committer thread.
pub struct Committer {
    /// Queue into the thread.
    tx: mpsc::Sender<Job>,
    /// The thread, joined on close.
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Shared with the thread.
    health: Arc<std::sync::Mutex<Health>>,
    /// Set by `close`: a thread retrying a failed write gives up.
    stopping: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    crate::now_ms()
}

impl Committer {
    /// Starts the committer thread over `store`.
    pub fn start(
        store: Arc<dyn HistoryStore>,
        opts: CommitOptions,
        on_durable: OnDurable,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let health: Arc<std::sync::Mutex<Health>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let st = State {
            health: health.clone(),
            stopping: stopping.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ha-committer".into())
            .spawn(move || run(store, opts, on_durable, rx, st))?;
        Ok(Committer {
            tx,
            thread: std::sync::Mutex::new(Some(thread)),
            health,
            stopping,
        })
    }

    /// How writes are doing.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues a batch (waits while the queue is full); the receiver answers once it is
    /// durable.
    pub async fn submit(&self, events: Vec<Event>) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        // A send error drops `reply`: the receiver then reports Stopped.
        let _ = self
            .tx
            .send(Job {
                events,
                reply: Some(reply),
                stop: false,
            })
            .await;
        rx
    }

    /// Appends a batch and waits until it is durable.
    pub async fn commit(&self, events: Vec<Event>) -> Outcome {
        self.submit(events)
            .await
            .await
            .unwrap_or(Err(CommitError::Stopped))
    }

    /// Queues manager events without waiting (errors are logged by the thread).
    pub fn record(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let job = Job {
            events,
            reply: None,
            stop: false,
        };
        if let Err(e) = self.tx.try_send(job) {
            let tx = self.tx.clone();
            let job = match e {
                mpsc::error::TrySendError::Full(j) => j,
                mpsc::error::TrySendError::Closed(_) => {
                    tracing::warn!("history committer stopped; manager event dropped");
                    return;
                }
            };
            tokio::spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }

    /// Commits everything queued, flushes, and stops the thread.
    pub async fn close(&self) {
        self.stopping.store(true, Ordering::Release);
        let (reply, rx) = oneshot::channel();
        let job = Job {
            events: Vec::new(),
            reply: Some(reply),
            stop: true,
        };
        if self.tx.send(job).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn drain(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, n: &mut usize, max: usize) {
    while *n < max {
        match rx.try_recv() {
            Ok(j) => {
                *n += j.events.len();
                let stop = j.stop;
                jobs.push(j);
                if stop {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

/// What the thread shares with the handle.
struct State {
    /// Write health.
    health: Arc<std::sync::Mutex<Health>>,
    /// The handle is closing.
    stopping: Arc<AtomicBool>,
}

impl State {
    fn set(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn write(store: &dyn HistoryStore, all: &[Event]) -> Result<Vec<Appended>, super::StoreError> {
    store
        .append(all.to_vec(), now_ms())
        .and_then(|r| store.flush().map(|()| r))
}

/// Answers every job of a durable group and broadcasts what was stored.
fn deliver(appended: Vec<Appended>, jobs: Vec<Job>, lens: Vec<usize>, on_durable: &OnDurable) {
    let stored: Vec<Event> = appended
        .iter()
        .filter_map(|a| match a {
            Appended::Stored(e) => Some(e.clone()),
            Appended::Duplicate { .. } => None,
        })
        .collect();
    if !stored.is_empty() {
        on_durable(&stored);
    }
    let mut it = appended.into_iter();
    for (j, len) in jobs.into_iter().zip(lens) {
        let part: Vec<Appended> = it.by_ref().take(len).collect();
        if let Some(r) = j.reply {
            let _ = r.send(Ok(part));
        }
    }
}

/// Retries a failed group until it is durable (true) or the committer stops (false).
fn retry(
    store: &dyn HistoryStore,
    all: &[Event],
    opts: &CommitOptions,
    st: &State,
) -> Option<Vec<Appended>> {
    let mut last_log = std::time::Instant::now();
    loop {
        let pause = opts.retry.max(Duration::from_millis(10));
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if st.stopping.load(Ordering::Acquire) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20).min(pause));
        }
        let res = store.recover().and_then(|_| write(store, all));
        match res {
            Ok(a) => return Some(a),
            Err(e) => {
                st.set(|h| {
                    h.failures += 1;
                    h.last_error = e.to_string();
                    h.disk_full = e.is_disk_full();
                });
                if last_log.elapsed() >= Duration::from_secs(10) {
                    last_log = std::time::Instant::now();
                    tracing::warn!(error = %e, events = all.len(),
                        "history store still failing; not acking, retrying");
                }
            }
        }
    }
}

fn run(
    store: Arc<dyn HistoryStore>,
    opts: CommitOptions,
    on_durable: OnDurable,
    mut rx: mpsc::Receiver<Job>,
    st: State,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut n = first.events.len();
        let mut jobs = vec![first];
        drain(&mut rx, &mut jobs, &mut n, opts.max_events);
        let stopping = jobs.iter().any(|j| j.stop);
        if !stopping && n < opts.max_events && !opts.window.is_zero() {
            std::thread::sleep(opts.window);
            drain(&mut rx, &mut jobs, &mut n, opts.max_events);
        }
        let stopping = jobs.iter().any(|j| j.stop);
        let mut all = Vec::with_capacity(n);
        let mut lens = Vec::with_capacity(jobs.len());
        for j in &mut jobs {
            lens.push(j.events.len());
            all.append(&mut j.events);
        }
        match write(store.as_ref(), &all) {
            Ok(appended) => deliver(appended, jobs, lens, &on_durable),
            Err(e) => {
                let since = now_ms();
                tracing::error!(error = %e, events = n,
                    "history write failed; not acking until it is stored, retrying every {:?}",
                    opts.retry);
                st.set(|h| {
                    h.failing_since_ms = Some(since);
                    h.failures += 1;
                    h.last_error = e.to_string();
                    h.disk_full = e.is_disk_full();
                    h.waiting = n;
                });
                match retry(store.as_ref(), &all, &opts, &st) {
                    Some(appended) => {
                        tracing::info!(
                            events = n,
                            failing_ms = now_ms() - since,
                            "history store writable again; caught up"
                        );
                        st.set(|h| {
                            h.failing_since_ms = None;
                            h.waiting = 0;
                        });
                        deliver(appended, jobs, lens, &on_durable);
                    }
                    None => {
                        tracing::error!(events = n, "stopping with a history write still failing; these events are not acked");
                        for j in jobs {
                            if let Some(r) = j.reply {
                                let _ = r.send(Err(CommitError::Stopped));
                            }
                        }
                        return;
                    }
                }
            }
        }
        if stopping {
            break;
        }
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final history flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use crate::store::tests::ev;
    use ha_proto::v1::EventKind;
    use std::sync::Mutex;

    #[tokio::test]
    async fn batches_answer_in_order_and_broadcast_once() {
        let store = Arc::new(MemStore::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let c = Committer::start(
            store.clone(),
            CommitOptions::default(),
            Box::new(move |evs| s2.lock().unwrap().extend(evs.iter().map(|e| e.seq))),
        )
        .unwrap();
        let t = EventKind::Transition;
        let a = c.submit(vec![ev("a", "b", 1, "", t, 0), ev("a", "b", 2, "", t, 0)]);
        let a = a.await;
        let b = c
            .submit(vec![ev("a", "b", 2, "", t, 0), ev("a", "b", 3, "", t, 0)])
            .await;
        let a = a.await.unwrap().unwrap();
        let b = b.await.unwrap().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(b[0], Appended::Duplicate { history_id: 2 });
        c.close().await;
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(store.last_history_id(), 3);
        // After close, commits fail cleanly.
        assert_eq!(c.commit(vec![]).await, Err(CommitError::Stopped));
    }
    /// A store whose writes fail while `full` is set (like a full disk); `recover` counts.
    struct Flaky {
        inner: MemStore,
        full: std::sync::atomic::AtomicBool,
        recovers: std::sync::atomic::AtomicU64,
    }

    impl HistoryStore for Flaky {
        fn append(&self, e: Vec<Event>, t: i64) -> Result<Vec<Appended>, crate::store::StoreError> {
            if self.full.load(Ordering::SeqCst) {
                return Err(crate::store::StoreError::Closed);
            }
            self.inner.append(e, t)
        }
        fn flush(&self) -> Result<(), crate::store::StoreError> {
            self.inner.flush()
        }
        fn query(
            &self,
            q: &crate::store::HistoryQuery,
        ) -> Result<crate::store::HistoryPage, crate::store::StoreError> {
            self.inner.query(q)
        }
        fn last_history_id(&self) -> u64 {
            self.inner.last_history_id()
        }
        fn event_bytes(&self) -> u64 {
            self.inner.event_bytes()
        }
        fn retain(
            &self,
            p: &crate::store::Retention,
            now: i64,
        ) -> Result<crate::store::RetentionReport, crate::store::StoreError> {
            self.inner.retain(p, now)
        }
        fn put_node(&self, n: &ha_proto::v1::NodeStatus) -> Result<(), crate::store::StoreError> {
            self.inner.put_node(n)
        }
        fn nodes(&self) -> Result<Vec<ha_proto::v1::NodeStatus>, crate::store::StoreError> {
            self.inner.nodes()
        }
        fn overrides(
            &self,
            n: &str,
        ) -> Result<Option<ha_proto::v1::Overrides>, crate::store::StoreError> {
            self.inner.overrides(n)
        }
        fn put_overrides(
            &self,
            n: &str,
            o: ha_proto::v1::Overrides,
        ) -> Result<ha_proto::v1::Overrides, crate::store::StoreError> {
            self.inner.put_overrides(n, o)
        }
        fn audit(
            &self,
            r: &str,
        ) -> Result<Option<ha_proto::v1::CommandReply>, crate::store::StoreError> {
            self.inner.audit(r)
        }
        fn put_audit(
            &self,
            r: &str,
            c: &ha_proto::v1::CommandReply,
        ) -> Result<ha_proto::v1::CommandReply, crate::store::StoreError> {
            self.inner.put_audit(r, c)
        }
        fn recover(&self) -> Result<bool, crate::store::StoreError> {
            self.recovers.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_never_answered_early() {
        let store = Arc::new(Flaky {
            inner: MemStore::new(),
            full: std::sync::atomic::AtomicBool::new(true),
            recovers: Default::default(),
        });
        let opts = CommitOptions {
            retry: Duration::from_millis(20),
            ..CommitOptions::default()
        };
        let c = Committer::start(store.clone(), opts, Box::new(|_| {})).unwrap();
        let t = EventKind::Transition;
        let mut a = c.submit(vec![ev("a", "b", 1, "", t, 0)]).await;
        let mut b = c.submit(vec![ev("a", "b", 2, "", t, 0)]).await;
        // Failing: retried (recover called again and again), never answered.
        while store.recovers.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        let h = c.health();
        assert!(h.failing() && h.failures >= 3, "{h:?}");
        assert_eq!(
            h.last_error,
            "store closed after a write failure; reopening"
        );
        assert_eq!(store.last_history_id(), 0);
        // Space is back: both are stored once, in order, and answered.
        store.full.store(false, Ordering::SeqCst);
        let a = a.await.unwrap().unwrap();
        let b = b.await.unwrap().unwrap();
        assert!(matches!(&a[0], Appended::Stored(e) if e.seq == 1 && e.history_id == 1));
        assert!(matches!(&b[0], Appended::Stored(e) if e.seq == 2 && e.history_id == 2));
        assert!(!c.health().failing());
        // Closing while a write fails gives up instead of hanging.
        store.full.store(true, Ordering::SeqCst);
        let pending = c.submit(vec![ev("a", "b", 3, "", t, 0)]).await;
        c.close().await;
        assert_eq!(pending.await.unwrap(), Err(CommitError::Stopped));
        assert_eq!(store.last_history_id(), 2);
    }
}
