//! The load-balancer data plane behind one trait, driven by a desired table.
//! CONTRACT shared by `ipvs.rs` (generic netlink, family "IPVS"), `nft.rs` (nftables for
//! kernels without IPVS) and the virtual-server runtime:
//! - the runtime computes the complete desired table ([`Service`] with its
//!   [`Destination`]s) from config, checker results and overrides;
//! - a reconciler calls [`DataPlane::apply`] with it (idempotent; only objects the agent
//!   owns are touched; periodic resync heals drift) and gets a status per object.

pub mod ipvs;

use std::net::IpAddr;
use std::time::Duration;

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// What identifies a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// `virtual_server IP PORT` with `protocol`.
    Addr {
        /// Protocol.
        proto: Proto,
        /// VIP.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `virtual_server fwmark N`.
    Fwmark {
        /// The firewall mark.
        mark: u32,
        /// Address family of the service.
        ipv6: bool,
    },
}

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forward {
    /// Masquerading (LVS-NAT).
    Nat,
    /// Direct routing (LVS-DR): rewrite the destination MAC only.
    Dr,
    /// IP-in-IP tunnel (LVS-TUN).
    Tun,
}

/// A virtual service as desired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name as keepalived spells it (rr, wrr, lc, wlc, sh, mh, dh, sed, nq,
    /// fo, ovf, lblc, lblcr).
    pub scheduler: String,
    /// persistence_timeout (None: not persistent).
    pub persistence: Option<Duration>,
    /// persistence_granularity as a prefix length (None: /32 or /128).
    pub persistence_granularity: Option<u8>,
    /// Real servers (or the sorry server) in rotation; weight 0 = drained/inhibited.
    pub destinations: Vec<Destination>,
}

/// A real server as desired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Address.
    pub addr: IpAddr,
    /// Port (NAT may map ports; DR/TUN use the service port).
    pub port: u16,
    /// Weight; 0 keeps it but sends no new connections.
    pub weight: u32,
    /// Forwarding method.
    pub forward: Forward,
}

/// Where one object stands after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// "192.0.2.10:80/TCP" or "192.0.2.10:80/TCP -> 198.51.100.11:8080".
    pub object: String,
    /// Ok, or the error text.
    pub result: Result<(), String>,
}

/// Counters read back from the data plane, per service or destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Object, as in [`ObjectStatus::object`].
    pub object: String,
    /// Connections.
    pub connections: u64,
    /// Packets in.
    pub packets_in: u64,
    /// Packets out.
    pub packets_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
}

/// Errors of a data plane as a whole (per-object errors go in [`ObjectStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// The backend is not available here (no IPVS in the kernel, no nft binary).
    #[error("data plane {backend} unavailable: {reason}")]
    Unavailable {
        /// "ipvs" or "nftables".
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Talking to the kernel or the nft binary failed.
    #[error("data plane {backend}: {reason}")]
    Io {
        /// "ipvs" or "nftables".
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// A load-balancer data plane. `apply` makes the kernel match `desired` exactly for the
/// objects this agent owns, and leaves everything else alone.
#[allow(async_fn_in_trait)]
pub trait DataPlane {
    /// Backend name for logs and status ("ipvs", "nftables").
    fn name(&self) -> &'static str;
    /// Reconcile to `desired` (the complete table); one status per object.
    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError>;
    /// What the kernel has now for our objects (for resync and `hactl status`).
    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError>;
    /// Counters, where the backend has them.
    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError>;
}

pub mod nft;
pub mod reconcile;
