//! In-memory [`HistoryStore`] for unit tests: same semantics as the sled store, nothing
//! survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use ha_proto::v1::{CommandReply, Event, NodeStatus, Overrides};

use super::{
    dedup_key, event_size, Appended, HistoryPage, HistoryQuery, HistoryStore, Retention,
    RetentionReport, StoreError,
};

/// Everything behind one lock.
#[derive(Debug, Default)]
struct Inner {
    /// history id -> event.
    events: BTreeMap<u64, Event>,
    /// dedup key -> history id.
    dedup: HashMap<Vec<u8>, u64>,
    /// Last assigned history id.
    last_id: u64,
    /// Sum of [`event_size`] over `events`.
    bytes: u64,
    /// Node states.
    nodes: BTreeMap<String, NodeStatus>,
    /// Desired overrides.
    overrides: HashMap<String, Overrides>,
    /// Last generation handed out.
    generation: u64,
    /// Command replies by request id.
    audit: HashMap<String, CommandReply>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemStore {
    /// State.
    inner: Mutex<Inner>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HistoryStore for MemStore {
    fn append(&self, events: Vec<Event>, stored_ms: i64) -> Result<Vec<Appended>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(events.len());
        for mut ev in events {
            let key = dedup_key(&ev);
            if let Some(id) = key.as_ref().and_then(|k| g.dedup.get(k)) {
                out.push(Appended::Duplicate { history_id: *id });
                continue;
            }
            g.last_id += 1;
            ev.history_id = g.last_id;
            ev.stored_ms = stored_ms;
            if let Some(k) = key {
                g.dedup.insert(k, ev.history_id);
            }
            g.bytes += event_size(&ev);
            g.events.insert(ev.history_id, ev.clone());
            out.push(Appended::Stored(ev));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn query(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let g = self.lock();
        let mut page = HistoryPage::default();
        let limit = q.limit.max(1);
        for ev in g
            .events
            .range(q.after_id.saturating_add(1)..)
            .map(|(_, e)| e)
        {
            if !q.matches(ev) {
                continue;
            }
            if page.events.len() == limit {
                page.next_after_id = page.events.last().map_or(0, |e| e.history_id);
                break;
            }
            page.events.push(ev.clone());
        }
        Ok(page)
    }

    fn last_history_id(&self) -> u64 {
        self.lock().last_id
    }

    fn event_bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn retain(&self, policy: &Retention, now_ms: i64) -> Result<RetentionReport, StoreError> {
        let mut g = self.lock();
        let mut deleted = 0;
        while let Some((&id, ev)) = g.events.first_key_value() {
            let old = policy
                .max_age_ms
                .is_some_and(|a| ev.stored_ms < now_ms.saturating_sub(a));
            let big = policy.max_bytes.is_some_and(|m| g.bytes > m);
            if !(old || big) {
                break;
            }
            let size = event_size(ev);
            if let Some(k) = dedup_key(ev) {
                g.dedup.remove(&k);
            }
            g.events.remove(&id);
            g.bytes -= size;
            deleted += 1;
        }
        Ok(RetentionReport {
            deleted,
            bytes_left: g.bytes,
        })
    }

    fn put_node(&self, node: &NodeStatus) -> Result<(), StoreError> {
        self.lock().nodes.insert(node.name.clone(), node.clone());
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    fn overrides(&self, node: &str) -> Result<Option<Overrides>, StoreError> {
        Ok(self.lock().overrides.get(node).cloned())
    }

    fn put_overrides(&self, node: &str, mut set: Overrides) -> Result<Overrides, StoreError> {
        let mut g = self.lock();
        g.generation += 1;
        set.generation = g.generation;
        g.overrides.insert(node.to_string(), set.clone());
        Ok(set)
    }

    fn audit(&self, request_id: &str) -> Result<Option<CommandReply>, StoreError> {
        Ok(self.lock().audit.get(request_id).cloned())
    }

    fn put_audit(
        &self,
        request_id: &str,
        reply: &CommandReply,
    ) -> Result<CommandReply, StoreError> {
        Ok(self
            .lock()
            .audit
            .entry(request_id.to_string())
            .or_insert_with(|| reply.clone())
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests as common;

    #[test]
    fn dedup() {
        common::dedup(&MemStore::new());
    }

    #[test]
    fn paging_and_filters() {
        common::paging_and_filters(&MemStore::new());
    }

    #[test]
    fn audit_replay() {
        common::audit_replay(&MemStore::new());
    }

    #[test]
    fn generations() {
        common::generations(&MemStore::new());
    }

    #[test]
    fn nodes() {
        common::nodes(&MemStore::new());
    }

    #[test]
    fn retention() {
        common::retention(&MemStore::new());
    }
}
