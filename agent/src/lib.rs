//! ha-agent: a keepalived-compatible VRRP router.
//!
//! Layout (docs/ARCHITECTURE.md at the repository root has the whole picture):
//! - [`units`]: typed units shared by config, protocol core and edges.
//! - [`config`]: keepalived.conf lexer, parser, typed model and validation.
//! - [`vrrp`]: the pure protocol core (packet codec, state machine, timers).
//! - [`net`]: the I/O edges (raw sockets, GARP/NA, netlink).
//! - [`runtime`]: wiring of config, core and edges into tasks.
//! - [`instrument`]: spans and live instruments any layer records (a leaf).
//! - [`telemetry`]: OpenTelemetry metrics (Prometheus `/metrics`, OTLP) and trace export;
//!   it reads the other layers' stats, so none of them imports it.

pub mod config;
pub mod instrument;
pub mod lb;
pub mod link;
pub mod net;
pub mod notify;
pub mod runtime;
pub mod script;
pub mod telemetry;
pub mod track;
pub mod units;
pub mod vrrp;
