//! The link task: one tokio task that owns the stream to ha-manager.
//!
//! ```text
//!   engine --ToLink (unbounded, never awaited)--> +-----------+ --AgentMsg (bounded)--> manager
//!   engine <--FromLink (Snapshot, ApplyOverrides)-| link task | <--ManagerMsg---------- manager
//!                                                 |   Ring    | --overrides.json--> --state-dir
//!                                                 +-----------+
//! ```
//! The task drains the engine's events into the [`Ring`] at all times, connected or not.
//! Per connection: Hello (with the override generation in force), a full Snapshot, every
//! unacked event in seq order, then new events as they come; a Heartbeat every
//! `heartbeat` and one per Ping. Acks drop events from the ring. Overrides are converted,
//! applied by the engine, persisted, and answered with an OverrideResult, followed by a
//! fresh Snapshot when the set was newly applied (so the fleet view shows the priorities
//! and VIPs in force after a push or a re-push at connect). A lost stream
//! is retried with [`Backoff`]; connection changes are logged once, rate-limited.
//! The load-balancer status (a watch the engine hands over) goes with every Snapshot and,
//! when it changed, as an LbStatus message at most every [`LB_EVERY`].
//! Nothing here can stop or slow VRRP: the engine never waits on this task.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ha_common::time::wall_ms;
use ha_proto::v1 as pb;
use pb::agent_msg::Msg as Out;
use pb::manager_msg::Msg as In;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, Jitter};
use super::bridge::{kind, FromLink, InstanceView, ToLink};
use super::convert;
use super::endpoint::{self, TlsFiles, CONNECT_TIMEOUT};
use super::error::LinkError;
use super::persist;
use super::random;
use super::ring::Ring;
use super::stats::LinkStats;

/// What the link needs to know; built by main from the command line and the config.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Manager URL, `http://host:port` (plaintext, `--insecure`) or `https://host:port`.
    pub manager: String,
    /// Node name (`--node`, router_id, hostname).
    pub node: String,
    /// Random per process start; empty: the link makes one.
    pub boot_id: String,
    /// Agent version, for the manager's node list.
    pub version: String,
    /// Digest of the loaded config.
    pub config_digest: String,
    /// Config summary of each VRRP instance, sent in the hello.
    pub instances: Vec<InstanceInfo>,
    /// Where `overrides.json` lives.
    pub state_dir: PathBuf,
    /// Mutual TLS files; None = plaintext (only with `--insecure`: the caller decides).
    pub tls: Option<TlsFiles>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Unacked events kept (e.g. 10 000); on overflow the oldest are dropped and reported.
    pub ring_capacity: usize,
    /// Interval of unsolicited heartbeats.
    pub heartbeat: Duration,
    /// Generation of the override set in force at start (that of the persisted set the
    /// engine re-applied, 0 if none).
    pub override_generation: u64,
    /// Live counters for telemetry (connected, buffered events, reconnects).
    pub stats: Arc<LinkStats>,
}

/// One VRRP instance as the hello summarises it for the manager (whose split-brain
/// debounce derives Master_Down_Interval from the advert interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Instance name.
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface it runs on.
    pub interface: String,
    /// Configured advert interval.
    pub advert_interval: Duration,
}

impl LinkOptions {
    /// Options with the defaults of DESIGN.md (backoff 1 s x1.6 +-20 % cap 120 s, ring
    /// 10 000, heartbeat 5 s, plaintext, no instances, random boot id).
    pub fn new(manager: &str, node: &str, state_dir: PathBuf) -> LinkOptions {
        LinkOptions {
            manager: manager.to_string(),
            node: node.to_string(),
            boot_id: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_digest: String::new(),
            instances: Vec::new(),
            state_dir,
            tls: None,
            backoff: Backoff::default(),
            ring_capacity: 10_000,
            heartbeat: Duration::from_secs(5),
            override_generation: 0,
            stats: Arc::default(),
        }
    }

    /// Check the URL against the TLS choice and read the TLS files (fail fast at start).
    pub fn check(&self) -> Result<(), LinkError> {
        endpoint::check(&self.manager, self.tls.as_ref())
    }
}

/// Events per EventBatch message.
const BATCH: usize = 256;
/// Messages buffered towards the HTTP/2 stream.
const OUT_CAP: usize = 16;
/// Unsolicited heartbeats are dropped when this many control messages wait.
const CTRL_SOFT_CAP: usize = 64;
/// How long the engine may take to answer a snapshot or an override set.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection changes logged in full per window; more are summarised.
const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Changes logged per window.
const LOG_BURST: u32 = 4;
/// A changed load-balancer status is sent at most this often.
const LB_EVERY: Duration = Duration::from_secs(1);
/// How long an override result waits for the load balancer to apply the set.
const LB_APPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// While unreachable, a reminder this often.
const STILL_DOWN_EVERY: Duration = Duration::from_secs(300);

