//! VRRP advertisement wire format, v2 (RFC 3768 §5) and v3 (RFC 5798 §5), IPv4 and IPv6.
//!
//! Pure: bytes in, values out. No clock, no socket, no randomness. Everything that needs
//! the configuration (TTL rule, VRID match, auth, interval, address list) is checked by
//! the instance, not here.
//!
//! CONTRACT (shared with vrrp/instance.rs and the runtime; keep these signatures):
//! - `Advert::encode(&self, src, dst, mode) -> Vec<u8>`: the VRRP message only (no IP header).
//! - `Advert::decode(payload, meta, mode) -> Result<Advert, DecodeError>`.
//! - `parse_ipv4(datagram) -> Result<(RxMeta-less header info, payload), DecodeError>`.
//! - `DecodeError::reason() -> DropReason`.

use std::net::IpAddr;

use crate::units::{Centiseconds, Priority, Version, Vrid};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;

/// What the receive edge knows about a packet besides its VRRP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address (multicast group or our unicast address).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Interface the packet arrived on.
    pub ifindex: u32,
}

/// v2 authentication (RFC 3768 §5.3.6); v3 has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Auth type 0 (and always for v3).
    None,
    /// Auth type 1, simple text password, zero padded to 8 bytes.
    Pass([u8; 8]),
    /// Any other auth type value (2 was IP AH, deprecated); carried so the instance can drop it.
    Other(u8),
}

/// How the v3 IPv4 checksum is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// RFC 5798: v3 includes the pseudo-header.
    #[default]
    Standard,
    /// keepalived's `v3_checksum_as_v2`: v3 over IPv4 without the pseudo-header.
    /// On receive either form is accepted.
    V3AsV2,
}

/// A decoded VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id.
    pub vrid: Vrid,
    /// Sender's priority (0 = master stopping).
    pub priority: Priority,
    /// Advert interval (v2 seconds converted to centiseconds).
    pub interval: Centiseconds,
    /// The virtual addresses, all of one family.
    pub addrs: Vec<IpAddr>,
    /// v2 auth; always `Auth::None` for v3.
    pub auth: Auth,
}

/// A received advert with its metadata: the input the instance sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Where it came from.
    pub meta: RxMeta,
    /// What it said.
    pub advert: Advert,
}

/// Why a packet was dropped: one counter per reason (RFC 5798 §7.1 / REFERENCE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// TTL / hop limit not 255 (multicast mode).
    Ttl,
    /// Version not the configured one, or unknown.
    Version,
    /// Type not 1 (advertisement).
    Type,
    /// Truncated, too long, count x address mismatch, IP length mismatch.
    Length,
    /// Checksum mismatch.
    Checksum,
    /// VRID not configured on this interface.
    Vrid,
    /// We are the address owner (priority 255).
    Owner,
    /// v2 auth type or password mismatch.
    Auth,
    /// v2 interval mismatch, or v3 interval 0.
    Interval,
    /// Address list differs (v2 drop).
    AddressList,
    /// Unicast mode: source is not a configured peer.
    UnicastSource,
    /// Address family does not match the instance.
    Family,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Ttl,
        DropReason::Version,
        DropReason::Type,
        DropReason::Length,
        DropReason::Checksum,
        DropReason::Vrid,
        DropReason::Owner,
        DropReason::Auth,
        DropReason::Interval,
        DropReason::AddressList,
        DropReason::UnicastSource,
        DropReason::Family,
    ];
    /// Stable snake_case name for logs, stats and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Ttl => "ttl",
            DropReason::Version => "version",
            DropReason::Type => "type",
            DropReason::Length => "length",
            DropReason::Checksum => "checksum",
            DropReason::Vrid => "vrid",
            DropReason::Owner => "owner",
            DropReason::Auth => "auth",
            DropReason::Interval => "interval",
            DropReason::AddressList => "address_list",
            DropReason::UnicastSource => "unicast_source",
            DropReason::Family => "family",
        }
    }
    /// Index into a counter array of length `ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A packet that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Placeholder until the codec lands.
    #[error("truncated")]
    Truncated,
}

impl DecodeError {
    /// The drop counter this error increments.
    pub fn reason(&self) -> DropReason {
        DropReason::Length
    }
}
