//! [`LinkStats`]: counters of the manager link (connected, buffered events, reconnects),
//! updated by the link task and read by telemetry. Plain atomics behind an `Arc`: the
//! link never waits on a reader.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live counters of the manager link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// A session with the manager is up.
    connected: AtomicBool,
    /// Events in the ring not yet acknowledged by the manager.
    buffered: AtomicU64,
    /// Sessions established (the first one included).
    connects: AtomicU64,
    /// Sessions lost or connection attempts failed.
    disconnects: AtomicU64,
    /// Override sets received from the manager.
    overrides_received: AtomicU64,
}

impl LinkStats {
    /// Whether a session with the manager is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Events buffered (unacknowledged).
    pub fn buffered_events(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Sessions established so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Reconnects: sessions established after the first one.
    pub fn reconnects(&self) -> u64 {
        self.connects().saturating_sub(1)
    }

    /// Sessions lost and attempts failed.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Override sets received.
    pub fn overrides_received(&self) -> u64 {
        self.overrides_received.load(Ordering::Relaxed)
    }

    /// A session came up.
    pub fn on_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended or an attempt failed.
    pub fn on_disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The ring now holds `n` unacknowledged events.
    pub fn set_buffered(&self, n: u64) {
        self.buffered.store(n, Ordering::Relaxed);
    }

    /// An override set arrived.
    pub fn on_overrides(&self) {
        self.overrides_received.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_count_sessions_after_the_first() {
        let s = LinkStats::default();
        assert_eq!(s.reconnects(), 0);
        s.on_connected();
        assert!(s.connected());
        assert_eq!(s.reconnects(), 0);
        s.on_disconnected();
        assert!(!s.connected());
        s.on_connected();
        assert_eq!(s.reconnects(), 1);
        assert_eq!(s.disconnects(), 1);
        s.set_buffered(7);
        assert_eq!(s.buffered_events(), 7);
    }
}