/// Start the link task. It runs until the runtime stops; the engine keeps running
/// whatever happens to the manager. `to_engine` carries snapshot and override requests.
pub fn spawn(
    opts: LinkOptions,
    from_engine: mpsc::UnboundedReceiver<ToLink>,
    to_engine: mpsc::Sender<FromLink>,
) -> JoinHandle<()> {
    tokio::spawn(run(opts, from_engine, to_engine))
}

/// Why a session ended (for the log line).
type Ended = Result<(), LinkError>;

struct Link {
    opts: LinkOptions,
    ring: Ring,
    /// Generation of the override set in force.
    generation: u64,
    from_engine: mpsc::UnboundedReceiver<ToLink>,
    /// The engine dropped its sender (stopping): stop polling it.
    engine_gone: bool,
    to_engine: mpsc::Sender<FromLink>,
    log: ConnLog,
    /// The load-balancer status, when the agent runs virtual servers.
    lb: Option<watch::Receiver<crate::lb::service::LbStatus>>,
    /// A new status channel arrived: send its state.
    lb_dirty: bool,
}

async fn run(
    mut opts: LinkOptions,
    from_engine: mpsc::UnboundedReceiver<ToLink>,
    to_engine: mpsc::Sender<FromLink>,
) {
    if opts.boot_id.is_empty() {
        opts.boot_id = random::new_boot_id();
    }
    let mut jitter = Jitter::from_os();
    let mut link = Link {
        ring: Ring::new(opts.ring_capacity),
        generation: opts.override_generation,
        from_engine,
        engine_gone: false,
        to_engine,
        log: ConnLog::new(&opts.manager),
        opts,
        lb: None,
        lb_dirty: false,
    };
    info!(manager = %link.opts.manager, node = %link.opts.node, boot_id = %link.opts.boot_id,
        "manager link started");
    let mut attempt: u32 = 0;
    loop {
        match link.connect().await {
            Ok(channel) => {
                let ended = link.session(channel, &mut attempt).await;
                link.opts.stats.on_disconnected();
                link.log.disconnected(&ended);
            }
            Err(e) => {
                link.opts.stats.on_disconnected();
                link.log.unreachable(&e);
            }
        }
        let delay = link.opts.backoff.delay(attempt, jitter.unit());
        attempt = attempt.saturating_add(1);
        debug!(
            delay_ms = delay.as_millis() as u64,
            attempt, "manager link: retry later"
        );
        link.idle(delay).await;
    }
}

impl Link {
    /// Take one event from the engine into the ring.
    fn on_engine(&mut self, msg: Option<ToLink>) {
        match msg {
            Some(ToLink::Event(e)) => {
                self.ring.push(e);
                self.opts.stats.set_buffered(self.ring.len() as u64);
            }
            Some(ToLink::Lb(rx)) => {
                self.lb = Some(rx);
                self.lb_dirty = true;
            }
            None => self.engine_gone = true,
        }
    }

