//! Protocol timers as values: the RFC formulas (Skew_Time, Master_Down_Interval) and the
//! deadlines an instance keeps (Adver_Timer, Master_Down_Timer, delayed and refresh GARP,
//! lower-priority GARP, preempt delay).
//!
//! Nothing here reads a clock: deadlines are [`Mono`] points computed from the `now` the
//! runtime passes in. Durations keep sub-microsecond precision; they are never rounded to
//! centiseconds or seconds (REFERENCE.md: neighbouring priorities differ by ~3.9 ms of skew
//! at 1 s, and by ~39 us at 10 ms).

use std::time::Duration;

use crate::units::{Centiseconds, Mono, Priority, Version};

/// Nanoseconds in a centisecond.
const NANOS_PER_CS: u64 = 10_000_000;
/// Nanoseconds in a second.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Skew_Time for `priority`.
///
/// - v2, RFC 3768 §6.1: `(256 - Priority) / 256` seconds, whatever the advert interval.
/// - v3, RFC 5798 §6.1: `((256 - Priority) * Master_Adver_Interval) / 256`.
///
/// keepalived computes the same in microseconds (`VRRP_TIMER_SKEW`); we keep nanoseconds,
/// which is exact for v2 and within half a nanosecond for v3.
pub fn skew_time(
    version: Version,
    priority: Priority,
    master_adver_interval: Centiseconds,
) -> Duration {
    skew_for(
        version,
        256 - u64::from(priority.get()),
        master_adver_interval,
    )
}

/// keepalived's `VRRP_TIMER_SKEW_MIN`: the skew of a priority-255 router, used for the
/// shortened first Master_Down_Timer of an instance configured `state MASTER`.
pub fn skew_time_min(version: Version, master_adver_interval: Centiseconds) -> Duration {
    skew_for(version, 1, master_adver_interval)
}

/// Skew for a `256 - priority` value of `weight`.
fn skew_for(version: Version, weight: u64, interval: Centiseconds) -> Duration {
    let nanos = match version {
        Version::V2 => weight * NANOS_PER_SEC / 256,
        Version::V3 => weight * u64::from(interval.0) * NANOS_PER_CS / 256,
    };
    Duration::from_nanos(nanos)
}

/// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time
/// (RFC 3768 §6.1 with the configured interval; RFC 5798 §6.1 with the learned one).
pub fn master_down_interval(
    version: Version,
    priority: Priority,
    master_adver_interval: Centiseconds,
) -> Duration {
    master_adver_interval.as_duration() * 3 + skew_time(version, priority, master_adver_interval)
}

/// How late a wake-up must be to count as our own scheduling stall: one advert interval
/// (the time in which a live master sends another advert), bounded to 5 ms..100 ms so that
/// a 10 ms instance is not flagged by ordinary jitter and a 1 s one by a 200 ms pause.
pub fn stall_threshold(master_adver_interval: Centiseconds) -> Duration {
    master_adver_interval
        .as_duration()
        .clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// How early an Adver_Timer may be acted on when the runtime is awake anyway: a tenth of
/// the interval, at most 2 ms. A master of many instances then sends the adverts that fall
/// due within the slack in one wake-up, and since each is re-armed from that moment their
/// timers lock into phase: 50 instances at 10 ms cost about 100 wake-ups a second instead
/// of 5,000, so the VRRP thread stays well inside its fair share of a loaded CPU (and is
/// not made to wait behind CPU hogs). An advert up to a tenth of an interval early is
/// harmless: a backup waits three intervals plus its skew.
pub fn advert_slack(interval: Centiseconds) -> Duration {
    (interval.as_duration() / 10).min(Duration::from_millis(2))
}

/// keepalived `timer_expired_backup`: how long after our last advert another router of
/// priority `other` may have taken over (three intervals plus its skew).
pub fn quickest_takeover(version: Version, other: Priority, interval: Centiseconds) -> Duration {
    interval.as_duration() * 3 + skew_time(version, other, interval)
}

/// One deadline on the monotonic clock, armed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Mono>);

impl Deadline {
    /// Arm to fire `d` after `now` (re-arming replaces the old deadline).
    pub fn arm(&mut self, now: Mono, d: Duration) {
        self.0 = Some(now.after(d));
    }
    /// Arm only if not armed already.
    pub fn arm_if_idle(&mut self, now: Mono, d: Duration) {
        if self.0.is_none() {
            self.arm(now, d);
        }
    }
    /// Stop the timer.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
    /// When it fires, if armed.
    pub fn get(self) -> Option<Mono> {
        self.0
    }
    /// Whether it is armed.
    pub fn is_armed(self) -> bool {
        self.0.is_some()
    }
    /// If armed and due at `now`, disarm it and return true.
    pub fn fire(&mut self, now: Mono) -> bool {
        self.fire_within(now, Duration::ZERO)
    }
    /// If armed and due by `now + slack`, disarm it and return true.
    pub fn fire_within(&mut self, now: Mono, slack: Duration) -> bool {
        match self.0 {
            Some(at) if at <= now.after(slack) => {
                self.0 = None;
                true
            }
            _ => false,
        }
    }
    /// Whether it is armed and due by `now + slack`.
    pub fn due_within(self, now: Mono, slack: Duration) -> bool {
        self.0.is_some_and(|at| at <= now.after(slack))
    }
}

/// Every timer one instance keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    /// Adver_Timer (Master): send the next advert (RFC 5798 §6.4.3).
    pub adver: Deadline,
    /// Master_Down_Timer (Backup): take over when it fires (RFC 5798 §6.4.2).
    pub master_down: Deadline,
    /// keepalived `garp_master_delay`: the second GARP/NA burst after becoming master.
    pub garp_delayed: Deadline,
    /// keepalived `garp_master_refresh`: periodic GARP/NA while master.
    pub garp_refresh: Deadline,
    /// keepalived `garp_lower_prio_delay`: the delayed burst after a lower-priority advert.
    pub lower_prio_garp: Deadline,
    /// keepalived `preempt_time` (Backup): until this point, lower-priority adverts still
    /// count as a live master. Not a wake-up: it is only consulted when an advert arrives.
    pub preempt_until: Option<Mono>,
}

