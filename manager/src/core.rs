//! Shared manager state and the command logic behind `Control`: the fleet view, the
//! store and its committer, live agent sessions, the watch broadcast, and the mutations
//! (set-priority, VIP change, real-server overrides, switchover) with their audit and
//! request-id replay.
//!
//! Commands: a request id that already has a stored reply returns it with
//! `replayed = true`; one still running is waited for. Validation failures are errors
//! (not stored; a retry validates again). Everything else yields a `CommandReply` that is
//! stored (first reply wins) and recorded as a COMMAND event with the caller's identity.
//!
//! Override push: the desired set is stored with a new generation, pushed to the agent if
//! connected, and the reply waits (up to `override_timeout`) for the agent's
//! `OverrideResult`. An agent that rejects the set gets its previous content back as the
//! desired set (under a newer generation). A node that is not connected keeps the stored
//! set; the reply is `ok = false` with error "agent NODE not connected; override stored
//! as generation N, applied when it connects". The reply carries the state of what the
//! command is about ([`Subject`]): the instance, or the virtual server (`hactl rs`), as
//! the agent reported it after applying (the fleet view's copy when it did not answer).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ha_proto::auth::Identity;
use ha_proto::v1::{
    manager_msg, CommandReply, Event, EventKind, Heartbeat, Hello, InstanceState, LbStatus,
    ManagerMsg, NodeStatus, OverrideResult, Overrides, Ping, PriorityOverride, RealServerOverride,
    RealServerRequest, RsAction, SetPriorityRequest, Snapshot, StatusReply, SwitchoverRequest,
    VipChangeRequest, VipOverride, VirtualServerState,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::fleet::{Fleet, FleetOptions, MASTER};
use crate::now_ms;
use crate::store::commit::{CommitOptions, Committer, Outcome};
use crate::store::{HistoryPage, HistoryQuery, HistoryStore, StoreError};

/// Manager tuning.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// Every caller is `Identity::insecure()` and agents' names are not checked.
    pub insecure: bool,
    /// Clock offset alert threshold, ms.
    pub clock_alert_ms: f64,
    /// How often sessions ping their agent.
    pub ping_interval: Duration,
    /// How long a command waits for the agent's `OverrideResult`.
    pub override_timeout: Duration,
    /// How long a switchover waits for the target to become master.
    pub switchover_timeout: Duration,
    /// Group commit tuning.
    pub commit: CommitOptions,
    /// Capacity of the watch broadcast.
    pub watch_capacity: usize,
    /// A connected agent silent for longer than this is unreachable (never counted as
    /// a master).
    pub silent_after: Duration,
    /// Added to Master_Down_Interval before two masters are a split brain.
    pub split_margin: Duration,
    /// How often the fleet view re-evaluates liveness and pending split brains.
    pub tick_interval: Duration,
    /// Advert interval assumed for instances whose agent does not report one.
    pub default_advert: Duration,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            insecure: false,
            clock_alert_ms: 500.0,
            ping_interval: Duration::from_secs(5),
            override_timeout: Duration::from_secs(10),
            switchover_timeout: Duration::from_secs(30),
            commit: CommitOptions::default(),
            watch_capacity: 4096,
            silent_after: Duration::from_secs(15),
            split_margin: Duration::from_secs(1),
            tick_interval: Duration::from_millis(250),
            default_advert: Duration::from_secs(1),
        }
    }
}

/// Why a command was refused (mapped to gRPC codes by `api`).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Malformed request (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown node or instance, listing what exists (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The fleet is not in a state where this can run (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed (INTERNAL).
    #[error("history store: {0}")]
    Store(#[from] StoreError),
    /// The store cannot take writes (a full disk): refused or not recorded, with what
    /// to do (FAILED_PRECONDITION).
    #[error("{0}")]
    StoreUnavailable(String),
    /// The manager is stopping (UNAVAILABLE).
    #[error("manager is shutting down")]
    Unavailable,
}

/// A live agent session, as commands see it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Session id.
    pub conn: u64,
    /// Messages to the agent.
    pub tx: mpsc::Sender<Result<ManagerMsg, tonic::Status>>,
    /// Commands waiting for an `OverrideResult`, by request id.
    pub pending: Arc<Mutex<HashMap<String, oneshot::Sender<OverrideResult>>>>,
}

/// The manager's shared state.
pub struct Core {
    /// Options.
    pub opts: CoreOptions,
    /// Persistent state.
    store: Arc<dyn HistoryStore>,
    /// Group committer of events.
    committer: Committer,
    /// The fleet view.
    fleet: Mutex<Fleet>,
    /// Bumped on every fleet change (switchover waits on it).
    changed: watch::Sender<u64>,
    /// Durable events, for `Watch`.
    watch_tx: broadcast::Sender<Event>,
    /// Live sessions by node.
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Session id source.
    next_conn: AtomicU64,
    /// One command at a time per node (generations stay in order).
    node_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Refused sessions and reads already audited, by (caller, node, op, reason): when
    /// and how many were left out since (rate limit of [`Core::record_refusal`]).
    refusals: Mutex<HashMap<RefusalKey, (tokio::time::Instant, u64)>>,
    /// Commands running, by request id; `Some` once answered.
    inflight: Mutex<HashMap<String, watch::Receiver<Option<CommandReply>>>>,
    /// Set when the manager stops: sessions and watches end.
    shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn strip(set: &Overrides) -> Overrides {
    Overrides {
        generation: set.generation,
        request_id: String::new(),
        instance: String::new(),
        priorities: set.priorities.clone(),
        vips: set.vips.clone(),
        traceparent: String::new(),
        virtual_server: String::new(),
        real_servers: set.real_servers.clone(),
    }
}

/// Parses "ADDR/PLEN" into its canonical spelling.
pub fn parse_vip(s: &str) -> Result<String, String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("address {s:?} must be ADDR/PLEN, e.g. 192.0.2.20/24"))?;
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("address {a:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let plen: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length {p:?} out of range 0..={max}"))?;
    Ok(format!("{ip}/{plen}"))
}