    /// Take every event the engine has queued so far.
    fn drain_engine(&mut self) {
        while !self.engine_gone {
            match self.from_engine.try_recv() {
                Ok(m) => self.on_engine(Some(m)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.on_engine(None),
            }
        }
    }

    /// Wait `d`, keeping the ring fed.
    async fn idle(&mut self, d: Duration) {
        let until = tokio::time::sleep(d);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return,
                m = self.from_engine.recv(), if !self.engine_gone => self.on_engine(m),
            }
        }
    }

    /// Open the channel, keeping the ring fed.
    async fn connect(&mut self) -> Result<tonic::transport::Channel, LinkError> {
        let url = self.opts.manager.clone();
        let tls = self.opts.tls.clone();
        let fut = async move { endpoint::connect(&url, tls.as_ref()).await };
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                m = self.from_engine.recv(), if !self.engine_gone => self.on_engine(m),
            }
        }
    }

    /// The current state of every instance; then every event the engine queued before
    /// answering is in the ring, so `ring.last_seq()` is covered by the answer.
    async fn engine_snapshot(&mut self) -> Result<Vec<InstanceView>, LinkError> {
        let (reply, rx) = oneshot::channel();
        let ask = async {
            self.to_engine
                .send(FromLink::Snapshot { reply })
                .await
                .map_err(|_| LinkError::Engine("stopped".into()))?;
            rx.await
                .map_err(|_| LinkError::Engine("dropped a snapshot request".into()))
        };
        let views = tokio::time::timeout(ENGINE_TIMEOUT, ask)
            .await
            .map_err(|_| LinkError::Engine("no snapshot within 10 s".into()))??;
        self.drain_engine();
        Ok(views)
    }

    async fn snapshot_msg(&mut self) -> Result<pb::AgentMsg, LinkError> {
        let views = self.engine_snapshot().await?;
        Ok(pb::AgentMsg {
            msg: Some(Out::Snapshot(pb::Snapshot {
                seq: self.ring.last_seq(),
                instances: views.iter().map(convert::instance_to_proto).collect(),
                wall_time_ms: wall_ms(),
                virtual_servers: self.lb_now(),
            })),
        })
    }

    /// The load-balancer status now (marked seen), as the wire carries it.
    fn lb_now(&mut self) -> Vec<pb::VirtualServerState> {
        self.lb_dirty = false;
        match &mut self.lb {
            Some(rx) => convert::lb_to_proto(&rx.borrow_and_update()),
            None => Vec::new(),
        }
    }

    /// An LbStatus message if the status changed since it was last sent.
    fn lb_update(&mut self) -> Option<pb::AgentMsg> {
        let changed = self.lb_dirty
            || self
                .lb
                .as_ref()
                .is_some_and(|rx| rx.has_changed().unwrap_or(false));
        changed.then(|| pb::AgentMsg {
            msg: Some(Out::LbStatus(pb::LbStatus {
                virtual_servers: self.lb_now(),
            })),
        })
    }

    fn hello(&self) -> pb::AgentMsg {
        let o = &self.opts;
        pb::AgentMsg {
            msg: Some(Out::Hello(pb::Hello {
                node: o.node.clone(),
                boot_id: o.boot_id.clone(),
                version: o.version.clone(),
                config_digest: o.config_digest.clone(),
                instances: o
                    .instances
                    .iter()
                    .map(|i| pb::InstanceSummary {
                        name: i.name.clone(),
                        vrid: u32::from(i.vrid),
                        interface: i.interface.clone(),
                        advert_interval_ms: u32::try_from(i.advert_interval.as_millis())
                            .unwrap_or(u32::MAX),
                    })
                    .collect(),
                override_generation: self.generation,
            })),
        }
    }

    /// One connected stream, until it fails. Resets `attempt` once the manager answered.
    async fn session(&mut self, channel: tonic::transport::Channel, attempt: &mut u32) -> Ended {
        let (tx, rx) = mpsc::channel::<pb::AgentMsg>(OUT_CAP);
        // Hello is queued before the call so that it is the stream's first message.
        tx.try_send(self.hello())
            .map_err(|_| LinkError::Engine("cannot queue hello".into()))?;
        let mut client = pb::agent_link_client::AgentLinkClient::new(channel);
        let call = client.session(ReceiverStream::new(rx));
        tokio::pin!(call);
        let response = loop {
            tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, &mut call) => {
                    break r.map_err(|_| {
                        LinkError::Status(tonic::Status::deadline_exceeded("no answer to the session call"))
                    })??;
                }
                m = self.from_engine.recv(), if !self.engine_gone => self.on_engine(m),
            }
        };
        let mut inbound = response.into_inner();
        // The response headers only say the call reached the manager: it checks the hello
        // after that. Connected (log, stats, backoff reset) once its first message comes
        // (a Ping right after it accepted the hello), never before a refusal.
        let mut accepted = false;
        self.ring.rewind();
        let mut ctrl: VecDeque<pb::AgentMsg> = VecDeque::new();
        ctrl.push_back(self.snapshot_msg().await?);
        let mut beat = tokio::time::interval_at(
            Instant::now() + self.opts.heartbeat,
            self.opts.heartbeat.max(Duration::from_millis(10)),
        );
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lb_tick = tokio::time::interval(LB_EVERY);
        lb_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let want_send = !ctrl.is_empty() || self.ring.has_unsent();
            tokio::select! {
                biased;
                m = inbound.message() => match m? {
                    Some(m) => {
                        if !accepted {
                            accepted = true;
                            *attempt = 0;
                            self.opts.stats.on_connected();
                            self.log.connected();
                        }
                        self.on_manager(m, &mut ctrl).await?
                    }
                    None => return Ok(()),
                },
                m = self.from_engine.recv(), if !self.engine_gone => self.on_engine(m),
                permit = tx.reserve(), if want_send => {
                    let permit = permit.map_err(|_| {
                        LinkError::Status(tonic::Status::unavailable("request stream closed"))
                    })?;
                    if let Some(mut m) = ctrl.pop_front() {
                        // Stamp heartbeats when they leave, for the manager's offset estimate.
                        if let Some(Out::Heartbeat(h)) = &mut m.msg {
                            h.wall_time_ms = wall_ms();
                        }
                        permit.send(m);
                    } else {
                        let batch = self.ring.take_unsent(BATCH);
                        let gap = batch.iter().any(|(_, e)| e.kind == kind::GAP);
                        let events = batch
                            .iter()
                            .map(|(seq, e)| {
                                convert::event_to_proto(&self.opts.node, &self.opts.boot_id, *seq, e)
                            })
                            .collect();
                        permit.send(pb::AgentMsg {
                            msg: Some(Out::Events(pb::EventBatch { events })),
                        });
                        if gap {
                            // Promise 5: an explicit gap is followed by a full snapshot.
                            let snap = self.snapshot_msg().await?;
                            ctrl.push_front(snap);
                        }
                    }
                }
                _ = lb_tick.tick() => {
                    if let Some(m) = self.lb_update() {
                        ctrl.push_back(m);
                    }
                }
                _ = beat.tick() => {
                    self.log.still_up();
                    if ctrl.len() < CTRL_SOFT_CAP {
                        ctrl.push_back(heartbeat(0, 0));
                    }
                }
            }
        }
    }

    async fn on_manager(
        &mut self,
        m: pb::ManagerMsg,
        ctrl: &mut VecDeque<pb::AgentMsg>,
    ) -> Result<(), LinkError> {
        match m.msg {
            Some(In::Ack(a)) => {
                if a.boot_id == self.opts.boot_id {
                    self.ring.ack(a.seq);
                    self.opts.stats.set_buffered(self.ring.len() as u64);
                } else {
                    debug!(boot_id = %a.boot_id, "ack for another boot id ignored");
                }
            }
            Some(In::Ping(p)) => ctrl.push_back(heartbeat(p.ping_id, p.manager_ms)),
            Some(In::Overrides(o)) => {
                self.opts.stats.on_overrides();
                let fresh = o.generation > self.generation;
                // The operator's trace continues here (W3C traceparent from the manager).
                let span =
                    crate::instrument::override_span(&o.traceparent, o.generation, &o.request_id);
                let r = self.overrides(o).await;
                match &r {
                    Ok(r) => crate::instrument::end_override_span(span, r.ok, &r.error),
                    Err(e) => crate::instrument::end_override_span(span, false, &e.to_string()),
                }
                let r = r?;
                let applied = fresh && self.generation == r.generation;
                ctrl.push_back(pb::AgentMsg {
                    msg: Some(Out::OverrideResult(r)),
                });
                if applied {
                    // The manager's view follows what runs now: a set applied here
                    // (a re-push at connect carries no instance) changes priorities
                    // and VIPs that no event reports.
                    ctrl.push_back(self.snapshot_msg().await?);
                }
            }
            None => debug!("empty manager message ignored"),
        }
        Ok(())
    }

    /// Apply (or refuse, or recognise as already applied) one pushed set, and persist it.
    async fn overrides(&mut self, o: pb::Overrides) -> Result<pb::OverrideResult, LinkError> {
        let mut result = pb::OverrideResult {
            request_id: o.request_id.clone(),
            generation: o.generation,
            ok: false,
            error: String::new(),
            instance: None,
            virtual_server: Default::default(),
        };
        if o.generation <= self.generation {
            // A retry, or an older set overtaken by a newer one: already done.
            debug!(
                generation = o.generation,
                in_force = self.generation,
                "stale overrides"
            );
            result.ok = true;
        } else {
            match convert::overrides_from_proto(&o) {
                Err(e) => {
                    warn!(generation = o.generation, request = %o.request_id, error = %e,
                        "overrides refused");
                    result.error = e;
                }
                Ok(set) => match self.apply(set.clone()).await {
                    Err(e) => result.error = e,
                    Ok(()) => {
                        self.generation = set.generation;
                        result.ok = true;
                        if let Err(e) = persist::store(&self.opts.state_dir, &set) {
                            warn!(error = %e, "overrides applied but not persisted");
                            result.error = format!("applied, but not persisted: {e}");
                        }
                    }
                },
            }
        }
        let views = self.engine_snapshot().await?;
        result.instance = views
            .iter()
            .find(|v| v.name == o.instance)
            .map(convert::instance_to_proto);
        if !o.virtual_server.is_empty() {
            result.virtual_server = self.lb_applied(o.generation, &o.virtual_server).await;
        }
        Ok(result)
    }

    /// The state of virtual server `name` once the load balancer runs override set
    /// `generation` (or its latest state after [`LB_APPLY_TIMEOUT`]).
    async fn lb_applied(&mut self, generation: u64, name: &str) -> Option<pb::VirtualServerState> {
        let mut rx = self.lb.clone()?;
        let waited = tokio::time::timeout(
            LB_APPLY_TIMEOUT,
            rx.wait_for(|s| s.override_generation >= generation),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !waited {
            warn!(
                generation,
                "load balancer has not applied the override set yet"
            );
        }
        let st = rx.borrow();
        st.virtual_servers
            .iter()
            .find(|v| v.name == name)
            .map(|v| convert::vs_to_proto(v, &st))
    }

    /// Hand a parsed set to the engine; its verdict, or why there is none.
    async fn apply(&mut self, set: super::bridge::OverrideSet) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        let ask = async {
            self.to_engine
                .send(FromLink::ApplyOverrides { set, reply })
                .await
                .map_err(|_| "engine stopped".to_string())?;
            rx.await
                .map_err(|_| "engine dropped the request".to_string())?
        };
        match tokio::time::timeout(ENGINE_TIMEOUT, ask).await {
            Ok(r) => r,
            Err(_) => Err("engine did not answer within 10 s".to_string()),
        }
    }
}

