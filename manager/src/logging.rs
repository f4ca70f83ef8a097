//! Manager logging: the same outputs and flags as the agent (human or JSON lines on stderr
//! or an appended `--log-file`, syslog with `--log-facility`). The source is the agent's
//! `agent/src/runtime/logging.rs`, compiled into this crate as well, so both binaries log
//! alike without a shared crate; it uses only std, tracing, tracing-subscriber, thiserror,
//! serde_json and libc.

#[path = "../../agent/src/runtime/logging.rs"]
mod imp;

pub use imp::*;
