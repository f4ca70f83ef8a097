//! The IPVS (LVS) data plane: generic netlink, family "IPVS" (include/uapi/linux/ip_vs.h).
//!
//! Layout:
//! - wire: [`IpvsCtrl`] (one generic-netlink payload: an [`IpvsCmd`] and its attributes)
//!   with the nested attribute enums [`CmdAttr`], [`SvcAttr`], [`DestAttr`],
//!   [`StatsAttr`]; pure `Nla` emit/parse, no I/O;
//! - mapping: the contract's [`Service`]/[`Destination`] to and from attribute lists;
//! - [`diff`]: pure, current kernel table x desired table x owned keys -> minimal [`Op`]s;
//! - [`Ipvs`]: the [`DataPlane`] over one netlink socket (netlink-proto), family id
//!   resolved with `CTRL_CMD_GETFAMILY`.
//!
//! Ownership rule: a service (by [`ServiceKey`]) is ours once it appears in a desired
//! table given to [`Ipvs::apply`] (whether we created it or adopted one that was already
//! there), or was handed to [`Ipvs::adopt`]. It stays ours until we delete it. Only our
//! services are read, changed or deleted; every other service in the kernel (another
//! tool's, an operator's `ipvsadm -A`) is left alone, destinations included. Ownership
//! lives in this process only: services left by a previous run are not deleted unless
//! the new process is told about them (`adopt`) or they are desired again.
//!
//! Not here: module loading (the kernel or the system loads `ip_vs`), sync daemons,
//! connection timeouts (`ipvsadm --set`), and the nftables fallback (`nft.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_proto::ConnectionHandle;
use netlink_sys::protocols::NETLINK_GENERIC;

use super::{
    DataPlane, DataPlaneError, Destination, Forward, ObjectStatus, Proto, Service, ServiceKey,
    Stats,
};

const BACKEND: &str = "ipvs";

/// Generic netlink family name of IPVS (`IPVS_GENL_NAME`).
pub const IPVS_GENL_NAME: &str = "IPVS";
/// Generic netlink version of the family (`IPVS_GENL_VERSION`).
pub const IPVS_GENL_VERSION: u8 = 1;

// Top-level command attributes (`IPVS_CMD_ATTR_*`).
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
// Top-level attributes of GET_INFO replies (`IPVS_INFO_ATTR_*`): same numbers, other meaning.
const INFO_ATTR_VERSION: u16 = 1;
const INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

// Service attributes (`IPVS_SVC_ATTR_*`).
const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const SVC_ATTR_STATS: u16 = 10;
const SVC_ATTR_PE_NAME: u16 = 11;
const SVC_ATTR_STATS64: u16 = 12;

// Destination attributes (`IPVS_DEST_ATTR_*`).
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_PERSIST_CONNS: u16 = 9;
const DEST_ATTR_STATS: u16 = 10;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;
const DEST_ATTR_STATS64: u16 = 12;

// Statistics attributes (`IPVS_STATS_ATTR_*`).
const STATS_ATTR_CONNS: u16 = 1;
const STATS_ATTR_INPKTS: u16 = 2;
const STATS_ATTR_OUTPKTS: u16 = 3;
const STATS_ATTR_INBYTES: u16 = 4;
const STATS_ATTR_OUTBYTES: u16 = 5;

/// `IP_VS_SVC_F_PERSISTENT`: the service is persistent.
pub const IP_VS_SVC_F_PERSISTENT: u32 = 0x0001;
/// `IP_VS_SVC_F_HASHED`: set by the kernel on every live service; never desired.
pub const IP_VS_SVC_F_HASHED: u32 = 0x0002;

/// `IP_VS_CONN_F_MASQ`: NAT.
pub const IP_VS_CONN_F_MASQ: u32 = 0;
/// `IP_VS_CONN_F_LOCALNODE`: the real server is this host.
pub const IP_VS_CONN_F_LOCALNODE: u32 = 1;
/// `IP_VS_CONN_F_TUNNEL`: IP-in-IP.
pub const IP_VS_CONN_F_TUNNEL: u32 = 2;
/// `IP_VS_CONN_F_DROUTE`: direct routing.
pub const IP_VS_CONN_F_DROUTE: u32 = 3;
const IP_VS_CONN_F_FWD_MASK: u32 = 0x0007;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const IPPROTO_TCP: u16 = libc::IPPROTO_TCP as u16;
const IPPROTO_UDP: u16 = libc::IPPROTO_UDP as u16;
const IPPROTO_SCTP: u16 = libc::IPPROTO_SCTP as u16;

// ---------------------------------------------------------------------------------------
// Wire: commands and attributes
// ---------------------------------------------------------------------------------------

/// IPVS generic-netlink commands (`IPVS_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvsCmd {
    /// `IPVS_CMD_NEW_SERVICE` (1): add a service; also the command of service dumps.
    NewService,
    /// `IPVS_CMD_SET_SERVICE` (2): modify a service.
    SetService,
    /// `IPVS_CMD_DEL_SERVICE` (3): delete a service.
    DelService,
    /// `IPVS_CMD_GET_SERVICE` (4): get one service, or dump them all.
    GetService,
    /// `IPVS_CMD_NEW_DEST` (5): add a destination; also the command of dest dumps.
    NewDest,
    /// `IPVS_CMD_SET_DEST` (6): modify a destination.
    SetDest,
    /// `IPVS_CMD_DEL_DEST` (7): delete a destination.
    DelDest,
    /// `IPVS_CMD_GET_DEST` (8): dump the destinations of one service.
    GetDest,
    /// `IPVS_CMD_SET_INFO` (14): the command of GET_INFO replies.
    SetInfo,
    /// `IPVS_CMD_GET_INFO` (15): version and connection table size.
    GetInfo,
    /// Any other command number (daemons, config, zero, flush).
    Other(u8),
}

impl From<IpvsCmd> for u8 {
    fn from(cmd: IpvsCmd) -> u8 {
        match cmd {
            IpvsCmd::NewService => 1,
            IpvsCmd::SetService => 2,
            IpvsCmd::DelService => 3,
            IpvsCmd::GetService => 4,
            IpvsCmd::NewDest => 5,
            IpvsCmd::SetDest => 6,
            IpvsCmd::DelDest => 7,
            IpvsCmd::GetDest => 8,
            IpvsCmd::SetInfo => 14,
            IpvsCmd::GetInfo => 15,
            IpvsCmd::Other(n) => n,
        }
    }
}

impl From<u8> for IpvsCmd {
    fn from(n: u8) -> IpvsCmd {
        match n {
            1 => IpvsCmd::NewService,
            2 => IpvsCmd::SetService,
            3 => IpvsCmd::DelService,
            4 => IpvsCmd::GetService,
            5 => IpvsCmd::NewDest,
            6 => IpvsCmd::SetDest,
            7 => IpvsCmd::DelDest,
            8 => IpvsCmd::GetDest,
            14 => IpvsCmd::SetInfo,
            15 => IpvsCmd::GetInfo,
            n => IpvsCmd::Other(n),
        }
    }
}

/// One IPVS generic-netlink payload (after the `genlmsghdr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsCtrl {
    /// The command (also written in the generic-netlink header).
    pub cmd: IpvsCmd,
    /// Top-level attributes.
    pub attrs: Vec<CmdAttr>,
}

impl GenlFamily for IpvsCtrl {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }
    fn command(&self) -> u8 {
        self.cmd.into()
    }
    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsCtrl {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsCtrl {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = IpvsCmd::from(header.cmd);
        let info = matches!(cmd, IpvsCmd::GetInfo | IpvsCmd::SetInfo);
        let attrs = parse_list(buf, |nla| CmdAttr::parse(nla, info))?;
        Ok(IpvsCtrl { cmd, attrs })
    }
}

/// Top-level attributes (`IPVS_CMD_ATTR_*`, or `IPVS_INFO_ATTR_*` in GET_INFO replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdAttr {
    /// `IPVS_CMD_ATTR_SERVICE`: nested service attributes.
    Service(Vec<SvcAttr>),
    /// `IPVS_CMD_ATTR_DEST`: nested destination attributes.
    Dest(Vec<DestAttr>),
    /// `IPVS_INFO_ATTR_VERSION` (GET_INFO replies): 0x00MMmmpp.
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (GET_INFO replies).
    InfoConnTabSize(u32),
    /// Anything else, kept as is.
    Other(DefaultNla),
}

impl CmdAttr {
    fn parse(nla: &NlaBuffer<&[u8]>, info: bool) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match (info, nla.kind()) {
            (true, INFO_ATTR_VERSION) => CmdAttr::InfoVersion(ne_u32(v)?),
            (true, INFO_ATTR_CONN_TAB_SIZE) => CmdAttr::InfoConnTabSize(ne_u32(v)?),
            (false, CMD_ATTR_SERVICE) => CmdAttr::Service(parse_list(v, SvcAttr::parse)?),
            (false, CMD_ATTR_DEST) => CmdAttr::Dest(parse_list(v, DestAttr::parse)?),
            _ => CmdAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(a) => a.as_slice().buffer_len(),
            CmdAttr::Dest(a) => a.as_slice().buffer_len(),
            CmdAttr::InfoVersion(_) | CmdAttr::InfoConnTabSize(_) => 4,
            CmdAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => CMD_ATTR_SERVICE | NLA_F_NESTED,
            CmdAttr::Dest(_) => CMD_ATTR_DEST | NLA_F_NESTED,
            CmdAttr::InfoVersion(_) => INFO_ATTR_VERSION,
            CmdAttr::InfoConnTabSize(_) => INFO_ATTR_CONN_TAB_SIZE,
            CmdAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            CmdAttr::Service(a) => a.as_slice().emit(buf),
            CmdAttr::Dest(a) => a.as_slice().emit(buf),
            CmdAttr::InfoVersion(v) | CmdAttr::InfoConnTabSize(v) => put(buf, &v.to_ne_bytes()),
            CmdAttr::Other(n) => n.emit_value(buf),
        }
    }
}

