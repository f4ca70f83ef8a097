//! [`HistoryStore`] on sled 0.34. Trees:
//! - `events`: big-endian history id -> encoded `Event`;
//! - `dedup`: `node 0 boot_id 0 seq(BE)` -> history id (agent events only);
//! - `nodes`: node name -> encoded `NodeStatus` (last known state);
//! - `overrides`: node name -> encoded `Overrides` (desired set and its generation);
//! - `audit`: request id -> encoded `CommandReply` (first reply wins);
//! - `meta`: `last_id` and `generation` counters (big-endian u64), so ids and generations
//!   stay monotonic when retention empties a tree or the manager restarts.
//!
//! An event and its dedup entry are written in one transaction, so a crash never leaves
//! one without the other. One writer at a time (the `writer` lock).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use ::sled::transaction::{ConflictableTransactionError, TransactionError};
use ::sled::{Batch, Db, Transactional, Tree};
use ha_proto::v1::{CommandReply, Event, NodeStatus, Overrides};
use prost::Message;

use super::{
    dedup_key, Appended, HistoryPage, HistoryQuery, HistoryStore, Retention, RetentionReport,
    StoreError,
};

const LAST_ID: &[u8] = b"last_id";
const GENERATION: &[u8] = b"generation";

/// The open database and its trees.
#[derive(Debug)]
struct Inner {
    /// The database (flush is database-wide).
    db: Db,
    /// history id -> event.
    events: Tree,
    /// dedup key -> history id.
    dedup: Tree,
    /// Node states.
    nodes: Tree,
    /// Desired override sets.
    overrides: Tree,
    /// Command audit.
    audit: Tree,
    /// Counters.
    meta: Tree,
}

/// The sled-backed store.
///
/// sled keeps a failed write's error and fails every later one with it (a full disk
/// stays "full" after space is freed), so a store that saw an error is marked broken and
/// [`HistoryStore::recover`] drops the database and opens it again: what is on disk is
/// what was durable, and the counters are re-read from it.
#[derive(Debug)]
pub struct SledStore {
    /// Where the database lives (for reopening).
    dir: PathBuf,
    /// The database; `None` only while a reopen failed.
    inner: RwLock<Option<Inner>>,
    /// A call failed since the last (re)open: recover before trusting it again.
    broken: AtomicBool,
    /// Serialises writers of `events`/`dedup`/`meta`; holds the last assigned history id.
    writer: Mutex<u64>,
    /// Copy of the last id for lock-free reads.
    last_id: AtomicU64,
    /// Bytes in `events` (keys + values).
    bytes: AtomicU64,
}

fn tx_err(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(()) => {
            StoreError::Sled(::sled::Error::Unsupported("transaction aborted".into()))
        }
    }
}

fn be_u64(tree: &'static str, v: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = v.try_into().map_err(|_| StoreError::Key { tree })?;
    Ok(u64::from_be_bytes(b))
}

fn decode<M: Message + Default>(tree: &'static str, v: &[u8]) -> Result<M, StoreError> {
    M::decode(v).map_err(|source| StoreError::Decode { tree, source })
}

fn live(g: &Option<Inner>) -> Result<&Inner, StoreError> {
    g.as_ref().ok_or(StoreError::Closed)
}

/// Opens the trees; returns them with the last history id and the event bytes.
fn open_inner(dir: &Path) -> Result<(Inner, u64, u64), StoreError> {
    let db = ::sled::Config::new()
        .path(dir)
        .cache_capacity(16 * 1024 * 1024)
        .open()?;
    let events = db.open_tree("events")?;
    let meta = db.open_tree("meta")?;
    let mut last = match meta.get(LAST_ID)? {
        Some(v) => be_u64("meta", &v)?,
        None => 0,
    };
    if let Some((k, _)) = events.last()? {
        last = last.max(be_u64("events", &k)?);
    }
    let mut bytes = 0u64;
    for kv in events.iter() {
        let (k, v) = kv?;
        bytes += (k.len() + v.len()) as u64;
    }
    let inner = Inner {
        dedup: db.open_tree("dedup")?,
        nodes: db.open_tree("nodes")?,
        overrides: db.open_tree("overrides")?,
        audit: db.open_tree("audit")?,
        events,
        meta,
        db,
    };
    Ok((inner, last, bytes))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let (inner, last, bytes) = open_inner(dir)?;
        Ok(SledStore {
            dir: dir.to_path_buf(),
            inner: RwLock::new(Some(inner)),
            broken: AtomicBool::new(false),
            writer: Mutex::new(last),
            last_id: AtomicU64::new(last),
            bytes: AtomicU64::new(bytes),
        })
    }

    fn writer(&self) -> MutexGuard<'_, u64> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Inner>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the store broken when `r` is a database error.
    fn track<R>(&self, r: Result<R, StoreError>) -> Result<R, StoreError> {
        if let Err(StoreError::Sled(_) | StoreError::Closed) = &r {
            self.broken.store(true, Ordering::Release);
        }
        r
    }
}