/// The audited operation name of a real-server action ("rs-drain").
pub fn rs_op(action: i32) -> &'static str {
    match RsAction::try_from(action) {
        Ok(RsAction::RsAdd) => "rs-add",
        Ok(RsAction::RsDel) => "rs-del",
        Ok(RsAction::RsWeight) => "rs-weight",
        Ok(RsAction::RsDrain) => "rs-drain",
        Ok(RsAction::RsReset) => "rs-reset",
        Ok(RsAction::Unspecified) | Err(_) => "rs",
    }
}

/// Checks a `RealServer` request and returns its override entry (address canonical,
/// weight 0 where the action takes none; `RS_RESET` marks "drop the entry").
pub fn real_server_override(req: &RealServerRequest) -> Result<RealServerOverride, String> {
    let action = match RsAction::try_from(req.action) {
        Ok(RsAction::Unspecified) => {
            return Err("action is required: add, del, weight, drain or reset".into())
        }
        Ok(a) => a,
        Err(_) => return Err(format!("unknown real-server action {}", req.action)),
    };
    if req.virtual_server.trim().is_empty() {
        return Err(
            "virtual_server is required (its name as status shows it, e.g. 192.0.2.10:80/TCP)"
                .into(),
        );
    }
    let addr: IpAddr = req.addr.parse().map_err(|_| {
        format!(
            "real server address {:?} is not an IPv4 or IPv6 address",
            req.addr
        )
    })?;
    if req.port > u32::from(u16::MAX) {
        return Err(format!("port {} out of range 0..=65535", req.port));
    }
    let takes_weight = matches!(action, RsAction::RsAdd | RsAction::RsWeight);
    if takes_weight && req.weight > u32::from(u16::MAX) {
        return Err(format!("weight {} out of range 0..=65535", req.weight));
    }
    Ok(RealServerOverride {
        virtual_server: req.virtual_server.clone(),
        addr: addr.to_string(),
        port: req.port,
        action: action as i32,
        weight: if takes_weight { req.weight } else { 0 },
    })
}

/// Puts `entry` in `set`, replacing the one for the same (virtual server, addr, port);
/// an `RS_RESET` entry only removes it. The list stays sorted.
///
/// A server that exists only through an `RS_ADD` entry (`configured` false) keeps that
/// entry, since the agent takes del, weight and drain only for configured servers: del
/// drops the entry (the server goes), weight becomes the add's weight, drain an add with
/// weight 0.
fn set_real_server_in(set: &mut Overrides, mut entry: RealServerOverride, configured: bool) {
    let key = |r: &RealServerOverride| (r.virtual_server.clone(), r.addr.clone(), r.port);
    let k = key(&entry);
    let add = RsAction::RsAdd as i32;
    let added = set
        .real_servers
        .iter()
        .any(|r| key(r) == k && r.action == add);
    if added && !configured {
        match RsAction::try_from(entry.action) {
            Ok(RsAction::RsDel) => entry.action = RsAction::RsReset as i32,
            Ok(RsAction::RsWeight) => entry.action = add,
            Ok(RsAction::RsDrain) => {
                entry.action = add;
                entry.weight = 0;
            }
            _ => {}
        }
    }
    set.real_servers.retain(|r| key(r) != k);
    if entry.action != RsAction::RsReset as i32 {
        set.real_servers.push(entry);
        set.real_servers.sort_by_key(key);
    }
}