/// `struct ip_vs_flags { __u32 flags; __u32 mask; }`: bits in `mask` are set to `flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcFlags {
    /// Flag values (`IP_VS_SVC_F_*`).
    pub flags: u32,
    /// Which flags to change.
    pub mask: u32,
}

/// Service attributes (`IPVS_SVC_ATTR_*`), nested in [`CmdAttr::Service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvcAttr {
    /// `AF` (u16): AF_INET or AF_INET6.
    Af(u16),
    /// `PROTOCOL` (u16): IPPROTO_TCP, _UDP, _SCTP.
    Protocol(u16),
    /// `ADDR`: `union nf_inet_addr`, 16 bytes (IPv4 in the first 4).
    Addr([u8; 16]),
    /// `PORT`: network byte order on the wire; host order here.
    Port(u16),
    /// `FWMARK` (u32).
    Fwmark(u32),
    /// `SCHED_NAME`: NUL-terminated string.
    SchedName(String),
    /// `FLAGS`: `struct ip_vs_flags`.
    Flags(SvcFlags),
    /// `TIMEOUT` (u32): persistence timeout in seconds.
    Timeout(u32),
    /// `NETMASK` (raw 4 bytes): an IPv4 mask in network order, or an IPv6 prefix length
    /// as a host-order u32 (the kernel compares `__be32` against 1..128).
    Netmask([u8; 4]),
    /// `STATS`: 32-bit counters (bytes are 64-bit).
    Stats(Vec<StatsAttr>),
    /// `PE_NAME`: persistence engine name.
    PeName(String),
    /// `STATS64`: 64-bit counters.
    Stats64(Vec<StatsAttr>),
    /// Anything else, kept as is.
    Other(DefaultNla),
}

impl SvcAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            SVC_ATTR_AF => SvcAttr::Af(ne_u16(v)?),
            SVC_ATTR_PROTOCOL => SvcAttr::Protocol(ne_u16(v)?),
            SVC_ATTR_ADDR => SvcAttr::Addr(addr16(v)?),
            SVC_ATTR_PORT => SvcAttr::Port(be_u16(v)?),
            SVC_ATTR_FWMARK => SvcAttr::Fwmark(ne_u32(v)?),
            SVC_ATTR_SCHED_NAME => SvcAttr::SchedName(c_string(v)?),
            SVC_ATTR_FLAGS => {
                if v.len() < 8 {
                    return Err(DecodeError::invalid_number(8, v.len()));
                }
                SvcAttr::Flags(SvcFlags {
                    flags: ne_u32(&v[..4])?,
                    mask: ne_u32(&v[4..8])?,
                })
            }
            SVC_ATTR_TIMEOUT => SvcAttr::Timeout(ne_u32(v)?),
            SVC_ATTR_NETMASK => SvcAttr::Netmask(
                v.try_into()
                    .map_err(|_| DecodeError::invalid_number(4, v.len()))?,
            ),
            SVC_ATTR_STATS => SvcAttr::Stats(parse_list(v, StatsAttr::parse)?),
            SVC_ATTR_PE_NAME => SvcAttr::PeName(c_string(v)?),
            SVC_ATTR_STATS64 => SvcAttr::Stats64(parse_list(v, StatsAttr::parse)?),
            _ => SvcAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Addr(_) => 16,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => s.len() + 1,
            SvcAttr::Flags(_) => 8,
            SvcAttr::Stats(a) | SvcAttr::Stats64(a) => a.as_slice().buffer_len(),
            SvcAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => SVC_ATTR_AF,
            SvcAttr::Protocol(_) => SVC_ATTR_PROTOCOL,
            SvcAttr::Addr(_) => SVC_ATTR_ADDR,
            SvcAttr::Port(_) => SVC_ATTR_PORT,
            SvcAttr::Fwmark(_) => SVC_ATTR_FWMARK,
            SvcAttr::SchedName(_) => SVC_ATTR_SCHED_NAME,
            SvcAttr::Flags(_) => SVC_ATTR_FLAGS,
            SvcAttr::Timeout(_) => SVC_ATTR_TIMEOUT,
            SvcAttr::Netmask(_) => SVC_ATTR_NETMASK,
            SvcAttr::Stats(_) => SVC_ATTR_STATS | NLA_F_NESTED,
            SvcAttr::PeName(_) => SVC_ATTR_PE_NAME,
            SvcAttr::Stats64(_) => SVC_ATTR_STATS64 | NLA_F_NESTED,
            SvcAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => put(buf, &v.to_ne_bytes()),
            SvcAttr::Port(v) => put(buf, &v.to_be_bytes()),
            SvcAttr::Addr(a) => put(buf, a),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) => put(buf, &v.to_ne_bytes()),
            SvcAttr::Netmask(m) => put(buf, m),
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => put_c_string(buf, s),
            SvcAttr::Flags(f) => {
                put(buf, &f.flags.to_ne_bytes());
                if let Some(rest) = buf.get_mut(4..) {
                    put(rest, &f.mask.to_ne_bytes());
                }
            }
            SvcAttr::Stats(a) | SvcAttr::Stats64(a) => a.as_slice().emit(buf),
            SvcAttr::Other(n) => n.emit_value(buf),
        }
    }
}

/// Destination attributes (`IPVS_DEST_ATTR_*`), nested in [`CmdAttr::Dest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAttr {
    /// `ADDR`: 16 bytes (IPv4 in the first 4).
    Addr([u8; 16]),
    /// `PORT`: network byte order on the wire; host order here.
    Port(u16),
    /// `FWD_METHOD` (u32): `IP_VS_CONN_F_{MASQ,LOCALNODE,TUNNEL,DROUTE}`.
    FwdMethod(u32),
    /// `WEIGHT` (u32, an int in the kernel).
    Weight(u32),
    /// `U_THRESH` (u32): upper connection threshold, 0 = none.
    UThresh(u32),
    /// `L_THRESH` (u32): lower connection threshold, 0 = none.
    LThresh(u32),
    /// `ACTIVE_CONNS` (u32, read only).
    ActiveConns(u32),
    /// `INACT_CONNS` (u32, read only).
    InactConns(u32),
    /// `PERSIST_CONNS` (u32, read only).
    PersistConns(u32),
    /// `STATS`: 32-bit counters.
    Stats(Vec<StatsAttr>),
    /// `ADDR_FAMILY` (u16): family of `ADDR` (may differ from the service's for TUN).
    AddrFamily(u16),
    /// `STATS64`: 64-bit counters.
    Stats64(Vec<StatsAttr>),
    /// Anything else (tunnel type, port, flags...), kept as is.
    Other(DefaultNla),
}

impl DestAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            DEST_ATTR_ADDR => DestAttr::Addr(addr16(v)?),
            DEST_ATTR_PORT => DestAttr::Port(be_u16(v)?),
            DEST_ATTR_FWD_METHOD => DestAttr::FwdMethod(ne_u32(v)?),
            DEST_ATTR_WEIGHT => DestAttr::Weight(ne_u32(v)?),
            DEST_ATTR_U_THRESH => DestAttr::UThresh(ne_u32(v)?),
            DEST_ATTR_L_THRESH => DestAttr::LThresh(ne_u32(v)?),
            DEST_ATTR_ACTIVE_CONNS => DestAttr::ActiveConns(ne_u32(v)?),
            DEST_ATTR_INACT_CONNS => DestAttr::InactConns(ne_u32(v)?),
            DEST_ATTR_PERSIST_CONNS => DestAttr::PersistConns(ne_u32(v)?),
            DEST_ATTR_STATS => DestAttr::Stats(parse_list(v, StatsAttr::parse)?),
            DEST_ATTR_ADDR_FAMILY => DestAttr::AddrFamily(ne_u16(v)?),
            DEST_ATTR_STATS64 => DestAttr::Stats64(parse_list(v, StatsAttr::parse)?),
            _ => DestAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) => 2,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats(a) | DestAttr::Stats64(a) => a.as_slice().buffer_len(),
            DestAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => DEST_ATTR_ADDR,
            DestAttr::Port(_) => DEST_ATTR_PORT,
            DestAttr::FwdMethod(_) => DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => DEST_ATTR_WEIGHT,
            DestAttr::UThresh(_) => DEST_ATTR_U_THRESH,
            DestAttr::LThresh(_) => DEST_ATTR_L_THRESH,
            DestAttr::ActiveConns(_) => DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactConns(_) => DEST_ATTR_INACT_CONNS,
            DestAttr::PersistConns(_) => DEST_ATTR_PERSIST_CONNS,
            DestAttr::Stats(_) => DEST_ATTR_STATS | NLA_F_NESTED,
            DestAttr::AddrFamily(_) => DEST_ATTR_ADDR_FAMILY,
            DestAttr::Stats64(_) => DEST_ATTR_STATS64 | NLA_F_NESTED,
            DestAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => put(buf, a),
            DestAttr::Port(v) => put(buf, &v.to_be_bytes()),
            DestAttr::AddrFamily(v) => put(buf, &v.to_ne_bytes()),
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => put(buf, &v.to_ne_bytes()),
            DestAttr::Stats(a) | DestAttr::Stats64(a) => a.as_slice().emit(buf),
            DestAttr::Other(n) => n.emit_value(buf),
        }
    }
}

