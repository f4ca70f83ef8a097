//! What the runtime shows: [`LbStatus`] on its watch channel, built from the pure
//! state and from what the last data-plane apply really programmed ([`programmed`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::lb::dataplane::nft::service_object;
use crate::lb::dataplane::reconcile::ReconcileStatus;
use crate::lb::dataplane::{Forward, ServiceKey, Stats};

use super::state::LbState;

/// One checker as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerStatus {
    /// Kind ("TCP_CHECK").
    pub kind: String,
    /// Passing now.
    pub up: bool,
    /// Last verdict, one line.
    pub detail: String,
    /// Duration of the last check.
    pub latency: Duration,
}

/// One real server as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsStatus {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight from the config (or from `rs add`).
    pub weight_base: u32,
    /// Weight after overrides (drain = 0).
    pub weight_effective: u32,
    /// All checkers pass.
    pub alive: bool,
    /// In the data-plane table now (possibly with weight 0).
    pub in_table: bool,
    /// Drained by an override.
    pub drained: bool,
    /// Added by an override rather than the config.
    pub from_override: bool,
    /// Its checkers.
    pub checkers: Vec<CheckerStatus>,
}

/// One virtual server as shown by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsStatus {
    /// Name ([`vs_name`](super::vs_name)).
    pub name: String,
    /// Data-plane objects it programs (several for a group).
    pub services: Vec<String>,
    /// Scheduler.
    pub scheduler: String,
    /// Forwarding method ("NAT", "DR", "TUN").
    pub method: String,
    /// Configured quorum.
    pub quorum: u64,
    /// Configured hysteresis.
    pub hysteresis: u64,
    /// Sum of live weights.
    pub live_weight: u64,
    /// Quorum held.
    pub quorum_up: bool,
    /// The sorry server is serving.
    pub sorry_active: bool,
    /// Not programmed (ha_suspend and the VIP not held).
    pub suspended: bool,
    /// Real servers.
    pub real_servers: Vec<RsStatus>,
}

/// What the runtime publishes on its watch channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbStatus {
    /// Virtual servers.
    pub virtual_servers: Vec<VsStatus>,
    /// Data plane: backend, per-object results, last error.
    pub dataplane: ReconcileStatus,
    /// Counters read back at the last resync.
    pub stats: Vec<Stats>,
    /// Generation of the real-server override set in force (0: none yet).
    pub override_generation: u64,
}

impl LbState {
    /// Status of every virtual server as the data plane runs it: a real server is `in
    /// table` only when it is desired there and the last apply programmed it (no
    /// whole-backend error such as a missing nft, no error on its service or on it).
    pub fn status_programmed(&self, dp: &ReconcileStatus) -> Vec<VsStatus> {
        let mut out = self.status();
        for (st, vs) in out.iter_mut().zip(&self.vss) {
            for r in &mut st.real_servers {
                r.in_table = r.in_table && programmed(dp, &vs.keys, r.addr, r.port);
            }
        }
        out
    }

    /// Status of every virtual server.
    pub fn status(&self) -> Vec<VsStatus> {
        self.vss
            .iter()
            .map(|vs| {
                let dests = vs.destinations();
                VsStatus {
                    name: vs.name.to_string(),
                    services: vs.keys.iter().map(service_object).collect(),
                    scheduler: vs.scheduler.clone(),
                    method: forward_name(vs.forward).into(),
                    quorum: vs.quorum,
                    hysteresis: vs.hysteresis,
                    live_weight: vs.live_weight(),
                    quorum_up: vs.quorum_up,
                    sorry_active: vs.sorry_active(),
                    suspended: vs.keys.iter().all(|k| self.suspended(vs, k)),
                    real_servers: vs
                        .rs
                        .iter()
                        .filter(|r| !r.removed)
                        .map(|r| RsStatus {
                            addr: r.addr,
                            port: r.port,
                            weight_base: r.weight,
                            weight_effective: r.effective_weight(),
                            alive: r.alive,
                            in_table: dests.iter().any(|d| (d.addr, d.port) == (r.addr, r.port)),
                            drained: r.drained,
                            from_override: r.from_override,
                            checkers: r
                                .checkers
                                .iter()
                                .map(|c| CheckerStatus {
                                    kind: c.kind.into(),
                                    up: c.up,
                                    detail: c.detail.clone(),
                                    latency: c.latency,
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// Whether destination `addr:port` of the services `keys` is in the data plane after the
/// last apply (`dp`): one apply done, no backend-wide error, and no error reported on a
/// service or on the destination (under either backend's object names).
pub fn programmed(dp: &ReconcileStatus, keys: &[ServiceKey], addr: IpAddr, port: u16) -> bool {
    if dp.applies == 0 || dp.last_error.is_some() {
        return false;
    }
    keys.iter().all(|k| {
        let names = [
            service_object(k),
            crate::lb::dataplane::nft::destination_object(k, addr, port),
            crate::lb::dataplane::ipvs::service_name(k),
            crate::lb::dataplane::ipvs::dest_name(k, addr, port),
        ];
        !dp.objects
            .iter()
            .any(|o| o.result.is_err() && names.contains(&o.object))
    })
}

fn forward_name(f: Forward) -> &'static str {
    match f {
        Forward::Nat => "NAT",
        Forward::Dr => "DR",
        Forward::Tun => "TUN",
    }
}
