//! The load-balancer runtime beside the VRRP engine (keepalived's checker process): one
//! thread with its own current-thread tokio runtime runs every checker, the
//! virtual-server state ([`crate::lb::service`]) and the data plane. The VRRP engine never
//! waits on it: it sends VIP states and override sets, and receives history events; the
//! status is a watch channel the manager link and the metrics read.
//!
//! ```text
//!  engine --VipState / SetOverrides / Shutdown / Detach--> +---------------------------+
//!                                                          | LB thread (own runtime)   |
//!  checker tasks (one per checker block) --CheckEvent----> |  lb::service::run         | --> nft / IPVS
//!  engine <--LbEvent (history, log lines)----------------- |                           |
//!  link, metrics <--LbStatus (watch)---------------------- +---------------------------+
//! ```
//!
//! Why a thread: a thousand checkers must not delay adverts sent every 10 ms, and the
//! IPVS backend's futures are not `Send`, so they need a runtime of their own; the
//! backend is opened inside that runtime so its netlink socket lives there too.

use std::collections::BTreeSet;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::config::model::Config;
use crate::lb::check::{self, CheckerSpec};
use crate::lb::dataplane::nft::Nft;
use crate::lb::dataplane::reconcile::ReconcileTiming;
use crate::lb::service::{self, Backend, LbEvent, LbStatus, RsAction, RsOverride, ServiceInput};
use crate::script::ScriptDefaults;

/// How long a stop waits for the thread (omega notifiers are bounded by their own timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A running load-balancer thread.
#[derive(Debug)]
pub struct Lb {
    inputs: mpsc::UnboundedSender<ServiceInput>,
    status: watch::Receiver<LbStatus>,
    done: Option<oneshot::Receiver<()>>,
    /// Fingerprint of the config parts it runs (reload compares it).
    fingerprint: u64,
    /// Virtual server names and their real servers (override validation).
    names: Vec<(String, BTreeSet<(IpAddr, u16)>)>,
}

/// A [`std::fmt::Write`] sink that hashes what is written instead of keeping it.
struct HashWriter(std::collections::hash_map::DefaultHasher);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// What of the config the LB runtime depends on, as a 64-bit hash of its `Debug` form
/// (reload compares it; hashed while formatting, so no copy of a thousand real servers'
/// text is kept or even built).
fn fingerprint(cfg: &Config) -> u64 {
    use std::fmt::Write as _;
    let backend = cfg.global.other.iter().find(|n| n.name == "lvs_backend");
    let mut h = HashWriter(std::collections::hash_map::DefaultHasher::new());
    // Writing to a hasher cannot fail.
    let _ = write!(
        h,
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        cfg.virtual_servers,
        cfg.virtual_server_groups,
        backend.map(|n| &n.args),
        cfg.global.script_user,
        cfg.global.enable_script_security
    );
    h.0.finish()
}

impl Lb {
    /// Start the runtime for `cfg`'s virtual servers; `None` when it has none.
    pub fn start(cfg: &Config, events: mpsc::UnboundedSender<LbEvent>) -> Option<Lb> {
        if cfg.virtual_servers.is_empty() {
            return None;
        }
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (st_tx, st_rx) = watch::channel(LbStatus::default());
        let (done_tx, done_rx) = oneshot::channel();
        let names = cfg
            .virtual_servers
            .iter()
            .map(|vs| {
                let rs = vs
                    .real_servers
                    .iter()
                    .map(|r| (r.addr, r.port.unwrap_or(0)))
                    .collect();
                (service::vs_name(vs), rs)
            })
            .collect();
        // Everything the thread needs is built here, so it keeps no copy of the config.
        let setup = Setup::from_config(cfg);
        let spawned = std::thread::Builder::new()
            .name("ha-lb".into())
            .spawn(move || {
                thread_main(setup, in_rx, st_tx, events);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the load-balancer thread");
            return None;
        }
        info!(
            virtual_servers = cfg.virtual_servers.len(),
            "load balancer started"
        );
        Some(Lb {
            inputs: in_tx,
            status: st_rx,
            done: Some(done_rx),
            fingerprint: fingerprint(cfg),
            names,
        })
    }

    /// Whether `cfg` asks for exactly what runs (no restart needed on reload).
    pub fn runs(&self, cfg: &Config) -> bool {
        self.fingerprint == fingerprint(cfg)
    }

    /// The status channel (link and metrics).
    pub fn status(&self) -> watch::Receiver<LbStatus> {
        self.status.clone()
    }

    /// A VRRP instance holding `addr` became MASTER or left it (ha_suspend).
    pub fn vip_state(&self, addr: IpAddr, master: bool) {
        let _ = self.inputs.send(ServiceInput::VipState { addr, master });
    }

    /// Check a real-server override set against the virtual servers that run: every
    /// virtual server named exists, every server changed exists (in the config or added
    /// by the same set), weights fit IPVS's range. Every error, or nothing.
    pub fn validate(&self, list: &[RsOverride]) -> Result<(), Vec<String>> {
        validate(&self.names, list)
    }

    /// Replace the real-server override set in force.
    pub fn set_overrides(&self, generation: u64, list: Vec<RsOverride>) {
        let _ = self
            .inputs
            .send(ServiceInput::SetOverrides { generation, list });
    }

    /// Stop: omega notifiers, our objects leave the data plane (`remove`), or the data
    /// plane is left as it is for a successor (`!remove`, reload). Waits for the thread.
    pub async fn stop(mut self, remove: bool) {
        let input = if remove {
            ServiceInput::Shutdown
        } else {
            ServiceInput::Detach
        };
        let _ = self.inputs.send(input);
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(STOP_TIMEOUT, done).await.is_err() {
                warn!("load-balancer thread did not stop in time");
            }
        }
    }
}

