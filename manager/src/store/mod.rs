//! History storage behind the [`HistoryStore`] trait: events with their `(node, boot_id,
//! seq)` dedup index, per-node state, desired overrides with monotonic generations and
//! the command audit. `sled.rs` is the real store, `mem.rs` an in-memory twin for tests,
//! `commit.rs` the group committer that batches appends into one flush.
//!
//! Stores are synchronous and may block on disk: call them from a blocking thread (the
//! committer has its own) or for rare small writes.

pub mod commit;
pub mod mem;
pub mod sled;

use ha_proto::v1::{CommandReply, Event, NodeStatus, Overrides};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database failed.
    #[error("{}", sled_text(.0))]
    Sled(#[from] ::sled::Error),
    /// A stored record does not decode.
    #[error("corrupt record in tree {tree}: {source}")]
    Decode {
        /// Tree name.
        tree: &'static str,
        /// Decoder error.
        source: prost::DecodeError,
    },
    /// A stored key is malformed.
    #[error("corrupt key in tree {tree}")]
    Key {
        /// Tree name.
        tree: &'static str,
    },
    /// The database is closed: a reopen after a failure did not succeed yet.
    #[error("store closed after a write failure; reopening")]
    Closed,
}

/// sled's error for people: a full disk says so plainly.
fn sled_text(e: &::sled::Error) -> String {
    match e {
        ::sled::Error::Io(io) if io_disk_full(io) => {
            "no space left on device (ENOSPC) writing the history database".into()
        }
        other => format!("sled: {other}"),
    }
}

fn io_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(libc::ENOSPC)
        || e.to_string().contains("No space left on device")
}

impl StoreError {
    /// The disk is full (ENOSPC) or over quota.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sled(::sled::Error::Io(e)) if io_disk_full(e))
    }
}

/// Result of appending one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Newly stored, with its `history_id` and `stored_ms` filled in.
    Stored(Event),
    /// `(node, boot_id, seq)` was already stored under this history id.
    Duplicate {
        /// History id of the first copy.
        history_id: u64,
    },
}

/// Filters and page of a history query (all filters optional, AND-ed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Exact node name.
    pub node: Option<String>,
    /// Exact instance name.
    pub instance: Option<String>,
    /// `EventKind` number.
    pub kind: Option<i32>,
    /// Events at or after this time, ms (event wall time, stored time when absent).
    pub since_ms: Option<i64>,
    /// Events before this time, ms.
    pub until_ms: Option<i64>,
    /// Only events with `history_id > after_id`.
    pub after_id: u64,
    /// Page size (at least 1).
    pub limit: usize,
}

impl HistoryQuery {
    /// Whether `ev` passes the filters (not the page bounds).
    pub fn matches(&self, ev: &Event) -> bool {
        let t = if ev.wall_time_ms != 0 {
            ev.wall_time_ms
        } else {
            ev.stored_ms
        };
        self.node.as_ref().is_none_or(|n| *n == ev.node)
            && self.instance.as_ref().is_none_or(|i| *i == ev.instance)
            && self.kind.is_none_or(|k| k == ev.kind)
            && self.since_ms.is_none_or(|s| t >= s)
            && self.until_ms.is_none_or(|u| t < u)
    }
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPage {
    /// Matching events in history order.
    pub events: Vec<Event>,
    /// Pass as `after_id` for the next page; 0 when there is none.
    pub next_after_id: u64,
}

/// Retention policy: each limit is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete events stored more than this long ago, ms.
    pub max_age_ms: Option<i64>,
    /// Delete the oldest events while the events exceed this many bytes (keys + values).
    pub max_bytes: Option<u64>,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Events deleted.
    pub deleted: u64,
    /// Event bytes left.
    pub bytes_left: u64,
}

