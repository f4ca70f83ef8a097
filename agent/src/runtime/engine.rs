//! The engine: one task owns every VRRP instance, feeds it inputs (packets, timer
//! deadlines, link changes, signals) and executes the actions it returns against the
//! edges. Nothing here decides protocol behaviour; that is `vrrp::instance`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::net::garp::Announcer;
use crate::net::netlink::{self, Family, LinkEvent, NetlinkHandle, VipEntry};
use crate::net::socket::{Mode, VrrpSocket, RECV_BUF_LEN, VRRP_GROUP_V4, VRRP_GROUP_V6};
use crate::runtime::plan::{InstancePlan, Plan};
use crate::runtime::ratelimit::{RateLimit, Verdict};
use crate::runtime::stats;
use crate::units::Mono;
use crate::vrrp::fsm::{Action, Input};
use crate::vrrp::instance::Instance;
use crate::vrrp::packet::{parse_ipv4, Advert, ChecksumMode, DecodeError, DropReason, Received};

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

/// One received datagram, decoded by its socket's receive task.
#[derive(Debug)]
struct RxMsg {
    /// Index into `Engine::sockets`.
    sock: usize,
    /// The VRID byte, if the packet was long enough to carry one.
    vrid: Option<u8>,
    /// Sender.
    src: IpAddr,
    /// The decode result.
    result: Result<Received, DecodeError>,
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
}

/// Owns every instance; see the module docs.
struct Engine {
    node: String,
    state_dir: PathBuf,
    nl: NetlinkHandle,
    slots: Vec<Slot>,
    sockets: Vec<SockSlot>,
    origin: Instant,
    drop_log: RateLimit<(DropReason, IpAddr)>,
    dump_seq: u64,
}

