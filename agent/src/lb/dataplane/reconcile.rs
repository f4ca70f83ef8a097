//! The data-plane reconciler: the desired table in, [`DataPlane::apply`] out.
//!
//! - [`diff`] is pure: what differs between two tables (services and destinations as
//!   sets), for logs, drift detection and tests.
//! - [`Reconciler`] applies when the desired table changes, re-reads the kernel every
//!   resync period and re-applies on drift (anti-entropy), retries with exponential
//!   backoff while the backend or any object fails, and keeps one status per object for
//!   `hactl status`. It never sleeps: the owner asks [`Reconciler::deadline`] and calls
//!   [`Reconciler::tick`] then, so tests drive it with explicit instants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::instrument::ReconcileRun;

use super::{DataPlane, Forward, ObjectStatus, Service, ServiceKey};

/// How one service differs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceChange {
    /// The service.
    pub key: Option<ServiceKey>,
    /// Scheduler or persistence differ.
    pub attributes: bool,
    /// Destinations to add `(addr, port)`.
    pub dest_added: Vec<(IpAddr, u16)>,
    /// Destinations to remove.
    pub dest_removed: Vec<(IpAddr, u16)>,
    /// Destinations whose weight or forwarding differ: `(addr, port, old, new)` weights.
    pub dest_changed: Vec<(IpAddr, u16, u32, u32)>,
}

/// What differs between a current and a desired table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Services only in desired.
    pub added: Vec<ServiceKey>,
    /// Services only in current.
    pub removed: Vec<ServiceKey>,
    /// Services in both that differ.
    pub changed: Vec<ServiceChange>,
}

impl Diff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line for logs: `+2 -0 ~1`.
    pub fn summary(&self) -> String {
        format!(
            "+{} -{} ~{}",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        )
    }
}

/// Compare two tables (order of services and destinations does not matter).
pub fn diff(current: &[Service], desired: &[Service]) -> Diff {
    let cur: BTreeMap<&ServiceKey, &Service> = current.iter().map(|s| (&s.key, s)).collect();
    let des: BTreeMap<&ServiceKey, &Service> = desired.iter().map(|s| (&s.key, s)).collect();
    let mut d = Diff::default();
    for (k, want) in &des {
        let Some(have) = cur.get(k) else {
            d.added.push((*k).clone());
            continue;
        };
        let mut c = ServiceChange {
            key: Some((*k).clone()),
            attributes: have.scheduler != want.scheduler
                || have.persistence != want.persistence
                || have.persistence_granularity != want.persistence_granularity,
            ..ServiceChange::default()
        };
        let hd: BTreeMap<(IpAddr, u16), (u32, Forward)> = have
            .destinations
            .iter()
            .map(|x| ((x.addr, x.port), (x.weight, x.forward)))
            .collect();
        let wd: BTreeMap<(IpAddr, u16), (u32, Forward)> = want
            .destinations
            .iter()
            .map(|x| ((x.addr, x.port), (x.weight, x.forward)))
            .collect();
        for (a, w) in &wd {
            match hd.get(a) {
                None => c.dest_added.push(*a),
                Some(h) if h != w => c.dest_changed.push((a.0, a.1, h.0, w.0)),
                Some(_) => {}
            }
        }
        let wkeys: BTreeSet<_> = wd.keys().collect();
        c.dest_removed = hd.keys().filter(|a| !wkeys.contains(a)).copied().collect();
        if c.attributes
            || !c.dest_added.is_empty()
            || !c.dest_removed.is_empty()
            || !c.dest_changed.is_empty()
        {
            d.changed.push(c);
        }
    }
    d.removed = cur
        .keys()
        .filter(|k| !des.contains_key(*k))
        .map(|k| (*k).clone())
        .collect();
    d
}

