//! Reconnect backoff as gRPC's connection-backoff document describes it: the base delay
//! starts at `initial`, grows by `factor` per failed attempt up to `max`, and each delay
//! is spread by +-`jitter` around the base so that a fleet does not reconnect in step.
//!
//! Pure: the random draw comes in as a number in [0, 1); [`Jitter`] supplies it.

use std::time::Duration;

/// Reconnect delays (DESIGN.md: 1 s, x1.6, +-20 %, cap 120 s; tests may shorten them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Base delay after the first failure.
    pub initial: Duration,
    /// Growth per further failure.
    pub factor: f64,
    /// Relative spread, 0.2 = +-20 %.
    pub jitter: f64,
    /// Cap of the base delay (a jittered delay may exceed it by `jitter`).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            factor: 1.6,
            jitter: 0.2,
            max: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// Base delay before retry number `attempt` (0 = after the first failure), capped.
    pub fn base(&self, attempt: u32) -> Duration {
        let max = self.max.as_secs_f64();
        let mut d = self.initial.as_secs_f64().min(max);
        for _ in 0..attempt {
            d = (d * self.factor.max(1.0)).min(max);
            if d >= max {
                break;
            }
        }
        Duration::from_secs_f64(d.max(0.0))
    }

    /// Delay before retry number `attempt`, with `unit` in [0, 1) choosing the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base(attempt).as_secs_f64();
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * (1.0 + spread)).max(0.0))
    }
}

/// A small xorshift64* generator for jitter (not for secrets), seeded from the OS.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from /dev/urandom (or the clock and pid if that fails).
    pub fn from_os() -> Jitter {
        let mut b = [0u8; 8];
        let seed = match super::random::fill(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => super::random::weak_seed(),
        };
        Jitter::seeded(seed)
    }

    /// A fixed sequence (tests).
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// The next number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_factor_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.base(0), Duration::from_secs(1));
        assert_eq!(b.base(1), Duration::from_secs_f64(1.6));
        assert!((b.base(2).as_secs_f64() - 2.56).abs() < 1e-9);
        assert_eq!(b.base(20), Duration::from_secs(120));
        assert_eq!(b.base(u32::MAX), Duration::from_secs(120));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_secs_f64(0.8));
        assert_eq!(b.delay(0, 0.5), Duration::from_secs(1));
        let hi = b.delay(30, 0.999_999).as_secs_f64();
        assert!(hi < 144.0 && hi > 143.9, "{hi}");
        let mut j = Jitter::seeded(7);
        let mut lo_seen = false;
        let mut hi_seen = false;
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
            let d = b.delay(3, u).as_secs_f64();
            let base = b.base(3).as_secs_f64();
            assert!(d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9);
            lo_seen |= d < base * 0.9;
            hi_seen |= d > base * 1.1;
        }
        assert!(lo_seen && hi_seen, "jitter does not spread");
    }

    #[test]
    fn shortened_backoff_for_tests() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            factor: 2.0,
            jitter: 0.0,
            max: Duration::from_millis(50),
        };
        assert_eq!(b.delay(0, 0.3), Duration::from_millis(10));
        assert_eq!(b.delay(2, 0.9), Duration::from_millis(40));
        assert_eq!(b.delay(3, 0.9), Duration::from_millis(50));
    }
}