/// Run the agent until SIGTERM / SIGINT: set up, loop, shut down cleanly.
pub async fn run(plan: Plan, state_dir: PathBuf) -> Result<(), EngineError> {
    let nl = netlink::spawn(netlink::Options::default()).map_err(EngineError::Start)?;
    match nl.cleanup_leftovers().await {
        Ok(0) => {}
        Ok(n) => info!(count = n, "removed VIPs left over by an earlier run"),
        Err(e) => warn!(error = %e, "cannot look for leftover VIPs"),
    }
    let mut links = nl.subscribe_links().await.map_err(EngineError::Start)?;
    let (rx_tx, mut rx) = mpsc::channel::<RxMsg>(1024);
    let mut engine = Engine {
        node: plan.node.clone(),
        state_dir,
        nl,
        slots: Vec::new(),
        sockets: Vec::new(),
        origin: Instant::now(),
        drop_log: RateLimit::new(Duration::from_secs(10), 5),
        dump_seq: 0,
    };
    for ip in plan.instances {
        engine.add_instance(ip, plan.checksum, &rx_tx).await?;
    }
    drop(rx_tx);
    engine.set_interface_sysctls();

    let sig = |k| {
        signal(k).map_err(|source| EngineError::Io {
            instance: "-".into(),
            what: "install signal handler".into(),
            source,
        })
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut usr2 = sig(SignalKind::user_defined2())?;
    let mut hup = sig(SignalKind::hangup())?;

    info!(node = %engine.node, instances = engine.slots.len(), "ha-agent started");
    for i in 0..engine.slots.len() {
        engine.feed(i, Input::Start).await;
    }
    loop {
        let deadline = engine.next_deadline();
        tokio::select! {
            _ = sleep_until(deadline) => engine.tick().await,
            Some(msg) = rx.recv() => engine.dispatch(msg).await,
            Some(ev) = links.recv() => engine.link(ev).await,
            _ = usr2.recv() => engine.dump_stats(),
            _ = hup.recv() => warn!("SIGHUP: live reload is not available yet; config unchanged"),
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
        }
    }
    engine.shutdown().await;
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Engine {
    fn now(&self) -> Mono {
        Mono(self.origin.elapsed())
    }

    async fn add_instance(
        &mut self,
        plan: InstancePlan,
        checksum: ChecksumMode,
        rx_tx: &mpsc::Sender<RxMsg>,
    ) -> Result<(), EngineError> {
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
        let mut vips = Vec::new();
        for v in &plan.vips {
            let ifindex = match &v.dev {
                Some(dev) if Some(dev) != Some(&plan.interface) => self
                    .nl
                    .ifindex_by_name(dev)
                    .await
                    .map_err(nlerr(format!("VIP {} dev {dev}", v.addr)))?,
                // With use_vmac the VIPs live on the vmac (keepalived does the same).
                _ => vrrp_ifindex,
            };
            let mut e = VipEntry::new(ifindex, v.addr, v.prefix_len);
            e.label = v.label.clone();
            e.scope = v.scope;
            e.brd = v.brd;
            vips.push(e);
        }
        let announce: Vec<IpAddr> = plan.vips.iter().map(|v| v.addr).collect();
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
            let idx = self
                .nl
                .ifindex_by_name(t)
                .await
                .map_err(nlerr(format!("track_interface {t}")))?;
            watched.push(idx);
        }
        let mode = if plan.cfg.unicast_peers.is_empty() {
            Mode::Multicast
        } else {
            Mode::Unicast
        };
        let sock = self.socket_for(&name, vrrp_ifindex, primary, mode, &plan, checksum, rx_tx)?;
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
        });
        Ok(())
    }

    /// The socket for (interface, source), opened and given a receive task on first use.
    #[allow(clippy::too_many_arguments)]
    fn socket_for(
        &mut self,
        name: &str,
        ifindex: u32,
        src: IpAddr,
        mode: Mode,
        plan: &InstancePlan,
        checksum: ChecksumMode,
        rx_tx: &mpsc::Sender<RxMsg>,
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
        tokio::spawn(receive(idx, Arc::clone(&sock), checksum, rx_tx.clone()));
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

    async fn tick(&mut self) {
        let now = self.now();
        for i in 0..self.slots.len() {
            if self.slots[i].inst.next_deadline().is_some_and(|d| d <= now) {
                self.feed(i, Input::Tick).await;
            }
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

    /// Give one input to instance `i` and execute what it returns.
    async fn feed(&mut self, i: usize, input: Input) {
        let now = self.now();
        let actions = self.slots[i].inst.handle(now, input);
        for a in actions {
            self.execute(i, a).await;
        }
    }

    async fn execute(&mut self, i: usize, action: Action) {
        let slot = &self.slots[i];
        let name = slot.plan.cfg.name.clone();
        match action {
            Action::SendAdvert(adv) => self.send_advert(i, &adv),
            Action::AddVips => {
                if let Err(e) = self.nl.set_vips(name.clone(), slot.vips.clone()).await {
                    error!(instance = %name, error = %e, "cannot add VIPs");
                } else {
                    info!(instance = %name, "({name}) setting VIPs");
                }
            }
            Action::RemoveVips => {
                if let Err(e) = self.nl.clear_vips(name.clone()).await {
                    error!(instance = %name, error = %e, "cannot remove VIPs");
                } else {
                    info!(instance = %name, "({name}) removing VIPs");
                }
            }
            Action::Announce { count } => {
                if let Some(a) = &slot.announcer {
                    for _ in 0..count {
                        if let Err(e) = a.announce(&slot.announce) {
                            warn!(instance = %name, error = %e, "gratuitous ARP / NA failed");
                            break;
                        }
                    }
                    debug!(instance = %name, count, "sent gratuitous ARP / NA");
                }
            }
            Action::Transition { from, to, reason } => {
                info!(instance = %name, from = %from, to = %to, reason = %reason,
                      "({name}) Entering {to} STATE");
            }
            Action::LogDrop { reason, src } => self.log_drop(&name, reason, src),
            Action::AddressListMismatch { src } => {
                warn!(instance = %name, %src, "advert address list differs from ours");
            }
        }
    }

    fn send_advert(&mut self, i: usize, adv: &Advert) {
        let slot = &self.slots[i];
        let Some(sock) = self.sockets.get(slot.sock) else {
            return;
        };
        let src = sock.sock.src();
        let name = &slot.plan.cfg.name;
        if adv.priority.get() == 0 {
            info!(instance = %name, "({name}) sending priority 0 advert");
        }
        let dsts: Vec<IpAddr> = if slot.plan.cfg.unicast_peers.is_empty() {
            vec![match src {
                IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP_V4),
                IpAddr::V6(_) => IpAddr::V6(VRRP_GROUP_V6),
            }]
        } else {
            slot.plan.cfg.unicast_peers.clone()
        };
        for dst in dsts {
            let bytes = adv.encode(src, dst, slot.plan.checksum);
            if let Err(e) = sock.sock.send_to(&bytes, dst) {
                debug!(instance = %name, %dst, error = %e, "advert send failed");
            }
        }
    }

    fn dump_stats(&mut self) {
        self.dump_seq += 1;
        let drops = |arr: &[u64]| {
            DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), arr[r.index()]))
                .collect::<BTreeMap<_, _>>()
        };
        let s = stats::Stats {
            dump_seq: self.dump_seq,
            node: self.node.clone(),
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
                            drops: drops(&c.drops),
                        },
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
        };
        if let Err(e) = stats::write(&self.state_dir, &s) {
            warn!(dir = %self.state_dir.display(), error = %e, "cannot write stats");
        }
    }

    /// Priority 0 and VIP removal for every master, then wait until netlink applied it.
    async fn shutdown(&mut self) {
        for i in 0..self.slots.len() {
            self.feed(i, Input::Shutdown).await;
        }
        if let Err(e) = self.nl.flush().await {
            error!(error = %e, "cannot confirm VIP removal");
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

/// Receive task of one socket: decode every datagram and hand it to the engine.
async fn receive(
    idx: usize,
    sock: Arc<VrrpSocket>,
    checksum: ChecksumMode,
    tx: mpsc::Sender<RxMsg>,
) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        let info = match sock.recv(&mut buf).await {
            Ok(i) => i,
            Err(e) => {
                warn!(error = %e, "VRRP receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let data = &buf[..info.len];
        let meta = info.meta();
        let (payload, meta) = match info.src {
            IpAddr::V4(_) => match parse_ipv4(data) {
                Ok((h, p)) => (
                    p,
                    crate::vrrp::packet::RxMeta {
                        src: IpAddr::V4(h.src),
                        dst: IpAddr::V4(h.dst),
                        ttl: h.ttl,
                        ifindex: meta.ifindex,
                    },
                ),
                Err(e) => {
                    let msg = RxMsg {
                        sock: idx,
                        vrid: None,
                        src: info.src,
                        result: Err(e),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            IpAddr::V6(_) => (data, meta),
        };
        let vrid = payload.get(1).copied();
        let result =
            Advert::decode(payload, &meta, checksum).map(|advert| Received { meta, advert });
        if tx
            .send(RxMsg {
                sock: idx,
                vrid,
                src: info.src,
                result,
            })
            .await
            .is_err()
        {
            return;
        }
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
