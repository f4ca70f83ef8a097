//! The engine: one task owns every VRRP instance, feeds it inputs (packets, timer
//! deadlines, link changes, signals) and executes the actions it returns against the
//! edges. Nothing here decides protocol behaviour; that is `vrrp::instance`.
//! The loop and the VRRP path live here; `engine/reload.rs` (SIGHUP), `engine/requests.rs`
//! (the manager link's requests and override sets), `engine/report.rs` (stats dump and
//! metrics snapshot) and `engine/lb.rs` (the load-balancer thread's glue) hold the rest.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::model::DumpFiles;
use crate::lb::service::LbEvent;
use crate::link::bridge::{kind, FromLink, InstanceView, LocalEvent, OverrideSet, ToLink};
use crate::net::garp::Announcer;
use crate::net::netlink::{self, Family, LinkEvent, NetlinkHandle, VipEntry};
use crate::net::receive::{self, RxMsg};
use crate::net::socket::{Mode, VrrpSocket, RECV_BUF_LEN, VRRP_GROUP_V4, VRRP_GROUP_V6};
use crate::notify::{NotifyEvent, NotifyReport, NotifyState};
use crate::runtime::lb::Lb;
use crate::runtime::overrides;
use crate::runtime::plan::{InstancePlan, Plan};
use crate::runtime::ratelimit::{RateLimit, Verdict};
use crate::runtime::services::{self, Services};
use crate::runtime::signals::{SignalEvent, Signals};
use crate::runtime::stats;
use crate::track::{
    effective_priority, interface::interface_event, PriorityOutcome, TrackerEvent, TrackerState,
};
use crate::units::{Mono, Priority};
use crate::vrrp::fsm::{Action, Input};
use crate::vrrp::fsm::{Reason, State};
use crate::vrrp::instance::Instance;
use crate::vrrp::packet::{Advert, ChecksumMode, DropReason};

mod alerts;
mod lb;
mod reload;
mod report;
mod requests;

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A netlink lookup or setup failed.
    #[error("instance {instance}: {what}: {source}")]
    Netlink {
        /// Instance being set up.
        instance: String,
        /// What was attempted.
        what: String,
        /// Cause.
        source: netlink::NetError,
    },
    /// A socket could not be opened.
    #[error("instance {instance}: {what}: {source}")]
    Io {
        /// Instance being set up.
        instance: String,
        /// What was attempted.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The netlink task could not start.
    #[error("netlink: {0}")]
    Start(netlink::NetError),
}

/// A VRRP socket shared by the instances on one interface and source address.
struct SockSlot {
    /// The socket.
    sock: Arc<VrrpSocket>,
    /// Interface name, for stats.
    interface: String,
    /// Drops no instance could be charged with (foreign VRID, unreadable header).
    drops: [u64; DropReason::ALL.len()],
}

/// A running instance and what its actions need.
struct Slot {
    /// The protocol core.
    inst: Instance,
    /// What the config asked for.
    plan: InstancePlan,
    /// Index into `Engine::sockets`.
    sock: usize,
    /// vmac we created, removed at exit.
    vmac: Option<u32>,
    /// Desired VIP entries (virtual_ipaddress and _excluded).
    vips: Vec<VipEntry>,
    /// Addresses announced by GARP / NA.
    announce: Vec<IpAddr>,
    /// GARP / NA sender (None if it could not be opened: logged at start).
    announcer: Option<Announcer>,
    /// Interfaces whose link state puts the instance in FAULT.
    watched: Vec<u32>,
    /// Which of `watched` are down now.
    down: Vec<u32>,
    /// VIP entries from the config (overrides are applied on top into `vips`).
    base_vips: Vec<VipEntry>,
    /// Priority override in force.
    override_prio: Option<Priority>,
    /// Local alerts in force (VRID collision, peer master): text and when last seen.
    alerts: Vec<(String, Mono)>,
    /// As master: another master heard (lower priority), since when and until when.
    peer_master: Option<alerts::PeerSeen>,
    /// Source of the last advert accepted.
    last_advert_from: Option<IpAddr>,
    /// Until when a transition is attributed to an override (reason "priority override").
    override_cause_until: Option<Mono>,
    /// This instance's trackers and their last status.
    trackers: Vec<TrackerState>,
    /// Input::Start sent (held back while a weight-0 tracker has not reported).
    started: bool,
    /// A tracker puts the instance in FAULT.
    tracker_fault: bool,
    /// A sync group member is in FAULT.
    group_fault: bool,
    /// Last notify script result, one line.
    last_notify: String,
    /// Transitions by "STATE reason".
    transitions: BTreeMap<String, u64>,
    /// Gratuitous ARPs and unsolicited NAs handed to the kernel.
    garp_sent: u64,
    na_sent: u64,
    /// Notify runs and failures.
    notify_runs: u64,
    /// Notify failures (non-zero exit, timeout, dropped).
    notify_failures: u64,
}

