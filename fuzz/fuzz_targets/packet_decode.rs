//! Fuzzes the VRRP codec: `parse_ipv4` and `Advert::decode` must never panic, and any
//! advert that decodes must survive `encode` then `decode` unchanged.
//!
//! Input: one selector byte, then the bytes. Selector bit 0 picks the checksum mode; bit 7
//! set means "an IPv4 datagram as a raw socket delivers it" (parse_ipv4 first, metadata
//! from its header); otherwise bits 1..=6 pick fixed metadata and the rest is the VRRP
//! message.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ha_agent::vrrp::packet::{parse_ipv4, Advert, ChecksumMode, RxMeta};
use libfuzzer_sys::fuzz_target;

/// Metadata the VRRP-only path cycles through: multicast and unicast IPv4, IPv6, and a
/// mixed-family pair that must be refused.
const METAS: [(IpAddr, IpAddr); 5] = [
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
    ),
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    ),
    (
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
    ),
    (
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
    ),
    (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
    ),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mode = if sel & 1 == 0 {
        ChecksumMode::Standard
    } else {
        ChecksumMode::V3AsV2
    };
    if sel & 0x80 != 0 {
        if let Ok((info, payload)) = parse_ipv4(rest) {
            assert!(payload.len() <= rest.len());
            let meta = RxMeta {
                src: IpAddr::V4(info.src),
                dst: IpAddr::V4(info.dst),
                ttl: info.ttl,
                ifindex: 1,
            };
            round_trip(payload, &meta, mode);
        }
    } else {
        let (src, dst) = METAS[usize::from(sel >> 1) % METAS.len()];
        let meta = RxMeta {
            src,
            dst,
            ttl: 255,
            ifindex: 1,
        };
        round_trip(rest, &meta, mode);
    }
});

/// Decodes; if that works, re-encoding and decoding again must give the same advert.
fn round_trip(payload: &[u8], meta: &RxMeta, mode: ChecksumMode) {
    if let Ok(advert) = Advert::decode(payload, meta, mode) {
        let again = advert.encode(meta.src, meta.dst, mode);
        assert_eq!(Advert::decode(&again, meta, mode), Ok(advert));
    }
}
