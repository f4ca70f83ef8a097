//! Group commit: one thread owns the writes of events. Sessions submit batches; the
//! thread takes everything queued (waiting up to `window` for more while under
//! `max_events`), appends it in one store call, flushes once, then answers every batch.
//! An answer means durable: sessions ack agents only after it.
//!
//! ```text
//!  session 1 ─┐ submit(batch) ┌────────────────────────┐ append+flush  ┌───────┐
//!  session 2 ─┼──────────────▶│ committer thread (sync)│──────────────▶│ store │
//!  manager  ──┘  (bounded)    └──────────┬─────────────┘               └───────┘
//!                  oneshot per batch ◀───┤ on_durable(events) -> watch broadcast
//! ```

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
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            max_events: 4096,
            window: Duration::from_millis(2),
            queue: 4096,
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

/// Handle to the committer thread.
pub struct Committer {
    /// Queue into the thread.
    tx: mpsc::Sender<Job>,
    /// The thread, joined on close.
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
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
        let thread = std::thread::Builder::new()
            .name("ha-committer".into())
            .spawn(move || run(store, opts, on_durable, rx))?;
        Ok(Committer {
            tx,
            thread: std::sync::Mutex::new(Some(thread)),
        })
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

fn run(
    store: Arc<dyn HistoryStore>,
    opts: CommitOptions,
    on_durable: OnDurable,
    mut rx: mpsc::Receiver<Job>,
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
        let res = store
            .append(all, now_ms())
            .and_then(|r| store.flush().map(|()| r));
        match res {
            Ok(appended) => {
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
            Err(e) => {
                tracing::error!(error = %e, events = n, "history write failed");
                let err = CommitError::Store(e.to_string());
                for j in jobs {
                    if let Some(r) = j.reply {
                        let _ = r.send(Err(err.clone()));
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
}
