//! Errors of the virtual-server runtime, one enum per fault: what the config cannot
//! give ([`ConfigError`]) and what an override names that is not there
//! ([`OverrideError`]). The messages are what operators read in the log and in history.

use std::net::IpAddr;

/// An override names a server the runtime does not have (recorded in history; nothing
/// changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// No virtual server by that name ([`vs_name`](super::vs_name)).
    #[error("no virtual server {vs}")]
    NoVirtualServer {
        /// The name given.
        vs: String,
    },
    /// The virtual server has no real server at that address and port.
    #[error("no real server {addr}:{port} in {vs}")]
    NoRealServer {
        /// Virtual server name.
        vs: String,
        /// Address given.
        addr: IpAddr,
        /// Port given.
        port: u16,
    },
}

/// A virtual-server setting the runtime cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `lvs_backend` names no backend.
    #[error("lvs_backend: expected ipvs, nftables or auto, got '{got}'")]
    LvsBackend {
        /// The word given (empty when none).
        got: String,
    },
    /// A `virtual_server_group` entry `fwmark` without a number.
    #[error("fwmark needs a number")]
    FwmarkNumber,
    /// A `virtual_server_group` entry that is no address.
    #[error("bad address '{entry}'")]
    GroupAddress {
        /// The entry as written.
        entry: String,
    },
    /// A `virtual_server_group` range that is empty, backwards or too long.
    #[error("bad range '{entry}'")]
    GroupRange {
        /// The entry as written.
        entry: String,
    },
}