/// One counter of a `STATS`/`STATS64` nest (`IPVS_STATS_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAttr {
    /// A counter: `kind` is the attribute number; `wide` is true for a u64 on the wire.
    Counter {
        /// `IPVS_STATS_ATTR_*` number.
        kind: u16,
        /// Value.
        value: u64,
        /// 8 bytes on the wire (else 4).
        wide: bool,
    },
    /// Anything else (the zero-length `PAD` the kernel adds before 64-bit values).
    Other(DefaultNla),
}

impl StatsAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match v.len() {
            4 => StatsAttr::Counter {
                kind: nla.kind(),
                value: u64::from(ne_u32(v)?),
                wide: false,
            },
            8 => StatsAttr::Counter {
                kind: nla.kind(),
                value: ne_u64(v)?,
                wide: true,
            },
            _ => StatsAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match self {
            StatsAttr::Counter { wide: true, .. } => 8,
            StatsAttr::Counter { wide: false, .. } => 4,
            StatsAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            StatsAttr::Counter { kind, .. } => *kind,
            StatsAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            StatsAttr::Counter {
                value, wide: true, ..
            } => put(buf, &value.to_ne_bytes()),
            StatsAttr::Counter {
                value, wide: false, ..
            } => {
                // A 32-bit counter: the value came from a u32 (or saturates).
                let v = u32::try_from(*value).unwrap_or(u32::MAX);
                put(buf, &v.to_ne_bytes())
            }
            StatsAttr::Other(n) => n.emit_value(buf),
        }
    }
}

fn parse_list<T>(
    buf: &[u8],
    f: impl Fn(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|nla| f(&nla)))
        .collect()
}

/// Copy `src` into the front of `buf` (buffers are sized by `value_len`, so it fits).
fn put(buf: &mut [u8], src: &[u8]) {
    let n = src.len().min(buf.len());
    buf[..n].copy_from_slice(&src[..n]);
}

fn put_c_string(buf: &mut [u8], s: &str) {
    put(buf, s.as_bytes());
    if let Some(b) = buf.get_mut(s.len()) {
        *b = 0;
    }
}

fn ne_u16(v: &[u8]) -> Result<u16, DecodeError> {
    Ok(u16::from_ne_bytes(
        v.try_into()
            .map_err(|_| DecodeError::invalid_number(2, v.len()))?,
    ))
}

fn be_u16(v: &[u8]) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(
        v.try_into()
            .map_err(|_| DecodeError::invalid_number(2, v.len()))?,
    ))
}

fn ne_u32(v: &[u8]) -> Result<u32, DecodeError> {
    Ok(u32::from_ne_bytes(
        v.try_into()
            .map_err(|_| DecodeError::invalid_number(4, v.len()))?,
    ))
}

fn ne_u64(v: &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_ne_bytes(
        v.try_into()
            .map_err(|_| DecodeError::invalid_number(8, v.len()))?,
    ))
}

/// An address attribute: 16 bytes, or 4 for an IPv4 address from a lenient sender.
fn addr16(v: &[u8]) -> Result<[u8; 16], DecodeError> {
    let mut a = [0u8; 16];
    match v.len() {
        4 | 16 => {
            a[..v.len()].copy_from_slice(v);
            Ok(a)
        }
        n => Err(DecodeError::invalid_ip_address(n)),
    }
}

fn c_string(v: &[u8]) -> Result<String, DecodeError> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    Ok(String::from_utf8(v[..end].to_vec())?)
}

// ---------------------------------------------------------------------------------------
// Mapping between the contract's types and attribute lists
// ---------------------------------------------------------------------------------------

fn family_of(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn service_af(key: &ServiceKey) -> u16 {
    match key {
        ServiceKey::Addr { addr, .. } => family_of(addr),
        ServiceKey::Fwmark { ipv6: true, .. } => AF_INET6,
        ServiceKey::Fwmark { ipv6: false, .. } => AF_INET,
    }
}

fn addr_bytes(addr: &IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => a = v6.octets(),
    }
    a
}

/// What IPVS refused, or reported in a shape we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpvsError {
    /// An address family other than AF_INET and AF_INET6.
    #[error("unknown address family {0}")]
    Family(u16),
    /// A protocol other than TCP, UDP and SCTP.
    #[error("unknown protocol {0}")]
    Protocol(u16),
    /// A forwarding method other than masquerade, local, direct routing and tunnel.
    #[error("unknown forwarding method {0}")]
    Forward(u32),
    /// A service or destination without an attribute it needs (names what is missing).
    #[error("{0}")]
    Incomplete(&'static str),
    /// The request could not be sent on the generic-netlink socket.
    #[error("netlink: {0}")]
    Send(String),
    /// The kernel answered with an error (its errno text).
    #[error("{0}")]
    Kernel(String),
}

fn addr_from(af: u16, a: &[u8; 16]) -> Result<IpAddr, IpvsError> {
    match af {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*a))),
        other => Err(IpvsError::Family(other)),
    }
}

fn proto_number(p: Proto) -> u16 {
    match p {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
        Proto::Sctp => IPPROTO_SCTP,
    }
}

fn proto_from(n: u16) -> Result<Proto, IpvsError> {
    match n {
        IPPROTO_TCP => Ok(Proto::Tcp),
        IPPROTO_UDP => Ok(Proto::Udp),
        IPPROTO_SCTP => Ok(Proto::Sctp),
        other => Err(IpvsError::Protocol(other)),
    }
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
        Proto::Sctp => "SCTP",
    }
}

/// `IP_VS_CONN_F_*` forwarding method of a [`Forward`].
pub fn fwd_method(f: Forward) -> u32 {
    match f {
        Forward::Nat => IP_VS_CONN_F_MASQ,
        Forward::Dr => IP_VS_CONN_F_DROUTE,
        Forward::Tun => IP_VS_CONN_F_TUNNEL,
    }
}

/// [`Forward`] of a kernel forwarding method. LOCALNODE (the kernel's "Local": the real
/// server is this host) has no variant of its own and reads as [`Forward::Nat`].
pub fn forward_from(method: u32) -> Result<Forward, IpvsError> {
    match method & IP_VS_CONN_F_FWD_MASK {
        IP_VS_CONN_F_MASQ | IP_VS_CONN_F_LOCALNODE => Ok(Forward::Nat),
        IP_VS_CONN_F_DROUTE => Ok(Forward::Dr),
        IP_VS_CONN_F_TUNNEL => Ok(Forward::Tun),
        other => Err(IpvsError::Forward(other)),
    }
}

/// The object name of a service: "192.0.2.10:80/TCP", "[2001:db8::10]:80/UDP",
/// "fwmark 7/IPv4".
pub fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { proto, addr, port } => {
            format!("{}/{}", SocketAddr::new(*addr, *port), proto_name(*proto))
        }
        ServiceKey::Fwmark { mark, ipv6 } => {
            format!("fwmark {mark}/{}", if *ipv6 { "IPv6" } else { "IPv4" })
        }
    }
}

/// The object name of a destination: "192.0.2.10:80/TCP -> 198.51.100.11:8080".
pub fn dest_name(key: &ServiceKey, addr: IpAddr, port: u16) -> String {
    format!("{} -> {}", service_name(key), SocketAddr::new(addr, port))
}

/// The attributes that identify a service (enough for DEL_SERVICE and as the parent of
/// destination commands).
pub fn service_key_attrs(key: &ServiceKey) -> Vec<SvcAttr> {
    match key {
        ServiceKey::Addr { proto, addr, port } => vec![
            SvcAttr::Af(family_of(addr)),
            SvcAttr::Protocol(proto_number(*proto)),
            SvcAttr::Addr(addr_bytes(addr)),
            SvcAttr::Port(*port),
        ],
        ServiceKey::Fwmark { mark, .. } => {
            vec![SvcAttr::Af(service_af(key)), SvcAttr::Fwmark(*mark)]
        }
    }
}

/// Prefix length of the address family of a service.
fn full_prefix(af: u16) -> u8 {
    if af == AF_INET6 {
        128
    } else {
        32
    }
}

/// The NETMASK attribute value for a granularity (None: a single address).
fn netmask_bytes(af: u16, granularity: Option<u8>) -> [u8; 4] {
    let plen = granularity.unwrap_or(full_prefix(af)).min(full_prefix(af));
    if af == AF_INET6 {
        u32::from(plen).to_ne_bytes()
    } else {
        let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
        mask.to_be_bytes()
    }
}

/// The granularity of a NETMASK attribute (None for a single address).
fn granularity_from(af: u16, raw: [u8; 4]) -> Option<u8> {
    let plen = if af == AF_INET6 {
        u8::try_from(u32::from_ne_bytes(raw).min(128)).unwrap_or(128)
    } else {
        // A contiguous mask: count its leading ones (at most 32).
        u8::try_from(u32::from_be_bytes(raw).leading_ones()).unwrap_or(32)
    };
    (plen < full_prefix(af)).then_some(plen)
}

/// Everything NEW_SERVICE and SET_SERVICE need: the key, scheduler, flags (mask all:
/// the service is ours, so it gets exactly the flags we want), timeout and netmask.
pub fn service_attrs(svc: &Service) -> Vec<SvcAttr> {
    let af = service_af(&svc.key);
    let mut attrs = service_key_attrs(&svc.key);
    let (flags, timeout) = match svc.persistence {
        Some(t) => (
            IP_VS_SVC_F_PERSISTENT,
            u32::try_from(t.as_secs()).unwrap_or(u32::MAX),
        ),
        None => (0, 0),
    };
    attrs.push(SvcAttr::SchedName(svc.scheduler.clone()));
    attrs.push(SvcAttr::Flags(SvcFlags {
        flags,
        mask: u32::MAX,
    }));
    attrs.push(SvcAttr::Timeout(timeout));
    attrs.push(SvcAttr::Netmask(netmask_bytes(
        af,
        svc.persistence_granularity,
    )));
    attrs
}

