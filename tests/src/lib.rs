//! Test support: network namespaces, a switched LAN, processes inside namespaces.
//!
//! Every namespace name is unique per test (prefix, pid, counter) and is deleted on drop
//! together with every process still running in it, so tests can run side by side and
//! leave nothing behind. Needs root.
//!
//! Layout:
//! - [`Netns`]: one named network namespace.
//! - [`Lan`]: a switch namespace with a bridge, and hosts plugged into it by veth pairs.
//! - [`Agent`]: an ha-agent (or keepalived) process running in a host namespace.
//! - [`bin`]: where the workspace binaries are.
//! - [`otlp`]: an OTLP/gRPC receiver; [`idle`]: the idle pair of the CPU benchmarks;
//!   [`bench`]: interruption-aware waits of the benchmark programs; [`chaos`]: the seeded
//!   fault schedule, its nemeses and invariants (chaos-bench, tests/chaos.rs);
//!   [`systemd`]: `systemd-analyze verify` of the units; [`scratch`]: a directory removed on drop;
//!   [`syslog`]: a private rsyslogd; [`web`]: real servers, nginx and curl loops.

pub mod bench;
pub mod chaos;
pub mod conf;
pub mod fleet;
pub mod idle;
pub mod lan;
pub mod measure;
pub mod netns;
pub mod otlp;
pub mod proc;
pub mod scenario;
pub mod scratch;
pub mod syslog;
pub mod systemd;
pub mod tmpfs;
pub mod web;

pub use lan::{Host, Lan};
pub use netns::Netns;
pub use proc::{bin, Agent, Daemon};
