//! The virtual-server runtime (keepalived's checker process logic, minus the checkers):
//! checker verdicts, VIP states and manager overrides in; the desired data-plane table,
//! notify scripts, status and history events out.
//!
//! ```text
//!  checker tasks --CheckEvent-----> +--------------------+ --desired table--> Reconciler
//!  VRRP engine ---VipState--------> |  LbState (pure)    |                    (DataPlane:
//!  manager link --RsAdd/Del/...--> |  one task: run()   | --LbStatus (watch)   nft / ipvs)
//!  resync / retry deadline -------> +--------------------+ --LbEvent--> history
//!                                             +--> notify_up/down, quorum_up/down scripts
//! ```
//!
//! Semantics (keepalived's `check_data` / `ipwrapper`):
//! - a real server is alive when all its checkers pass; one without checkers always is;
//!   with `alpha` its checkers start failed (it joins on the first pass), else passed;
//! - a dead server leaves the table, or stays with weight 0 with `inhibit_on_failure`;
//! - quorum: the sum of the weights of live servers; gained when it reaches
//!   `quorum + hysteresis`, lost when it falls below `quorum - hysteresis` (or to 0);
//!   on loss the live servers are replaced by the `sorry_server` when there is one;
//!   `quorum_up` / `quorum_down` run on changes, `notify_up` / `notify_down` per server;
//! - `ha_suspend`: an address service is programmed only while the VIP is held
//!   ([`ServiceInput::VipState`]); `omega`: at shutdown, the down notifiers run too;
//! - manager overrides ([`ServiceInput::RsAdd`] ...) layer on the config: added servers
//!   have no checkers, drain is weight 0 with connections kept.
//!
//! Checkers are not spawned here: the caller spawns one per checker block with the
//! virtual server named by [`vs_name`] and sends their [`CheckEvent`]s in.
//!
//! # Layout (as vrrp/: pure state apart from the task)
//! - `input.rs`: the messages: [`ServiceInput`], [`RsOverride`] in; [`Effect`],
//!   [`LbEvent`] out;
//! - `state.rs`: [`LbState`], the pure per-virtual-server state, quorum and the desired
//!   table;
//! - `build.rs`: [`LbState::from_config`], virtual-server names ([`vs_name`], [`rs_key`]);
//! - `events.rs`: one handler per input ([`LbState::on_check`], [`LbState::on_input`]);
//! - `status.rs`: [`LbStatus`] and what the data plane really programmed;
//! - `backend.rs`: `lvs_backend`: the [`Backend`] (IPVS or nftables) the task drives;
//! - `error.rs`: typed errors (config, overrides);
//! - `run.rs`: the task: effects executed, the reconciler driven ([`spawn`], [`run`]).
//!
//! [`CheckEvent`]: crate::lb::check::CheckEvent

mod backend;
mod build;
mod error;
mod events;
mod input;
mod run;
mod state;
mod status;

#[cfg(test)]
mod tests;

pub use backend::{backend_setting, choose_backend, open_backend, Backend, BackendKind};
pub use build::{rs_key, vs_name};
pub use error::{ConfigError, OverrideError};
pub use input::{Effect, LbEvent, NotifyCmd, RsAction, RsOverride, ServiceInput};
pub use run::{run, run_prepared, spawn, Prepared};
pub use state::LbState;
pub use status::{programmed, CheckerStatus, LbStatus, RsStatus, VsStatus};