/// Everything NEW_DEST and SET_DEST need (thresholds 0: none).
pub fn dest_attrs(dest: &Destination) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(&dest.addr)),
        DestAttr::Port(dest.port),
        DestAttr::FwdMethod(fwd_method(dest.forward)),
        DestAttr::Weight(dest.weight),
        DestAttr::UThresh(0),
        DestAttr::LThresh(0),
        DestAttr::AddrFamily(family_of(&dest.addr)),
    ]
}

/// What DEL_DEST needs: the destination's address and port.
fn dest_key_attrs(addr: IpAddr, port: u16) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(&addr)),
        DestAttr::Port(port),
        DestAttr::AddrFamily(family_of(&addr)),
    ]
}

/// Counters of a STATS64 (preferred) or STATS nest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

impl Counters {
    fn from_attrs(attrs: &[StatsAttr]) -> Counters {
        let mut c = Counters::default();
        for a in attrs {
            if let StatsAttr::Counter { kind, value, .. } = a {
                match *kind {
                    STATS_ATTR_CONNS => c.conns = *value,
                    STATS_ATTR_INPKTS => c.inpkts = *value,
                    STATS_ATTR_OUTPKTS => c.outpkts = *value,
                    STATS_ATTR_INBYTES => c.inbytes = *value,
                    STATS_ATTR_OUTBYTES => c.outbytes = *value,
                    _ => {}
                }
            }
        }
        c
    }

    fn into_stats(self, object: String) -> Stats {
        Stats {
            object,
            connections: self.conns,
            packets_in: self.inpkts,
            packets_out: self.outpkts,
            bytes_in: self.inbytes,
            bytes_out: self.outbytes,
        }
    }
}

/// A service as the kernel reports it (destinations empty) with its counters.
pub fn decode_service(attrs: &[SvcAttr]) -> Result<(Service, Counters), IpvsError> {
    let mut af = None;
    let (mut proto, mut addr, mut port, mut fwmark) = (None, None, None, None);
    let (mut sched, mut flags, mut timeout, mut netmask) = (None, 0u32, 0u32, None);
    let (mut stats, mut stats64) = (None, None);
    for a in attrs {
        match a {
            SvcAttr::Af(v) => af = Some(*v),
            SvcAttr::Protocol(v) => proto = Some(*v),
            SvcAttr::Addr(v) => addr = Some(*v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => fwmark = Some(*v),
            SvcAttr::SchedName(s) => sched = Some(s.clone()),
            SvcAttr::Flags(f) => flags = f.flags,
            SvcAttr::Timeout(v) => timeout = *v,
            SvcAttr::Netmask(m) => netmask = Some(*m),
            SvcAttr::Stats(s) => stats = Some(Counters::from_attrs(s)),
            SvcAttr::Stats64(s) => stats64 = Some(Counters::from_attrs(s)),
            SvcAttr::PeName(_) | SvcAttr::Other(_) => {}
        }
    }
    let af = af.ok_or(IpvsError::Incomplete("service without address family"))?;
    // The kernel reports FWMARK 0 together with the address of an address service.
    let key = match (fwmark, proto, addr, port) {
        (Some(mark), _, _, _) if mark != 0 => ServiceKey::Fwmark {
            mark,
            ipv6: af == AF_INET6,
        },
        (_, Some(p), Some(a), Some(port)) => ServiceKey::Addr {
            proto: proto_from(p)?,
            addr: addr_from(af, &a)?,
            port,
        },
        _ => {
            return Err(IpvsError::Incomplete(
                "service without fwmark or protocol/address/port",
            ))
        }
    };
    let persistent = flags & IP_VS_SVC_F_PERSISTENT != 0;
    let svc = Service {
        key,
        scheduler: sched.unwrap_or_default(),
        persistence: persistent.then(|| Duration::from_secs(u64::from(timeout))),
        persistence_granularity: match (persistent, netmask) {
            (true, Some(m)) => granularity_from(af, m),
            _ => None,
        },
        destinations: Vec::new(),
    };
    Ok((svc, stats64.or(stats).unwrap_or_default()))
}

/// A destination as the kernel reports it, with its counters.
pub fn decode_dest(
    attrs: &[DestAttr],
    service_af: u16,
) -> Result<(Destination, Counters), IpvsError> {
    let (mut addr, mut port, mut fwd, mut weight, mut af) = (None, None, None, 0u32, None);
    let (mut stats, mut stats64) = (None, None);
    for a in attrs {
        match a {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => fwd = Some(*v),
            DestAttr::Weight(v) => weight = *v,
            DestAttr::AddrFamily(v) => af = Some(*v),
            DestAttr::Stats(s) => stats = Some(Counters::from_attrs(s)),
            DestAttr::Stats64(s) => stats64 = Some(Counters::from_attrs(s)),
            _ => {}
        }
    }
    let addr = addr.ok_or(IpvsError::Incomplete("destination without address"))?;
    let dest = Destination {
        // Kernels before ADDR_FAMILY report destinations in the service's family.
        addr: addr_from(af.unwrap_or(service_af), &addr)?,
        port: port.ok_or(IpvsError::Incomplete("destination without port"))?,
        weight,
        forward: forward_from(fwd.unwrap_or(IP_VS_CONN_F_MASQ))?,
    };
    Ok((dest, stats64.or(stats).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------
// Pure reconcile: diff
// ---------------------------------------------------------------------------------------

/// One change to the kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// NEW_SERVICE (its destinations follow as [`Op::AddDest`]).
    AddService(Service),
    /// SET_SERVICE: scheduler or persistence changed.
    SetService(Service),
    /// DEL_SERVICE (the kernel drops its destinations with it).
    DelService(ServiceKey),
    /// NEW_DEST.
    AddDest(ServiceKey, Destination),
    /// SET_DEST: weight or forwarding method changed.
    SetDest(ServiceKey, Destination),
    /// DEL_DEST.
    DelDest(ServiceKey, Destination),
}

impl Op {
    /// The object this op changes, named as in [`ObjectStatus::object`].
    pub fn object(&self) -> String {
        match self {
            Op::AddService(s) | Op::SetService(s) => service_name(&s.key),
            Op::DelService(k) => service_name(k),
            Op::AddDest(k, d) | Op::SetDest(k, d) | Op::DelDest(k, d) => {
                dest_name(k, d.addr, d.port)
            }
        }
    }
}

impl Op {
    /// The phase of [`diff`]'s order this op belongs to.
    fn phase(&self) -> u8 {
        match self {
            Op::DelService(_) => 0,
            Op::DelDest(..) => 1,
            Op::AddService(_) | Op::SetService(_) => 2,
            Op::SetDest(..) => 3,
            Op::AddDest(..) => 4,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            Op::AddService(_) | Op::AddDest(..) => "add",
            Op::SetService(_) | Op::SetDest(..) => "set",
            Op::DelService(_) | Op::DelDest(..) => "del",
        };
        write!(f, "{verb} {}", self.object())
    }
}

/// What the service-level comparison looks at, normalised: granularity only matters
/// for a persistent service, and a full-length prefix is "none".
fn service_shape(s: &Service) -> (&str, Option<Duration>, Option<u8>) {
    let af = service_af(&s.key);
    let gran = match s.persistence {
        Some(_) => s.persistence_granularity.filter(|&p| p < full_prefix(af)),
        None => None,
    };
    (s.scheduler.as_str(), s.persistence, gran)
}

/// The minimal changes that make `current` match `desired` for our services.
///
/// `owned` is the set of keys we may delete when they are not desired; a desired key is
/// always ours. Services of `current` that are neither desired nor owned are never
/// touched. Order: service deletions, destination deletions, service changes and
/// additions, destination changes, destination additions (so a replaced destination is
/// gone before its successor arrives).
pub fn diff(current: &[Service], desired: &[Service], owned: &BTreeSet<ServiceKey>) -> Vec<Op> {
    let cur: BTreeMap<&ServiceKey, &Service> = current.iter().map(|s| (&s.key, s)).collect();
    let want: BTreeMap<&ServiceKey, &Service> = desired.iter().map(|s| (&s.key, s)).collect();
    let (mut del_svc, mut del_dest, mut svc_ops, mut set_dest, mut add_dest) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());

    for key in cur.keys() {
        if !want.contains_key(key) && owned.contains(*key) {
            del_svc.push(Op::DelService((*key).clone()));
        }
    }
    for (key, d) in &want {
        let Some(c) = cur.get(key) else {
            svc_ops.push(Op::AddService(Service {
                destinations: Vec::new(),
                ..(*d).clone()
            }));
            for dest in &d.destinations {
                add_dest.push(Op::AddDest((*key).clone(), dest.clone()));
            }
            continue;
        };
        if service_shape(c) != service_shape(d) {
            svc_ops.push(Op::SetService(Service {
                destinations: Vec::new(),
                ..(*d).clone()
            }));
        }
        let have: BTreeMap<(IpAddr, u16), &Destination> = c
            .destinations
            .iter()
            .map(|x| ((x.addr, x.port), x))
            .collect();
        let need: BTreeMap<(IpAddr, u16), &Destination> = d
            .destinations
            .iter()
            .map(|x| ((x.addr, x.port), x))
            .collect();
        for (id, h) in &have {
            if !need.contains_key(id) {
                del_dest.push(Op::DelDest((*key).clone(), (*h).clone()));
            }
        }
        for (id, n) in &need {
            match have.get(id) {
                None => add_dest.push(Op::AddDest((*key).clone(), (*n).clone())),
                Some(h) if h.weight != n.weight || h.forward != n.forward => {
                    set_dest.push(Op::SetDest((*key).clone(), (*n).clone()))
                }
                Some(_) => {}
            }
        }
    }
    del_svc
        .into_iter()
        .chain(del_dest)
        .chain(svc_ops)
        .chain(set_dest)
        .chain(add_dest)
        .collect()
}

/// Drops what the kernel cannot take: duplicate services, duplicate destinations, a
/// granularity longer than the address. Returns the valid table, the keys of rejected
/// services (left untouched in the kernel) and an error status per rejected object.
fn validate(desired: &[Service]) -> (Vec<Service>, BTreeSet<ServiceKey>, Vec<ObjectStatus>) {
    let mut seen = BTreeSet::new();
    let mut rejected = BTreeSet::new();
    let mut errors = Vec::new();
    let mut valid: Vec<Service> = Vec::new();
    for s in desired {
        let name = service_name(&s.key);
        if !seen.insert(s.key.clone()) {
            errors.push(ObjectStatus {
                object: name,
                result: Err("duplicate service in the desired table".into()),
            });
            continue;
        }
        let af = service_af(&s.key);
        if let Some(g) = s.persistence_granularity.filter(|&g| g > full_prefix(af)) {
            errors.push(ObjectStatus {
                object: name,
                result: Err(format!(
                    "persistence granularity /{g} is longer than the address"
                )),
            });
            rejected.insert(s.key.clone());
            continue;
        }
        let mut ids = BTreeSet::new();
        let mut svc = Service {
            destinations: Vec::new(),
            ..s.clone()
        };
        for d in &s.destinations {
            if ids.insert((d.addr, d.port)) {
                svc.destinations.push(d.clone());
            } else {
                errors.push(ObjectStatus {
                    object: dest_name(&s.key, d.addr, d.port),
                    result: Err("duplicate destination in the desired table".into()),
                });
            }
        }
        valid.push(svc);
    }
    (valid, rejected, errors)
}

// ---------------------------------------------------------------------------------------
// The data plane over netlink
// ---------------------------------------------------------------------------------------

/// Version and connection table size (`IPVS_CMD_GET_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpvsInfo {
    /// `IP_VS_VERSION_CODE`: 0x00MMmmpp.
    pub version: u32,
    /// Connection hash table size.
    pub conn_tab_size: u32,
}

impl fmt::Display for IpvsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.version;
        write!(
            f,
            "{}.{}.{} (size={})",
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff,
            self.conn_tab_size
        )
    }
}