/// The manager's persistent state. Implementations serialise writers internally.
pub trait HistoryStore: Send + Sync + 'static {
    /// Assigns history ids to new events, drops duplicates of `(node, boot_id, seq)`
    /// (seq 0 = manager event, never deduplicated). Durable only after [`Self::flush`].
    fn append(&self, events: Vec<Event>, stored_ms: i64) -> Result<Vec<Appended>, StoreError>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// One page of history.
    fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError>;
    /// Highest history id ever assigned (0 when none).
    fn last_history_id(&self) -> u64;
    /// Bytes taken by stored events (keys + values), as retention counts them.
    fn event_bytes(&self) -> u64;
    /// Deletes the oldest events as the policy says.
    fn retain(&self, policy: &Retention, now_ms: i64) -> Result<RetentionReport, StoreError>;

    /// Saves the last known state of a node (not flushed by itself).
    fn put_node(&self, node: &NodeStatus) -> Result<(), StoreError>;
    /// Every saved node state, by name.
    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError>;

    /// The desired override set of a node.
    fn overrides(&self, node: &str) -> Result<Option<Overrides>, StoreError>;
    /// Stores `set` as the node's desired overrides under the next generation (monotonic
    /// over all nodes and across restarts), durably, and returns it as stored.
    fn put_overrides(&self, node: &str, set: Overrides) -> Result<Overrides, StoreError>;

    /// The stored reply of a command request id.
    fn audit(&self, request_id: &str) -> Result<Option<CommandReply>, StoreError>;
    /// Stores the reply of a request id durably unless one exists; returns the stored one
    /// (the first reply always wins).
    fn put_audit(&self, request_id: &str, reply: &CommandReply)
        -> Result<CommandReply, StoreError>;

    /// After a failure: reopen or otherwise make the store usable again. `Ok(false)`
    /// when nothing had failed, `Ok(true)` when it recovered; an error when it is still
    /// unusable (try again later).
    fn recover(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Dedup key of an agent event, `None` for manager events (seq 0).
pub fn dedup_key(ev: &Event) -> Option<Vec<u8>> {
    if ev.seq == 0 {
        return None;
    }
    let mut k = Vec::with_capacity(ev.node.len() + ev.boot_id.len() + 10);
    k.extend_from_slice(ev.node.as_bytes());
    k.push(0);
    k.extend_from_slice(ev.boot_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&ev.seq.to_be_bytes());
    Some(k)
}

/// Size of an event as retention counts it.
pub fn event_size(ev: &Event) -> u64 {
    use prost::Message;
    8 + ev.encoded_len() as u64
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_plainly() {
        let full = StoreError::Sled(::sled::Error::Io(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        )));
        assert!(full.is_disk_full());
        assert_eq!(
            full.to_string(),
            "no space left on device (ENOSPC) writing the history database"
        );
        // sled wraps the OS error in a custom one that only prints it.
        let wrapped = StoreError::Sled(::sled::Error::Io(std::io::Error::other(
            "Os { code: 28, kind: StorageFull, message: \"No space left on device\" }",
        )));
        assert!(wrapped.is_disk_full());
        let other = StoreError::Sled(::sled::Error::Io(std::io::Error::from_raw_os_error(
            libc::EIO,
        )));
        assert!(!other.is_disk_full());
        assert!(other.to_string().starts_with("sled: "), "{other}");
        assert!(!StoreError::Closed.is_disk_full());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Behaviour shared by every store implementation; each store runs these.

    use super::*;
    use ha_proto::v1::{EventKind, PriorityOverride};

    pub fn ev(node: &str, boot: &str, seq: u64, inst: &str, kind: EventKind, t: i64) -> Event {
        Event {
            node: node.into(),
            boot_id: boot.into(),
            seq,
            wall_time_ms: t,
            kind: kind as i32,
            instance: inst.into(),
            to_state: "MASTER".into(),
            reason: "test".into(),
            ..Default::default()
        }
    }

    fn ids(a: &[Appended]) -> Vec<Option<u64>> {
        a.iter()
            .map(|x| match x {
                Appended::Stored(e) => Some(e.history_id),
                Appended::Duplicate { .. } => None,
            })
            .collect()
    }

    pub fn dedup(s: &dyn HistoryStore) {
        let t = EventKind::Transition;
        let a = s
            .append(
                vec![
                    ev("lb1", "b1", 1, "VI_1", t, 10),
                    ev("lb1", "b1", 2, "VI_1", t, 11),
                    ev("lb1", "b1", 2, "VI_1", t, 11),
                ],
                100,
            )
            .unwrap();
        assert_eq!(ids(&a), vec![Some(1), Some(2), None]);
        assert_eq!(a[2], Appended::Duplicate { history_id: 2 });
        if let Appended::Stored(e) = &a[0] {
            assert_eq!(e.stored_ms, 100);
        }
        // Resent after reconnect: 2 is a duplicate, 3 new; another boot id is new.
        let a = s
            .append(
                vec![
                    ev("lb1", "b1", 2, "VI_1", t, 11),
                    ev("lb1", "b1", 3, "VI_1", t, 12),
                    ev("lb1", "b2", 1, "VI_1", t, 13),
                    ev("lb2", "b1", 1, "VI_1", t, 13),
                    ev("mgr", "", 0, "", EventKind::Command, 14),
                    ev("mgr", "", 0, "", EventKind::Command, 14),
                ],
                101,
            )
            .unwrap();
        assert_eq!(
            ids(&a),
            vec![None, Some(3), Some(4), Some(5), Some(6), Some(7)]
        );
        s.flush().unwrap();
        assert_eq!(s.last_history_id(), 7);
        let all = s
            .query(&HistoryQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.events.len(), 7);
        assert_eq!(all.next_after_id, 0);
    }

    pub fn paging_and_filters(s: &dyn HistoryStore) {
        let mut batch = Vec::new();
        for i in 1..=30u64 {
            let node = if i % 2 == 0 { "lb1" } else { "lb2" };
            let inst = if i % 3 == 0 { "VI_2" } else { "VI_1" };
            let kind = if i % 5 == 0 {
                EventKind::Tracker
            } else {
                EventKind::Transition
            };
            batch.push(ev(node, "b", i, inst, kind, 1000 + i as i64));
        }
        s.append(batch, 5000).unwrap();
        // Paging over everything.
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let p = s
                .query(&HistoryQuery {
                    after_id: after,
                    limit: 7,
                    ..Default::default()
                })
                .unwrap();
            seen.extend(p.events.iter().map(|e| e.history_id));
            if p.next_after_id == 0 {
                break;
            }
            after = p.next_after_id;
        }
        assert_eq!(seen, (1..=30).collect::<Vec<_>>());
        // Exactly one page: no next.
        let p = s
            .query(&HistoryQuery {
                after_id: 23,
                limit: 7,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p.events.len(), 7);
        assert_eq!(p.next_after_id, 0);
        // Filters.
        let q = |q: HistoryQuery| {
            s.query(&HistoryQuery { limit: 100, ..q })
                .unwrap()
                .events
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            q(HistoryQuery {
                node: Some("lb1".into()),
                instance: Some("VI_2".into()),
                ..Default::default()
            }),
            vec![6, 12, 18, 24, 30]
        );
        assert_eq!(
            q(HistoryQuery {
                kind: Some(EventKind::Tracker as i32),
                ..Default::default()
            }),
            vec![5, 10, 15, 20, 25, 30]
        );
        assert_eq!(
            q(HistoryQuery {
                since_ms: Some(1010),
                until_ms: Some(1013),
                ..Default::default()
            }),
            vec![10, 11, 12]
        );
        // Filtered paging: next_after_id points past the last match.
        let p = s
            .query(&HistoryQuery {
                node: Some("lb1".into()),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(p.next_after_id, 4);
    }

    pub fn audit_replay(s: &dyn HistoryStore) {
        assert_eq!(s.audit("r1").unwrap(), None);
        let first = CommandReply {
            request_id: "r1".into(),
            ok: true,
            generation: 3,
            ..Default::default()
        };
        assert_eq!(s.put_audit("r1", &first).unwrap(), first);
        let second = CommandReply {
            request_id: "r1".into(),
            ok: false,
            error: "late".into(),
            ..Default::default()
        };
        // The first reply wins.
        assert_eq!(s.put_audit("r1", &second).unwrap(), first);
        assert_eq!(s.audit("r1").unwrap(), Some(first));
    }

    pub fn generations(s: &dyn HistoryStore) -> u64 {
        let set = |p: u32| Overrides {
            priorities: vec![PriorityOverride {
                instance: "VI_1".into(),
                priority: p,
            }],
            ..Default::default()
        };
        let a = s.put_overrides("lb1", set(90)).unwrap();
        let b = s.put_overrides("lb2", set(80)).unwrap();
        let c = s.put_overrides("lb1", set(70)).unwrap();
        assert!(a.generation < b.generation && b.generation < c.generation);
        assert_eq!(s.overrides("lb1").unwrap(), Some(c.clone()));
        assert_eq!(s.overrides("lb3").unwrap(), None);
        c.generation
    }

    pub fn nodes(s: &dyn HistoryStore) {
        let n = NodeStatus {
            name: "lb1".into(),
            boot_id: "b".into(),
            ..Default::default()
        };
        s.put_node(&n).unwrap();
        s.put_node(&NodeStatus {
            name: "lb0".into(),
            ..Default::default()
        })
        .unwrap();
        let all = s.nodes().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], n);
    }

    pub fn retention(s: &dyn HistoryStore) {
        let t = EventKind::Transition;
        s.append((1..=10).map(|i| ev("a", "b", i, "", t, 0)).collect(), 1_000)
            .unwrap();
        s.append(
            (11..=20).map(|i| ev("a", "b", i, "", t, 0)).collect(),
            5_000,
        )
        .unwrap();
        let one = s.event_bytes() / 20;
        assert!(one > 0);
        // By age: the first ten are older than 2 s at t=5.5 s.
        let r = s
            .retain(
                &Retention {
                    max_age_ms: Some(2_000),
                    max_bytes: None,
                },
                5_500,
            )
            .unwrap();
        assert_eq!(r.deleted, 10);
        // By size: keep at most about five events.
        let r = s
            .retain(
                &Retention {
                    max_age_ms: None,
                    max_bytes: Some(one * 5),
                },
                5_500,
            )
            .unwrap();
        assert_eq!(r.deleted, 5);
        assert!(r.bytes_left <= one * 5);
        let p = s
            .query(&HistoryQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            p.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (16..=20).collect::<Vec<_>>()
        );
        // Ids keep growing after deletion; deleted events' dedup entries are gone too.
        let a = s.append(vec![ev("a", "b", 21, "", t, 0)], 6_000).unwrap();
        assert!(matches!(&a[0], Appended::Stored(e) if e.history_id == 21));
    }
}
