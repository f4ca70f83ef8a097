//! The ring of unacked events: numbers local events `seq` 1, 2, 3... (per boot id), keeps
//! them until the manager acks them durable, and knows which were already sent on the
//! current connection. Bounded: on overflow the oldest entries are dropped and a GAP
//! marker (itself an event with its own seq) says how many were lost and which seqs.
//!
//! Pure: no clock, no I/O. The marker's wall time is the one of the event that caused it.
//!
//! Marker rules (promise 5: no silent loss):
//! - at most one marker is "open" (never sent yet); further losses are
//!   merged into it, so a burst of overflow produces one GAP, not one per event;
//! - a marker only ever reports seqs lower than its own ("lost before this one");
//! - a marker that is itself dropped counts as lost (its seq and everything it reported
//!   carry over to the next marker).

use std::collections::VecDeque;

use super::bridge::{kind, LocalEvent};

/// Seqs lost to overflow, as one GAP marker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// How many seqs were lost.
    pub count: u64,
    /// Lowest lost seq.
    pub first: u64,
    /// Highest lost seq.
    pub last: u64,
}

impl Lost {
    fn one(seq: u64) -> Lost {
        Lost {
            count: 1,
            first: seq,
            last: seq,
        }
    }

    fn merge(self, other: Lost) -> Lost {
        Lost {
            count: self.count + other.count,
            first: self.first.min(other.first),
            last: self.last.max(other.last),
        }
    }

    fn detail(&self) -> String {
        format!(
            "{} events lost (seq {}..{}): ring of unacked events overflowed",
            self.count, self.first, self.last
        )
    }
}

/// One numbered event.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    event: LocalEvent,
    /// Set on GAP markers: what they report.
    lost: Option<Lost>,
}

/// Bounded buffer of unacked events (see the module doc).
#[derive(Debug)]
pub struct Ring {
    /// At most this many entries (markers included), at least 2.
    cap: usize,
    /// Unacked entries in seq order.
    entries: VecDeque<Entry>,
    /// Seq the next entry gets.
    next_seq: u64,
    /// Highest seq handed out by [`Ring::take_unsent`] on this connection.
    sent_upto: u64,
    /// Highest seq ever handed out (not reset by [`Ring::rewind`]): a marker above it was
    /// never sent, so the manager can't hold an older version of it.
    ever_sent: u64,
}

impl Ring {
    /// An empty ring keeping at most `capacity` (at least 2) unacked events; seqs start at 1.
    pub fn new(capacity: usize) -> Ring {
        Ring {
            cap: capacity.max(2),
            entries: VecDeque::new(),
            next_seq: 1,
            sent_upto: 0,
            ever_sent: 0,
        }
    }

    /// Number `event` and keep it; returns its seq. May drop the oldest entries and
    /// open (or extend) a GAP marker placed before it.
    pub fn push(&mut self, event: LocalEvent) -> u64 {
        let mut lost = self.make_room(1);
        if let Some(l) = lost.take() {
            if let Some(m) = self.open_marker_mut() {
                let merged = m.lost.map_or(l, |old| old.merge(l));
                m.lost = Some(merged);
                m.event.detail = merged.detail();
            } else {
                // Room for the marker and the event.
                let more = self.make_room(2);
                let l = more.map_or(l, |m| l.merge(m));
                let seq = self.take_seq();
                self.entries.push_back(Entry {
                    seq,
                    event: LocalEvent {
                        kind: kind::GAP,
                        instance: String::new(),
                        from_state: String::new(),
                        to_state: String::new(),
                        reason: "ring overflow".to_string(),
                        detail: l.detail(),
                        wall_time_ms: event.wall_time_ms,
                    },
                    lost: Some(l),
                });
            }
        }
        let seq = self.take_seq();
        self.entries.push_back(Entry {
            seq,
            event,
            lost: None,
        });
        seq
    }