type Handle = ConnectionHandle<GenlMessage<IpvsCtrl>>;

/// Requests of one reconcile phase kept in flight on the socket at once.
const IN_FLIGHT: usize = 32;

/// A kernel service with its destinations and every counter.
struct Live {
    service: Service,
    counters: Counters,
    dest_counters: Vec<Counters>,
}

/// The IPVS [`DataPlane`]: one generic-netlink socket to the kernel's "IPVS" family.
/// See the module doc for which services it owns.
pub struct Ipvs {
    /// Requests go through this handle; the connection task runs beside it.
    handle: Handle,
    /// Dynamic id of the "IPVS" family.
    family_id: u16,
    /// The netlink connection task, aborted on drop.
    task: tokio::task::JoinHandle<()>,
    /// Services we may change or delete (see the module doc).
    owned: BTreeSet<ServiceKey>,
    /// What GET_INFO said at start.
    info: IpvsInfo,
    /// The changes the last `apply` made, for logs and tests.
    last_ops: Vec<String>,
}

impl Drop for Ipvs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn io_err(reason: impl fmt::Display) -> DataPlaneError {
    DataPlaneError::Io {
        backend: BACKEND,
        reason: reason.to_string(),
    }
}

impl Ipvs {
    /// Opens a generic-netlink socket and resolves the "IPVS" family. Fails with
    /// [`DataPlaneError::Unavailable`] when the kernel has no IPVS (module not loaded or
    /// not built). Must run inside a tokio runtime (the socket task is spawned on it).
    pub async fn new() -> Result<Ipvs, DataPlaneError> {
        let family_id = resolve_family().await?;
        let (conn, handle, _) =
            netlink_proto::new_connection::<GenlMessage<IpvsCtrl>>(NETLINK_GENERIC)
                .map_err(|e| io_err(format!("generic netlink socket: {e}")))?;
        let task = tokio::spawn(conn);
        let mut ipvs = Ipvs {
            handle,
            family_id,
            task,
            owned: BTreeSet::new(),
            info: IpvsInfo {
                version: 0,
                conn_tab_size: 0,
            },
            last_ops: Vec::new(),
        };
        let replies = ipvs
            .request(IpvsCmd::GetInfo, Vec::new(), NLM_F_REQUEST)
            .await
            .map_err(|e| DataPlaneError::Unavailable {
                backend: BACKEND,
                reason: format!("get info: {e}"),
            })?;
        for attr in replies.iter().flat_map(|r| &r.attrs) {
            match attr {
                CmdAttr::InfoVersion(v) => ipvs.info.version = *v,
                CmdAttr::InfoConnTabSize(v) => ipvs.info.conn_tab_size = *v,
                _ => {}
            }
        }
        Ok(ipvs)
    }

    /// What GET_INFO reported when the data plane opened.
    pub fn info(&self) -> IpvsInfo {
        self.info
    }

    /// The keys of the services this data plane owns now.
    pub fn owned(&self) -> &BTreeSet<ServiceKey> {
        &self.owned
    }

    /// Claims services created by an earlier run (for example from the state dir), so a
    /// later `apply` without them deletes them.
    pub fn adopt(&mut self, keys: impl IntoIterator<Item = ServiceKey>) {
        self.owned.extend(keys);
    }

    /// The changes the last [`DataPlane::apply`] made ("add 192.0.2.10:80/TCP", ...),
    /// empty when the kernel already matched.
    pub fn last_ops(&self) -> &[String] {
        &self.last_ops
    }

