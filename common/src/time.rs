//! Wall-clock helpers: milliseconds since the epoch for events, heartbeats and history
//! records, and the local broken-down time of syslog lines and state dumps.
//!
//! Wall time only: protocol timers use the monotonic clock (tokio's `Instant`), never
//! these. Not here: formatting of log lines (logging.rs).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock now, ms since the Unix epoch (0 if the clock is before 1970).
pub fn wall_ms() -> i64 {
    ms_since_epoch(SystemTime::now())
}

/// `t` in ms since the Unix epoch (0 before 1970, `i64::MAX` past year 292 million).
pub fn ms_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A wall-clock time as an RFC 3164 TIMESTAMP shows it (local time, no year).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-60 (leap second).
    pub second: u8,
}

impl LocalTime {
    /// A time of day on a day of the year (no check: the fields as given).
    pub const fn new(month: u8, day: u8, hour: u8, minute: u8, second: u8) -> LocalTime {
        LocalTime {
            month,
            day,
            hour,
            minute,
            second,
        }
    }
}

impl fmt::Display for LocalTime {
    /// `Mmm dd hh:mm:ss` with the day padded by a space (RFC 3164 §4.1.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS
            .get(usize::from(self.month.saturating_sub(1)))
            .unwrap_or(&"Jan");
        write!(
            f,
            "{month} {:>2} {:02}:{:02}:{:02}",
            self.day, self.hour, self.minute, self.second
        )
    }
}

/// Now, for dumps: seconds since the epoch and the local time ("1764748800.123 (Dec  3
/// 07:00:00)").
pub fn wall_timestamp() -> String {
    let now = std::time::SystemTime::now();
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:03} ({})",
        d.as_secs(),
        d.subsec_millis(),
        local_time(now)
    )
}

/// Local time of `now` (syslog timestamps, dumps) (UTC if the C library cannot tell).
pub fn local_time(now: std::time::SystemTime) -> LocalTime {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    localtime(secs).unwrap_or_else(|| utc_time(secs))
}

#[allow(unsafe_code)]
fn localtime(secs: u64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `libc::tm` is a plain C struct of integers and one pointer, for which all
    // zero bytes (a null `tm_zone`) is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers come from live references that outlive the call;
    // `localtime_r` is the reentrant variant: it reads `t`, writes only into `tm` and
    // keeps no pointer to either.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    let b = |v: libc::c_int| u8::try_from(v).ok();
    Some(LocalTime {
        month: b(tm.tm_mon + 1)?,
        day: b(tm.tm_mday)?,
        hour: b(tm.tm_hour)?,
        minute: b(tm.tm_min)?,
        second: b(tm.tm_sec)?,
    })
}

/// UTC broken-down time of `secs` since the epoch (civil-from-days).
fn utc_time(secs: u64) -> LocalTime {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let n = |v: u64| u8::try_from(v).unwrap_or(0);
    LocalTime {
        month: n(month),
        day: n(day),
        hour: n(rem / 3600),
        minute: n(rem % 3600 / 60),
        second: n(rem % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_matches_known_dates() {
        assert_eq!(utc_time(0), LocalTime::new(1, 1, 0, 0, 0));
        // 2000-02-29 12:34:56 UTC (a leap day of a 400-year leap year).
        assert_eq!(utc_time(951_827_696), LocalTime::new(2, 29, 12, 34, 56));
        // 2024-12-31 23:59:59 UTC.
        assert_eq!(utc_time(1_735_689_599), LocalTime::new(12, 31, 23, 59, 59));
    }

    #[test]
    fn wall_ms_is_past_2020_and_clamps_before_1970() {
        assert!(wall_ms() > 1_577_836_800_000);
        let before = UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(ms_since_epoch(before), 0);
        assert_eq!(
            ms_since_epoch(UNIX_EPOCH + std::time::Duration::from_millis(1500)),
            1500
        );
    }
}
