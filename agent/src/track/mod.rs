//! Trackers: what moves an instance's priority or puts it in FAULT.
//!
//! Layout:
//! - [`priority`]: pure: [`TrackerState`] per instance reference, [`effective_priority`],
//!   and [`instance_trackers`] building an instance's list from the config.
//! - [`hysteresis`]: pure keepalived rise/fall counter for `vrrp_script`.
//! - [`script`]: a task per `vrrp_script`, running it every interval with the safe
//!   runner and sending transitions.
//! - [`file`]: a task per `track_file`, polling the file's integer value.
//! - [`process`]: a task per `vrrp_track_process`, scanning /proc for a quorum.
//! - [`interface`]: `track_interface` events from the engine's own link state.
//!
//! Tasks never touch instance state: each sends [`TrackerEvent`]s (transitions only)
//! on an unbounded channel the engine reads; the engine applies an event to every
//! instance's [`TrackerState`] with that kind and name, then recomputes
//! [`effective_priority`]. A task ends when the receiver is dropped or it is aborted.

pub mod file;
pub mod hysteresis;
pub mod interface;
pub mod priority;
pub mod process;
pub mod script;

use std::fmt;

pub use priority::{
    effective_priority, instance_trackers, Contribution, PriorityOutcome, TrackerState,
};

use crate::script::ScriptResult;

/// What kind of object is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackerKind {
    /// `vrrp_script` / `track_script`.
    Script,
    /// `track_file`.
    File,
    /// `track_interface`.
    Interface,
    /// `vrrp_track_process` / `track_process`.
    Process,
}

impl fmt::Display for TrackerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackerKind::Script => "script",
            TrackerKind::File => "file",
            TrackerKind::Interface => "interface",
            TrackerKind::Process => "process",
        })
    }
}

/// State of a tracked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not known yet (a script before its first result, a file not read yet).
    Unknown,
    /// Will not run (an insecure or missing script): ignored, as keepalived does.
    Disabled,
    /// Good: script succeeded, interface up, process quorum met.
    Up,
    /// Failed.
    Down,
    /// A track file's value.
    Value(i64),
}

impl Status {
    /// Whether it is good (a file value: zero, as a weight-0 track file reads it);
    /// `None` if unknown or disabled.
    pub fn ok(self) -> Option<bool> {
        match self {
            Status::Up => Some(true),
            Status::Down => Some(false),
            Status::Value(v) => Some(v == 0),
            Status::Unknown | Status::Disabled => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown => f.write_str("unknown"),
            Status::Disabled => f.write_str("disabled"),
            Status::Up => f.write_str("up"),
            Status::Down => f.write_str("down"),
            Status::Value(v) => write!(f, "value {v}"),
        }
    }
}

/// A tracked object changed state (sent to the engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerEvent {
    /// Kind of object.
    pub kind: TrackerKind,
    /// Its name (as referenced by `track_*` lines).
    pub name: String,
    /// New state.
    pub status: Status,
    /// Short human reason (exit status, error, process count), for logs and history.
    pub detail: String,
    /// For scripts: the run that caused the transition.
    pub run: Option<Box<ScriptResult>>,
}