    /// Sends one request and collects the replies; `Err` carries the kernel's errno text.
    async fn request(
        &self,
        cmd: IpvsCmd,
        attrs: Vec<CmdAttr>,
        flags: u16,
    ) -> Result<Vec<IpvsCtrl>, IpvsError> {
        let mut genl = GenlMessage::from_payload(IpvsCtrl { cmd, attrs });
        genl.set_resolved_family_id(self.family_id);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = flags;
        msg.finalize();
        let mut replies = self
            .handle
            .request(msg, netlink_sys::SocketAddr::new(0, 0))
            .map_err(|e| IpvsError::Send(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m.payload),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(IpvsError::Kernel(e.to_io().to_string()))
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn change(&self, cmd: IpvsCmd, attrs: Vec<CmdAttr>) -> Result<(), IpvsError> {
        self.request(cmd, attrs, NLM_F_REQUEST | NLM_F_ACK)
            .await
            .map(|_| ())
    }

    /// Every service in the kernel (destinations not read).
    async fn dump_services(&self) -> Result<Vec<(Service, Counters)>, DataPlaneError> {
        let replies = self
            .request(IpvsCmd::GetService, Vec::new(), NLM_F_REQUEST | NLM_F_DUMP)
            .await
            .map_err(|e| io_err(format!("dump services: {e}")))?;
        let mut out = Vec::new();
        for attr in replies.iter().flat_map(|r| &r.attrs) {
            if let CmdAttr::Service(attrs) = attr {
                out.push(decode_service(attrs).map_err(io_err)?);
            }
        }
        Ok(out)
    }

    /// The destinations of one service.
    async fn dump_dests(
        &self,
        key: &ServiceKey,
    ) -> Result<Vec<(Destination, Counters)>, DataPlaneError> {
        let attrs = vec![CmdAttr::Service(service_key_attrs(key))];
        let replies = self
            .request(IpvsCmd::GetDest, attrs, NLM_F_REQUEST | NLM_F_DUMP)
            .await
            .map_err(|e| io_err(format!("dump destinations of {}: {e}", service_name(key))))?;
        let af = service_af(key);
        let mut out = Vec::new();
        for attr in replies.iter().flat_map(|r| &r.attrs) {
            if let CmdAttr::Dest(attrs) = attr {
                out.push(decode_dest(attrs, af).map_err(io_err)?);
            }
        }
        Ok(out)
    }

    /// The kernel services whose key passes `keep`, with destinations and counters,
    /// sorted by key (destinations by address and port).
    async fn live(&self, keep: impl Fn(&ServiceKey) -> bool) -> Result<Vec<Live>, DataPlaneError> {
        let mut out = Vec::new();
        for (mut service, counters) in self.dump_services().await? {
            if !keep(&service.key) {
                continue;
            }
            let mut dests = self.dump_dests(&service.key).await?;
            dests.sort_by_key(|(d, _)| (d.addr, d.port));
            let (ds, dc): (Vec<_>, Vec<_>) = dests.into_iter().unzip();
            service.destinations = ds;
            out.push(Live {
                service,
                counters,
                dest_counters: dc,
            });
        }
        out.sort_by(|a, b| a.service.key.cmp(&b.service.key));
        Ok(out)
    }

    async fn run(&self, op: &Op) -> Result<(), IpvsError> {
        match op {
            Op::AddService(s) => {
                self.change(
                    IpvsCmd::NewService,
                    vec![CmdAttr::Service(service_attrs(s))],
                )
                .await
            }
            Op::SetService(s) => {
                self.change(
                    IpvsCmd::SetService,
                    vec![CmdAttr::Service(service_attrs(s))],
                )
                .await
            }
            Op::DelService(k) => {
                self.change(
                    IpvsCmd::DelService,
                    vec![CmdAttr::Service(service_key_attrs(k))],
                )
                .await
            }
            Op::AddDest(k, d) | Op::SetDest(k, d) => {
                let cmd = if matches!(op, Op::AddDest(..)) {
                    IpvsCmd::NewDest
                } else {
                    IpvsCmd::SetDest
                };
                let attrs = vec![
                    CmdAttr::Service(service_key_attrs(k)),
                    CmdAttr::Dest(dest_attrs(d)),
                ];
                self.change(cmd, attrs).await
            }
            Op::DelDest(k, d) => {
                let attrs = vec![
                    CmdAttr::Service(service_key_attrs(k)),
                    CmdAttr::Dest(dest_key_attrs(d.addr, d.port)),
                ];
                self.change(IpvsCmd::DelDest, attrs).await
            }
        }
    }
}

impl DataPlane for Ipvs {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// Reads the kernel (our services and the desired ones), applies [`diff`] op by op
    /// and reports one status per desired service and destination, plus one per
    /// deletion. A service that could not be created makes its destinations fail
    /// without being tried.
    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError> {
        let (valid, rejected, mut statuses) = validate(desired);
        let wanted: BTreeSet<ServiceKey> = valid.iter().map(|s| s.key.clone()).collect();
        let owned = &self.owned;
        let current: Vec<Service> = self
            .live(|k| (wanted.contains(k) || owned.contains(k)) && !rejected.contains(k))
            .await?
            .into_iter()
            .map(|l| l.service)
            .collect();
        let deletable: BTreeSet<ServiceKey> = self.owned.difference(&rejected).cloned().collect();
        let ops = diff(&current, &valid, &deletable);

        let mut results: BTreeMap<String, Result<(), String>> = BTreeMap::new();
        let mut failed_services: BTreeMap<ServiceKey, String> = BTreeMap::new();
        let mut deleted: Vec<ServiceKey> = Vec::new();
        self.last_ops.clear();
        // Phases run one after the other (diff's order); the ops of one phase touch
        // distinct objects, so up to IN_FLIGHT of them are on the socket at once.
        for phase in ops.chunk_by(|a, b| a.phase() == b.phase()) {
            let this = &*self;
            let failed = &failed_services;
            let outcomes: Vec<Result<(), String>> =
                futures::stream::iter(phase.iter().map(|op| async move {
                    let parent_failure = match op {
                        Op::AddDest(k, _) | Op::SetDest(k, _) | Op::DelDest(k, _) => failed.get(k),
                        _ => None,
                    };
                    match parent_failure {
                        Some(e) => Err(format!("service not programmed: {e}")),
                        // The object's status text (ObjectStatus).
                        None => this.run(op).await.map_err(|e| e.to_string()),
                    }
                }))
                .buffered(IN_FLIGHT)
                .collect()
                .await;
            for (op, result) in phase.iter().zip(outcomes) {
                match (&result, op) {
                    // A service that could not be created has no destinations to
                    // program; one that exists but refused a change (say, an unknown
                    // scheduler) still gets its destinations reconciled.
                    (Err(e), Op::AddService(s)) => {
                        failed_services.insert(s.key.clone(), e.clone());
                    }
                    (Ok(()), Op::DelService(k)) => deleted.push(k.clone()),
                    _ => {}
                }
                if result.is_ok() {
                    self.last_ops.push(op.to_string());
                }
                results.insert(op.object(), result);
            }
        }

        // Ownership: desired keys become ours; deleted ones stop being ours.
        self.owned.extend(wanted.iter().cloned());
        for k in &deleted {
            self.owned.remove(k);
        }
        let live_keys: BTreeSet<&ServiceKey> = current.iter().map(|s| &s.key).collect();
        self.owned
            .retain(|k| wanted.contains(k) || live_keys.contains(k) || rejected.contains(k));

        for s in &valid {
            let name = service_name(&s.key);
            let result = results.remove(&name).unwrap_or(Ok(()));
            statuses.push(ObjectStatus {
                object: name,
                result,
            });
            for d in &s.destinations {
                let name = dest_name(&s.key, d.addr, d.port);
                let result = results.remove(&name).unwrap_or(Ok(()));
                statuses.push(ObjectStatus {
                    object: name,
                    result,
                });
            }
        }
        // What is left are deletions.
        statuses.extend(
            results
                .into_iter()
                .map(|(object, result)| ObjectStatus { object, result }),
        );
        Ok(statuses)
    }

    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
        let owned = &self.owned;
        Ok(self
            .live(|k| owned.contains(k))
            .await?
            .into_iter()
            .map(|l| l.service)
            .collect())
    }

    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
        let owned = &self.owned;
        let mut out = Vec::new();
        for l in self.live(|k| owned.contains(k)).await? {
            out.push(l.counters.into_stats(service_name(&l.service.key)));
            for (d, c) in l.service.destinations.iter().zip(l.dest_counters) {
                out.push(c.into_stats(dest_name(&l.service.key, d.addr, d.port)));
            }
        }
        Ok(out)
    }
}

/// `CTRL_CMD_GETFAMILY` for "IPVS" on a short-lived nlctrl socket.
async fn resolve_family() -> Result<u16, DataPlaneError> {
    let (conn, handle, _) = netlink_proto::new_connection::<GenlMessage<GenlCtrl>>(NETLINK_GENERIC)
        .map_err(|e| io_err(format!("generic netlink socket: {e}")))?;
    let task = tokio::spawn(conn);
    let mut msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_string())],
    }));
    msg.header.flags = NLM_F_REQUEST;
    msg.finalize();
    let result = async {
        let mut replies = handle
            .request(msg, netlink_sys::SocketAddr::new(0, 0))
            .map_err(|e| io_err(format!("nlctrl: {e}")))?;
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => {
                    for nla in m.payload.nlas {
                        if let GenlCtrlAttrs::FamilyId(id) = nla {
                            return Ok(id);
                        }
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(DataPlaneError::Unavailable {
                        backend: BACKEND,
                        reason: format!("generic netlink family IPVS: {}", e.to_io()),
                    })
                }
                _ => {}
            }
        }
        Err(DataPlaneError::Unavailable {
            backend: BACKEND,
            reason: "generic netlink family IPVS: no family id in the reply".into(),
        })
    }
    .await;
    task.abort();
    result
}

// Byte vectors below are written from the layout of include/uapi/linux/ip_vs.h and
// net/netfilter/ipvs/ip_vs_ctl.c (attribute headers and u16/u32/u64 values are host
// order, little endian here; ports are network order).
#[cfg(test)]
#[cfg(target_endian = "little")]
mod tests {
    use super::*;

    const FAMILY: u16 = 0x20;

