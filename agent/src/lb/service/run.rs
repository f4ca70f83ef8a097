//! The runtime task: the pure state fed by checker verdicts and inputs, its effects run
//! (notify scripts in their own tasks, events out), the desired table handed to the
//! reconciler, the status published.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::model::Config;
use crate::lb::check::CheckEvent;
use crate::lb::dataplane::reconcile::{ReconcileTiming, Reconciler, TickOutcome};
use crate::lb::dataplane::DataPlane;
use crate::script::{self, ScriptDefaults, ScriptSpec};

use super::backend::Backend;
use super::input::{Effect, LbEvent, ServiceInput};
use super::state::LbState;
use super::status::LbStatus;

/// Timeout of notify_up/down and quorum_up/down scripts.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Run the effects: scripts in their own tasks (never awaited here), events out.
fn execute(
    fx: Vec<Effect>,
    defaults: &ScriptDefaults,
    events: Option<&mpsc::UnboundedSender<LbEvent>>,
) -> Vec<JoinHandle<()>> {
    let mut running = Vec::new();
    for e in fx {
        match e {
            Effect::Event(ev) => {
                if let Some(tx) = events {
                    let _ = tx.send(ev);
                }
            }
            Effect::Script(cmd) => {
                match ScriptSpec::from_command(&cmd.command, cmd.user.as_ref(), defaults) {
                    Ok(spec) => {
                        running.push(tokio::spawn(async move {
                            let r = script::run(&spec, NOTIFY_TIMEOUT).await;
                            if !r.success() {
                                tracing::warn!(script = %spec.display(), exit = ?r.exit,
                                    timed_out = r.timed_out, "lb notify script failed");
                            }
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(script = %cmd.command, error = %e, "lb notify script refused")
                    }
                }
            }
        }
    }
    running
}

/// Spawn the runtime on `backend`. It ends on [`ServiceInput::Shutdown`] or when the
/// inputs channel closes, after removing its services from the data plane.
///
/// It runs on its own thread with a current-thread runtime: the IPVS backend's futures
/// are not provably `Send` (higher-ranked lifetimes in its netlink code), so they cannot
/// go to `tokio::spawn`; the thread needs no `Send` future and keeps the data plane off
/// the VRRP engine's workers. Must be called inside a tokio runtime.
pub fn spawn(
    cfg: &Config,
    backend: Backend,
    checks: mpsc::UnboundedReceiver<CheckEvent>,
    inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) -> JoinHandle<()> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "lb runtime thread: cannot build a runtime");
                return;
            }
        };
        rt.block_on(run(
            &cfg,
            backend,
            ReconcileTiming::default(),
            checks,
            inputs,
            status,
            events,
        ));
    })
}

/// What the runtime loop needs of the config, built once so the config itself need not
/// be kept (a thousand real servers' parsed statements are far larger than their state).
#[derive(Debug)]
pub struct Prepared {
    /// The pure state, as the config sets it up.
    pub state: LbState,
    /// What [`LbState::from_config`] skipped, logged when the loop starts.
    pub errors: Vec<String>,
    /// Script settings of `global_defs` (notify scripts).
    pub defaults: ScriptDefaults,
}

impl Prepared {
    /// Build from the config.
    pub fn from_config(cfg: &Config) -> Prepared {
        let (state, errors) = LbState::from_config(cfg);
        Prepared {
            state,
            errors,
            defaults: ScriptDefaults::from_global(&cfg.global),
        }
    }
}

/// The runtime loop on any data plane (tests use fakes; [`spawn`] uses [`Backend`]).
#[allow(clippy::too_many_arguments)]
pub async fn run<D: DataPlane>(
    cfg: &Config,
    dp: D,
    timing: ReconcileTiming,
    checks: mpsc::UnboundedReceiver<CheckEvent>,
    inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) {
    let prepared = Prepared::from_config(cfg);
    run_prepared(prepared, dp, timing, checks, inputs, status, events).await;
}

/// [`run`] on state built beforehand ([`Prepared::from_config`]).
pub async fn run_prepared<D: DataPlane>(
    prepared: Prepared,
    dp: D,
    timing: ReconcileTiming,
    mut checks: mpsc::UnboundedReceiver<CheckEvent>,
    mut inputs: mpsc::UnboundedReceiver<ServiceInput>,
    status: watch::Sender<LbStatus>,
    events: Option<mpsc::UnboundedSender<LbEvent>>,
) {
    let Prepared {
        mut state,
        errors,
        defaults,
    } = prepared;
    for e in &errors {
        tracing::warn!(error = %e, "virtual server config");
    }
    let mut rec = Reconciler::new(dp, timing, Instant::now());
    drop(execute(state.start(), &defaults, events.as_ref()));
    rec.set_desired(state.desired());
    let mut checks_open = true;
    let mut stats = Vec::new();
    loop {
        let now = Instant::now();
        let outcome = rec.tick(now).await;
        if outcome == TickOutcome::InSync {
            stats = rec.backend_mut().stats().await.unwrap_or_default();
        }
        let now_status = LbStatus {
            virtual_servers: state.status_programmed(rec.status()),
            dataplane: rec.status().clone(),
            stats: stats.clone(),
            override_generation: state.override_generation(),
        };
        status.send_if_modified(|s| {
            let changed = *s != now_status;
            if changed {
                *s = now_status;
            }
            changed
        });
        let deadline = rec.deadline(Instant::now());
        tokio::select! {
            ev = checks.recv(), if checks_open => match ev {
                Some(ev) => {
                    drop(execute(state.on_check(&ev), &defaults, events.as_ref()));
                    // Verdicts that arrived together (a thousand checkers' first round)
                    // are taken as one batch: one status and one desired table for all.
                    while let Ok(ev) = checks.try_recv() {
                        drop(execute(state.on_check(&ev), &defaults, events.as_ref()));
                    }
                }
                None => checks_open = false,
            },
            inp = inputs.recv() => match inp {
                Some(ServiceInput::Shutdown) | None => break,
                Some(ServiceInput::Detach) => return,
                Some(i) => drop(execute(state.on_input(&i), &defaults, events.as_ref())),
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
        rec.set_desired(state.desired());
    }
    // Shutdown: omega notifiers, then our services leave the data plane; the notifiers
    // are awaited (each bounded by its timeout) so they finish before the runtime goes.
    let running = execute(
        state.on_input(&ServiceInput::Shutdown),
        &defaults,
        events.as_ref(),
    );
    rec.set_desired(Vec::new());
    let _ = rec.tick(Instant::now()).await;
    for r in running {
        let _ = r.await;
    }
    status.send_replace(LbStatus {
        virtual_servers: state.status_programmed(rec.status()),
        dataplane: rec.status().clone(),
        stats: Vec::new(),
        override_generation: state.override_generation(),
    });
}