impl Timers {
    /// The earliest armed wake-up deadline.
    pub fn next(&self) -> Option<Mono> {
        [
            self.adver,
            self.master_down,
            self.garp_delayed,
            self.garp_refresh,
            self.lower_prio_garp,
        ]
        .iter()
        .filter_map(|d| d.get())
        .min()
    }
    /// Stop everything.
    pub fn clear(&mut self) {
        *self = Timers::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn us(d: Duration) -> u128 {
        d.as_micros()
    }

    #[test]
    fn v2_skew_is_fraction_of_a_second() {
        // (256-100)/256 s = 609375 us exactly; (256-101)/256 s = 605468.75 us.
        let s100 = skew_time(Version::V2, Priority(100), Centiseconds(100));
        let s101 = skew_time(Version::V2, Priority(101), Centiseconds(100));
        assert_eq!(s100, Duration::from_micros(609_375));
        assert_eq!(s101, Duration::from_nanos(605_468_750));
        assert_eq!(s100 - s101, Duration::from_nanos(3_906_250));
        // v2 skew does not scale with the interval (RFC 3768 §6.1).
        assert_eq!(
            skew_time(Version::V2, Priority(100), Centiseconds(300)),
            s100
        );
    }

    #[test]
    fn v3_skew_scales_with_interval_and_is_not_truncated() {
        let s100 = skew_time(Version::V3, Priority(100), Centiseconds(1));
        let s101 = skew_time(Version::V3, Priority(101), Centiseconds(1));
        // 156 * 10 ms / 256 = 6093.75 us; 155 * 10 ms / 256 = 6054.6875 us.
        assert_eq!(s100, Duration::from_nanos(6_093_750));
        assert_eq!(s101, Duration::from_nanos(6_054_687));
        assert!(us(s100) > us(s101));
        // Whole centiseconds would make these equal (60 cs both at 1 s).
        let a = skew_time(Version::V3, Priority(100), Centiseconds(100));
        let b = skew_time(Version::V3, Priority(101), Centiseconds(100));
        assert_eq!(a, Duration::from_micros(609_375));
        assert_eq!(a - b, Duration::from_nanos(3_906_250));
    }

    #[test]
    fn master_down_interval_is_three_intervals_plus_skew() {
        assert_eq!(
            master_down_interval(Version::V2, Priority(100), Centiseconds(100)),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V3, Priority(255), Centiseconds(1)),
            Duration::from_millis(30) + Duration::from_nanos(39_062)
        );
        assert_eq!(
            skew_time_min(Version::V2, Centiseconds(100)),
            Duration::from_nanos(3_906_250)
        );
    }

    #[test]
    fn deadlines_fire_once_and_next_is_earliest() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.master_down.arm(Mono::default(), Duration::from_secs(3));
        t.garp_refresh.arm(Mono::default(), Duration::from_secs(1));
        assert_eq!(t.next(), Some(Mono(Duration::from_secs(1))));
        assert!(!t.master_down.fire(Mono(Duration::from_millis(2999))));
        assert!(t.master_down.fire(Mono(Duration::from_secs(3))));
        assert!(!t.master_down.fire(Mono(Duration::from_secs(4))));
        t.lower_prio_garp
            .arm_if_idle(Mono::default(), Duration::from_secs(5));
        t.lower_prio_garp
            .arm_if_idle(Mono::default(), Duration::from_secs(9));
        assert_eq!(t.lower_prio_garp.get(), Some(Mono(Duration::from_secs(5))));
        t.clear();
        assert_eq!(t.next(), None);
    }
}