/// How an [`LbEvent`] is told: the log line (keepalived's wording where it has one) and
/// the history event's (kind, instance, to_state, reason, detail); `None` for events the
/// override path already records.
pub struct Told {
    /// The log line.
    pub line: String,
    /// A warning (something went down or was refused) rather than information.
    pub warn: bool,
    /// History event: (kind, instance, to_state, reason, detail).
    pub event: Option<(i32, String, String, String, String)>,
}

fn updown(up: bool) -> &'static str {
    if up {
        "UP"
    } else {
        "DOWN"
    }
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Describe one load-balancer event.
pub fn tell(ev: &LbEvent) -> Told {
    use crate::link::bridge::kind;
    match ev {
        LbEvent::Checker {
            rs,
            kind: ck,
            up,
            detail,
            ..
        } => {
            let at = endpoint(rs.addr, rs.port);
            let verdict = if *up { "succeeded" } else { "failed" };
            Told {
                line: format!("{ck} on service {at} of VS {} {verdict}: {detail}", rs.vs),
                warn: !up,
                event: Some((
                    kind::CHECKER,
                    rs.vs.to_string(),
                    updown(*up).into(),
                    (*ck).into(),
                    format!("{at}: {detail}"),
                )),
            }
        }
        LbEvent::RealServer { rs, up } => {
            let at = endpoint(rs.addr, rs.port);
            let line = if *up {
                format!("Adding service {at} to VS {}", rs.vs)
            } else {
                format!("Removing service {at} from VS {}", rs.vs)
            };
            Told {
                line,
                warn: !up,
                event: Some((
                    kind::REAL_SERVER,
                    rs.vs.to_string(),
                    updown(*up).into(),
                    if *up {
                        "checkers pass"
                    } else {
                        "checker failed"
                    }
                    .into(),
                    at,
                )),
            }
        }
        LbEvent::Quorum { vs, up, weight } => {
            let word = if *up { "Gained" } else { "Lost" };
            Told {
                line: format!("{word} quorum for VS {vs} (live weight {weight})"),
                warn: !up,
                event: Some((
                    kind::QUORUM,
                    vs.clone(),
                    updown(*up).into(),
                    format!("live weight {weight}"),
                    String::new(),
                )),
            }
        }
        LbEvent::Override { input, error } => Told {
            line: match error {
                None => format!("real-server override applied: {input}"),
                Some(e) => format!("real-server override refused: {input}: {e}"),
            },
            warn: error.is_some(),
            event: None,
        },
    }
}

