//! The runtime's messages: what comes in besides checker verdicts ([`ServiceInput`],
//! the manager's [`RsOverride`]s) and what the pure state asks for ([`Effect`]: notify
//! scripts, history [`LbEvent`]s). Plain data; not here: what each input does
//! (events.rs).

use std::net::IpAddr;

use crate::config::model::ScriptUser;
use crate::lb::check::RsKey;

/// Inputs of the runtime besides checker events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceInput {
    /// A VRRP instance holding `addr` became MASTER (`master`) or left it (ha_suspend).
    VipState {
        /// The VIP.
        addr: IpAddr,
        /// Held by a MASTER instance here.
        master: bool,
    },
    /// `hactl rs add`: a real server without checkers (always alive), or a new weight
    /// for an existing one.
    RsAdd {
        /// Virtual server name ([`vs_name`](super::vs_name)).
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// Weight.
        weight: u32,
    },
    /// `hactl rs del`: remove a real server (config ones too, until the override goes).
    RsDel {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `hactl rs weight`: override the weight (`None` returns to the configured weight
    /// and ends a drain).
    RsWeight {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// New weight, or back to the config.
        weight: Option<u32>,
    },
    /// `hactl rs drain`: weight 0, established connections kept.
    RsDrain {
        /// Virtual server name.
        vs: String,
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// The manager's whole real-server override set: replaces the one in force (servers
    /// it added and no longer names go, configured ones return to the config), then each
    /// entry applies as the matching `Rs*` input.
    SetOverrides {
        /// Generation of the override set (shown in [`LbStatus::override_generation`](super::LbStatus::override_generation)).
        generation: u64,
        /// At most one entry per (virtual server, address, port).
        list: Vec<RsOverride>,
    },
    /// Stop: run omega notifiers, remove our services from the data plane, end the task.
    Shutdown,
    /// End the task and leave the data plane as it is (a reload's successor takes over
    /// and reconciles from there).
    Detach,
}

/// One real-server override, as the manager pushes it and the agent persists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RsOverride {
    /// Virtual server name ([`vs_name`](super::vs_name)).
    pub vs: String,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// What to do.
    pub action: RsAction,
}

/// What a [`RsOverride`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RsAction {
    /// Add a server without checkers (or re-weight an existing one).
    Add {
        /// Weight.
        weight: u32,
    },
    /// Remove (a configured one too, while the override lasts).
    Del,
    /// Set the weight.
    Weight(u32),
    /// Weight 0, connections kept.
    Drain,
}

impl RsOverride {
    /// The incremental input this entry applies as.
    pub fn input(&self) -> ServiceInput {
        let (vs, addr, port) = (self.vs.clone(), self.addr, self.port);
        match self.action {
            RsAction::Add { weight } => ServiceInput::RsAdd {
                vs,
                addr,
                port,
                weight,
            },
            RsAction::Del => ServiceInput::RsDel { vs, addr, port },
            RsAction::Weight(w) => ServiceInput::RsWeight {
                vs,
                addr,
                port,
                weight: Some(w),
            },
            RsAction::Drain => ServiceInput::RsDrain { vs, addr, port },
        }
    }
}

/// Something worth keeping in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbEvent {
    /// One checker's verdict changed.
    Checker {
        /// Real server.
        rs: RsKey,
        /// Checker index.
        checker: usize,
        /// Kind ("HTTP_GET").
        kind: &'static str,
        /// Passing now.
        up: bool,
        /// Why.
        detail: String,
    },
    /// A real server became alive (`up`) or dead.
    RealServer {
        /// Real server.
        rs: RsKey,
        /// Alive now.
        up: bool,
    },
    /// A virtual server gained (`up`) or lost quorum.
    Quorum {
        /// Virtual server name.
        vs: String,
        /// Quorum held now.
        up: bool,
        /// Sum of the weights of live servers.
        weight: u64,
    },
    /// An override was applied (or refused: `error`).
    Override {
        /// The input, for the record.
        input: String,
        /// Why it was refused.
        error: Option<String>,
    },
}

/// A notify script as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCmd {
    /// Command line.
    pub command: String,
    /// Own `user [group]`.
    pub user: Option<ScriptUser>,
}

/// What the pure state asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run a notify script (never awaited by the state).
    Script(NotifyCmd),
    /// Record a history event.
    Event(LbEvent),
}