    /// A netlink attribute by hand: len, type, value, zero padding to 4 bytes.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u16).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(value);
        v.resize(len.div_ceil(4) * 4, 0);
        v
    }

    fn emit(ctrl: IpvsCtrl) -> Vec<u8> {
        let mut m = GenlMessage::from_payload(ctrl);
        m.set_resolved_family_id(FAMILY);
        let mut buf = vec![0u8; Emitable::buffer_len(&m)];
        m.emit(&mut buf);
        buf
    }

    fn parse(buf: &[u8]) -> Result<IpvsCtrl, DecodeError> {
        GenlMessage::<IpvsCtrl>::parse_with_param(buf, FAMILY).map(|m| m.payload)
    }

    fn web() -> ServiceKey {
        ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 80,
        }
    }

    fn svc(key: ServiceKey, sched: &str, dests: &[(&str, u16, u32, Forward)]) -> Service {
        Service {
            key,
            scheduler: sched.into(),
            persistence: None,
            persistence_granularity: None,
            destinations: dests
                .iter()
                .map(|(a, port, weight, forward)| Destination {
                    addr: a.parse().unwrap(),
                    port: *port,
                    weight: *weight,
                    forward: *forward,
                })
                .collect(),
        }
    }

    #[rustfmt::skip]
    const NEW_SERVICE_WEB: [u8; 104] = [
        // nlmsghdr: len 104, type = family id, flags REQUEST|ACK, seq 0, pid 0
        0x68, 0, 0, 0,  0x20, 0,  0x05, 0,  0, 0, 0, 0,  0, 0, 0, 0,
        // genlmsghdr: cmd NEW_SERVICE, version 1
        1, 1, 0, 0,
        // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 84
        0x54, 0, 0x01, 0x80,
        6, 0, 1, 0,  2, 0, 0, 0,                          // AF = AF_INET
        6, 0, 2, 0,  6, 0, 0, 0,                          // PROTOCOL = TCP
        20, 0, 3, 0,  192, 0, 2, 10,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0, // ADDR
        6, 0, 4, 0,  0, 80, 0, 0,                         // PORT 80, network order
        7, 0, 6, 0,  b'r', b'r', 0, 0,                    // SCHED_NAME "rr\0"
        12, 0, 7, 0,  0, 0, 0, 0,  0xff, 0xff, 0xff, 0xff, // FLAGS {0, ~0}
        8, 0, 8, 0,  0, 0, 0, 0,                          // TIMEOUT 0
        8, 0, 9, 0,  0xff, 0xff, 0xff, 0xff,              // NETMASK 255.255.255.255
    ];

    #[test]
    fn new_service_is_the_whole_netlink_message() {
        let s = svc(web(), "rr", &[]);
        let mut genl = GenlMessage::from_payload(IpvsCtrl {
            cmd: IpvsCmd::NewService,
            attrs: vec![CmdAttr::Service(service_attrs(&s))],
        });
        genl.set_resolved_family_id(FAMILY);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        assert_eq!(buf, NEW_SERVICE_WEB);

        // And back: the payload parses to the same attributes.
        let back = parse(&NEW_SERVICE_WEB[16..]).unwrap();
        assert_eq!(back.cmd, IpvsCmd::NewService);
        assert_eq!(back.attrs, vec![CmdAttr::Service(service_attrs(&s))]);
    }

    #[test]
    fn persistent_service_sets_flag_timeout_and_mask() {
        let mut s = svc(web(), "wrr", &[]);
        s.persistence = Some(Duration::from_secs(300));
        s.persistence_granularity = Some(24);
        let attrs = service_attrs(&s);
        assert!(attrs.contains(&SvcAttr::Flags(SvcFlags {
            flags: IP_VS_SVC_F_PERSISTENT,
            mask: u32::MAX
        })));
        let bytes = emit(IpvsCtrl {
            cmd: IpvsCmd::SetService,
            attrs: vec![CmdAttr::Service(attrs)],
        });
        assert_eq!(bytes[0], 2, "SET_SERVICE");
        let tail = &bytes[bytes.len() - 36..];
        #[rustfmt::skip]
        assert_eq!(tail, [
            8, 0, 6, 0,  b'w', b'r', b'r', 0,                    // SCHED_NAME "wrr\0"
            12, 0, 7, 0,  1, 0, 0, 0,  0xff, 0xff, 0xff, 0xff,   // FLAGS {PERSISTENT, ~0}
            8, 0, 8, 0,  0x2c, 0x01, 0, 0,                       // TIMEOUT 300
            8, 0, 9, 0,  0xff, 0xff, 0xff, 0x00,                 // NETMASK 255.255.255.0
        ]);
    }

    #[test]
    fn ipv6_netmask_is_a_host_order_prefix_length() {
        assert_eq!(netmask_bytes(AF_INET6, Some(64)), [64, 0, 0, 0]);
        assert_eq!(netmask_bytes(AF_INET6, None), [128, 0, 0, 0]);
        assert_eq!(netmask_bytes(AF_INET, Some(0)), [0, 0, 0, 0]);
        assert_eq!(netmask_bytes(AF_INET, Some(20)), [0xff, 0xff, 0xf0, 0]);
        assert_eq!(granularity_from(AF_INET6, [64, 0, 0, 0]), Some(64));
        assert_eq!(granularity_from(AF_INET6, [128, 0, 0, 0]), None);
        assert_eq!(granularity_from(AF_INET, [0xff, 0xff, 0xf0, 0]), Some(20));
        assert_eq!(granularity_from(AF_INET, [0xff; 4]), None);
    }

    #[test]
    fn fwmark_and_ipv6_keys() {
        let fw = ServiceKey::Fwmark {
            mark: 7,
            ipv6: true,
        };
        let bytes = emit(IpvsCtrl {
            cmd: IpvsCmd::DelService,
            attrs: vec![CmdAttr::Service(service_key_attrs(&fw))],
        });
        #[rustfmt::skip]
        assert_eq!(bytes, [
            3, 1, 0, 0,                      // DEL_SERVICE
            20, 0, 0x01, 0x80,               // SERVICE nest, len 20
            6, 0, 1, 0,  10, 0, 0, 0,        // AF = AF_INET6
            8, 0, 5, 0,  7, 0, 0, 0,         // FWMARK 7
        ]);
        let v6 = ServiceKey::Addr {
            proto: Proto::Udp,
            addr: "2001:db8::10".parse().unwrap(),
            port: 53,
        };
        let attrs = service_key_attrs(&v6);
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        addr[15] = 0x10;
        assert_eq!(
            attrs,
            vec![
                SvcAttr::Af(AF_INET6),
                SvcAttr::Protocol(17),
                SvcAttr::Addr(addr),
                SvcAttr::Port(53)
            ]
        );
        assert_eq!(service_name(&v6), "[2001:db8::10]:53/UDP");
        assert_eq!(service_name(&fw), "fwmark 7/IPv6");
    }

    #[test]
    fn new_dest_carries_the_service_key_and_the_full_dest() {
        let key = ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 443,
        };
        let d = Destination {
            addr: "198.51.100.11".parse().unwrap(),
            port: 443,
            weight: 3,
            forward: Forward::Dr,
        };
        let bytes = emit(IpvsCtrl {
            cmd: IpvsCmd::NewDest,
            attrs: vec![
                CmdAttr::Service(service_key_attrs(&key)),
                CmdAttr::Dest(dest_attrs(&d)),
            ],
        });
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[5u8, 1, 0, 0][..],                                 // NEW_DEST
            &[48, 0, 0x01, 0x80],                                // SERVICE nest, len 48
            &[6, 0, 1, 0, 2, 0, 0, 0],                           // AF_INET
            &[6, 0, 2, 0, 6, 0, 0, 0],                           // TCP
            &[20, 0, 3, 0, 192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[6, 0, 4, 0, 0x01, 0xbb, 0, 0],                     // PORT 443
            &[72, 0, 0x02, 0x80],                                // DEST nest, len 72
            &[20, 0, 1, 0, 198, 51, 100, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[6, 0, 2, 0, 0x01, 0xbb, 0, 0],                     // PORT 443
            &[8, 0, 3, 0, 3, 0, 0, 0],                           // FWD_METHOD DROUTE
            &[8, 0, 4, 0, 3, 0, 0, 0],                           // WEIGHT 3
            &[8, 0, 5, 0, 0, 0, 0, 0],                           // U_THRESH 0
            &[8, 0, 6, 0, 0, 0, 0, 0],                           // L_THRESH 0
            &[6, 0, 11, 0, 2, 0, 0, 0],                          // ADDR_FAMILY AF_INET
        ]
        .concat();
        assert_eq!(bytes, want);
        let back = parse(&bytes).unwrap();
        assert_eq!(
            back.attrs,
            vec![
                CmdAttr::Service(service_key_attrs(&key)),
                CmdAttr::Dest(dest_attrs(&d))
            ]
        );
    }

    /// A service entry as `ip_vs_genl_fill_service` writes it into a dump (nests without
    /// NLA_F_NESTED, FLAGS with HASHED set, STATS and STATS64 with a PAD).
    fn kernel_service_reply() -> Vec<u8> {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[192, 0, 2, 10]);
        let stats = [
            nla(STATS_ATTR_CONNS, &705_032_704u32.to_le_bytes()),
            nla(STATS_ATTR_INPKTS, &7u32.to_le_bytes()),
            nla(STATS_ATTR_OUTPKTS, &6u32.to_le_bytes()),
            nla(11, &[]), // IPVS_STATS_ATTR_PAD
            nla(STATS_ATTR_INBYTES, &420u64.to_le_bytes()),
            nla(STATS_ATTR_OUTBYTES, &360u64.to_le_bytes()),
            nla(6, &1u32.to_le_bytes()), // CPS
        ]
        .concat();
        let stats64 = [
            nla(STATS_ATTR_CONNS, &5_000_000_000u64.to_le_bytes()),
            nla(STATS_ATTR_INPKTS, &7u64.to_le_bytes()),
            nla(STATS_ATTR_OUTPKTS, &6u64.to_le_bytes()),
            nla(STATS_ATTR_INBYTES, &420u64.to_le_bytes()),
            nla(STATS_ATTR_OUTBYTES, &360u64.to_le_bytes()),
        ]
        .concat();
        let inner = [
            nla(SVC_ATTR_AF, &2u16.to_le_bytes()),
            nla(SVC_ATTR_PROTOCOL, &6u16.to_le_bytes()),
            nla(SVC_ATTR_ADDR, &addr),
            nla(SVC_ATTR_PORT, &443u16.to_be_bytes()),
            nla(SVC_ATTR_SCHED_NAME, b"wrr\0"),
            nla(SVC_ATTR_FLAGS, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            nla(SVC_ATTR_TIMEOUT, &300u32.to_le_bytes()),
            nla(SVC_ATTR_NETMASK, &[0xff, 0xff, 0xff, 0]),
            nla(SVC_ATTR_STATS, &stats),
            nla(SVC_ATTR_STATS64, &stats64),
        ]
        .concat();
        [vec![1, 1, 0, 0], nla(CMD_ATTR_SERVICE, &inner)].concat()
    }

    #[test]
    fn kernel_service_dump_decodes_with_64_bit_counters() {
        let msg = parse(&kernel_service_reply()).unwrap();
        assert_eq!(msg.cmd, IpvsCmd::NewService);
        let [CmdAttr::Service(attrs)] = msg.attrs.as_slice() else {
            panic!("one service nest: {:?}", msg.attrs);
        };
        let (s, c) = decode_service(attrs).unwrap();
        assert_eq!(
            s,
            Service {
                key: ServiceKey::Addr {
                    proto: Proto::Tcp,
                    addr: "192.0.2.10".parse().unwrap(),
                    port: 443
                },
                scheduler: "wrr".into(),
                persistence: Some(Duration::from_secs(300)),
                persistence_granularity: Some(24),
                destinations: vec![],
            }
        );
        assert_eq!(
            c,
            Counters {
                conns: 5_000_000_000,
                inpkts: 7,
                outpkts: 6,
                inbytes: 420,
                outbytes: 360
            }
        );
    }

    #[test]
    fn kernel_dest_dump_decodes() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 51, 100, 21]);
        let stats = [
            nla(STATS_ATTR_CONNS, &9u32.to_le_bytes()),
            nla(STATS_ATTR_INBYTES, &99u64.to_le_bytes()),
        ]
        .concat();
        let inner = [
            nla(DEST_ATTR_ADDR, &addr),
            nla(DEST_ATTR_PORT, &53u16.to_be_bytes()),
            nla(DEST_ATTR_FWD_METHOD, &2u32.to_le_bytes()),
            nla(DEST_ATTR_WEIGHT, &0u32.to_le_bytes()),
            nla(DEST_ATTR_U_THRESH, &0u32.to_le_bytes()),
            nla(DEST_ATTR_L_THRESH, &0u32.to_le_bytes()),
            nla(DEST_ATTR_ACTIVE_CONNS, &1u32.to_le_bytes()),
            nla(DEST_ATTR_INACT_CONNS, &2u32.to_le_bytes()),
            nla(DEST_ATTR_PERSIST_CONNS, &0u32.to_le_bytes()),
            nla(DEST_ATTR_ADDR_FAMILY, &2u16.to_le_bytes()),
            nla(DEST_ATTR_STATS, &stats),
            nla(13, &[1]), // TUN_TYPE: kept as Other
        ]
        .concat();
        let bytes = [vec![5, 1, 0, 0], nla(CMD_ATTR_DEST, &inner)].concat();
        let msg = parse(&bytes).unwrap();
        let [CmdAttr::Dest(attrs)] = msg.attrs.as_slice() else {
            panic!("one dest nest");
        };
        assert!(attrs.contains(&DestAttr::InactConns(2)));
        let (d, c) = decode_dest(attrs, AF_INET).unwrap();
        assert_eq!(
            d,
            Destination {
                addr: "198.51.100.21".parse().unwrap(),
                port: 53,
                weight: 0,
                forward: Forward::Tun
            }
        );
        assert_eq!(
            (c.conns, c.inbytes),
            (9, 99),
            "32-bit STATS when no STATS64"
        );
        // Emitting what was parsed parses back the same; our nests carry NLA_F_NESTED
        // (the kernel's dumps do not), which is the only byte difference.
        let again = emit(msg.clone());
        assert_eq!(parse(&again).unwrap(), msg);
        let differing: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != again[i]).collect();
        assert_eq!(again.len(), bytes.len());
        assert_eq!(
            differing.len(),
            2,
            "DEST and STATS nest types: {differing:?}"
        );
        assert!(differing.iter().all(|&i| again[i] == bytes[i] | 0x80));
    }

    #[test]
    fn get_info_reply_uses_info_attributes() {
        let bytes = [
            vec![14, 1, 0, 0], // SET_INFO: the command of GET_INFO replies
            nla(INFO_ATTR_VERSION, &0x0001_0201u32.to_le_bytes()),
            nla(INFO_ATTR_CONN_TAB_SIZE, &4096u32.to_le_bytes()),
        ]
        .concat();
        let msg = parse(&bytes).unwrap();
        assert_eq!(
            msg.attrs,
            vec![
                CmdAttr::InfoVersion(0x10201),
                CmdAttr::InfoConnTabSize(4096)
            ]
        );
        let info = IpvsInfo {
            version: 0x10201,
            conn_tab_size: 4096,
        };
        assert_eq!(info.to_string(), "1.2.1 (size=4096)");
        // GET_INFO itself has no attributes.
        assert_eq!(
            emit(IpvsCtrl {
                cmd: IpvsCmd::GetInfo,
                attrs: vec![]
            }),
            [15, 1, 0, 0]
        );
    }

    #[test]
    fn truncated_or_bad_input_is_an_error_never_a_panic() {
        let good = kernel_service_reply();
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        // A 3-byte PORT and a 5-byte ADDR are rejected.
        let bad_port = [
            vec![1, 1, 0, 0],
            nla(CMD_ATTR_SERVICE, &nla(SVC_ATTR_PORT, &[0, 80, 0])),
        ]
        .concat();
        assert!(parse(&bad_port).is_err());
        let bad_addr = [
            vec![1, 1, 0, 0],
            nla(CMD_ATTR_SERVICE, &nla(SVC_ATTR_ADDR, &[1; 5])),
        ]
        .concat();
        assert!(parse(&bad_addr).is_err());
        // A service without an address family does not decode.
        assert!(decode_service(&[SvcAttr::Fwmark(1)]).is_err());
        assert!(decode_service(&[SvcAttr::Af(AF_INET), SvcAttr::Port(80)]).is_err());
    }

    #[test]
    fn forwarding_methods_map_both_ways() {
        for f in [Forward::Nat, Forward::Dr, Forward::Tun] {
            assert_eq!(forward_from(fwd_method(f)), Ok(f));
        }
        assert_eq!(forward_from(IP_VS_CONN_F_LOCALNODE), Ok(Forward::Nat));
        assert!(
            forward_from(4).is_err(),
            "BYPASS is not a real-server method"
        );
    }

    fn owned(keys: &[&ServiceKey]) -> BTreeSet<ServiceKey> {
        keys.iter().map(|k| (*k).clone()).collect()
    }

    #[test]
    fn diff_from_empty_adds_services_then_destinations() {
        let want = [svc(
            web(),
            "rr",
            &[("198.51.100.11", 8080, 1, Forward::Nat)],
        )];
        let ops = diff(&[], &want, &BTreeSet::new());
        let names: Vec<String> = ops.iter().map(Op::to_string).collect();
        assert_eq!(
            names,
            [
                "add 192.0.2.10:80/TCP",
                "add 192.0.2.10:80/TCP -> 198.51.100.11:8080"
            ]
        );
        assert!(matches!(&ops[0], Op::AddService(s) if s.destinations.is_empty()));
    }

    #[test]
    fn diff_of_equal_tables_is_empty_with_normalised_granularity() {
        let mut cur = svc(web(), "wrr", &[("198.51.100.11", 80, 2, Forward::Dr)]);
        cur.persistence = Some(Duration::from_secs(60));
        let mut want = cur.clone();
        want.persistence_granularity = Some(32); // /32 is "one address": the same
        assert!(diff(&[cur.clone()], &[want], &owned(&[&web()])).is_empty());
        // Granularity of a non-persistent service does not matter.
        let plain = svc(web(), "rr", &[]);
        let mut plain_g = plain.clone();
        plain_g.persistence_granularity = Some(24);
        assert!(diff(&[plain], &[plain_g], &BTreeSet::new()).is_empty());
    }

    #[test]
    fn diff_changes_only_what_differs() {
        let cur = svc(
            web(),
            "rr",
            &[
                ("198.51.100.11", 8080, 1, Forward::Nat),
                ("198.51.100.12", 8080, 2, Forward::Nat),
                ("198.51.100.13", 8080, 1, Forward::Nat),
            ],
        );
        let want = svc(
            web(),
            "wrr",
            &[
                ("198.51.100.11", 8080, 1, Forward::Nat), // same
                ("198.51.100.12", 8080, 5, Forward::Nat), // weight
                ("198.51.100.13", 8080, 1, Forward::Dr),  // method
                ("198.51.100.14", 8080, 1, Forward::Nat), // new
            ],
        );
        let ops: Vec<String> = diff(&[cur], &[want], &BTreeSet::new())
            .iter()
            .map(Op::to_string)
            .collect();
        assert_eq!(
            ops,
            [
                "set 192.0.2.10:80/TCP",
                "set 192.0.2.10:80/TCP -> 198.51.100.12:8080",
                "set 192.0.2.10:80/TCP -> 198.51.100.13:8080",
                "add 192.0.2.10:80/TCP -> 198.51.100.14:8080",
            ]
        );
    }

    #[test]
    fn diff_deletes_owned_services_and_leaves_foreign_ones() {
        let ours = svc(web(), "rr", &[("198.51.100.11", 8080, 1, Forward::Nat)]);
        let foreign_key = ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: "203.0.113.99".parse().unwrap(),
            port: 443,
        };
        let foreign = svc(
            foreign_key.clone(),
            "lc",
            &[("198.51.100.99", 443, 5, Forward::Nat)],
        );
        let current = [ours.clone(), foreign.clone()];
        // Nothing desired: only the owned one goes.
        let ops = diff(&current, &[], &owned(&[&web()]));
        assert_eq!(ops, vec![Op::DelService(web())]);
        // Not owned and not desired: nothing at all.
        assert!(diff(&current, &[], &BTreeSet::new()).is_empty());
        // A destination leaving a kept service is deleted before any addition.
        let want = svc(web(), "rr", &[("198.51.100.12", 8080, 1, Forward::Nat)]);
        let ops: Vec<String> = diff(&current, &[want], &owned(&[&web()]))
            .iter()
            .map(Op::to_string)
            .collect();
        assert_eq!(
            ops,
            [
                "del 192.0.2.10:80/TCP -> 198.51.100.11:8080",
                "add 192.0.2.10:80/TCP -> 198.51.100.12:8080"
            ]
        );
    }

    #[test]
    fn validate_rejects_duplicates_and_impossible_granularity() {
        let mut wide = svc(
            ServiceKey::Fwmark {
                mark: 3,
                ipv6: false,
            },
            "rr",
            &[],
        );
        wide.persistence = Some(Duration::from_secs(10));
        wide.persistence_granularity = Some(33);
        let dup_dest = svc(
            web(),
            "rr",
            &[
                ("198.51.100.11", 8080, 1, Forward::Nat),
                ("198.51.100.11", 8080, 2, Forward::Nat),
            ],
        );
        let (valid, rejected, errors) = validate(&[dup_dest.clone(), dup_dest, wide]);
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].destinations.len(), 1);
        assert_eq!(valid[0].destinations[0].weight, 1, "the first one wins");
        assert!(rejected.contains(&ServiceKey::Fwmark {
            mark: 3,
            ipv6: false
        }));
        let objects: Vec<&str> = errors.iter().map(|e| e.object.as_str()).collect();
        assert_eq!(
            objects,
            [
                "192.0.2.10:80/TCP -> 198.51.100.11:8080",
                "192.0.2.10:80/TCP",
                "fwmark 3/IPv4"
            ]
        );
        assert!(errors.iter().all(|e| e.result.is_err()));
    }
}
