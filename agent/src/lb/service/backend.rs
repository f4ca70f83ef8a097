//! The data plane the runtime drives, per `lvs_backend`: IPVS over generic netlink,
//! nftables, or `auto` (IPVS when the kernel has it).

use std::path::Path;

use crate::config::model::Config;
use crate::lb::dataplane::ipvs::Ipvs;
use crate::lb::dataplane::nft::Nft;
use crate::lb::dataplane::{DataPlane, DataPlaneError, ObjectStatus, Service, Stats};

use super::error::ConfigError;

/// `lvs_backend` in `global_defs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// IPVS over generic netlink.
    Ipvs,
    /// nftables.
    Nftables,
    /// IPVS when the kernel has it (`/proc/net/ip_vs`), else nftables.
    Auto,
}

/// The data plane the runtime drives (concrete, so the task's future is `Send`).
pub enum Backend {
    /// nftables.
    Nft(Nft),
    /// IPVS over generic netlink.
    Ipvs(Box<Ipvs>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl DataPlane for Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Nft(n) => n.name(),
            Backend::Ipvs(i) => i.name(),
        }
    }
    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.apply(desired).await,
            Backend::Ipvs(i) => i.apply(desired).await,
        }
    }
    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.read().await,
            Backend::Ipvs(i) => i.read().await,
        }
    }
    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
        match self {
            Backend::Nft(n) => n.stats().await,
            Backend::Ipvs(i) => i.stats().await,
        }
    }
}

/// The `lvs_backend` setting (`auto` when absent).
pub fn backend_setting(cfg: &Config) -> Result<BackendKind, ConfigError> {
    let Some(n) = cfg.global.other.iter().find(|n| n.name == "lvs_backend") else {
        return Ok(BackendKind::Auto);
    };
    match n.arg(0) {
        Some("ipvs") => Ok(BackendKind::Ipvs),
        Some("nftables") | Some("nft") => Ok(BackendKind::Nftables),
        Some("auto") => Ok(BackendKind::Auto),
        other => Err(ConfigError::LvsBackend {
            got: other.unwrap_or("").to_string(),
        }),
    }
}

/// Pick the data plane per `lvs_backend`: `ipvs` (error when the kernel has none),
/// `nftables`, or `auto` (IPVS when `/proc/net/ip_vs` exists and opens, else nftables).
/// Async because opening IPVS resolves its generic-netlink family; call it inside the
/// runtime.
pub async fn choose_backend(cfg: &Config) -> Result<Backend, DataPlaneError> {
    open_backend(backend_setting(cfg)).await
}

/// [`choose_backend`] on an already read [`backend_setting`].
pub async fn open_backend(
    setting: Result<BackendKind, ConfigError>,
) -> Result<Backend, DataPlaneError> {
    let kind = setting.map_err(|e| DataPlaneError::Unavailable {
        backend: "lvs_backend",
        reason: e.to_string(),
    })?;
    match kind {
        BackendKind::Nftables => Ok(Backend::Nft(Nft::new())),
        BackendKind::Ipvs => Ok(Backend::Ipvs(Box::new(Ipvs::new().await?))),
        BackendKind::Auto => {
            if Path::new("/proc/net/ip_vs").exists() {
                match Ipvs::new().await {
                    Ok(i) => return Ok(Backend::Ipvs(Box::new(i))),
                    Err(e) => {
                        tracing::warn!(error = %e, "IPVS present but unusable; using nftables")
                    }
                }
            }
            Ok(Backend::Nft(Nft::new()))
        }
    }
}