/// Owns every instance; see the module docs.
struct Engine {
    node: String,
    runtime_dir: PathBuf,
    nl: NetlinkHandle,
    slots: Vec<Slot>,
    sockets: Vec<SockSlot>,
    origin: Instant,
    drop_log: RateLimit<(DropReason, IpAddr)>,
    /// Stall warnings, per instance.
    stall_log: RateLimit<usize>,
    dump_seq: u64,
    /// Events for the manager link (None: no manager configured).
    to_link: Option<mpsc::UnboundedSender<ToLink>>,
    /// Generation of the override set in force.
    override_generation: u64,
    /// The override set in force (re-applied after a reload).
    overrides: OverrideSet,
    /// Where the config came from, for SIGHUP.
    config_path: PathBuf,
    /// `--node`, for rebuilding the plan.
    node_override: Option<String>,
    /// Receive tasks of sockets opened later (reload) send here.
    rx_tx: mpsc::Sender<RxMsg>,
    /// Checksum mode of the receive path.
    checksum: ChecksumMode,
    /// Tracker tasks and the notifier.
    services: Option<Services>,
    /// Tracker tasks report here (kept for restarts on reload).
    trackers_tx: mpsc::UnboundedSender<TrackerEvent>,
    /// Notify results come back here.
    reports_tx: mpsc::UnboundedSender<NotifyReport>,
    /// Latest stats for the metrics exporter.
    stats_tx: Option<tokio::sync::watch::Sender<std::sync::Arc<stats::Stats>>>,
    /// The load-balancer thread, when the config has virtual servers.
    lb: Option<Lb>,
    /// Its history events come back here (kept for restarts on reload).
    lb_events_tx: mpsc::UnboundedSender<LbEvent>,
    /// Receive buffer of the drain before a deadline.
    drain_buf: Vec<u8>,
    /// Wake-ups much later than their deadline (stalls of this process), and the worst.
    stalls: u64,
    /// The longest stall seen.
    stall_max: Duration,
    /// global_defs `state_dump_file` / `json_dump_file` / `stats_dump_file`.
    dump_files: DumpFiles,
    /// `vrrp_startup_delay` / `vrrp_delay_after_boot`: no instance starts before this.
    vrrp_start_at: Option<Instant>,
}

/// Everything `run` needs.
#[derive(Debug)]
pub struct RunOptions {
    /// What to run.
    pub plan: Plan,
    /// `--state-dir`.
    pub runtime_dir: PathBuf,
    /// The config file (re-read on SIGHUP).
    pub config_path: PathBuf,
    /// `--node`.
    pub node_override: Option<String>,
    /// The manager link, if any.
    pub link: Option<LinkEnds>,
    /// Overrides persisted by the last run, applied before any instance starts.
    pub initial: Option<OverrideSet>,
    /// Where to publish stats (metrics), when `stats_wanted` asks for them.
    pub stats_tx: Option<tokio::sync::watch::Sender<std::sync::Arc<stats::Stats>>>,
    /// Notified by the readers of `stats_tx` when they want a fresh snapshot.
    pub stats_wanted: Option<stats::Wanted>,
}

/// The engine's ends of the manager link channels.
#[derive(Debug)]
pub struct LinkEnds {
    /// Events out.
    pub to_link: mpsc::UnboundedSender<ToLink>,
    /// Requests in.
    pub from_link: mpsc::Receiver<FromLink>,
}