impl HistoryStore for SledStore {
    fn append(&self, events: Vec<Event>, stored_ms: i64) -> Result<Vec<Appended>, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            let mut last = self.writer();
            let mut next = *last;
            let mut out = Vec::with_capacity(events.len());
            let mut ev_batch = Batch::default();
            let mut dd_batch = Batch::default();
            let mut in_batch = std::collections::HashMap::new();
            let mut bytes = 0u64;
            for mut ev in events {
                let key = dedup_key(&ev);
                if let Some(k) = &key {
                    if let Some(id) = in_batch.get(k) {
                        out.push(Appended::Duplicate { history_id: *id });
                        continue;
                    }
                    if let Some(v) = i.dedup.get(k)? {
                        out.push(Appended::Duplicate {
                            history_id: be_u64("dedup", &v)?,
                        });
                        continue;
                    }
                }
                next += 1;
                ev.history_id = next;
                ev.stored_ms = stored_ms;
                let value = ev.encode_to_vec();
                bytes += 8 + value.len() as u64;
                ev_batch.insert(&next.to_be_bytes(), value);
                if let Some(k) = key {
                    dd_batch.insert(k.as_slice(), &next.to_be_bytes());
                    in_batch.insert(k, next);
                }
                out.push(Appended::Stored(ev));
            }
            if next != *last {
                (&i.events, &i.dedup, &i.meta)
                    .transaction(|(e, d, m)| {
                        e.apply_batch(&ev_batch)?;
                        d.apply_batch(&dd_batch)?;
                        m.insert(LAST_ID, &next.to_be_bytes())?;
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)?;
                *last = next;
                self.last_id.store(next, Ordering::Release);
                self.bytes.fetch_add(bytes, Ordering::AcqRel);
            }
            Ok(out)
        })())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            i.db.flush()?;
            Ok(())
        })())
    }

    fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            let mut page = HistoryPage::default();
            let limit = q.limit.max(1);
            let start = q.after_id.saturating_add(1).to_be_bytes();
            for kv in i.events.range(start..) {
                let (_, v) = kv?;
                let ev: Event = decode("events", &v)?;
                if !q.matches(&ev) {
                    continue;
                }
                if page.events.len() == limit {
                    page.next_after_id = page.events.last().map_or(0, |e| e.history_id);
                    break;
                }
                page.events.push(ev);
            }
            Ok(page)
        })())
    }

    fn last_history_id(&self) -> u64 {
        self.last_id.load(Ordering::Acquire)
    }

    fn event_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    fn retain(&self, policy: &Retention, now_ms: i64) -> Result<RetentionReport, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            const CHUNK: usize = 1000;
            let _w = self.writer();
            let mut report = RetentionReport::default();
            let mut bytes = self.bytes.load(Ordering::Acquire);
            let cutoff = policy.max_age_ms.map(|a| now_ms.saturating_sub(a));
            loop {
                let mut ev_batch = Batch::default();
                let mut dd_batch = Batch::default();
                let mut n = 0usize;
                let mut freed = 0u64;
                for kv in i.events.iter() {
                    let (k, v) = kv?;
                    let ev: Event = decode("events", &v)?;
                    let old = cutoff.is_some_and(|c| ev.stored_ms < c);
                    let big = policy.max_bytes.is_some_and(|m| bytes - freed > m);
                    if !(old || big) || n == CHUNK {
                        break;
                    }
                    freed += (k.len() + v.len()) as u64;
                    ev_batch.remove(k);
                    if let Some(dk) = dedup_key(&ev) {
                        dd_batch.remove(dk);
                    }
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                (&i.events, &i.dedup)
                    .transaction(|(e, d)| {
                        e.apply_batch(&ev_batch)?;
                        d.apply_batch(&dd_batch)?;
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)?;
                bytes -= freed;
                self.bytes.store(bytes, Ordering::Release);
                report.deleted += n as u64;
                if n < CHUNK {
                    break;
                }
            }
            report.bytes_left = bytes;
            Ok(report)
        })())
    }

    fn put_node(&self, node: &NodeStatus) -> Result<(), StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            i.nodes.insert(node.name.as_bytes(), node.encode_to_vec())?;
            Ok(())
        })())
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            i.nodes.iter().map(|kv| decode("nodes", &kv?.1)).collect()
        })())
    }

    fn overrides(&self, node: &str) -> Result<Option<Overrides>, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            i.overrides
                .get(node.as_bytes())?
                .map(|v| decode("overrides", &v))
                .transpose()
        })())
    }

    fn put_overrides(&self, node: &str, mut set: Overrides) -> Result<Overrides, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            let _w = self.writer();
            let generation = match i.meta.get(GENERATION)? {
                Some(v) => be_u64("meta", &v)?,
                None => 0,
            } + 1;
            set.generation = generation;
            let value = set.encode_to_vec();
            (&i.overrides, &i.meta)
                .transaction(|(o, m)| {
                    o.insert(node.as_bytes(), value.as_slice())?;
                    m.insert(GENERATION, &generation.to_be_bytes())?;
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(tx_err)?;
            i.db.flush()?;
            Ok(set)
        })())
    }

    fn audit(&self, request_id: &str) -> Result<Option<CommandReply>, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            i.audit
                .get(request_id.as_bytes())?
                .map(|v| decode("audit", &v))
                .transpose()
        })())
    }

    fn put_audit(
        &self,
        request_id: &str,
        reply: &CommandReply,
    ) -> Result<CommandReply, StoreError> {
        let g = self.read();
        self.track((|| {
            let i = live(&g)?;
            let stored = match i.audit.compare_and_swap(
                request_id.as_bytes(),
                None as Option<&[u8]>,
                Some(reply.encode_to_vec()),
            )? {
                Ok(()) => reply.clone(),
                Err(e) => match e.current {
                    Some(v) => decode("audit", &v)?,
                    None => reply.clone(),
                },
            };
            i.db.flush()?;
            Ok(stored)
        })())
    }

    fn recover(&self) -> Result<bool, StoreError> {
        if !self.broken.load(Ordering::Acquire) {
            return Ok(false);
        }
        // Same order as the writers (database, then the writer lock).
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut last = self.writer();
        if !self.broken.load(Ordering::Acquire) {
            return Ok(true);
        }
        // Drop the broken database first: sled holds a file lock until its last handle
        // (and its flusher thread) let go, so the reopen retries for a moment.
        *g = None;
        let mut tries = 0;
        let (inner, l, bytes) = loop {
            match open_inner(&self.dir) {
                Ok(x) => break x,
                Err(e) if tries >= 50 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        };
        *g = Some(inner);
        *last = l;
        self.last_id.store(l, Ordering::Release);
        self.bytes.store(bytes, Ordering::Release);
        self.broken.store(false, Ordering::Release);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests as common;

    /// sled releases its file lock when its flusher thread lets go of the last handle,
    /// a moment after drop: a reopen in the same process retries briefly.
    fn open_retry(dir: &std::path::Path) -> SledStore {
        for _ in 0..200 {
            match SledStore::open(dir) {
                Ok(s) => return s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        SledStore::open(dir).unwrap()
    }

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = open_retry(dir.path());
        (dir, s)
    }

    #[test]
    fn dedup() {
        common::dedup(&open().1);
    }

    #[test]
    fn paging_and_filters() {
        common::paging_and_filters(&open().1);
    }

    #[test]
    fn audit_replay() {
        common::audit_replay(&open().1);
    }

    #[test]
    fn nodes() {
        common::nodes(&open().1);
    }

    #[test]
    fn retention() {
        common::retention(&open().1);
    }

    #[test]
    fn state_survives_restart() {
        use ha_proto::v1::EventKind;
        let dir = tempfile::tempdir().unwrap();
        let last_gen = {
            let s = open_retry(dir.path());
            let g = common::generations(&s);
            s.append(
                vec![common::ev("lb1", "b", 1, "VI_1", EventKind::Transition, 5)],
                10,
            )
            .unwrap();
            s.put_audit(
                "r",
                &CommandReply {
                    ok: true,
                    ..Default::default()
                },
            )
            .unwrap();
            s.flush().unwrap();
            g
        };
        let s = open_retry(dir.path());
        // Generations stay monotonic across a restart.
        let next = s.put_overrides("lb9", Overrides::default()).unwrap();
        assert!(next.generation > last_gen);
        // Dedup, ids, bytes and audit survive.
        let a = s
            .append(
                vec![
                    common::ev("lb1", "b", 1, "VI_1", EventKind::Transition, 5),
                    common::ev("lb1", "b", 2, "VI_1", EventKind::Transition, 6),
                ],
                11,
            )
            .unwrap();
        assert_eq!(a[0], Appended::Duplicate { history_id: 1 });
        assert!(matches!(&a[1], Appended::Stored(e) if e.history_id == 2));
        assert!(s.event_bytes() > 0);
        assert!(s.audit("r").unwrap().unwrap().ok);
    }

    #[test]
    fn ids_stay_monotonic_after_retention_empties_history() {
        use ha_proto::v1::EventKind;
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open_retry(dir.path());
            s.append(
                (1..=3)
                    .map(|i| common::ev("a", "b", i, "", EventKind::Tracker, 0))
                    .collect(),
                1,
            )
            .unwrap();
            let r = s
                .retain(
                    &Retention {
                        max_age_ms: Some(1),
                        max_bytes: None,
                    },
                    100,
                )
                .unwrap();
            assert_eq!(r.deleted, 3);
            assert_eq!(r.bytes_left, 0);
            s.flush().unwrap();
        }
        let s = open_retry(dir.path());
        assert_eq!(s.last_history_id(), 3);
        let a = s
            .append(vec![common::ev("a", "c", 1, "", EventKind::Tracker, 0)], 2)
            .unwrap();
        assert!(matches!(&a[0], Appended::Stored(e) if e.history_id == 4));
    }
}
