//! Notifications: `notify_*` scripts and `notify_fifo` lines, delivered in order.
//!
//! Layout:
//! - [`event`]: [`NotifyEvent`] and keepalived's argument and FIFO line formats.
//! - [`scripts`]: which scripts an event runs ([`NotifyScripts`]).
//! - [`fifo`]: FIFO creation, its reader script, the writer task.
//! - [`queue`]: the [`Notifier`]: a queue and a task per instance or group, one script
//!   at a time in event order, each run bounded by a timeout, results sent back.
//!
//! ```text
//!  engine ──notify(ev)──> Notifier ──unbounded──> worker "VI_1" ──run──> scripts
//!   (never waits)            │      ──unbounded──> worker "G1"   ──run──> scripts
//!                            └──────unbounded──> fifo writer(s) ──write──> FIFO
//!  workers ──NotifyReport──> results channel (engine/history)
//! ```

pub mod event;
pub mod fifo;
pub mod queue;
pub mod scripts;

pub use event::{NotifyEvent, NotifyKind, NotifyState};
pub use fifo::{fifo_configs, FifoConfig};
pub use queue::{Notifier, NotifierConfig, NotifyReport, NotifyResult, NotifyTarget};
pub use scripts::{NotifyScripts, ScriptRole};
