//! The contract between the engine (which owns the VRRP instances) and the link task
//! (which owns the gRPC stream to ha-manager). The engine never waits on the link: it
//! sends [`ToLink`] on an unbounded channel and answers [`FromLink`] requests from its
//! loop. A manager that is down, slow or wrong never stops or changes VRRP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::units::Priority;

/// What happened locally; the link numbers it `(node, boot_id, seq)` and ships it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEvent {
    /// Event kind, as `ha_proto::v1::EventKind` numbers it.
    pub kind: i32,
    /// Instance concerned ("" for agent-wide events).
    pub instance: String,
    /// Old state (transitions).
    pub from_state: String,
    /// New state (transitions).
    pub to_state: String,
    /// Why ("master down timer expired", "priority override", ...).
    pub reason: String,
    /// Free text details.
    pub detail: String,
    /// Wall clock at the event, ms since the Unix epoch.
    pub wall_time_ms: i64,
}

/// Current state of one instance, as the manager shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceView {
    /// vrrp_instance name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// MASTER, BACKUP, FAULT, INIT.
    pub state: String,
    /// Configured priority.
    pub base_priority: u8,
    /// Priority in effect.
    pub effective_priority: u8,
    /// Priority override in force (None = none).
    pub override_priority: Option<u8>,
    /// VIPs in force, "addr/plen".
    pub vips: Vec<String>,
    /// Local alerts (VRID collision ...).
    pub alerts: Vec<String>,
    /// Source of the last accepted advert.
    pub last_advert_from: Option<IpAddr>,
    /// Trackers: (kind, name, ok, weight).
    pub trackers: Vec<(String, String, bool, i32)>,
    /// Last notify result, one line.
    pub last_notify: String,
}

/// One VIP change of an override set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipChange {
    /// Instance.
    pub instance: String,
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Added to the configured VIPs (true) or a configured VIP removed (false).
    pub add: bool,
}

/// The complete desired override set (replaces the previous one as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OverrideSet {
    /// Monotonic generation from the manager.
    pub generation: u64,
    /// The request this set answers.
    pub request_id: String,
    /// Priority overrides by instance.
    pub priorities: BTreeMap<String, Priority>,
    /// VIP changes.
    pub vips: Vec<VipChange>,
    /// Real-server overrides (`hactl rs`); absent in sets persisted by older agents.
    #[serde(default)]
    pub real_servers: Vec<crate::lb::service::RsOverride>,
}

/// Requests from the link to the engine.
#[derive(Debug)]
pub enum FromLink {
    /// Validate the whole set and apply it atomically, or change nothing and say why.
    ApplyOverrides {
        /// The set.
        set: OverrideSet,
        /// Ok, or every error found.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The current state of every instance.
    Snapshot {
        /// Where to answer.
        reply: oneshot::Sender<Vec<InstanceView>>,
    },
}

/// Messages from the engine to the link.
#[derive(Debug, Clone)]
pub enum ToLink {
    /// Something happened.
    Event(LocalEvent),
    /// The load-balancer status to report from now on (sent at start and whenever the
    /// load-balancer runtime is restarted); the link sends it with every snapshot and
    /// when it changes, and waits on it for the result of a real-server override.
    Lb(tokio::sync::watch::Receiver<crate::lb::service::LbStatus>),
}

impl serde::Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(Priority)
    }
}

/// Event kinds, numbered as `ha.v1.EventKind` (kept here so the engine needs no gRPC types).
pub mod kind {
    /// State transition.
    pub const TRANSITION: i32 = 1;
    /// Events lost before this one.
    pub const GAP: i32 = 2;
    /// An override set was applied.
    pub const OVERRIDE_APPLIED: i32 = 3;
    /// An override set was refused.
    pub const OVERRIDE_REJECTED: i32 = 4;
    /// A local alert was raised.
    pub const ALERT_RAISED: i32 = 5;
    /// A local alert cleared.
    pub const ALERT_CLEARED: i32 = 6;
    /// The agent started.
    pub const AGENT_START: i32 = 7;
    /// The agent is stopping.
    pub const AGENT_STOP: i32 = 8;
    /// A tracker changed.
    pub const TRACKER: i32 = 9;
    /// A notify script ran.
    pub const NOTIFY: i32 = 10;
    /// Config loaded or reloaded (or a reload was refused).
    pub const CONFIG: i32 = 11;
    /// A checker's verdict changed.
    pub const CHECKER: i32 = 13;
    /// A real server became alive or dead.
    pub const REAL_SERVER: i32 = 14;
    /// A virtual server gained or lost quorum.
    pub const QUORUM: i32 = 15;
}
