//! Typed units shared by the config model, the protocol core and the edges.
//!
//! Bare integers never cross module boundaries: a VRID is a [`Vrid`], a priority a
//! [`Priority`], an advert interval [`Centiseconds`], a point in time a [`Mono`].

use std::fmt;
use std::time::Duration;

/// A virtual router id, 1..=255 (RFC 5798 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vrid(u8);

impl Vrid {
    /// A VRID, or `None` for 0 (reserved).
    pub fn new(v: u8) -> Option<Self> {
        (v != 0).then_some(Self(v))
    }
    /// The wire value.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A VRRP priority. 0 means "master is stopping", 255 "address owner" (RFC 5798 §5.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// Sent by a master that stops.
    pub const STOP: Priority = Priority(0);
    /// The address owner.
    pub const OWNER: Priority = Priority(255);
    /// keepalived's default.
    pub const DEFAULT: Priority = Priority(100);
    /// The wire value.
    pub fn get(self) -> u8 {
        self.0
    }
    /// Base plus tracker weights, clamped to 1..=254 as keepalived does; an owner stays 255.
    pub fn with_offset(self, offset: i32) -> Priority {
        if self == Self::OWNER {
            return self;
        }
        Priority((i32::from(self.0) + offset).clamp(1, 254) as u8)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An advertisement interval in centiseconds (the v3 wire unit; v2 seconds are x100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centiseconds(pub u16);

impl Centiseconds {
    /// keepalived's default advert_int, 1 s.
    pub const DEFAULT: Centiseconds = Centiseconds(100);
    /// As a Duration.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
    /// Whole seconds, for the v2 8-bit field (`None` if not a whole number in 1..=255).
    pub fn as_v2_seconds(self) -> Option<u8> {
        if !self.0.is_multiple_of(100) {
            return None;
        }
        u8::try_from(self.0 / 100).ok().filter(|s| *s != 0)
    }
    /// From v2 whole seconds.
    pub fn from_v2_seconds(s: u8) -> Centiseconds {
        Centiseconds(u16::from(s) * 100)
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}s", self.0 / 100, self.0 % 100)
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// RFC 3768, IPv4 only, with authentication.
    #[default]
    V2,
    /// RFC 5798 / 9568, IPv4 and IPv6, centisecond intervals.
    V3,
}

impl Version {
    /// The 4-bit wire value.
    pub fn wire(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// A point on the monotonic clock: time since an arbitrary origin fixed by the runtime.
/// The protocol core only ever sees these; it never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mono(pub Duration);

impl Mono {
    /// The point `d` later.
    pub fn after(self, d: Duration) -> Mono {
        Mono(self.0 + d)
    }
    /// Time from `earlier` to self (zero if earlier is later).
    pub fn since(self, earlier: Mono) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_offset_clamps_and_owner_stays() {
        assert_eq!(Priority(100).with_offset(-20), Priority(80));
        assert_eq!(Priority(10).with_offset(-20), Priority(1));
        assert_eq!(Priority(250).with_offset(20), Priority(254));
        assert_eq!(Priority::OWNER.with_offset(-100), Priority::OWNER);
    }

    #[test]
    fn centiseconds_v2_seconds() {
        assert_eq!(Centiseconds(100).as_v2_seconds(), Some(1));
        assert_eq!(Centiseconds(150).as_v2_seconds(), None);
        assert_eq!(Centiseconds::from_v2_seconds(3), Centiseconds(300));
        assert_eq!(Centiseconds(1).as_duration(), Duration::from_millis(10));
    }
}