/// Timing of the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileTiming {
    /// Re-read the kernel and heal drift this often.
    pub resync: Duration,
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for ReconcileTiming {
    fn default() -> Self {
        ReconcileTiming {
            resync: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What one [`Reconciler::tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// Nothing was due.
    Idle,
    /// The kernel matched the desired table.
    InSync,
    /// Applied; `failed` objects reported an error (0: all fine).
    Applied {
        /// Why it applied: "change", "drift", "retry".
        reason: &'static str,
        /// Objects with an error.
        failed: usize,
    },
    /// The backend as a whole failed; retried at the deadline.
    Failed(String),
}

impl TickOutcome {
    /// What the `lb reconcile` span records of this run over `objects` applied; `None`
    /// for an idle tick, which makes no span.
    pub fn span_run(&self, objects: usize) -> Option<ReconcileRun<'_>> {
        let (outcome, reason, errors, failure) = match self {
            TickOutcome::Idle => return None,
            TickOutcome::InSync => ("in-sync", "resync", 0, None),
            TickOutcome::Applied { reason, failed } => ("applied", *reason, *failed, None),
            TickOutcome::Failed(e) => ("failed", "", 1, Some(e.as_str())),
        };
        Some(ReconcileRun {
            outcome,
            reason,
            objects,
            errors,
            failure,
        })
    }
}

/// Reconciler state as shown by status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileStatus {
    /// Backend name.
    pub backend: &'static str,
    /// Latest status of every object (sorted by object name).
    pub objects: Vec<ObjectStatus>,
    /// Last whole-backend error, cleared by a successful apply.
    pub last_error: Option<String>,
    /// Applies done.
    pub applies: u64,
    /// Consecutive failed applies (drives the backoff).
    pub failures: u32,
}

/// Keeps a data plane equal to the desired table.
#[derive(Debug)]
pub struct Reconciler<D> {
    /// The backend.
    dp: D,
    /// Timing settings.
    timing: ReconcileTiming,
    /// The table to reach (sorted by key).
    desired: Vec<Service>,
    /// Desired changed since the last apply.
    dirty: bool,
    /// When to retry after a failure.
    retry_at: Option<Instant>,
    /// When to re-read the kernel.
    next_resync: Instant,
    /// Status for `hactl status`.
    status: ReconcileStatus,
}

fn sorted(mut t: Vec<Service>) -> Vec<Service> {
    t.sort_by(|a, b| a.key.cmp(&b.key));
    for s in &mut t {
        s.destinations.sort_by_key(|d| (d.addr, d.port));
    }
    t
}

impl<D: DataPlane> Reconciler<D> {
    /// A reconciler that will apply an empty table at the first tick (clearing leftovers
    /// of a previous run), then whatever [`Reconciler::set_desired`] says.
    pub fn new(dp: D, timing: ReconcileTiming, now: Instant) -> Self {
        let name = dp.name();
        Reconciler {
            dp,
            timing,
            desired: Vec::new(),
            dirty: true,
            retry_at: None,
            next_resync: now + timing.resync,
            status: ReconcileStatus {
                backend: name,
                ..ReconcileStatus::default()
            },
        }
    }

    /// Set the table to reach; applied at the next tick if it changed.
    pub fn set_desired(&mut self, desired: Vec<Service>) {
        let desired = sorted(desired);
        if desired != self.desired {
            self.desired = desired;
            self.dirty = true;
        }
    }

    /// The current desired table.
    pub fn desired(&self) -> &[Service] {
        &self.desired
    }

    /// When [`Reconciler::tick`] has something to do.
    pub fn deadline(&self, now: Instant) -> Instant {
        if self.dirty {
            return now;
        }
        match self.retry_at {
            Some(r) => r.min(self.next_resync),
            None => self.next_resync,
        }
    }

    /// Status for display.
    pub fn status(&self) -> &ReconcileStatus {
        &self.status
    }

    /// The backend (stats, tests).
    pub fn backend_mut(&mut self) -> &mut D {
        &mut self.dp
    }

    fn backoff(&self) -> Duration {
        let exp = self.status.failures.saturating_sub(1).min(16);
        self.timing
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.timing.backoff_max)
    }

    async fn apply(&mut self, now: Instant, reason: &'static str) -> TickOutcome {
        self.dirty = false;
        self.status.applies += 1;
        match self.dp.apply(&self.desired).await {
            Ok(mut objects) => {
                objects.sort_by(|a, b| a.object.cmp(&b.object));
                let failed = objects.iter().filter(|o| o.result.is_err()).count();
                for o in objects.iter().filter(|o| o.result.is_err()) {
                    tracing::warn!(backend = self.status.backend, object = %o.object,
                        error = ?o.result, "data plane object failed");
                }
                self.status.objects = objects;
                self.status.last_error = None;
                if failed == 0 {
                    self.status.failures = 0;
                    self.retry_at = None;
                } else {
                    self.status.failures += 1;
                    self.retry_at = Some(now + self.backoff());
                }
                TickOutcome::Applied { reason, failed }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(backend = self.status.backend, error = %msg, "data plane apply failed");
                self.status.last_error = Some(msg.clone());
                self.status.failures += 1;
                self.retry_at = Some(now + self.backoff());
                TickOutcome::Failed(msg)
            }
        }
    }

    /// Do what is due at `now`: apply a changed table, retry after a failure, or resync
    /// (read back, apply on drift). A run that did something is recorded as a span
    /// (`lb reconcile`: backend, outcome, objects, errors).
    pub async fn tick(&mut self, now: Instant) -> TickOutcome {
        let started = std::time::SystemTime::now();
        let out = self.run_due(now).await;
        let objects = self.status.objects.len();
        if let Some(run) = out.span_run(objects) {
            crate::instrument::reconcile_span(self.status.backend, started, &run);
        }
        out
    }

    async fn run_due(&mut self, now: Instant) -> TickOutcome {
        if self.dirty {
            return self.apply(now, "change").await;
        }
        if self.retry_at.is_some_and(|r| now >= r) {
            self.retry_at = None;
            return self.apply(now, "retry").await;
        }
        if now < self.next_resync {
            return TickOutcome::Idle;
        }
        self.next_resync = now + self.timing.resync;
        match self.dp.read().await {
            Ok(current) => {
                let d = diff(&current, &self.desired);
                if d.is_empty() {
                    TickOutcome::InSync
                } else {
                    tracing::info!(backend = self.status.backend, drift = %d.summary(),
                        "data plane drifted from the desired table; re-applying");
                    self.apply(now, "drift").await
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.status.last_error = Some(msg.clone());
                self.status.failures += 1;
                self.retry_at = Some(now + self.backoff());
                TickOutcome::Failed(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DataPlaneError, Destination, Proto, Stats};
    use super::*;

    fn key(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Proto::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port,
        }
    }

    fn dest(last: u8, weight: u32) -> Destination {
        Destination {
            addr: format!("198.51.100.{last}").parse().unwrap(),
            port: 80,
            weight,
            forward: Forward::Nat,
        }
    }

    fn svc(port: u16, dests: Vec<Destination>) -> Service {
        Service {
            key: key(port),
            scheduler: "wrr".into(),
            persistence: None,
            persistence_granularity: None,
            destinations: dests,
        }
    }

    #[test]
    fn diff_of_equal_tables_is_empty_regardless_of_order() {
        let a = vec![svc(80, vec![dest(11, 3), dest(12, 1)]), svc(81, vec![])];
        let b = vec![svc(81, vec![]), svc(80, vec![dest(12, 1), dest(11, 3)])];
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn diff_finds_services_destinations_and_weights() {
        let cur = vec![svc(80, vec![dest(11, 3), dest(12, 1)]), svc(81, vec![])];
        let mut s = svc(80, vec![dest(11, 0), dest(13, 1)]);
        s.scheduler = "rr".into();
        let des = vec![s, svc(82, vec![])];
        let d = diff(&cur, &des);
        assert_eq!(d.added, vec![key(82)]);
        assert_eq!(d.removed, vec![key(81)]);
        assert_eq!(d.changed.len(), 1);
        let c = &d.changed[0];
        assert!(c.attributes);
        assert_eq!(c.dest_added, vec![(dest(13, 1).addr, 80)]);
        assert_eq!(c.dest_removed, vec![(dest(12, 1).addr, 80)]);
        assert_eq!(c.dest_changed, vec![(dest(11, 0).addr, 80, 3, 0)]);
        assert_eq!(d.summary(), "+1 -1 ~1");
    }

    /// A data plane in memory: `fail` makes apply fail; `broken` marks one object bad.
    #[derive(Default)]
    struct Fake {
        table: Vec<Service>,
        applies: usize,
        fail: bool,
        broken: bool,
    }

    impl DataPlane for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn apply(
            &mut self,
            desired: &[Service],
        ) -> Result<Vec<ObjectStatus>, DataPlaneError> {
            self.applies += 1;
            if self.fail {
                return Err(DataPlaneError::Io {
                    backend: "fake",
                    reason: "boom".into(),
                });
            }
            self.table = desired.to_vec();
            Ok(desired
                .iter()
                .map(|s| ObjectStatus {
                    object: format!("{:?}", s.key),
                    result: if self.broken {
                        Err("bad".into())
                    } else {
                        Ok(())
                    },
                })
                .collect())
        }
        async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
            Ok(self.table.clone())
        }
        async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn applies_on_change_resyncs_on_drift_and_backs_off() {
        let t0 = Instant::now();
        let timing = ReconcileTiming::default();
        let mut r = Reconciler::new(Fake::default(), timing, t0);
        // First tick clears leftovers (empty table).
        assert_eq!(
            r.tick(t0).await,
            TickOutcome::Applied {
                reason: "change",
                failed: 0
            }
        );
        r.set_desired(vec![svc(80, vec![dest(11, 1)])]);
        assert_eq!(r.deadline(t0), t0);
        assert_eq!(
            r.tick(t0).await,
            TickOutcome::Applied {
                reason: "change",
                failed: 0
            }
        );
        // Same table again: nothing to do until the resync.
        r.set_desired(vec![svc(80, vec![dest(11, 1)])]);
        assert_eq!(r.tick(t0).await, TickOutcome::Idle);
        let t1 = t0 + timing.resync;
        assert_eq!(r.deadline(t0), t1);
        assert_eq!(r.tick(t1).await, TickOutcome::InSync);
        // Someone flushed our table: the resync heals it.
        r.backend_mut().table.clear();
        let t2 = t1 + timing.resync;
        assert_eq!(
            r.tick(t2).await,
            TickOutcome::Applied {
                reason: "drift",
                failed: 0
            }
        );
        assert_eq!(r.backend_mut().table.len(), 1);
        // Failures back off 1 s, 2 s, 4 s.
        r.backend_mut().fail = true;
        r.set_desired(vec![svc(81, vec![])]);
        assert!(matches!(r.tick(t2).await, TickOutcome::Failed(_)));
        assert_eq!(r.deadline(t2), t2 + Duration::from_secs(1));
        let t3 = t2 + Duration::from_secs(1);
        assert!(matches!(r.tick(t3).await, TickOutcome::Failed(_)));
        assert_eq!(r.deadline(t3), t3 + Duration::from_secs(2));
        assert_eq!(r.status().failures, 2);
        assert!(r.status().last_error.is_some());
        // Recovery resets the backoff and clears the error.
        r.backend_mut().fail = false;
        let t4 = t3 + Duration::from_secs(2);
        assert_eq!(
            r.tick(t4).await,
            TickOutcome::Applied {
                reason: "retry",
                failed: 0
            }
        );
        assert_eq!(r.status().failures, 0);
        assert_eq!(r.status().last_error, None);
        // A failing object also schedules a retry, and its status is kept.
        r.backend_mut().broken = true;
        r.set_desired(vec![svc(82, vec![])]);
        assert_eq!(
            r.tick(t4).await,
            TickOutcome::Applied {
                reason: "change",
                failed: 1
            }
        );
        assert_eq!(r.deadline(t4), t4 + Duration::from_secs(1));
        assert!(r.status().objects[0].result.is_err());
    }

    #[test]
    fn span_runs_of_outcomes() {
        assert_eq!(
            TickOutcome::Idle.span_run(3),
            None,
            "an idle tick makes no span"
        );
        let applied = TickOutcome::Applied {
            reason: "drift",
            failed: 1,
        };
        assert_eq!(
            applied.span_run(3),
            Some(ReconcileRun {
                outcome: "applied",
                reason: "drift",
                objects: 3,
                errors: 1,
                failure: None,
            })
        );
        let r = TickOutcome::InSync.span_run(2).unwrap();
        assert_eq!((r.outcome, r.reason, r.errors), ("in-sync", "resync", 0));
        let failed = TickOutcome::Failed("no nft".into());
        let r = failed.span_run(0).unwrap();
        assert_eq!(
            (r.outcome, r.errors, r.failure),
            ("failed", 1, Some("no nft"))
        );
    }
}
