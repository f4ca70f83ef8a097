//! The chaos harness: a trio of VRRP nodes (ha-agent with the manager, or keepalived) on
//! one bridge, an observer, a seeded schedule of faults, and invariants checked over what
//! the observer recorded.
//!
//! - [`schedule`]: the fault schedule, a pure function of the seed (no I/O).
//! - [`invariants`]: the invariants and their margins, pure checks over recorded samples.
//! - [`topo`]: the topology, the daemons, and the nemeses that act on them.
//! - [`run`]: one run: settle, play the schedule while sampling, check, report.

pub mod invariants;
pub mod run;
pub mod schedule;
pub mod topo;
