//! The manager link: the agent's side of `AgentLink.Session`.
//!
//! - [`bridge`]: the messages between the engine and the link task (the contract).
//! - [`task`]: [`LinkOptions`] and [`spawn`], the task that owns the stream.
//! - [`ring`]: the bounded ring of unacked events, seq numbering, GAP markers (pure).
//! - [`backoff`]: reconnect delays with jitter (pure).
//! - [`convert`]: bridge types <-> `ha.v1` wire messages (pure).
//! - [`persist`]: `overrides.json` in the state directory ([`load_persisted`]).
//! - [`endpoint`]: URL, TLS and HTTP/2 settings of the gRPC channel.
//! - [`random`]: boot ids and jitter seeds.
//! - [`stats`]: [`LinkStats`], live counters for telemetry (connected, buffered, reconnects).
//! - [`error`]: the error type, [`LinkError`].

pub mod backoff;
pub mod bridge;
pub mod convert;
pub mod endpoint;
pub mod error;
pub mod persist;
pub mod random;
pub mod ring;
pub mod stats;
pub mod task;

pub use backoff::Backoff;
pub use endpoint::TlsFiles;
pub use error::LinkError;
pub use persist::load_persisted;
pub use stats::LinkStats;
pub use task::{spawn, InstanceInfo, LinkOptions};
