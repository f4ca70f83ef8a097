//! ha-manager: the central half of the fleet. Agents stream their state and events over
//! `AgentLink.Session`; operators use `Control`. See docs/ARCHITECTURE.md ("The manager").
//!
//! Layout:
//! - `store/`: the [`store::HistoryStore`] trait, its sled and in-memory stores, and the
//!   group committer (durable before ack);
//! - `fleet`: the in-memory fleet view and alerts (split brain, clock offset, ...), pure;
//! - `core`: shared state and the command logic (overrides, audit, switchover);
//! - `session`: one agent stream (hello, snapshot, events, acks, pings, override results);
//! - `api`: thin tonic adapters with per-method authorization;
//! - `server`: TLS setup and serving on a given listener until a shutdown future;
//! - `health`: the standard grpc.health.v1 service and server reflection on the same port;
//! - `listen`: connection admission (handshake deadline, per-source and total bounds,
//!   descriptors kept for authenticated clients); `fdlimit`: RLIMIT_NOFILE;
//! - `pki`: the `pki init` / `pki issue` certificate tooling (rcgen).
//! - `telemetry`: metrics (Prometheus `/metrics`, OTLP), RPC spans, trace propagation.
//!
//! Logging, the `/metrics` plumbing and the clock helpers are the `ha-common` crate's,
//! shared with the agent.

pub mod api;
pub mod core;
pub mod fdlimit;
pub mod fleet;
pub mod health;
pub mod listen;
pub mod pki;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;

/// Wall clock now, ms since the Unix epoch (0 if the clock is before 1970).
pub use ha_common::time::wall_ms as now_ms;
