//! Wiring: the config becomes a plan, the plan becomes running instances, sockets and
//! the netlink task; one engine task owns every instance and executes their actions.
//!
//! Tasks and channels:
//! ```text
//!  rx task (net/receive.rs) --RxMsg-------> +------------------+ --set/clear VIPs--> netlink task
//!  (and drained before every deadline) ---> |  engine (1 task) |     (desired VIP table,
//!  netlink link monitor --LinkEvent-------> |  all Instances   |      vmac, link monitor)
//!  signals (signals.rs) TERM/INT/HUP/USR1/2> |                  |
//!  deadline sleep (next_deadline) --------> +------------------+ --send_to--> VRRP sockets
//!                                                  |  --announce--> GARP / NA sockets
//!                                                  +--> logs, <runtime-dir>/stats.json, keepalived.data
//!  systemd (sdnotify.rs) <-- READY=1 / RELOADING=1 / STOPPING=1 from the engine
//!  panic hook (crash.rs): priority 0 from the masters' prebuilt adverts, then --cleanup
//!                                                  |
//!   VipState / SetOverrides / Shutdown ------------+--> load-balancer thread (runtime/lb.rs):
//!   LbEvent (history, log lines) <------------------    checkers, lb::service, nft / IPVS
//!   LbStatus (watch) --> manager link, metrics
//!   Stats (watch, when wanted) <-> telemetry thread (telemetry.rs; own runtime):
//!                                  /metrics server, OTLP gRPC connections
//! ```

pub mod cleanup;
pub mod crash;
pub mod datadump;
pub mod engine;
pub mod lb;
pub mod overrides;
pub mod pidfile;
pub mod plan;
pub mod ratelimit;
pub mod reload;
pub mod sched;
pub mod sdnotify;
pub mod services;
pub mod signals;
pub mod startup;
pub mod stats;