/// What an override command is about: the state its reply carries.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A VRRP instance (`CommandReply.instance`).
    Instance(&'a str),
    /// A virtual server (`CommandReply.virtual_server`).
    VirtualServer(&'a str),
}

impl Core {
    /// Builds the manager over `store`: loads known nodes, starts the committer.
    pub fn open(store: Arc<dyn HistoryStore>, opts: CoreOptions) -> std::io::Result<Arc<Core>> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut fleet = Fleet::with_options(FleetOptions {
            clock_alert_ms: opts.clock_alert_ms,
            silent_after_ms: ms(opts.silent_after),
            split_margin_ms: ms(opts.split_margin),
            default_advert_ms: u32::try_from(opts.default_advert.as_millis())
                .unwrap_or(u32::MAX)
                .max(10),
        });
        fleet.load(store.nodes().map_err(std::io::Error::other)?);
        let (watch_tx, _) = broadcast::channel(opts.watch_capacity.max(16));
        let wt = watch_tx.clone();
        let committer = Committer::start(
            store.clone(),
            opts.commit,
            Box::new(move |evs| {
                for e in evs {
                    let _ = wt.send(e.clone());
                }
            }),
        )?;
        let core = Arc::new(Core {
            opts,
            store,
            committer,
            fleet: Mutex::new(fleet),
            changed: watch::channel(0).0,
            watch_tx,
            sessions: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            node_locks: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(tick_loop(Arc::downgrade(&core)));
        }
        Ok(core)
    }

    /// One liveness pass: re-evaluates the fleet view and pings the nodes whose fresh
    /// word a pending split brain waits for.
    pub fn tick(&self) {
        let now = now_ms();
        let h = self.committer.health();
        let problem = h.failing_since_ms.map(|since| {
            format!(
                "history store not writable for {} s{}: {}; agents' events are not acked (they wait in the agents' buffers); {} failed attempts",
                (now - since).max(0) / 1000,
                if h.disk_full { " (disk full)" } else { "" },
                h.last_error,
                h.failures
            )
        });
        let probes = self.mutate_fleet(|f| {
            let mut evs = f.store_alert(problem, now);
            evs.extend(f.tick(now));
            (f.probes(now), evs)
        });
        for node in probes {
            let h = lock(&self.sessions).get(&node).cloned();
            if let Some(h) = h {
                let id = PROBE_PING_BASE + self.next_conn.fetch_add(1, Ordering::Relaxed);
                let ping = ManagerMsg {
                    msg: Some(manager_msg::Msg::Ping(Ping {
                        ping_id: id,
                        manager_ms: now_ms(),
                    })),
                };
                // A full queue means the node is busy talking: its next message is
                // the fresh word anyway.
                let _ = h.tx.try_send(Ok(ping));
            }
        }
    }

    /// The store (for retention and tests).
    pub fn store(&self) -> &Arc<dyn HistoryStore> {
        &self.store
    }

    /// The group committer.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Runs a store call on a blocking thread.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn HistoryStore) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, CommandError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|_| CommandError::Unavailable)?
            .map_err(store_error)
    }

    /// Refuses a command while history writes fail (nothing is changed); makes a store
    /// that failed earlier usable again first (sled is reopened).
    async fn check_store(&self) -> Result<(), CommandError> {
        let h = self.committer.health();
        if h.failing() {
            return Err(CommandError::StoreUnavailable(format!(
                "history store not writable{}: {}; command refused, nothing changed (free space in the data directory: the manager catches up by itself)",
                if h.disk_full { " (disk full)" } else { "" },
                h.last_error
            )));
        }
        self.blocking(|s| s.recover().map(|_| ())).await
    }

    /// Applies a fleet mutation; records the manager events it yields.
    pub fn mutate_fleet<R>(&self, f: impl FnOnce(&mut Fleet) -> (R, Vec<Event>)) -> R {
        let (r, evs) = f(&mut lock(&self.fleet));
        self.committer.record(evs);
        self.changed.send_modify(|v| *v += 1);
        r
    }

    /// Read access to the fleet view.
    pub fn with_fleet<R>(&self, f: impl FnOnce(&Fleet) -> R) -> R {
        f(&lock(&self.fleet))
    }

    /// Status of every node and the alerts.
    pub fn status(&self) -> StatusReply {
        let now = now_ms();
        self.with_fleet(|f| f.status(now))
    }

    /// Every node.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let now = now_ms();
        self.with_fleet(|f| f.nodes(now))
    }

    /// One page of history.
    pub async fn history(&self, q: HistoryQuery) -> Result<HistoryPage, CommandError> {
        self.blocking(move |s| s.query(&q)).await
    }

    /// Live durable events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.watch_tx.subscribe()
    }

    /// Becomes true when the manager stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Ends sessions and watches (the server then drains).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Stops: ends sessions, commits what is queued and flushes the store.
    pub async fn close(&self) {
        self.begin_shutdown();
        self.committer.close().await;
    }

    // ---------- sessions ----------

    /// Registers a session after its hello; returns its handle.
    pub fn register_session(
        &self,
        hello: &Hello,
        peer: &str,
        tx: mpsc::Sender<Result<ManagerMsg, tonic::Status>>,
    ) -> SessionHandle {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let h = SessionHandle {
            conn,
            tx,
            pending: Arc::new(Mutex::new(HashMap::new())),
        };
        lock(&self.sessions).insert(hello.node.clone(), h.clone());
        self.mutate_fleet(|f| ((), f.connect(hello, peer, conn, now_ms())));
        h
    }

    /// A session ended.
    pub fn unregister_session(&self, node: &str, conn: u64) {
        {
            let mut s = lock(&self.sessions);
            if s.get(node).is_some_and(|h| h.conn == conn) {
                s.remove(node);
            }
        }
        let status = self.mutate_fleet(|f| {
            let evs = f.disconnect(node, conn, now_ms());
            (f.node(node).map(|n| n.status()), evs)
        });
        if let Some(st) = status {
            if let Err(e) = self.store.put_node(&st) {
                tracing::warn!(%node, error = %e, "saving node state failed");
            }
        }
    }

    /// The stored desired overrides of a node.
    pub async fn stored_overrides(&self, node: &str) -> Result<Option<Overrides>, CommandError> {
        let node = node.to_string();
        self.blocking(move |s| s.overrides(&node)).await
    }

    /// A snapshot arrived.
    pub fn on_snapshot(&self, node: &str, snap: &Snapshot) {
        let st = self.mutate_fleet(|f| {
            let evs = f.snapshot(node, snap, now_ms());
            (f.node(node).map(|n| n.status()), evs)
        });
        if let Some(st) = st {
            if let Err(e) = self.store.put_node(&st) {
                tracing::warn!(%node, error = %e, "saving node state failed");
            }
        }
    }

    /// The agent's load-balancer state changed (kept in memory; saved with the node state
    /// at the next snapshot or disconnect, like instance states).
    pub fn on_lb_status(&self, node: &str, lb: &LbStatus) {
        self.mutate_fleet(|f| {
            f.lb_status(node, lb, now_ms());
            ((), Vec::new())
        });
    }

    /// Agent events arrived (before they are durable: the view follows the stream order).
    pub fn on_events(&self, node: &str, evs: &[Event]) {
        let now = now_ms();
        self.mutate_fleet(|f| {
            let out = evs.iter().flat_map(|e| f.event(node, e, now)).collect();
            ((), out)
        });
    }

    /// A heartbeat arrived.
    pub fn on_heartbeat(&self, node: &str, hb: &Heartbeat) {
        self.mutate_fleet(|f| ((), f.heartbeat(node, hb, now_ms())));
    }

    /// An override result arrived: wakes the waiting command, updates the view.
    pub fn on_override_result(&self, node: &str, h: &SessionHandle, r: OverrideResult) {
        if r.ok {
            self.mutate_fleet(|f| {
                f.set_override_generation(node, r.generation);
                ((), Vec::new())
            });
        }
        if let Some(st) = &r.instance {
            if !st.name.is_empty() {
                self.mutate_fleet(|f| ((), f.instance_update(node, st, now_ms())));
            }
        }
        if let Some(vs) = &r.virtual_server {
            if !vs.name.is_empty() {
                self.mutate_fleet(|f| {
                    f.virtual_server_update(node, vs);
                    ((), Vec::new())
                });
            }
        }
        if !r.ok {
            tracing::warn!(%node, request_id = %r.request_id, error = %r.error, "agent rejected overrides");
        }
        let waiter = lock(&h.pending).remove(&r.request_id);
        if let Some(w) = waiter {
            let _ = w.send(r);
        }
    }

    // ---------- commands ----------

    fn node_lock(&self, node: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.node_locks)
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// Records a COMMAND event (audit trail) and waits until it is durable; an error
    /// when it is not (within [`AUDIT_TIMEOUT`]): the command must not be reported ok.
    async fn audit_event(
        &self,
        ctx: &AuditCtx<'_>,
        detail: serde_json::Map<String, serde_json::Value>,
        outcome: &str,
    ) -> Result<(), CommandError> {
        let ev = command_event(ctx, detail, outcome);
        let res = match tokio::time::timeout(AUDIT_TIMEOUT, self.committer.commit(vec![ev])).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "not durable within {} s ({})",
                AUDIT_TIMEOUT.as_secs(),
                self.committer.health().last_error
            ),
        };
        tracing::error!(error = %res, op = %ctx.op, request_id = %ctx.request_id,
            "recording command failed");
        Err(CommandError::StoreUnavailable(format!(
            "{} ran ({outcome}) but its audit record could not be stored: {res}; not reported as ok",
            ctx.op
        )))
    }

    /// Records a refused agent session or read (`op`: "agent-session", "status", ...)
    /// as a COMMAND event with result "denied: REASON", without waiting for it to be
    /// durable (the caller is refused either way). At most one per caller, node, op and
    /// reason every [`REFUSAL_AUDIT_EVERY`]: a refused agent retries every few seconds;
    /// the next record counts the ones left out (`suppressed`). True if recorded.
    pub fn record_refusal(&self, who: &Identity, op: &str, node: &str, reason: &str) -> bool {
        let now = tokio::time::Instant::now();
        let key = (
            who.name.clone(),
            node.to_string(),
            op.to_string(),
            reason.to_string(),
        );
        let suppressed = {
            let mut m = lock(&self.refusals);
            if m.len() >= MAX_REFUSAL_KEYS {
                m.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_AUDIT_EVERY);
            }
            let full = m.len() >= MAX_REFUSAL_KEYS;
            match m.get_mut(&key) {
                Some((at, n)) if now.duration_since(*at) < REFUSAL_AUDIT_EVERY => {
                    *n = n.saturating_add(1);
                    return false;
                }
                Some((at, n)) => {
                    *at = now;
                    std::mem::take(n)
                }
                None if full => return false,
                None => {
                    m.insert(key, (now, 0));
                    0
                }
            }
        };
        let ctx = AuditCtx::new(who, op, node, "", "");
        let mut detail = serde_json::Map::new();
        if suppressed > 0 {
            detail.insert("suppressed".into(), suppressed.into());
        }
        tracing::warn!(who = %who.name, role = %who.role.as_str(), %op, %node, %reason,
            suppressed, "refused; audited");
        self.committer.record(vec![command_event(
            &ctx,
            detail,
            &format!("denied: {reason}"),
        )]);
        true
    }

    /// Records that `who` was refused `op` (role not allowed).
    pub async fn record_denied(
        &self,
        who: &Identity,
        op: &str,
        node: &str,
        instance: &str,
        request_id: &str,
    ) {
        let ctx = AuditCtx::new(who, op, node, instance, request_id);
        // The caller is refused either way; a failure is logged by audit_event.
        let _ = self
            .audit_event(&ctx, Default::default(), "denied: role not allowed")
            .await;
    }

    /// Runs a command once per request id (see the module doc).
    async fn run_command<Fut>(
        &self,
        ctx: AuditCtx<'_>,
        args: serde_json::Map<String, serde_json::Value>,
        body: Fut,
    ) -> Result<CommandReply, CommandError>
    where
        Fut: std::future::Future<Output = Result<CommandReply, CommandError>>,
    {
        let request_id = ctx.request_id;
        if request_id.is_empty() {
            return Err(CommandError::InvalidArgument(
                "request_id is required".into(),
            ));
        }
        self.check_store().await?;
        let tx = loop {
            let rid = request_id.to_string();
            if let Some(mut r) = self.blocking(move |s| s.audit(&rid)).await? {
                r.replayed = true;
                return Ok(r);
            }
            let existing = {
                let mut m = lock(&self.inflight);
                match m.get(request_id) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        m.insert(request_id.to_string(), rx);
                        Ok(tx)
                    }
                }
            };
            match existing {
                Ok(tx) => break tx,
                Err(mut rx) => {
                    // The same id is running: wait for its answer (or its failure, then
                    // look again).
                    if let Ok(r) = rx.wait_for(Option::is_some).await {
                        if let Some(mut r) = r.clone() {
                            r.replayed = true;
                            return Ok(r);
                        }
                    }
                }
            }
        };
        let res = body.await;
        let out = match res {
            Ok(mut reply) => {
                reply.request_id = request_id.to_string();
                reply.replayed = false;
                // The audit record first, then the request-id record: a reply found by
                // request id (a retry answered from the store) always has its audit
                // record durable. The other order let a retry answer ok for a command
                // whose audit record was never stored.
                let mut d = args;
                d.insert("ok".into(), reply.ok.into());
                d.insert("generation".into(), reply.generation.into());
                let outcome = if reply.ok {
                    "ok".to_string()
                } else {
                    format!("failed: {}", reply.error)
                };
                match self.audit_event(&ctx, d, &outcome).await {
                    Ok(()) => {
                        let rid = request_id.to_string();
                        let r2 = reply.clone();
                        match self.blocking(move |s| s.put_audit(&rid, &r2)).await {
                            Ok(stored) => {
                                let _ = tx.send(Some(stored.clone()));
                                Ok(stored)
                            }
                            Err(e) => Err(CommandError::StoreUnavailable(format!(
                                "{} ran ({outcome}) and is audited, but its request id could not be stored: {e}; not reported as ok",
                                ctx.op
                            ))),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                // Refused anyway; a failed audit is logged by audit_event.
                let _ = self.audit_event(&ctx, args, &format!("refused: {e}")).await;
                Err(e)
            }
        };
        lock(&self.inflight).remove(request_id);
        out
    }

    /// Checks node and instance exist; returns the instance state.
    fn lookup(&self, node: &str, instance: &str) -> Result<InstanceState, CommandError> {
        self.with_fleet(|f| {
            let n = f.node(node).ok_or_else(|| unknown_node(f, node))?;
            n.instances.get(instance).cloned().ok_or_else(|| {
                let known: Vec<&str> = n.instances.keys().map(String::as_str).collect();
                CommandError::NotFound(format!(
                    "unknown instance {instance:?} on node {node}; instances: {}",
                    list_or_none(&known)
                ))
            })
        })
    }

    /// Checks the node exists and, when it reports virtual servers, that `vs` (if given)
    /// is one of them.
    fn lookup_virtual_server(&self, node: &str, vs: Option<&str>) -> Result<(), CommandError> {
        self.with_fleet(|f| {
            let n = f.node(node).ok_or_else(|| unknown_node(f, node))?;
            let Some(vs) = vs else { return Ok(()) };
            let known: Vec<&str> = n.virtual_servers.iter().map(|v| v.name.as_str()).collect();
            if known.is_empty() || known.contains(&vs) {
                Ok(())
            } else {
                Err(CommandError::NotFound(format!(
                    "unknown virtual server {vs:?} on node {node}; virtual servers: {}",
                    known.join(", ")
                )))
            }
        })
    }

    fn instance_state(&self, node: &str, instance: &str) -> Option<InstanceState> {
        self.with_fleet(|f| {
            f.node(node)
                .and_then(|n| n.instances.get(instance).cloned())
        })
    }

    /// Fills the reply's state of `subject`: the agent's report if it gave one, else the
    /// fleet view's.
    fn fill_subject(
        &self,
        reply: &mut CommandReply,
        subject: Subject<'_>,
        instance: Option<InstanceState>,
        vs: Option<VirtualServerState>,
    ) {
        let node = reply.node.clone();
        match subject {
            Subject::Instance(i) => {
                reply.instance = instance.or_else(|| self.instance_state(&node, i));
            }
            Subject::VirtualServer(v) => {
                reply.virtual_server = vs
                    .filter(|s| !s.name.is_empty())
                    .or_else(|| self.with_fleet(|f| f.virtual_server(&node, v).cloned()));
            }
        }
    }

    /// Runs one override command (see the module doc): `prepare` validates the request
    /// (its error is the command's refusal) and returns the change to the node's set.
    async fn override_command<M: FnOnce(&mut Overrides)>(
        &self,
        ctx: AuditCtx<'_>,
        subject: Subject<'_>,
        args: serde_json::Map<String, serde_json::Value>,
        prepare: impl FnOnce() -> Result<M, CommandError>,
    ) -> Result<CommandReply, CommandError> {
        let (node, request_id) = (ctx.node, ctx.request_id);
        let body = async {
            let mutate = prepare()?;
            self.apply_overrides(node, subject, request_id, mutate)
                .await
        };
        self.run_command(ctx, args, body).await
    }

    /// Changes a node's desired overrides, pushes them and waits for the agent's answer.
    async fn apply_overrides(
        &self,
        node: &str,
        subject: Subject<'_>,
        request_id: &str,
        mutate: impl FnOnce(&mut Overrides),
    ) -> Result<CommandReply, CommandError> {
        let nl = self.node_lock(node);
        let _g = nl.lock().await;
        let prev = self.stored_overrides(node).await?.unwrap_or_default();
        let mut next = strip(&prev);
        mutate(&mut next);
        let n2 = node.to_string();
        let stored = self.blocking(move |s| s.put_overrides(&n2, next)).await?;
        let mut reply = CommandReply {
            request_id: request_id.into(),
            node: node.into(),
            generation: stored.generation,
            ..Default::default()
        };
        let handle = lock(&self.sessions).get(node).cloned();
        let Some(h) = handle else {
            reply.error = format!(
                "agent {node} not connected; override stored as generation {}, applied when it connects",
                stored.generation
            );
            self.fill_subject(&mut reply, subject, None, None);
            return Ok(reply);
        };
        let (wtx, wrx) = oneshot::channel();
        lock(&h.pending).insert(request_id.to_string(), wtx);
        let mut push = Overrides {
            request_id: request_id.into(),
            traceparent: crate::telemetry::current_traceparent(),
            ..strip(&stored)
        };
        match subject {
            Subject::Instance(i) => push.instance = i.into(),
            Subject::VirtualServer(v) => push.virtual_server = v.into(),
        }
        let msg = ManagerMsg {
            msg: Some(manager_msg::Msg::Overrides(push)),
        };
        let answer = if h.tx.send(Ok(msg)).await.is_ok() {
            tokio::time::timeout(self.opts.override_timeout, wrx)
                .await
                .map(Result::ok)
        } else {
            Ok(None)
        };
        match answer {
            Ok(Some(r)) => {
                reply.ok = r.ok;
                reply.error = r.error;
                self.fill_subject(&mut reply, subject, r.instance, r.virtual_server);
                if !reply.ok {
                    // Rejected: nothing changed on the agent; the desired set goes back to
                    // the previous content (a newer generation keeps them monotonic).
                    let n2 = node.to_string();
                    let back = strip(&prev);
                    let g = self.blocking(move |s| s.put_overrides(&n2, back)).await?;
                    reply.generation = g.generation;
                }
            }
            Ok(None) => {
                reply.error = format!(
                    "agent {node} disconnected before answering; override stored as generation {}, applied when it reconnects",
                    stored.generation
                );
                self.fill_subject(&mut reply, subject, None, None);
            }
            Err(_) => {
                lock(&h.pending).remove(request_id);
                reply.error = format!(
                    "no answer from agent {node} within {} s; override stored as generation {}",
                    self.opts.override_timeout.as_secs(),
                    stored.generation
                );
                self.fill_subject(&mut reply, subject, None, None);
            }
        }
        Ok(reply)
    }

    /// `SetPriority`: priority 1..=255 overrides, 0 clears the override.
    pub async fn set_priority(
        &self,
        who: &Identity,
        req: SetPriorityRequest,
    ) -> Result<CommandReply, CommandError> {
        let mut args = serde_json::Map::new();
        args.insert("priority".into(), req.priority.into());
        let ctx = AuditCtx::new(
            who,
            "set-priority",
            &req.node,
            &req.instance,
            &req.request_id,
        );
        let subject = Subject::Instance(&req.instance);
        self.override_command(ctx, subject, args, || {
            if req.priority > 255 {
                return Err(CommandError::InvalidArgument(format!(
                    "priority {} out of range 1..=255 (0 clears the override)",
                    req.priority
                )));
            }
            self.lookup(&req.node, &req.instance)?;
            let (inst, p) = (req.instance.clone(), req.priority);
            Ok(move |set: &mut Overrides| set_priority_in(set, &inst, p))
        })
        .await
    }

    /// `VipChange`: add a VIP to an instance or remove a configured one.
    pub async fn vip_change(
        &self,
        who: &Identity,
        req: VipChangeRequest,
    ) -> Result<CommandReply, CommandError> {
        let mut args = serde_json::Map::new();
        args.insert("addr".into(), req.addr.clone().into());
        args.insert("add".into(), req.add.into());
        let op = if req.add { "vip-add" } else { "vip-del" };
        let ctx = AuditCtx::new(who, op, &req.node, &req.instance, &req.request_id);
        let subject = Subject::Instance(&req.instance);
        self.override_command(ctx, subject, args, || {
            let addr = parse_vip(&req.addr).map_err(CommandError::InvalidArgument)?;
            self.lookup(&req.node, &req.instance)?;
            let (inst, add) = (req.instance.clone(), req.add);
            Ok(move |set: &mut Overrides| {
                let same = |v: &VipOverride| v.instance == inst && v.addr == addr;
                match set.vips.iter().position(same) {
                    // The opposite change cancels the earlier one.
                    Some(i) if set.vips[i].add != add => {
                        set.vips.remove(i);
                    }
                    Some(_) => {}
                    None => set.vips.push(VipOverride {
                        instance: inst,
                        addr,
                        add,
                    }),
                }
            })
        })
        .await
    }

    /// `RealServer`: add, remove, reweigh, drain a real server of a virtual server on one
    /// node, or drop that override (reset). One entry per (virtual server, addr, port);
    /// a server that only an `RS_ADD` made keeps its add entry (see `set_real_server_in`).
    pub async fn real_server(
        &self,
        who: &Identity,
        req: RealServerRequest,
    ) -> Result<CommandReply, CommandError> {
        let mut args = serde_json::Map::new();
        args.insert("addr".into(), req.addr.clone().into());
        args.insert("port".into(), req.port.into());
        args.insert("weight".into(), req.weight.into());
        let op = rs_op(req.action);
        let vs = req.virtual_server.as_str();
        let ctx = AuditCtx::new(who, op, &req.node, vs, &req.request_id);
        self.override_command(ctx, Subject::VirtualServer(vs), args, || {
            let entry = real_server_override(&req).map_err(CommandError::InvalidArgument)?;
            // A reset may drop the entry of a virtual server gone from the config.
            let reset = entry.action == RsAction::RsReset as i32;
            self.lookup_virtual_server(&req.node, (!reset).then_some(vs))?;
            let configured = self.with_fleet(|f| {
                f.virtual_server(&req.node, vs).is_some_and(|v| {
                    v.real_servers
                        .iter()
                        .any(|r| r.addr == entry.addr && r.port == entry.port && !r.from_override)
                })
            });
            Ok(move |set: &mut Overrides| set_real_server_in(set, entry, configured))
        })
        .await
    }

    /// `Switchover`: raise the target above the current master with a priority override
    /// and wait until it is master. The override stays in force: dropping it at once would
    /// let the old master (preempt is keepalived's default) take the instance straight
    /// back. `set-priority NODE INSTANCE clear` ends it (and hands the instance back).
    pub async fn switchover(
        &self,
        who: &Identity,
        req: SwitchoverRequest,
    ) -> Result<CommandReply, CommandError> {
        let args = serde_json::Map::new();
        let body = async {
            let target = self.lookup(&req.to_node, &req.instance)?;
            let node = req.to_node.clone();
            let connected = self.with_fleet(|f| f.node(&node).is_some_and(|n| n.connected));
            if !connected {
                return Err(CommandError::FailedPrecondition(format!(
                    "agent {node} not connected"
                )));
            }
            let master = self.with_fleet(|f| f.master_of(target.vrid, &node, now_ms()));
            let Some((mnode, mst)) = master else {
                if target.state == MASTER {
                    return Ok(CommandReply {
                        ok: true,
                        node: node.clone(),
                        error: format!("{node} is already master of {}", req.instance),
                        instance: Some(target),
                        ..Default::default()
                    });
                }
                return Err(CommandError::FailedPrecondition(format!(
                    "no connected master for vrid {} ({}); nothing to switch over",
                    target.vrid, req.instance
                )));
            };
            let want = mst.effective_priority + 1;
            if want > 254 {
                return Err(CommandError::FailedPrecondition(format!(
                    "current master {mnode} runs {} at priority {}; {node} cannot be raised above it",
                    mst.name, mst.effective_priority
                )));
            }
            let prev = self
                .stored_overrides(&node)
                .await?
                .and_then(|s| {
                    s.priorities
                        .iter()
                        .find(|p| p.instance == req.instance)
                        .map(|p| p.priority)
                })
                .unwrap_or(0);
            let mut changed = self.changed.subscribe();
            let inst = req.instance.clone();
            let raise = self
                .apply_overrides(
                    &node,
                    Subject::Instance(&inst),
                    &format!("{}/raise", req.request_id),
                    |s| set_priority_in(s, &req.instance, want),
                )
                .await?;
            let mut became = false;
            if raise.ok {
                let wait = async {
                    loop {
                        let is_master = self
                            .instance_state(&node, &inst)
                            .is_some_and(|s| s.state == MASTER);
                        if is_master {
                            return;
                        }
                        if changed.changed().await.is_err() {
                            return;
                        }
                    }
                };
                became = tokio::time::timeout(self.opts.switchover_timeout, wait)
                    .await
                    .is_ok()
                    && self
                        .instance_state(&node, &inst)
                        .is_some_and(|s| s.state == MASTER);
            }
            if raise.ok && !became {
                // It did not take: the target's previous override comes back.
                let _ = self
                    .apply_overrides(
                        &node,
                        Subject::Instance(&inst),
                        &format!("{}/restore", req.request_id),
                        |s| set_priority_in(s, &req.instance, prev),
                    )
                    .await;
            }
            let error = if !raise.ok {
                format!("raising {node} to priority {want} failed: {}", raise.error)
            } else if !became {
                format!(
                    "{node} did not become master of {inst} within {} s (was {mnode} preempt-enabled?)",
                    self.opts.switchover_timeout.as_secs()
                )
            } else {
                String::new()
            };
            Ok(CommandReply {
                ok: error.is_empty(),
                error,
                node: node.clone(),
                generation: raise.generation,
                instance: self.instance_state(&node, &inst),
                ..Default::default()
            })
        };
        let ctx = AuditCtx::new(
            who,
            "switchover",
            &req.to_node,
            &req.instance,
            &req.request_id,
        );
        self.run_command(ctx, args, body).await
    }
}

/// Sets (1..=255) or clears (0) the priority override of `instance` in `set`.
fn set_priority_in(set: &mut Overrides, instance: &str, priority: u32) {
    set.priorities.retain(|p| p.instance != instance);
    if priority != 0 {
        set.priorities.push(PriorityOverride {
            instance: instance.into(),
            priority,
        });
        set.priorities.sort_by(|a, b| a.instance.cmp(&b.instance));
    }
}

/// Who did what to which node and instance, for the audit trail.
struct AuditCtx<'a> {
    /// Caller.
    who: &'a Identity,
    /// Operation ("set-priority", "vip-add", ...).
    op: &'a str,
    /// Target node.
    node: &'a str,
    /// Target instance.
    instance: &'a str,
    /// Request id.
    request_id: &'a str,
}

