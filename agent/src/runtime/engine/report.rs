//! States and counters out: the SIGUSR2 stats dump and the snapshot the metrics read.

use super::*;

impl Engine {
    /// Where a dump goes: global_defs' `*_dump_file`, else `default` in `--runtime-dir`.
    fn dump_path(&self, configured: Option<&std::path::Path>, default: &str) -> PathBuf {
        DumpFiles::resolve(configured, &self.runtime_dir, default)
    }

    /// SIGUSR2: write the current stats to `<runtime-dir>/stats.json` (or
    /// `stats_dump_file`).
    pub(super) fn dump_stats(&mut self) {
        self.dump_seq += 1;
        let s = self.stats();
        let path = self.dump_path(self.dump_files.stats.as_deref(), stats::STATS_FILE);
        match stats::write(&path, &s) {
            Ok(()) => debug!(file = %path.display(), "stats written"),
            Err(e) => warn!(file = %path.display(), error = %e, "cannot write stats"),
        }
    }

    /// SIGUSR1: the data dump, text (`state_dump_file`) and JSON (`json_dump_file`), by
    /// default in the runtime directory.
    pub(super) fn dump_data(&mut self) {
        use crate::runtime::datadump::{JSON_FILE, TEXT_FILE};
        self.dump_seq += 1;
        let s = self.stats();
        let wall = ha_common::time::wall_timestamp();
        let text = self.dump_path(self.dump_files.state.as_deref(), TEXT_FILE);
        let json = self.dump_path(self.dump_files.json.as_deref(), JSON_FILE);
        match crate::runtime::datadump::write(&text, &json, &s, &wall) {
            Ok(()) => info!(file = %text.display(), json = %json.display(), "data dump written"),
            Err(e) => {
                warn!(file = %text.display(), json = %json.display(), error = %e, "cannot write the data dump")
            }
        }
    }

    /// States and counters of everything, for the stats file and the metrics.
    pub(super) fn stats(&self) -> stats::Stats {
        let drops = |arr: &[u64]| {
            DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), arr[r.index()]))
                .collect::<BTreeMap<_, _>>()
        };
        stats::Stats {
            dump_seq: self.dump_seq,
            node: self.node.clone(),
            stalls: self.stalls,
            stall_max_us: u64::try_from(self.stall_max.as_micros()).unwrap_or(u64::MAX),
            instances: self
                .slots
                .iter()
                .map(|s| {
                    let c = s.inst.counters();
                    stats::InstanceStats {
                        name: s.plan.cfg.name.clone(),
                        vrid: s.plan.cfg.vrid.get(),
                        interface: s.plan.interface.clone(),
                        state: s.inst.state().to_string(),
                        base_priority: s.plan.cfg.priority.get(),
                        effective_priority: s.inst.effective_priority().get(),
                        master_down_interval_us: s.inst.master_down_interval().as_micros(),
                        counters: stats::CounterStats {
                            rx: c.rx,
                            tx: c.tx,
                            became_master: c.became_master,
                            prio0_sent: c.prio0_sent,
                            prio0_received: c.prio0_received,
                            stalls: c.stalls,
                            stall_deferrals: c.stall_deferrals,
                            peer_master_adverts: c.peer_master_adverts,
                            drops: drops(&c.drops),
                        },
                        transitions: s.transitions.clone(),
                        trackers: s
                            .trackers
                            .iter()
                            .map(|t| stats::TrackerStats {
                                kind: t.kind.to_string(),
                                name: t.name.clone(),
                                status: t.status.to_string(),
                                ok: t.status.ok().unwrap_or(false),
                                weight: t.weight,
                            })
                            .collect(),
                        garp_sent: s.garp_sent,
                        na_sent: s.na_sent,
                        vips_present: Vec::new(),
                        notify_runs: s.notify_runs,
                        notify_failures: s.notify_failures,
                        override_priority: s.override_prio.map(|p| p.get()),
                        version: s.plan.cfg.version.wire(),
                        sync_group: s.plan.sync_group.clone(),
                        source: s.inst.primary().to_string(),
                        master_adver_interval_us: u64::try_from(
                            s.inst.master_adver_interval().as_duration().as_micros(),
                        )
                        .unwrap_or(u64::MAX),
                        last_advert_from: s.last_advert_from.map(|a| a.to_string()),
                        vips: s
                            .vips
                            .iter()
                            .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                            .collect(),
                        preempt: s.plan.cfg.preempt,
                        alerts: s.alerts.iter().map(|(t, _)| t.clone()).collect(),
                    }
                })
                .collect(),
            sockets: self
                .sockets
                .iter()
                .map(|s| stats::SocketStats {
                    interface: s.interface.clone(),
                    drops: drops(&s.drops),
                })
                .collect(),
            lb: self
                .lb
                .as_ref()
                .map(|lb| stats::LbStats::from_status(&lb.status().borrow())),
        }
    }

    /// Publish the stats for the metrics exporter (when it asks: a scrape, an export).
    pub(super) fn publish(&self) {
        // Nobody reads it with telemetry off: skip building the snapshot (every instance
        // and every real server) on the engine's loop.
        if self
            .stats_tx
            .as_ref()
            .is_none_or(|tx| tx.receiver_count() == 0)
        {
            return;
        }
        // Which VIPs are on their interface, added by us: the netlink task publishes its
        // table's outcome, so this is no round trip on the VRRP loop.
        let applied = self.nl.applied();
        let mut st = self.stats();
        for i in &mut st.instances {
            i.vips_present = i
                .vips
                .iter()
                .map(|v| {
                    let addr = v.split('/').next().and_then(|a| a.parse().ok());
                    addr.is_some_and(|a| applied.contains(&(i.name.clone(), a)))
                })
                .collect();
        }
        if let Some(tx) = &self.stats_tx {
            tx.send_replace(std::sync::Arc::new(st));
        }
    }
}
