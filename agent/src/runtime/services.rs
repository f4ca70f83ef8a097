//! The helpers around the VRRP engine: tracker tasks (scripts, files, processes) and the
//! notifier (notify scripts and FIFOs), started from the config. They report to the
//! engine over unbounded channels; the engine never waits on them.

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::model::Config;
use crate::notify::Notifier;
use crate::notify::{
    fifo_configs, NotifierConfig, NotifyKind, NotifyReport, NotifyScripts, NotifyTarget,
};
use crate::script::ScriptDefaults;
use crate::track::file::{init_file, spawn_file_tracker, FileTracker};
use crate::track::process::{spawn_process_tracker, ProcessTracker};
use crate::track::script::{spawn_script_tracker, ScriptTracker};
use crate::track::TrackerEvent;

/// Running tracker tasks and the notifier; dropping it stops the trackers.
#[derive(Debug)]
pub struct Services {
    /// One task per tracked script, file and process.
    pub trackers: Vec<JoinHandle<()>>,
    /// Notify scripts and FIFOs.
    pub notifier: Notifier,
}

impl Drop for Services {
    fn drop(&mut self) {
        for t in &self.trackers {
            t.abort();
        }
    }
}

/// Start trackers for every object an instance references, and the notifier.
/// `first_start` writes `init_file` values (keepalived does so at startup, not on reload).
pub fn spawn(
    cfg: &Config,
    first_start: bool,
    trackers_tx: &UnboundedSender<TrackerEvent>,
    reports_tx: UnboundedSender<NotifyReport>,
) -> Services {
    let defaults = ScriptDefaults::from_global(&cfg.global);
    let used = |kind: &str, name: &str| {
        let by_instance = cfg.vrrp_instances.iter().any(|i| {
            let refs = match kind {
                "script" => &i.track_scripts,
                "file" => &i.track_files,
                _ => &i.track_processes,
            };
            refs.iter().any(|r| r.name == name)
        });
        let keyword = format!("track_{kind}");
        by_instance
            || cfg
                .sync_groups
                .iter()
                .any(|g| crate::track::priority::group_refs(g, &keyword).any(|n| n == name))
    };
    let mut trackers = Vec::new();
    for s in cfg.vrrp_scripts.iter().filter(|s| used("script", &s.name)) {
        match ScriptTracker::from_config(s, &defaults) {
            Ok(t) => {
                info!(script = %s.name, "tracking script");
                trackers.push(spawn_script_tracker(t, trackers_tx.clone()));
            }
            Err(e) => warn!(script = %s.name, error = %e, "vrrp_script disabled"),
        }
    }
    for f in cfg.track_files.iter().filter(|f| used("file", &f.name)) {
        let Some(t) = FileTracker::from_config(f) else {
            warn!(track_file = %f.name, "track_file without a file: ignored");
            continue;
        };
        if let (true, Some(init)) = (first_start, t.init) {
            if let Err(e) = init_file(&t.path, init) {
                warn!(file = %t.path.display(), error = %e, "cannot write init_file value");
            }
        }
        trackers.push(spawn_file_tracker(t, trackers_tx.clone()));
    }
    for p in cfg
        .track_processes
        .iter()
        .filter(|p| used("process", &p.name))
    {
        match ProcessTracker::from_section(p) {
            Ok(t) => trackers.push(spawn_process_tracker(t, trackers_tx.clone())),
            Err(e) => warn!(track_process = %p.name, error = %e, "track_process disabled"),
        }
    }

    let mut targets = Vec::new();
    for i in &cfg.vrrp_instances {
        let (scripts, errors) = NotifyScripts::from_config(&i.notify, &defaults);
        for e in errors {
            warn!(instance = %i.name, error = %e, "notify script disabled");
        }
        targets.push(NotifyTarget {
            kind: NotifyKind::Instance,
            name: i.name.clone(),
            scripts,
        });
    }
    for g in &cfg.sync_groups {
        let (scripts, errors) = NotifyScripts::from_config(&g.notify, &defaults);
        for e in errors {
            warn!(group = %g.name, error = %e, "notify script disabled");
        }
        targets.push(NotifyTarget {
            kind: NotifyKind::Group,
            name: g.name.clone(),
            scripts,
        });
    }
    let (fifos, errors) = fifo_configs(&cfg.global, &defaults);
    for e in errors {
        warn!(error = %e, "notify_fifo script disabled");
    }
    let notifier = Notifier::spawn(targets, fifos, NotifierConfig::default(), reports_tx);
    Services { trackers, notifier }
}
