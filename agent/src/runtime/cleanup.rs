//! `ha-agent --cleanup [--config FILE]`: remove what an earlier run of the agent left in
//! this network namespace, and nothing else. What a service manager runs after an unclean
//! exit (ExecStopPost), and what the crash path runs before the process dies.
//!
//! What counts as ours:
//! - addresses carrying the agent's IFA_PROTO mark (net/netlink.rs): every one of them,
//!   since a namespace has one agent, as with keepalived; an operator's identical address
//!   without the mark stays;
//! - the config's `use_vmac` interfaces, only if they are macvlans with the VRRP virtual
//!   MAC of their VRID (another interface of that name is left alone);
//! - the nftables tables the agent's data plane names as its own (ha_lb, ha_lb6,
//!   ha_lb_dr), when nft is installed;
//! - the IPVS services of the config's virtual servers, when the kernel has IPVS.

use tracing::{info, warn};

use crate::config::model::Config;
use crate::lb::dataplane::DataPlane;
use crate::net::netlink;

/// What was removed (and what could not be looked at).
#[derive(Debug, Default)]
pub struct Report {
    /// Marked addresses removed.
    pub addresses: usize,
    /// vmac interfaces removed.
    pub vmacs: usize,
    /// The nftables tables were cleared.
    pub nft: bool,
    /// IPVS services removed.
    pub ipvs_services: usize,
    /// Steps that failed, one line each.
    pub errors: Vec<String>,
}

/// Remove every leftover (see the module docs). Must run inside a tokio runtime.
pub async fn run(cfg: &Config) -> Report {
    let mut r = Report::default();
    let nl = match netlink::spawn(netlink::Options::default()) {
        Ok(nl) => nl,
        Err(e) => {
            r.errors.push(format!("netlink: {e}"));
            return r;
        }
    };
    match nl.cleanup_leftovers().await {
        Ok(n) => r.addresses = n,
        Err(e) => r.errors.push(format!("addresses: {e}")),
    }
    for i in &cfg.vrrp_instances {
        let Some(name) = i.use_vmac.as_ref().map(|n| {
            n.clone()
                .unwrap_or_else(|| netlink::default_vmac_name(i.vrid))
        }) else {
            continue;
        };
        let Ok(idx) = nl.ifindex_by_name(&name).await else {
            continue;
        };
        let family = match i.family {
            crate::config::model::Family::V4 => netlink::Family::V4,
            crate::config::model::Family::V6 => netlink::Family::V6,
        };
        match nl.mac_of(idx).await {
            Ok(mac) if mac == netlink::virtual_mac(i.vrid, family) => {
                match nl.delete_vmac(idx).await {
                    Ok(()) => r.vmacs += 1,
                    Err(e) => r.errors.push(format!("vmac {name}: {e}")),
                }
            }
            Ok(_) => info!(interface = %name, "not a vmac of ours (another MAC): left alone"),
            Err(e) => r.errors.push(format!("vmac {name}: {e}")),
        }
    }
    if nft_installed() {
        let mut nft = crate::lb::dataplane::nft::Nft::new();
        match nft.apply(&[]).await {
            Ok(_) => r.nft = true,
            Err(e) => r.errors.push(format!("nftables: {e}")),
        }
    }
    if !cfg.virtual_servers.is_empty() && std::path::Path::new("/proc/net/ip_vs").exists() {
        match crate::lb::dataplane::ipvs::Ipvs::new().await {
            Ok(mut ipvs) => {
                let (state, _) = crate::lb::service::LbState::from_config(cfg);
                let keys: Vec<_> = state.desired().into_iter().map(|s| s.key).collect();
                let before = keys.len();
                ipvs.adopt(keys);
                match ipvs.apply(&[]).await {
                    Ok(_) => r.ipvs_services = before - ipvs.owned().len(),
                    Err(e) => r.errors.push(format!("ipvs: {e}")),
                }
            }
            Err(e) => r.errors.push(format!("ipvs: {e}")),
        }
    }
    if let Err(e) = nl.flush().await {
        warn!(error = %e, "cannot confirm the removals");
    }
    r
}

fn nft_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nft").is_file()))
}
