//! vrrp-inject: send one VRRP advert, valid or malformed in one chosen way, from the
//! namespace it runs in. The test generator for "invalid packets never change state".
//!
//! ```text
//! vrrp-inject --iface eth0 --src 192.0.2.100 --vrid 51 --prio 254 --vip 192.0.2.10 \
//!             --version 2 [--auth PASS] --kind KIND [--count N]
//! KIND: valid ttl254 badsum version type truncated auth vrid count interval0
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};
use ha_agent::units::{Centiseconds, Priority, Version, Vrid};
use ha_agent::vrrp::packet::{checksum, Advert, Auth, ChecksumMode, PseudoHeader, IPPROTO_VRRP};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

struct Opts {
    iface: String,
    src: Ipv4Addr,
    vrid: u8,
    prio: u8,
    vips: Vec<IpAddr>,
    version: Version,
    auth: Option<String>,
    kind: String,
    count: u32,
    interval_cs: u16,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        iface: "eth0".into(),
        src: Ipv4Addr::new(192, 0, 2, 100),
        vrid: 51,
        prio: 254,
        vips: Vec::new(),
        version: Version::V2,
        auth: None,
        kind: "valid".into(),
        count: 1,
        interval_cs: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--iface" => o.iface = v,
            "--src" => o.src = v.parse()?,
            "--vrid" => o.vrid = v.parse()?,
            "--prio" => o.prio = v.parse()?,
            "--vip" => o.vips.push(v.parse()?),
            "--version" => {
                o.version = match v.as_str() {
                    "2" => Version::V2,
                    "3" => Version::V3,
                    _ => bail!("--version 2|3"),
                }
            }
            "--auth" => o.auth = Some(v),
            "--kind" => o.kind = v,
            "--count" => o.count = v.parse()?,
            "--interval-cs" => o.interval_cs = v.parse()?,
            _ => bail!("unknown option {a}"),
        }
    }
    if o.vips.is_empty() {
        o.vips.push(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    }
    Ok(o)
}

fn pass(p: &str) -> [u8; 8] {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(p.bytes()) {
        *d = s;
    }
    b
}

/// Recompute the checksum after a mutation, so only the intended defect remains.
fn fix_checksum(bytes: &mut [u8], version: Version, src: IpAddr, dst: IpAddr) {
    if bytes.len() < 8 {
        return;
    }
    bytes[6] = 0;
    bytes[7] = 0;
    let c = checksum(
        bytes,
        PseudoHeader::for_send(version, src, dst, ChecksumMode::Standard),
    );
    bytes[6..8].copy_from_slice(&c.to_be_bytes());
}

fn main() -> Result<()> {
    let o = parse()?;
    let group = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let src = IpAddr::V4(o.src);
    let vrid = Vrid::new(o.vrid).context("vrid 0")?;
    let mut adv = Advert {
        version: o.version,
        vrid,
        priority: Priority(o.prio),
        interval: Centiseconds(o.interval_cs),
        addrs: o.vips.clone(),
        auth: match (&o.auth, o.version) {
            (Some(p), Version::V2) => Auth::Pass(pass(p)),
            _ => Auth::None,
        },
    };
    match o.kind.as_str() {
        "auth" => adv.auth = Auth::Pass(pass("wrong!!")),
        "vrid" => adv.vrid = Vrid::new(o.vrid.wrapping_add(100).max(1)).context("vrid")?,
        "interval0" => adv.interval = Centiseconds(0),
        _ => {}
    }
    let mut bytes = adv.encode(src, group, ChecksumMode::Standard);
    let mut ttl = 255;
    match o.kind.as_str() {
        "valid" | "auth" | "vrid" | "interval0" => {}
        "ttl254" => ttl = 254,
        "badsum" => bytes[7] ^= 0x5a,
        "version" => {
            bytes[0] = (bytes[0] & 0x0f) | 0x40;
            fix_checksum(&mut bytes, o.version, src, group);
        }
        "type" => {
            bytes[0] = (bytes[0] & 0xf0) | 0x02;
            fix_checksum(&mut bytes, o.version, src, group);
        }
        "truncated" => {
            bytes.truncate(10);
            fix_checksum(&mut bytes, o.version, src, group);
        }
        "count" => {
            bytes[3] = bytes[3].wrapping_add(1);
            fix_checksum(&mut bytes, o.version, src, group);
        }
        k => bail!("unknown kind {k}"),
    }
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )?;
    sock.bind_device(Some(o.iface.as_bytes()))?;
    sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    sock.set_multicast_ttl_v4(ttl)?;
    sock.set_multicast_if_v4(&o.src)?;
    sock.set_multicast_loop_v4(false)?;
    let to = SockAddr::from(SocketAddr::new(group, 0));
    for _ in 0..o.count {
        sock.send_to(&bytes, &to)?;
    }
    Ok(())
}