/// Run the agent until SIGTERM / SIGINT: set up, loop, shut down cleanly.
pub async fn run(opts: RunOptions) -> Result<(), EngineError> {
    let RunOptions {
        plan,
        runtime_dir,
        config_path,
        node_override,
        link,
        initial,
        stats_tx,
        stats_wanted,
    } = opts;
    let nl = netlink::spawn(netlink::Options::default()).map_err(EngineError::Start)?;
    match nl.cleanup_leftovers().await {
        Ok(0) => {}
        Ok(n) => info!(count = n, "removed VIPs left over by an earlier run"),
        Err(e) => warn!(error = %e, "cannot look for leftover VIPs"),
    }
    let mut links = nl.subscribe_links().await.map_err(EngineError::Start)?;
    let (rx_tx, mut rx) = mpsc::channel::<RxMsg>(1024);
    let (trackers_tx, mut trackers_rx) = mpsc::unbounded_channel::<TrackerEvent>();
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<NotifyReport>();
    let (lb_events_tx, mut lb_events_rx) = mpsc::unbounded_channel::<LbEvent>();
    let mut engine = Engine {
        node: plan.node.clone(),
        runtime_dir,
        nl,
        slots: Vec::new(),
        sockets: Vec::new(),
        origin: Instant::now(),
        drop_log: RateLimit::new(Duration::from_secs(10), 5),
        stall_log: RateLimit::new(Duration::from_secs(10), 3),
        // Starts from the wall clock so a restarted agent never repeats an earlier dump's
        // number (readers wait for a new one).
        dump_seq: u64::try_from(ha_common::time::wall_ms()).unwrap_or_default() * 1000,
        to_link: None,
        override_generation: 0,
        overrides: OverrideSet::default(),
        config_path,
        node_override,
        rx_tx: rx_tx.clone(),
        checksum: plan.checksum,
        services: None,
        trackers_tx,
        reports_tx,
        stats_tx,
        lb: None,
        lb_events_tx,
        drain_buf: vec![0u8; RECV_BUF_LEN],
        stalls: 0,
        stall_max: Duration::ZERO,
        dump_files: plan.config.global.dump_files.clone(),
        vrrp_start_at: None,
    };
    let delay =
        crate::runtime::startup::delay(&plan.config.global, crate::runtime::startup::uptime());
    if !delay.is_zero() {
        info!(
            delay_s = delay.as_secs_f64(),
            "delaying vrrp start (vrrp_startup_delay / vrrp_delay_after_boot)"
        );
        engine.vrrp_start_at = Some(Instant::now() + delay);
    }
    let (to_link, mut from_link) = match link {
        Some(l) => (Some(l.to_link), Some(l.from_link)),
        None => (None, None),
    };
    engine.to_link = to_link;
    for ip in plan.instances {
        engine.add_instance(ip).await?;
    }
    engine.services = Some(services::spawn(
        &plan.config,
        true,
        &engine.trackers_tx,
        engine.reports_tx.clone(),
    ));
    engine.start_lb(&plan.config);
    // After the other threads exist, so only the VRRP thread gets it.
    crate::runtime::sched::apply(&plan.config.global.process);
    drop(rx_tx);
    engine.set_interface_sysctls();

    let mut signals = Signals::install().map_err(|source| EngineError::Io {
        instance: "-".into(),
        what: "install signal handlers".into(),
        source,
    })?;

    if let Some(set) = initial {
        match engine.apply_overrides(set) {
            Ok(_) => info!(
                generation = engine.override_generation,
                "persisted overrides re-applied"
            ),
            Err(e) => warn!(error = %e, "persisted overrides no longer valid; ignored"),
        }
    }
    info!(node = %engine.node, instances = engine.slots.len(), "ha-agent started");
    engine.event(kind::AGENT_START, "", "", "", "", "");
    for i in 0..engine.slots.len() {
        engine.refresh(i).await;
    }
    let sd = crate::runtime::sdnotify::Notifier::from_env();
    sd.notify(crate::runtime::sdnotify::State::Ready, Some("running"));
    // Protocol deadlines wait on a timerfd: tokio's millisecond wheel fires ~1 ms late.
    let wake = crate::net::wake::Wakeup::new();
    let mut slept_for: Option<Instant> = None;
    loop {
        // Whichever input woke us, if the deadline we slept for is long past we were not
        // run in time: a stall, counted once per wait.
        if let Some(d) = slept_for.take() {
            engine.count_stall(Instant::now().saturating_duration_since(d));
        }
        let deadline = engine.next_deadline();
        slept_for = deadline;
        tokio::select! {
            _ = wanted(&stats_wanted) => engine.publish(),
            _ = sleep_opt(engine.vrrp_start_at) => {
                engine.vrrp_start_at = None;
                info!("vrrp start delay over, starting instances");
                for i in 0..engine.slots.len() {
                    engine.refresh(i).await;
                }
            }
            _ = wake.sleep_until(deadline) => engine.tick(&mut rx).await,
            Some(msg) = rx.recv() => engine.dispatch(msg).await,
            Some(ev) = links.recv() => engine.link(ev).await,
            Some(req) = recv_opt(&mut from_link) => engine.link_request(req).await,
            Some(ev) = trackers_rx.recv() => engine.tracker(ev).await,
            Some(r) = reports_rx.recv() => engine.notify_report(r),
            Some(ev) = lb_events_rx.recv() => engine.lb_event(&ev),
            sig = signals.recv() => match sig {
                SignalEvent::Stats => engine.dump_stats(),
                SignalEvent::Dump => engine.dump_data(),
                SignalEvent::Reload => {
                    sd.reloading();
                    ha_common::logging::reopen_on_hangup();
                    engine.reload().await;
                    sd.notify(crate::runtime::sdnotify::State::Ready, Some("running"));
                }
                SignalEvent::Stop(name) => {
                    sd.notify(crate::runtime::sdnotify::State::Stopping, Some("stopping"));
                    info!("{name}: stopping");
                    break;
                }
            },
        }
    }
    engine.shutdown().await;
    Ok(())
}

