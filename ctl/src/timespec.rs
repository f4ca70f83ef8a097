//! Times and durations on the command line and in output, without a date crate:
//! RFC 3339 timestamps (`2026-11-27T08:30:00Z`, `...+02:00`, fractions, or a bare date)
//! and relative spans (`10m`, `2h`, `1h30m`, `500ms`, `3d`) meaning "that long ago".
//! Everything here is pure: the current time is an argument.

use std::time::Duration;

use thiserror::Error;

/// A time or duration that could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimeError {
    /// Not a duration.
    #[error("bad duration {0:?}: use a number with a unit, e.g. 500ms, 30s, 10m, 2h, 1d, 1h30m")]
    Duration(String),
    /// Not a timestamp nor a duration.
    #[error(
        "bad time {0:?}: use RFC 3339 (2026-11-27T08:30:00Z, 2026-11-27) or a span ago (10m, 2h)"
    )]
    Time(String),
}

const MS_PER_SEC: i64 = 1000;
const MS_PER_DAY: i64 = 86_400 * MS_PER_SEC;

/// Read a span like `10m`, `2h`, `1h30m`, `500ms`, `1d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    let err = || TimeError::Duration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 7 * 86_400_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    let ms = u64::try_from(total).map_err(|_| err())?;
    Ok(Duration::from_millis(ms))
}

/// Read a `--since`/`--until` value as ms since the Unix epoch: RFC 3339, a bare date
/// (midnight UTC), `now`, or a span meaning that long before `now_ms`.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, TimeError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(ms) = parse_rfc3339(t) {
        return Ok(ms);
    }
    match parse_duration(t) {
        Ok(d) => {
            let ago = i64::try_from(d.as_millis()).map_err(|_| TimeError::Time(s.to_string()))?;
            Ok(now_ms.saturating_sub(ago))
        }
        Err(_) => Err(TimeError::Time(s.to_string())),
    }
}

/// Parse RFC 3339 (`T` or space between date and time, optional fraction, `Z` or
/// `+hh:mm`), or a bare `YYYY-MM-DD`, to ms since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i64 = digits(&s[0..4])?;
    let month: i64 = digits(&s[5..7])?;
    let day: i64 = digits(&s[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date_ms = days_from_civil(year, month, day) * MS_PER_DAY;
    if b.len() == 10 {
        return Some(date_ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour: i64 = digits(&s[11..13])?;
    let min: i64 = digits(&s[14..16])?;
    let sec: i64 = digits(&s[17..19])?;
    // 60 is a leap second; count it as the next second's start.
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
        if n == 0 {
            return None;
        }
        let mut ms = 0;
        for (i, c) in f[..n].bytes().take(3).enumerate() {
            ms += i64::from(c - b'0') * [100, 10, 1][i];
        }
        frac_ms = ms;
        rest = &f[n..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' {
                return None;
            }
            let sign = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = digits(&rest[1..3])?;
            let om: i64 = digits(&rest[4..6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60) * MS_PER_SEC
        }
    };
    Some(date_ms + ((hour * 60 + min) * 60 + sec) * MS_PER_SEC + frac_ms - offset_ms)
}

/// Format ms since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / MS_PER_SEC;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        in_day % MS_PER_SEC
    )
}

fn digits(s: &str) -> Option<i64> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era-based, exact for all i64
/// years we can meet).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        for bad in ["", "m", "10x", "1.5h", "-3m", "h10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01"), Some(0));
        // 2000-03-01 is day 11017 (after a leap day in a year divisible by 400).
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z"),
            Some(11_017 * MS_PER_DAY)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T08:30:00.250+02:00"),
            parse_rfc3339("2026-11-27T06:30:00.25Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-27 06:30:00z"),
            parse_rfc3339("2026-11-27T06:30:00Z")
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-11-27T24:00:00Z",
            "2026-11-27T08:30:00",
            "2026-11-27T08:30:00+0200",
            "2026-11-27T08:30:00.Z",
            "27/11/2026",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(parse_rfc3339("2024-02-29"), Some(19_782 * MS_PER_DAY));
        assert_eq!(parse_rfc3339("2023-02-29"), None);
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1, -1, 951_782_400_123, 1_795_000_000_999, -86_400_001] {
            let s = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
        }
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn times_absolute_or_ago() {
        let now = 1_000_000_000;
        assert_eq!(parse_time("10m", now), Ok(now - 600_000));
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Ok(1000));
        assert!(matches!(
            parse_time("yesterday", now),
            Err(TimeError::Time(_))
        ));
    }
}
