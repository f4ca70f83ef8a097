//! Code ha-agent and ha-manager share, so both binaries log, serve `/metrics` and read
//! the clock alike.
//!
//! # Layout
//! - [`logging`]: the log subscriber (human or JSON lines on stderr or `--log-file`,
//!   RFC 3164 syslog with `--log-facility`), reopened on SIGHUP.
//! - [`export`]: telemetry plumbing: the `/metrics` page (manual reader, Prometheus text
//!   encoder, page cache) and its server, the OTLP metric reader and tracer provider, the
//!   flush on shutdown, the setup errors.
//! - [`process`]: the `process_*` and `ha_build_info` families written onto the page.
//! - [`time`]: wall-clock milliseconds and local time (never for protocol timers).
//!
//! Not here: which instruments each binary has and what they read (each crate's
//! telemetry.rs), anything of the VRRP protocol or the fleet view.

pub mod export;
pub mod logging;
pub mod process;
pub mod time;