impl<'a> AuditCtx<'a> {
    fn new(
        who: &'a Identity,
        op: &'a str,
        node: &'a str,
        instance: &'a str,
        request_id: &'a str,
    ) -> Self {
        AuditCtx {
            who,
            op,
            node,
            instance,
            request_id,
        }
    }
}

/// NOT_FOUND for an unknown node, listing the known ones.
fn unknown_node(f: &Fleet, node: &str) -> CommandError {
    let known = f.node_names();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    CommandError::NotFound(format!(
        "unknown node {node:?}; known nodes: {}",
        list_or_none(&known)
    ))
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// Ping ids of liveness probes start here (session pings count up from 1).
const PROBE_PING_BASE: u64 = 1 << 62;

/// Runs [`Core::tick`] every `tick_interval` until the manager stops or is dropped.
async fn tick_loop(core: std::sync::Weak<Core>) {
    let (every, mut stop) = match core.upgrade() {
        Some(c) => (
            c.opts.tick_interval.max(Duration::from_millis(50)),
            c.shutdown_signal(),
        ),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match core.upgrade() {
            Some(c) => c.tick(),
            None => return,
        }
    }
}

/// A store error as commands report it: a full disk says so and what to do.
fn store_error(e: StoreError) -> CommandError {
    if e.is_disk_full() || matches!(e, StoreError::Closed) {
        CommandError::StoreUnavailable(format!(
            "history store not writable (disk full?): {e}; the command was not carried out or not recorded; free space in the data directory (the manager recovers without a restart)"
        ))
    } else {
        CommandError::Store(e)
    }
}

/// Caller, node, op and reason of a refusal (the rate limit's key).
type RefusalKey = (String, String, String, String);

/// A refused session or read is audited at most this often per caller, node, op, reason.
pub const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// Most (caller, node, op, reason) keys remembered for that rate limit.
const MAX_REFUSAL_KEYS: usize = 4096;

/// The COMMAND history event of an audited operation.
fn command_event(
    ctx: &AuditCtx<'_>,
    mut detail: serde_json::Map<String, serde_json::Value>,
    outcome: &str,
) -> Event {
    detail.insert("who".into(), ctx.who.name.clone().into());
    detail.insert("role".into(), ctx.who.role.as_str().into());
    detail.insert("request_id".into(), ctx.request_id.into());
    detail.insert("result".into(), outcome.into());
    Event {
        node: ctx.node.into(),
        instance: ctx.instance.into(),
        wall_time_ms: now_ms(),
        kind: EventKind::Command as i32,
        reason: ctx.op.into(),
        detail: serde_json::Value::Object(detail).to_string(),
        ..Default::default()
    }
}

/// How long a command waits for its audit record to become durable.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pipeline element of a session: the batch's highest seq and its durability answer.
pub type PendingAck = (u64, oneshot::Receiver<Outcome>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_parsing() {
        assert_eq!(parse_vip("192.0.2.20/24").unwrap(), "192.0.2.20/24");
        assert_eq!(parse_vip("2001:db8::0:1/64").unwrap(), "2001:db8::1/64");
        assert!(parse_vip("192.0.2.20").is_err());
        assert!(parse_vip("192.0.2.20/33").is_err());
        assert!(parse_vip("lb1/24").is_err());
    }

    fn rs_req(action: RsAction, addr: &str, port: u32, weight: u32) -> RealServerRequest {
        RealServerRequest {
            request_id: "r".into(),
            node: "lb1".into(),
            virtual_server: "192.0.2.10:80/TCP".into(),
            addr: addr.into(),
            port,
            action: action as i32,
            weight,
        }
    }

    #[test]
    fn real_server_requests_are_checked() {
        let ok = real_server_override(&rs_req(RsAction::RsAdd, "2001:db8::0:21", 80, 5)).unwrap();
        assert_eq!(ok.addr, "2001:db8::21");
        assert_eq!(ok.weight, 5);
        // Drain carries no weight whatever the request says.
        let d = real_server_override(&rs_req(RsAction::RsDrain, "192.0.2.21", 0, 9)).unwrap();
        assert_eq!((d.weight, d.port), (0, 0));
        let bad = |r: RealServerRequest, what: &str| {
            let e = real_server_override(&r).unwrap_err();
            assert!(e.contains(what), "{e}");
        };
        bad(rs_req(RsAction::Unspecified, "192.0.2.21", 80, 1), "action");
        let mut r = rs_req(RsAction::RsAdd, "192.0.2.21", 80, 1);
        r.action = 99;
        bad(r, "unknown real-server action 99");
        bad(rs_req(RsAction::RsAdd, "lb7", 80, 1), "not an IPv4 or IPv6");
        bad(
            rs_req(RsAction::RsAdd, "[2001:db8::21]", 80, 1),
            "not an IPv4",
        );
        bad(
            rs_req(RsAction::RsAdd, "192.0.2.21", 65536, 1),
            "port 65536",
        );
        bad(
            rs_req(RsAction::RsWeight, "192.0.2.21", 80, 70000),
            "weight 70000",
        );
        let mut r = rs_req(RsAction::RsDel, "192.0.2.21", 80, 0);
        r.virtual_server = " ".into();
        bad(r, "virtual_server is required");
        assert_eq!(rs_op(RsAction::RsDrain as i32), "rs-drain");
        assert_eq!(rs_op(42), "rs");
    }

    #[test]
    fn one_real_server_entry_per_key() {
        let entry = |action: RsAction, addr: &str, weight: u32| {
            real_server_override(&rs_req(action, addr, 80, weight)).unwrap()
        };
        let mut s = Overrides::default();
        set_real_server_in(&mut s, entry(RsAction::RsWeight, "192.0.2.22", 3), true);
        set_real_server_in(&mut s, entry(RsAction::RsAdd, "192.0.2.21", 2), false);
        set_real_server_in(&mut s, entry(RsAction::RsDrain, "192.0.2.22", 0), true);
        let got: Vec<(String, i32)> = s
            .real_servers
            .iter()
            .map(|r| (r.addr.clone(), r.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("192.0.2.21".into(), RsAction::RsAdd as i32),
                ("192.0.2.22".into(), RsAction::RsDrain as i32)
            ]
        );
        // Another port is another entry; reset drops only its own.
        let mut other = entry(RsAction::RsDel, "192.0.2.21", 0);
        other.port = 8080;
        set_real_server_in(&mut s, other, true);
        assert_eq!(s.real_servers.len(), 3);
        set_real_server_in(&mut s, entry(RsAction::RsReset, "192.0.2.21", 0), false);
        assert_eq!(s.real_servers.len(), 2);
        assert!(s
            .real_servers
            .iter()
            .all(|r| !(r.addr == "192.0.2.21" && r.port == 80)));
        // Reset of an absent entry changes nothing.
        set_real_server_in(&mut s, entry(RsAction::RsReset, "192.0.2.99", 0), false);
        assert_eq!(s.real_servers.len(), 2);
    }

    #[test]
    fn a_server_added_by_override_keeps_its_add_entry() {
        let entry = |action: RsAction, weight: u32| {
            real_server_override(&rs_req(action, "192.0.2.23", 80, weight)).unwrap()
        };
        let only = |s: &Overrides| {
            s.real_servers
                .iter()
                .map(|r| (r.action, r.weight))
                .collect::<Vec<_>>()
        };
        let add = RsAction::RsAdd as i32;
        let mut s = Overrides::default();
        set_real_server_in(&mut s, entry(RsAction::RsAdd, 4), false);
        set_real_server_in(&mut s, entry(RsAction::RsWeight, 9), false);
        assert_eq!(only(&s), vec![(add, 9)]);
        set_real_server_in(&mut s, entry(RsAction::RsDrain, 0), false);
        assert_eq!(only(&s), vec![(add, 0)]);
        // Removing a server that only the override made: the entry goes.
        set_real_server_in(&mut s, entry(RsAction::RsDel, 0), false);
        assert!(s.real_servers.is_empty());
        // A configured server re-weighted by an add: del is a del.
        set_real_server_in(&mut s, entry(RsAction::RsAdd, 4), true);
        set_real_server_in(&mut s, entry(RsAction::RsDel, 0), true);
        assert_eq!(only(&s), vec![(RsAction::RsDel as i32, 0)]);
    }

    #[test]
    fn priority_set_and_clear() {
        let mut s = Overrides::default();
        set_priority_in(&mut s, "VI_2", 90);
        set_priority_in(&mut s, "VI_1", 80);
        set_priority_in(&mut s, "VI_2", 70);
        assert_eq!(
            s.priorities
                .iter()
                .map(|p| (p.instance.as_str(), p.priority))
                .collect::<Vec<_>>(),
            vec![("VI_1", 80), ("VI_2", 70)]
        );
        set_priority_in(&mut s, "VI_1", 0);
        assert_eq!(s.priorities.len(), 1);
    }
}