/// [`Lb::validate`] on plain data (unit-tested).
pub fn validate(
    names: &[(String, BTreeSet<(IpAddr, u16)>)],
    list: &[RsOverride],
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for o in list {
        let what = format!("real server {} port {} in {}", o.addr, o.port, o.vs);
        if !seen.insert((o.vs.clone(), o.addr, o.port)) {
            errors.push(format!("{what}: named twice"));
            continue;
        }
        let Some((_, rs)) = names.iter().find(|(n, _)| *n == o.vs) else {
            let known: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
            errors.push(format!(
                "no virtual server '{}' (known: {})",
                o.vs,
                known.join(", ")
            ));
            continue;
        };
        let weight = match o.action {
            RsAction::Add { weight } | RsAction::Weight(weight) => Some(weight),
            _ => None,
        };
        if weight.is_some_and(|w| w > 65_535) {
            errors.push(format!("{what}: weight must be 0-65535"));
        }
        let added = list
            .iter()
            .any(|a| a.vs == o.vs && a.addr == o.addr && a.port == o.port && a.action_is_add());
        if !added && !rs.contains(&(o.addr, o.port)) {
            errors.push(format!("{what}: not configured (add it first with rs add)"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl RsOverride {
    fn action_is_add(&self) -> bool {
        matches!(self.action, RsAction::Add { .. })
    }
}

/// What the load-balancer thread runs, built from the config on the caller's thread.
struct Setup {
    /// `lvs_backend`.
    backend: Result<service::BackendKind, service::ConfigError>,
    /// One per checker block that resolved.
    checkers: Vec<CheckerSpec>,
    /// The service loop's state.
    prepared: service::Prepared,
}

impl Setup {
    fn from_config(cfg: &Config) -> Setup {
        let defaults = ScriptDefaults::from_global(&cfg.global);
        let mut checkers = Vec::new();
        for vs in &cfg.virtual_servers {
            // One name for all the virtual server's checkers (their events and labels).
            let name: Arc<str> = service::vs_name(vs).into();
            for rs in &vs.real_servers {
                for (i, ck) in rs.checkers.iter().enumerate() {
                    match CheckerSpec::from_config_with(&name, vs, rs, i, ck, &defaults) {
                        Ok(mut spec) => {
                            spec.rs.vs = Arc::clone(&name);
                            checkers.push(spec);
                        }
                        Err(e) => warn!(vs = %name, rs = %rs.addr, error = %e, "checker skipped"),
                    }
                }
            }
        }
        checkers.shrink_to_fit();
        Setup {
            backend: service::backend_setting(cfg),
            checkers,
            prepared: service::Prepared::from_config(cfg),
        }
    }
}

/// The thread: a runtime, the backend, the checkers, the service loop.
fn thread_main(
    setup: Setup,
    inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: mpsc::UnboundedSender<LbEvent>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "load-balancer thread: cannot build a runtime");
            return;
        }
    };
    let Setup {
        backend,
        checkers,
        prepared,
    } = setup;
    rt.block_on(async move {
        let backend = match service::open_backend(backend).await {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "load balancer: the chosen data plane is unavailable; using nftables");
                Backend::Nft(Nft::new())
            }
        };
        info!(backend = %format!("{backend:?}"), "load-balancer data plane");
        let (check_tx, check_rx) = mpsc::unbounded_channel();
        let tasks: Vec<_> = checkers
            .into_iter()
            .map(|spec| check::spawn(spec, check_tx.clone()))
            .collect();
        drop(check_tx);
        service::run_prepared(
            prepared,
            backend,
            ReconcileTiming::default(),
            check_rx,
            inputs,
            status,
            Some(events),
        )
        .await;
        for t in tasks {
            t.abort();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<(String, BTreeSet<(IpAddr, u16)>)> {
        vec![(
            "192.0.2.10:80/TCP".to_string(),
            [("198.51.100.11".parse().unwrap(), 80)]
                .into_iter()
                .collect(),
        )]
    }

    fn o(vs: &str, addr: &str, action: RsAction) -> RsOverride {
        RsOverride {
            vs: vs.into(),
            addr: addr.parse().unwrap(),
            port: 80,
            action,
        }
    }

    #[test]
    fn events_are_told_keepalived_style() {
        let rs = crate::lb::check::RsKey {
            vs: "192.0.2.10:80/TCP".into(),
            addr: "198.51.100.11".parse().unwrap(),
            port: 8080,
        };
        let t = tell(&LbEvent::RealServer {
            rs: rs.clone(),
            up: false,
        });
        assert_eq!(
            t.line,
            "Removing service 198.51.100.11:8080 from VS 192.0.2.10:80/TCP"
        );
        assert!(t.warn);
        let (k, vs, to, _, detail) = t.event.unwrap();
        assert_eq!(
            (k, vs.as_str(), to.as_str()),
            (14, "192.0.2.10:80/TCP", "DOWN")
        );
        assert_eq!(detail, "198.51.100.11:8080");
        let t = tell(&LbEvent::Checker {
            rs,
            checker: 0,
            kind: "HTTP_GET",
            up: true,
            detail: "status 200".into(),
        });
        assert!(t.line.starts_with("HTTP_GET on service 198.51.100.11:8080"));
        assert_eq!(t.event.unwrap().0, 13);
        let t = tell(&LbEvent::Quorum {
            vs: "fwmark 1".into(),
            up: true,
            weight: 4,
        });
        assert_eq!(t.line, "Gained quorum for VS fwmark 1 (live weight 4)");
        assert!(tell(&LbEvent::Override {
            input: "x".into(),
            error: None
        })
        .event
        .is_none());
    }

    #[test]
    fn overrides_are_checked_against_running_virtual_servers() {
        let n = names();
        let vs = "192.0.2.10:80/TCP";
        assert!(validate(&n, &[o(vs, "198.51.100.11", RsAction::Drain)]).is_ok());
        // Added by the same set, then weighted: fine.
        assert!(validate(&n, &[o(vs, "198.51.100.12", RsAction::Add { weight: 2 })]).is_ok());
        let e = validate(&n, &[o(vs, "198.51.100.13", RsAction::Drain)]).unwrap_err();
        assert!(e[0].contains("not configured"), "{e:?}");
        let e = validate(&n, &[o("fwmark 9", "198.51.100.11", RsAction::Del)]).unwrap_err();
        assert!(e[0].contains("no virtual server 'fwmark 9'"), "{e:?}");
        assert!(e[0].contains("192.0.2.10:80/TCP"), "{e:?}");
        let e = validate(&n, &[o(vs, "198.51.100.11", RsAction::Weight(70_000))]).unwrap_err();
        assert!(e[0].contains("0-65535"), "{e:?}");
        let twice = [
            o(vs, "198.51.100.11", RsAction::Drain),
            o(vs, "198.51.100.11", RsAction::Del),
        ];
        assert!(validate(&n, &twice).unwrap_err()[0].contains("twice"));
    }
}