    /// The manager holds every seq <= `seq` durably: forget them.
    pub fn ack(&mut self, seq: u64) {
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            self.entries.pop_front();
        }
    }

    /// A new connection: every unacked entry has to be sent again.
    pub fn rewind(&mut self) {
        self.sent_upto = 0;
    }

    /// Whether some entry was not sent on this connection yet.
    pub fn has_unsent(&self) -> bool {
        self.entries.back().is_some_and(|e| e.seq > self.sent_upto)
    }

    /// Up to `max` entries not yet sent on this connection, in seq order, now counted as sent.
    pub fn take_unsent(&mut self, max: usize) -> Vec<(u64, LocalEvent)> {
        let start = self.entries.partition_point(|e| e.seq <= self.sent_upto);
        let out: Vec<(u64, LocalEvent)> = self
            .entries
            .iter()
            .skip(start)
            .take(max)
            .map(|e| (e.seq, e.event.clone()))
            .collect();
        if let Some((seq, _)) = out.last() {
            self.sent_upto = *seq;
            self.ever_sent = self.ever_sent.max(*seq);
        }
        out
    }

    /// Seq of the newest event numbered so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Number of unacked entries (markers included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No unacked entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seqs of the unacked entries, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.seq).collect()
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Drop the oldest entries until `free` more fit; what was lost.
    fn make_room(&mut self, free: usize) -> Option<Lost> {
        let mut lost: Option<Lost> = None;
        while self.entries.len() + free > self.cap {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            let mut l = Lost::one(e.seq);
            if let Some(inner) = e.lost {
                l = l.merge(inner);
            }
            lost = Some(lost.map_or(l, |x| x.merge(l)));
        }
        lost
    }

    /// The GAP marker never sent yet, if any.
    fn open_marker_mut(&mut self) -> Option<&mut Entry> {
        let sent = self.ever_sent;
        self.entries
            .iter_mut()
            .rev()
            .take_while(|e| e.seq > sent)
            .find(|e| e.lost.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: i64) -> LocalEvent {
        LocalEvent {
            kind: kind::TRANSITION,
            instance: "VI_1".into(),
            from_state: "BACKUP".into(),
            to_state: "MASTER".into(),
            reason: String::new(),
            detail: String::new(),
            wall_time_ms: n,
        }
    }

    fn kinds(r: &mut Ring) -> Vec<(u64, i32)> {
        r.take_unsent(usize::MAX)
            .into_iter()
            .map(|(s, e)| (s, e.kind))
            .collect()
    }

    #[test]
    fn numbers_from_one_and_sends_once() {
        let mut r = Ring::new(10);
        assert_eq!(r.last_seq(), 0);
        assert_eq!(r.push(ev(1)), 1);
        assert_eq!(r.push(ev(2)), 2);
        assert!(r.has_unsent());
        assert_eq!(r.take_unsent(1).len(), 1);
        let rest = r.take_unsent(10);
        assert_eq!(rest.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
        assert!(!r.has_unsent());
        assert!(r.take_unsent(10).is_empty());
        assert_eq!(r.push(ev(3)), 3);
        assert_eq!(r.take_unsent(10)[0].0, 3);
    }

    #[test]
    fn ack_drops_up_to_seq_and_rewind_resends_the_rest() {
        let mut r = Ring::new(10);
        for i in 0..5 {
            r.push(ev(i));
        }
        r.take_unsent(10);
        r.ack(2);
        assert_eq!(r.seqs(), vec![3, 4, 5]);
        assert!(!r.has_unsent());
        r.rewind();
        let again: Vec<u64> = r.take_unsent(10).into_iter().map(|x| x.0).collect();
        assert_eq!(again, vec![3, 4, 5]);
        r.ack(100);
        assert!(r.is_empty());
        assert_eq!(r.push(ev(9)), 6);
    }

    #[test]
    fn overflow_opens_one_gap_marker_then_merges() {
        let mut r = Ring::new(4);
        for i in 0..4 {
            r.push(ev(i));
        }
        // Full: 5th event drops 1 and 2 (room for marker + event).
        assert_eq!(r.push(ev(4)), 6);
        assert_eq!(r.seqs(), vec![3, 4, 5, 6]);
        // Next overflow merges into the open marker (seq 5).
        assert_eq!(r.push(ev(5)), 7);
        assert_eq!(r.seqs(), vec![4, 5, 6, 7]);
        let out = r.take_unsent(10);
        let gap = &out[1].1;
        assert_eq!(out[1].0, 5);
        assert_eq!(gap.kind, kind::GAP);
        assert_eq!(gap.wall_time_ms, 4);
        assert!(
            gap.detail.starts_with("3 events lost (seq 1..3)"),
            "{}",
            gap.detail
        );
    }

    #[test]
    fn a_sent_marker_is_not_reused_and_a_dropped_marker_carries_over() {
        let mut r = Ring::new(4);
        for i in 0..5 {
            r.push(ev(i));
        }
        // [3, 4, GAP5(1..2), 6], all sent, none acked.
        assert_eq!(
            kinds(&mut r),
            vec![
                (3, kind::TRANSITION),
                (4, kind::TRANSITION),
                (5, kind::GAP),
                (6, kind::TRANSITION)
            ]
        );
        // Drops 3 and 4, a new marker (7) since 5 was sent; then 8.
        r.push(ev(7));
        assert_eq!(r.seqs(), vec![5, 6, 7, 8]);
        // Drops 5 (a marker: carries 1..2 plus itself) and 6 into the open marker 7.
        r.push(ev(8));
        r.push(ev(9));
        assert_eq!(r.seqs(), vec![7, 8, 9, 10]);
        let out = r.take_unsent(10);
        assert_eq!(out[0].1.kind, kind::GAP);
        assert!(
            out[0].1.detail.starts_with("6 events lost (seq 1..6)"),
            "{}",
            out[0].1.detail
        );
    }

    #[test]
    fn every_seq_is_delivered_or_reported_lost() {
        // Random-ish interleaving of pushes, sends, acks and rewinds; at the end, every seq
        // up to last_seq was either acked after being sent, is still in the ring, or is
        // reported by a GAP marker that was sent or is in the ring.
        let mut r = Ring::new(5);
        let mut seen = std::collections::BTreeSet::new();
        let receive = |batch: Vec<(u64, LocalEvent)>,
                       seen: &mut std::collections::BTreeSet<u64>| {
            for (s, e) in batch {
                seen.insert(s);
                if e.kind == kind::GAP {
                    let range = e.detail.split("seq ").nth(1).unwrap();
                    let range = range.split(')').next().unwrap();
                    let (a, b) = range.split_once("..").unwrap();
                    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                    assert!(b < s, "marker {s} reports {a}..{b}");
                    for q in a..=b {
                        seen.insert(q);
                    }
                }
            }
        };
        let mut x: u64 = 0x9e37_79b9;
        for step in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 7 {
                0..=3 => {
                    r.push(ev(step));
                }
                4 => receive(r.take_unsent((x % 3) as usize + 1), &mut seen),
                5 => {
                    let sent_hi = seen.iter().next_back().copied().unwrap_or(0);
                    r.ack(sent_hi.saturating_sub(x % 3));
                }
                _ => r.rewind(),
            }
            assert!(r.len() <= 5);
        }
        r.rewind();
        receive(r.take_unsent(usize::MAX), &mut seen);
        for q in 1..=r.last_seq() {
            assert!(seen.contains(&q), "seq {q} silently lost");
        }
    }
}
