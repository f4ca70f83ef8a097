//! Rate limiting for log lines the network drives (drops, foreign VRIDs): at most `burst`
//! lines per key per window, then one summary of how many were suppressed.
//!
//! Pure: time comes in as [`Mono`].

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::units::Mono;

/// Per-key token window.
#[derive(Debug)]
pub struct RateLimit<K> {
    window: Duration,
    burst: u32,
    keys: HashMap<K, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Mono,
    used: u32,
    suppressed: u64,
}

/// What to do with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were dropped since the last logged one.
    Log {
        /// Lines not logged in the previous window.
        suppressed: u64,
    },
    /// Don't log it.
    Suppress,
}

impl<K: Hash + Eq> RateLimit<K> {
    /// At most `burst` lines per key each `window`.
    pub fn new(window: Duration, burst: u32) -> Self {
        RateLimit {
            window,
            burst,
            keys: HashMap::new(),
        }
    }

    /// Record one occurrence of `key` at `now`.
    pub fn check(&mut self, key: K, now: Mono) -> Verdict {
        let w = self.keys.entry(key).or_insert(Window {
            start: now,
            used: 0,
            suppressed: 0,
        });
        if now.since(w.start) >= self.window {
            let suppressed = w.suppressed;
            *w = Window {
                start: now,
                used: 1,
                suppressed: 0,
            };
            return Verdict::Log { suppressed };
        }
        if w.used < self.burst {
            w.used += 1;
            Verdict::Log { suppressed: 0 }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppress_then_summary() {
        let mut rl = RateLimit::new(Duration::from_secs(10), 2);
        let t0 = Mono::default();
        assert_eq!(rl.check("a", t0), Verdict::Log { suppressed: 0 });
        assert_eq!(rl.check("a", t0), Verdict::Log { suppressed: 0 });
        assert_eq!(rl.check("a", t0), Verdict::Suppress);
        assert_eq!(rl.check("a", t0), Verdict::Suppress);
        // Another key has its own budget.
        assert_eq!(rl.check("b", t0), Verdict::Log { suppressed: 0 });
        let later = t0.after(Duration::from_secs(10));
        assert_eq!(rl.check("a", later), Verdict::Log { suppressed: 2 });
    }
}
