//! keepalived's delayed VRRP start: `vrrp_startup_delay` (after the agent starts) and
//! `vrrp_delay_after_boot` (after the system booted, from /proc/uptime read once at start;
//! a restart long after boot is not delayed). The longer of the two wins. During the delay
//! no instance is started (they stay INIT: nothing sent, adverts heard are not acted on),
//! as keepalived discards adverts and holds its timers until the delay is over.
//! Not here: the delay's timer (the engine's loop).

use std::time::Duration;

use crate::config::model::GlobalDefs;

/// The system's uptime, from /proc/uptime (`None` if it cannot be read).
pub fn uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    parse_uptime(&text)
}

/// The first field of /proc/uptime: seconds since boot, with a fraction.
pub fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// How long to wait before starting VRRP, given the uptime now (unknown uptime: the
/// boot-relative delay is ignored, as keepalived does when /proc/uptime is unreadable).
pub fn delay(g: &GlobalDefs, uptime: Option<Duration>) -> Duration {
    let after_boot = match (g.vrrp_delay_after_boot, uptime) {
        (Some(d), Some(up)) => d.saturating_sub(up),
        _ => Duration::ZERO,
    };
    g.vrrp_startup_delay.max(after_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(startup: u64, after_boot: Option<u64>) -> GlobalDefs {
        GlobalDefs {
            vrrp_startup_delay: Duration::from_secs(startup),
            vrrp_delay_after_boot: after_boot.map(Duration::from_secs),
            ..GlobalDefs::default()
        }
    }

    #[test]
    fn the_longer_delay_wins_and_boot_delay_counts_from_boot() {
        let up = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(delay(&g(0, None), up(5)), Duration::ZERO);
        assert_eq!(delay(&g(0, Some(60)), up(20)), Duration::from_secs(40));
        // Restarted long after boot: no delay from vrrp_delay_after_boot.
        assert_eq!(delay(&g(0, Some(60)), up(600)), Duration::ZERO);
        assert_eq!(delay(&g(5, Some(60)), up(58)), Duration::from_secs(5));
        assert_eq!(delay(&g(5, Some(60)), up(50)), Duration::from_secs(10));
        assert_eq!(delay(&g(3, Some(60)), None), Duration::from_secs(3));
    }

    #[test]
    fn proc_uptime_is_parsed() {
        assert_eq!(
            parse_uptime("12345.67 98765.43\n"),
            Some(Duration::from_millis(12_345_670))
        );
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("x y"), None);
        assert_eq!(parse_uptime("-1 0"), None);
        assert!(uptime().is_some(), "/proc/uptime readable on Linux");
    }
}