/// A reader asked for a fresh stats snapshot (never, without readers).
async fn wanted(w: &Option<stats::Wanted>) {
    match w {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never wakes for `None`.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<FromLink>>) -> Option<FromLink> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

impl Engine {
    fn now(&self) -> Mono {
        Mono(self.origin.elapsed())
    }

    async fn add_instance(&mut self, plan: InstancePlan) -> Result<(), EngineError> {
        let name = plan.cfg.name.clone();
        let nlerr = |what: String| {
            let name = name.clone();
            move |source| EngineError::Netlink {
                instance: name,
                what,
                source,
            }
        };
        let base = self
            .nl
            .ifindex_by_name(&plan.interface)
            .await
            .map_err(nlerr(format!("interface {}", plan.interface)))?;
        let family = plan.family();
        let nl_family = family;
        // The VRRP source: unicast_src_ip, else the interface's primary address
        // (IPv4: first address; IPv6: link-local, as keepalived does).
        let primary = match plan.unicast_src {
            Some(a) => a,
            None => self
                .nl
                .primary_address(base, nl_family)
                .await
                .map_err(nlerr(format!(
                    "{} address of {}",
                    family_name(family),
                    plan.interface
                )))?,
        };
        let (vrrp_ifindex, mac, vmac) = match &plan.use_vmac {
            Some(vname) => {
                let mac = netlink::virtual_mac(plan.cfg.vrid, nl_family);
                let idx = self
                    .nl
                    .create_vmac(base, vname, mac)
                    .await
                    .map_err(nlerr(format!("create vmac {vname}")))?;
                set_sysctl(&format!("net/ipv4/conf/{vname}/arp_ignore"), "1");
                set_sysctl(&format!("net/ipv4/conf/{vname}/rp_filter"), "0");
                if family == Family::V4 {
                    set_sysctl(&format!("net/ipv6/conf/{vname}/disable_ipv6"), "1");
                }
                (idx, mac, Some(idx))
            }
            None => {
                let mac = self
                    .nl
                    .mac_of(base)
                    .await
                    .map_err(nlerr(format!("mac of {}", plan.interface)))?;
                (base, mac, None)
            }
        };
        let vips = self.resolve_vips(&plan, vrrp_ifindex).await?;
        let announce: Vec<IpAddr> = plan.vips.iter().map(|v| v.addr).collect();
        let vips_base = vips.clone();
        let announcer = match Announcer::open(vrrp_ifindex, mac) {
            // keepalived sends unsolicited NAs from the interface's link-local address.
            Ok(a) => Some(match primary {
                IpAddr::V6(ll) => a.with_na_source(ll),
                IpAddr::V4(_) => a,
            }),
            Err(e) => {
                error!(instance = %name, error = %e, "cannot open GARP/NA socket");
                None
            }
        };
        let mut watched = Vec::new();
        if !plan.dont_track_primary {
            watched.push(base);
            if let Some(v) = vmac {
                watched.push(v);
            }
        }
        for t in &plan.track_interfaces {
            // Checked here so a typo fails at start; the state arrives as link events.
            self.nl
                .ifindex_by_name(t)
                .await
                .map_err(nlerr(format!("track_interface {t}")))?;
        }
        let trackers = plan.trackers.clone();
        let mode = if plan.cfg.unicast_peers.is_empty() {
            Mode::Multicast
        } else {
            Mode::Unicast
        };
        let sock = self.socket_for(&name, vrrp_ifindex, primary, mode, &plan)?;
        let inst = Instance::new(plan.cfg.clone(), primary);
        info!(instance = %name, vrid = %plan.cfg.vrid, interface = %plan.interface,
              source = %primary, priority = %plan.cfg.priority, "instance configured");
        self.slots.push(Slot {
            inst,
            plan,
            sock,
            vmac,
            vips,
            announce,
            announcer,
            watched,
            down: Vec::new(),
            base_vips: vips_base,
            override_prio: None,
            alerts: Vec::new(),
            peer_master: None,
            last_advert_from: None,
            override_cause_until: None,
            trackers,
            started: false,
            tracker_fault: false,
            group_fault: false,
            last_notify: String::new(),
            transitions: BTreeMap::new(),
            garp_sent: 0,
            na_sent: 0,
            notify_runs: 0,
            notify_failures: 0,
        });
        Ok(())
    }

    /// The netlink entries of a plan's VIPs; `dev` other than the instance's interface is
    /// looked up, the rest go on `vrrp_ifindex` (the vmac with use_vmac, as keepalived).
    async fn resolve_vips(
        &self,
        plan: &InstancePlan,
        vrrp_ifindex: u32,
    ) -> Result<Vec<VipEntry>, EngineError> {
        let mut vips = Vec::new();
        for v in &plan.vips {
            let ifindex = match &v.dev {
                Some(dev) if *dev != plan.interface => {
                    self.nl
                        .ifindex_by_name(dev)
                        .await
                        .map_err(|source| EngineError::Netlink {
                            instance: plan.cfg.name.clone(),
                            what: format!("VIP {} dev {dev}", v.addr),
                            source,
                        })?
                }
                _ => vrrp_ifindex,
            };
            let mut e = VipEntry::new(ifindex, v.addr, v.prefix_len);
            e.label = v.label.clone();
            e.scope = v.scope;
            e.brd = v.brd;
            vips.push(e);
        }
        Ok(vips)
    }

    /// The socket for (interface, source), opened and given a receive task on first use.
    fn socket_for(
        &mut self,
        name: &str,
        ifindex: u32,
        src: IpAddr,
        mode: Mode,
        plan: &InstancePlan,
    ) -> Result<usize, EngineError> {
        if let Some(i) = self
            .sockets
            .iter()
            .position(|s| s.sock.ifindex() == ifindex && s.sock.src() == src)
        {
            return Ok(i);
        }
        let sock = VrrpSocket::open(ifindex, src, mode).map_err(|source| EngineError::Io {
            instance: name.to_string(),
            what: format!("open VRRP socket on {}", plan.interface),
            source,
        })?;
        let sock = Arc::new(sock);
        let idx = self.sockets.len();
        tokio::spawn(receive::task(
            idx,
            Arc::clone(&sock),
            self.checksum,
            self.rx_tx.clone(),
        ));
        self.sockets.push(SockSlot {
            sock,
            interface: plan
                .use_vmac
                .clone()
                .unwrap_or_else(|| plan.interface.clone()),
            drops: [0; DropReason::ALL.len()],
        });
        Ok(idx)
    }

    /// keepalived's interface settings: answer ARP only for addresses on the receiving
    /// interface when a vmac shares the wire with its parent.
    fn set_interface_sysctls(&self) {
        for s in self.slots.iter().filter(|s| s.vmac.is_some()) {
            let base = &s.plan.interface;
            set_sysctl(&format!("net/ipv4/conf/{base}/arp_ignore"), "1");
            set_sysctl(&format!("net/ipv4/conf/{base}/arp_filter"), "1");
            // ARP requests the node sends itself must not carry a VIP as sender, or
            // neighbours learn the VIP at the parent's MAC instead of the virtual MAC.
            set_sysctl(&format!("net/ipv4/conf/{base}/arp_announce"), "2");
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.inst.next_deadline())
            .min()
            .map(|m| self.origin + m.0)
    }

    /// A protocol deadline is due. First every advert already received is fed (the
    /// channel, then each socket's queue): after a stall of this process the deadline and
    /// the adverts that would have cancelled it are ready together, and the deadline must
    /// not win (a false takeover). Then every due instance gets its `Tick`.
    async fn tick(&mut self, rx: &mut mpsc::Receiver<RxMsg>) {
        /// Per socket and per tick, so a flood cannot hold the loop here.
        const DRAIN_MAX: usize = 4096;
        let mut queued = Vec::new();
        while queued.len() < DRAIN_MAX {
            match rx.try_recv() {
                Ok(m) => queued.push(m),
                Err(_) => break,
            }
        }
        let mut buf = std::mem::take(&mut self.drain_buf);
        for (idx, s) in self.sockets.iter().enumerate() {
            queued.extend(receive::drain(
                idx,
                &s.sock,
                self.checksum,
                &mut buf,
                DRAIN_MAX,
            ));
        }
        self.drain_buf = buf;
        for m in queued {
            self.dispatch(m).await;
        }
        self.expire_alerts();
        let now = self.now();
        for i in 0..self.slots.len() {
            if self.slots[i].inst.due(now) {
                self.feed(i, Input::Tick).await;
            }
        }
    }

    /// A wake-up `late` after its deadline: past the smallest stall threshold of the
    /// instances, our process was not run in time; counted and logged (rate-limited).
    fn count_stall(&mut self, late: Duration) {
        let threshold = self
            .slots
            .iter()
            .map(|s| crate::vrrp::timers::stall_threshold(s.inst.master_adver_interval()))
            .min();
        if threshold.is_none_or(|t| late < t) {
            return;
        }
        self.stalls += 1;
        self.stall_max = self.stall_max.max(late);
        let now = self.now();
        if let Verdict::Log { suppressed } = self.stall_log.check(usize::MAX, now) {
            let late_ms = late.as_secs_f64() * 1000.0;
            warn!(late_ms, suppressed, stalls = self.stalls,
                  "woke {late_ms:.1} ms after a protocol deadline: this process was not scheduled (a stall); queued adverts are fed first");
        }
    }

    /// Route a received packet to the instance of its VRID on that socket.
    async fn dispatch(&mut self, msg: RxMsg) {
        let target = msg.vrid.and_then(|v| {
            self.slots
                .iter()
                .position(|s| s.sock == msg.sock && s.plan.cfg.vrid.get() == v)
        });
        match (target, msg.result) {
            (Some(i), r) => self.feed(i, Input::from_decode(r)).await,
            (None, Ok(_)) => self.socket_drop(msg.sock, DropReason::Vrid, msg.src),
            (None, Err(e)) => self.socket_drop(msg.sock, e.reason(), msg.src),
        }
    }

    fn socket_drop(&mut self, sock: usize, reason: DropReason, src: IpAddr) {
        if let Some(s) = self.sockets.get_mut(sock) {
            s.drops[reason.index()] += 1;
        }
        self.log_drop("-", reason, src);
    }

    fn log_drop(&mut self, instance: &str, reason: DropReason, src: IpAddr) {
        let now = self.now();
        match self.drop_log.check((reason, src), now) {
            Verdict::Log { suppressed } => warn!(
                instance, reason = reason.as_str(), %src, suppressed,
                "dropped VRRP packet"
            ),
            Verdict::Suppress => {}
        }
    }

    async fn link(&mut self, ev: LinkEvent) {
        debug!(interface = %ev.name, up = ev.up, "link event");
        self.tracker(interface_event(&ev.name, ev.up)).await;
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if !s.watched.contains(&ev.ifindex) {
                continue;
            }
            let was_up = s.down.is_empty();
            s.down.retain(|d| *d != ev.ifindex);
            if !ev.up {
                s.down.push(ev.ifindex);
            }
            let is_up = s.down.is_empty();
            if was_up != is_up {
                if !is_up {
                    info!(instance = %s.plan.cfg.name, interface = %ev.name, "interface down");
                }
                self.feed(i, Input::Link { up: is_up }).await;
            }
        }
    }

    /// Give one input to instance `i` and execute what it returns; inputs that actions
    /// cause for other instances (sync groups) are queued and fed in order, no recursion.
    async fn feed(&mut self, i: usize, input: Input) {
        let mut queue = VecDeque::from([(i, input)]);
        while let Some((i, input)) = queue.pop_front() {
            let now = self.now();
            let accepted_from = match &input {
                Input::Packet(rx) => Some(rx.meta.src),
                _ => None,
            };
            let rx_before = self.slots[i].inst.counters().rx;
            let actions = self.slots[i].inst.handle(now, input);
            if let Some(src) = accepted_from {
                if self.slots[i].inst.counters().rx > rx_before {
                    self.slots[i].last_advert_from = Some(src);
                }
            }
            for a in actions {
                self.execute(i, a, &mut queue).await;
            }
        }
    }

    /// Execute actions of instance `i` outside `feed`, then whatever they queued.
    async fn run_actions(&mut self, i: usize, actions: Vec<Action>) {
        let mut queue = VecDeque::new();
        for a in actions {
            self.execute(i, a, &mut queue).await;
        }
        while let Some((j, input)) = queue.pop_front() {
            self.feed(j, input).await;
        }
    }

    /// A tracker changed: update every instance that follows it.
    async fn tracker(&mut self, ev: TrackerEvent) {
        let mut touched = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let mut changed = false;
            for t in &mut s.trackers {
                changed |= t.apply(&ev);
            }
            if changed {
                touched.push(i);
            }
        }
        if !touched.is_empty() && ev.kind != crate::track::TrackerKind::Interface {
            info!(tracker = %ev.kind, name = %ev.name, status = %ev.status, detail = %ev.detail, "tracker changed");
            self.event(
                kind::TRACKER,
                "",
                "",
                "",
                &format!("{} {}", ev.kind, ev.name),
                &ev.status.to_string(),
            );
        }
        for i in touched {
            self.refresh(i).await;
            let s = &self.slots[i];
            if let Some(t) = s
                .trackers
                .iter()
                .find(|t| t.kind == ev.kind && t.name == ev.name)
            {
                let detail = format!(
                    "kind={} name={} ok={} weight={} effective={} status={}",
                    t.kind,
                    t.name,
                    t.status.ok().unwrap_or(false),
                    t.weight,
                    s.inst.effective_priority(),
                    t.status.to_string().replace(' ', "_"),
                );
                let name = s.plan.cfg.name.clone();
                self.event(kind::TRACKER, &name, "", "", "tracker", &detail);
            }
        }
    }

    /// Recompute instance `i`'s priority and health from base, override and trackers,
    /// and start it once no weight-0 tracker is unknown any more.
    async fn refresh(&mut self, i: usize) {
        let s = &self.slots[i];
        let base = s.override_prio.unwrap_or(s.plan.cfg.priority);
        let outcome = effective_priority(base, &s.trackers);
        let mut inputs = Vec::new();
        let tracker_fault = outcome == PriorityOutcome::Fault;
        if tracker_fault != s.tracker_fault {
            self.slots[i].tracker_fault = tracker_fault;
            let ok = !tracker_fault && !self.slots[i].group_fault;
            let reason = if tracker_fault {
                Reason::TrackerFault
            } else {
                Reason::TrackerRecovered
            };
            inputs.push(Input::Health { ok, reason });
        }
        if let PriorityOutcome::Priority(p) = outcome {
            if p != self.slots[i].inst.effective_priority() {
                inputs.push(Input::SetPriority(p));
            }
        }
        if !self.slots[i].started
            && outcome != PriorityOutcome::Init
            && self.vrrp_start_at.is_none()
        {
            self.slots[i].started = true;
            inputs.push(Input::Start);
        }
        for input in inputs {
            self.feed(i, input).await;
        }
    }

    /// A notify script finished (or its queue overflowed).
    fn notify_report(&mut self, r: NotifyReport) {
        let (name, line, ok) = match &r {
            NotifyReport::Ran(res) => {
                let rr = &res.result;
                let line = format!(
                    "{} {} -> {:?}{} in {} ms",
                    res.event.state.as_str(),
                    res.command,
                    rr.exit,
                    if rr.timed_out { " (timed out)" } else { "" },
                    rr.duration.as_millis()
                );
                (res.event.name.clone(), line, rr.success())
            }
            NotifyReport::Dropped(ev) => (
                ev.name.clone(),
                format!("{} dropped: queue full", ev.state.as_str()),
                false,
            ),
        };
        if ok {
            info!(instance = %name, "notify: {line}");
        } else {
            warn!(instance = %name, "notify: {line}");
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.plan.cfg.name == name) {
            s.last_notify = line.clone();
            s.notify_runs += 1;
            if !ok {
                s.notify_failures += 1;
            }
        }
        self.event(
            kind::NOTIFY,
            &name,
            "",
            "",
            if ok { "ok" } else { "failed" },
            &line,
        );
    }

    /// keepalived's sync groups: members move together. Transitions the group itself
    /// caused are not propagated again.
    fn propagate_group(
        &mut self,
        i: usize,
        from: State,
        to: State,
        reason: Reason,
        queue: &mut VecDeque<(usize, Input)>,
    ) {
        if reason == Reason::SyncGroup {
            return;
        }
        let Some(group) = self.slots[i].plan.sync_group.clone() else {
            return;
        };
        let members: Vec<usize> = (0..self.slots.len())
            .filter(|j| {
                *j != i && self.slots[*j].plan.sync_group.as_deref() == Some(group.as_str())
            })
            .collect();
        for j in members {
            let input = match (from, to) {
                (_, State::Fault) => {
                    self.slots[j].group_fault = true;
                    Input::Health {
                        ok: false,
                        reason: Reason::SyncGroup,
                    }
                }
                (State::Fault, _) => {
                    self.slots[j].group_fault = false;
                    Input::Health {
                        ok: !self.slots[j].tracker_fault,
                        reason: Reason::SyncGroup,
                    }
                }
                (State::Master, State::Backup) => Input::GroupBackup,
                (_, State::Master) => Input::GroupMaster,
                _ => continue,
            };
            queue.push_back((j, input));
        }
        if let Some(svc) = &self.services {
            let st = notify_state(to);
            if let Some(st) = st {
                svc.notifier.notify(NotifyEvent::group(&group, st));
            }
        }
    }

    async fn execute(&mut self, i: usize, action: Action, queue: &mut VecDeque<(usize, Input)>) {
        let slot = &self.slots[i];
        let name = slot.plan.cfg.name.clone();
        match action {
            Action::SendAdvert(adv) => self.send_advert(i, &adv),
            Action::AddVips => {
                self.lb_vips(i, true);
                let slot = &self.slots[i];
                if let Err(e) = self.nl.set_vips(name.clone(), slot.vips.clone()).await {
                    error!(instance = %name, error = %e, "cannot add VIPs");
                } else {
                    info!(instance = %name, "({name}) setting VIPs");
                }
            }
            Action::RemoveVips => {
                self.lb_vips(i, false);
                if let Err(e) = self.nl.clear_vips(name.clone()).await {
                    error!(instance = %name, error = %e, "cannot remove VIPs");
                } else {
                    info!(instance = %name, "({name}) removing VIPs");
                }
            }
            Action::Announce { count } => {
                let slot = &mut self.slots[i];
                if let Some(a) = &slot.announcer {
                    for _ in 0..count {
                        match a.announce(&slot.announce) {
                            Ok(r) => {
                                slot.garp_sent += u64::from(r.garp);
                                slot.na_sent += u64::from(r.na);
                            }
                            Err(e) => {
                                warn!(instance = %name, error = %e, "gratuitous ARP / NA failed");
                                break;
                            }
                        }
                    }
                    debug!(instance = %name, count, "sent gratuitous ARP / NA");
                }
            }
            Action::Transition { from, to, reason } => {
                let fsm_reason = reason;
                let now = self.now();
                let slot = &mut self.slots[i];
                let reason = match slot.override_cause_until.take() {
                    Some(until) if now <= until => format!("priority override ({reason})"),
                    _ => reason.to_string(),
                };
                info!(instance = %name, from = %from, to = %to, reason = %reason,
                      "({name}) Entering {to} STATE");
                crate::instrument::transition_span(&name, &self.slots[i].inst, from, to, &reason);
                *self.slots[i]
                    .transitions
                    .entry(format!("{to} {fsm_reason}"))
                    .or_default() += 1;
                if let (Some(svc), Some(st)) = (&self.services, notify_state(to)) {
                    let prio = self.slots[i].inst.effective_priority();
                    svc.notifier.notify(NotifyEvent::instance(&name, st, prio));
                }
                self.event(
                    kind::TRANSITION,
                    &name,
                    from.as_str(),
                    to.as_str(),
                    &reason,
                    "",
                );
                if from == State::Master {
                    self.left_master(i);
                }
                self.crash_guard(i);
                self.propagate_group(i, from, to, fsm_reason, queue);
            }
            Action::LogDrop { reason, src } => {
                if reason == DropReason::AddressList {
                    self.raise_collision(i, src);
                }
                self.log_drop(&name, reason, src)
            }
            Action::AddressListMismatch { src } => {
                warn!(instance = %name, %src, "advert address list differs from ours");
                self.raise_collision(i, src);
            }
            Action::Stalled { late, deferred } => self.stalled(i, late, deferred),
            Action::PeerMaster { src, priority } => self.peer_master(i, src, priority),
        }
    }

    fn send_advert(&mut self, i: usize, adv: &Advert) {
        let slot = &self.slots[i];
        let Some(sock) = self.sockets.get(slot.sock) else {
            return;
        };
        let name = &slot.plan.cfg.name;
        if adv.priority.get() == 0 {
            info!(instance = %name, "({name}) sending priority 0 advert");
        }
        for (dst, bytes) in self.packets(i, adv) {
            if let Err(e) = sock.sock.send_to(&bytes, dst) {
                debug!(instance = %name, %dst, error = %e, "advert send failed");
            }
        }
    }

    /// `adv` encoded for each destination of instance `i` (the group, or each peer).
    fn packets(&self, i: usize, adv: &Advert) -> Vec<(IpAddr, Vec<u8>)> {
        let slot = &self.slots[i];
        let Some(sock) = self.sockets.get(slot.sock) else {
            return Vec::new();
        };
        let src = sock.sock.src();
        let dsts: Vec<IpAddr> = if slot.plan.cfg.unicast_peers.is_empty() {
            vec![match src {
                IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP_V4),
                IpAddr::V6(_) => IpAddr::V6(VRRP_GROUP_V6),
            }]
        } else {
            slot.plan.cfg.unicast_peers.clone()
        };
        dsts.into_iter()
            .map(|dst| (dst, adv.encode(src, dst, slot.plan.checksum)))
            .collect()
    }

    /// Keep the crash path's priority-0 advert of instance `i` in step with its state.
    fn crash_guard(&self, i: usize) {
        let slot = &self.slots[i];
        let name = &slot.plan.cfg.name;
        match (slot.inst.state(), self.sockets.get(slot.sock)) {
            (State::Master, Some(sock)) => {
                let packets = self.packets(i, &slot.inst.advert(Priority::STOP));
                crate::runtime::crash::master(name, Arc::clone(&sock.sock), packets);
            }
            _ => crate::runtime::crash::not_master(name),
        }
    }

    /// Queue an event for the manager (no-op without a link).
    fn event(&self, kind: i32, instance: &str, from: &str, to: &str, reason: &str, detail: &str) {
        if let Some(tx) = &self.to_link {
            let _ = tx.send(ToLink::Event(LocalEvent {
                kind,
                instance: instance.to_string(),
                from_state: from.to_string(),
                to_state: to.to_string(),
                reason: reason.to_string(),
                detail: detail.to_string(),
                wall_time_ms: ha_common::time::wall_ms(),
            }));
        }
    }

    /// Priority 0 and VIP removal for every master, then wait until netlink applied it.
    async fn shutdown(&mut self) {
        self.event(kind::AGENT_STOP, "", "", "", "signal", "");
        for i in 0..self.slots.len() {
            self.feed(i, Input::Shutdown).await;
        }
        if let Err(e) = self.nl.flush().await {
            error!(error = %e, "cannot confirm VIP removal");
        }
        // Then the virtual servers leave the data plane (omega notifiers run).
        if let Some(lb) = self.lb.take() {
            lb.stop(true).await;
        }
        // As keepalived, notify_stop and the FIFO's STOP lines are delivered before the
        // exit: run every queued notification (each bounded by its timeout).
        if let Some(mut svc) = self.services.take() {
            svc.notifier.drain().await;
        }
        for s in &self.slots {
            if let Some(v) = s.vmac {
                if let Err(e) = self.nl.delete_vmac(v).await {
                    warn!(instance = %s.plan.cfg.name, error = %e, "cannot delete vmac");
                }
            }
        }
        self.dump_stats();
        info!("stopped");
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// Write a sysctl under /proc/sys of this network namespace; failures are logged.
fn set_sysctl(path: &str, value: &str) {
    let p = format!("/proc/sys/{path}");
    if let Err(e) = std::fs::write(&p, value) {
        warn!(sysctl = %p, error = %e, "cannot set sysctl");
    }
}

/// The notify state for entering `s` (INIT after shutdown is keepalived's STOP).
fn notify_state(s: State) -> Option<NotifyState> {
    match s {
        State::Master => Some(NotifyState::Master),
        State::Backup => Some(NotifyState::Backup),
        State::Fault => Some(NotifyState::Fault),
        State::Init => Some(NotifyState::Stop),
    }
}