fn heartbeat(ping_id: u64, ping_manager_ms: i64) -> pb::AgentMsg {
    pb::AgentMsg {
        msg: Some(Out::Heartbeat(pb::Heartbeat {
            wall_time_ms: wall_ms(),
            ping_id,
            ping_manager_ms,
        })),
    }
}

/// Connection logging: one line per change (not per retry), at most [`LOG_BURST`] per
/// [`LOG_WINDOW`], then a summary; a reminder while the manager stays unreachable.
struct ConnLog {
    url: String,
    /// Last state logged or reached: None before the first attempt.
    up: Option<bool>,
    window_start: Instant,
    in_window: u32,
    suppressed: u32,
    /// Failed attempts since the last connection.
    failures: u64,
    down_since: Instant,
    last_reminder: Instant,
}

impl ConnLog {
    fn new(url: &str) -> ConnLog {
        let now = Instant::now();
        ConnLog {
            url: url.to_string(),
            up: None,
            window_start: now,
            in_window: 0,
            suppressed: 0,
            failures: 0,
            down_since: now,
            last_reminder: now,
        }
    }

    /// Whether this change gets a full line; counts it otherwise.
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= LOG_WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window <= LOG_BURST {
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    fn connected(&mut self) {
        self.failures = 0;
        if self.up == Some(true) {
            return;
        }
        self.up = Some(true);
        if self.allow() {
            let flaps = std::mem::take(&mut self.suppressed);
            info!(manager = %self.url, suppressed_changes = flaps, "manager connected");
        }
    }

    fn disconnected(&mut self, why: &Ended) {
        let reason = match why {
            Ok(()) => "stream closed by the manager".to_string(),
            Err(e) => e.to_string(),
        };
        self.went_down(&reason);
    }

    fn unreachable(&mut self, e: &LinkError) {
        self.failures += 1;
        if self.up == Some(false) {
            debug!(manager = %self.url, error = %e, attempts = self.failures, "manager still unreachable");
            let now = Instant::now();
            if now.duration_since(self.last_reminder) >= STILL_DOWN_EVERY {
                self.last_reminder = now;
                warn!(manager = %self.url, error = %e, attempts = self.failures,
                    down_s = now.duration_since(self.down_since).as_secs(),
                    "manager still unreachable; VRRP continues with the last known overrides");
            }
            return;
        }
        self.went_down(&e.to_string());
    }

    fn went_down(&mut self, reason: &str) {
        if self.up == Some(false) {
            return;
        }
        self.up = Some(false);
        let now = Instant::now();
        self.down_since = now;
        self.last_reminder = now;
        if self.allow() {
            let flaps = std::mem::take(&mut self.suppressed);
            warn!(manager = %self.url, error = %reason, suppressed_changes = flaps,
                "manager unreachable; VRRP continues with the last known overrides");
        }
    }

    /// Called while connected: report changes the window suppressed, once it reopens.
    fn still_up(&mut self) {
        if self.suppressed > 0 && Instant::now().duration_since(self.window_start) >= LOG_WINDOW {
            let flaps = std::mem::take(&mut self.suppressed);
            self.window_start = Instant::now();
            self.in_window = 1;
            info!(manager = %self.url, suppressed_changes = flaps, "manager connected (link was flapping)");
        }
    }
}
