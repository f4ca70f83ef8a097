//! The netlink task: the one owner of the rtnetlink handle.
//!
//! What lives here:
//! - the desired VIP table ([`VipTable`]) and its pure reconciliation plan ([`plan`]);
//! - the task ([`spawn`]) that applies it idempotently, resyncs it periodically (drift is
//!   healed: a VIP someone deleted comes back), and removes only addresses it marked;
//! - virtual MAC interfaces (`use_vmac`: a private-mode macvlan);
//! - the link monitor ([`LinkEvent`]s on a channel, current state first);
//! - lookups: interface index by name, MAC, primary address.
//!
//! Ownership mark: every address we add carries `IFA_PROTO` = [`ADDR_PROTO_MARK`]
//! (Linux >= 5.18). Only marked addresses are ever deleted, so an address an operator
//! added by hand stays even if it equals a VIP; and marked addresses left by a crashed
//! agent are found and removed at start ([`NetlinkHandle::cleanup_leftovers`]). The task
//! owns every marked address in its network namespace (one agent per namespace, as with
//! keepalived). On a kernel that drops `IFA_PROTO`, ownership falls back to what this
//! process added (no crash cleanup then).
//!
//! Task and channels:
//! ```text
//!  NetlinkHandle (clone) --mpsc Request--> [netlink task] --rtnetlink--> kernel
//!                                           |  ^ RTNLGRP_LINK / IPV4_IFADDR / IPV6_IFADDR
//!  subscribe_links() <--unbounded LinkEvent-+  + resync tick (anti-entropy)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec, MulticastGroup};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// `IFA_PROTO` value marking addresses this agent added ('h').
pub const ADDR_PROTO_MARK: u8 = 0x68;
/// Default period of the full resync.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(5);

/// Errors of the netlink edge.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The netlink task has stopped.
    #[error("netlink task is gone")]
    TaskGone,
    /// The kernel refused a request.
    #[error("netlink request failed: {0}")]
    Rtnl(#[from] rtnetlink::Error),
    /// Opening a netlink socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// No interface by that name or index.
    #[error("no such interface: {0}")]
    NoSuchLink(String),
    /// The interface has no address of the family asked for.
    #[error("interface {0} has no usable address")]
    NoAddress(u32),
    /// The process is crashing: addresses are not added any more.
    #[error("not adding addresses: the agent is exiting after a crash")]
    Frozen,
}

/// Address family of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Address scope, as keepalived's `scope` keyword spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// `global` (RT_SCOPE_UNIVERSE), the default.
    #[default]
    Global,
    /// `site`.
    Site,
    /// `link`.
    Link,
    /// `host`.
    Host,
    /// `nowhere`.
    Nowhere,
}

impl Scope {
    fn to_netlink(self) -> AddressScope {
        match self {
            Scope::Global => AddressScope::Universe,
            Scope::Site => AddressScope::Site,
            Scope::Link => AddressScope::Link,
            Scope::Host => AddressScope::Host,
            Scope::Nowhere => AddressScope::Nowhere,
        }
    }
}

/// One desired virtual address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VipEntry {
    /// Interface it goes on (`dev`, else the instance's interface).
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (keepalived defaults to /32 for IPv4 and /128 for IPv6).
    pub prefix_len: u8,
    /// IPv4 label (`label eth0:1`); must start with the interface name.
    pub label: Option<String>,
    /// Scope.
    pub scope: Scope,
    /// IPv4 broadcast (`brd`).
    pub brd: Option<Ipv4Addr>,
}

impl VipEntry {
    /// A global-scope entry without label or broadcast.
    pub fn new(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Self {
        Self {
            ifindex,
            addr,
            prefix_len,
            label: None,
            scope: Scope::Global,
            brd: None,
        }
    }

    fn key(&self) -> (u32, IpAddr) {
        (self.ifindex, self.addr)
    }
}

/// Where one desired entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipStatus {
    /// Not tried yet.
    Pending,
    /// On the interface, added and marked by us.
    Applied,
    /// On the interface but not added by us (left alone, never removed).
    NotOurs,
    /// The last attempt failed.
    Error(String),
}

/// An address as the kernel reports it (the part reconciliation needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAddr {
    /// Interface.
    pub ifindex: u32,
    /// Local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Carries our mark (or, without kernel support, was added by this process).
    pub ours: bool,
}

/// One step of a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add a desired address that is missing.
    Add(VipEntry),
    /// Delete an address of ours nobody wants any more.
    Del(KernelAddr),
}

/// The desired VIPs, per owner (an instance name). Pure data.
#[derive(Debug, Clone, Default)]
pub struct VipTable {
    /// Owner -> its entries. Two owners may want the same address; it stays while
    /// either does.
    owners: BTreeMap<String, Vec<VipEntry>>,
}

impl VipTable {
    /// Replace `owner`'s entries.
    pub fn set(&mut self, owner: &str, vips: Vec<VipEntry>) {
        if vips.is_empty() {
            self.owners.remove(owner);
        } else {
            self.owners.insert(owner.to_string(), vips);
        }
    }

    /// Drop all of `owner`'s entries.
    pub fn remove(&mut self, owner: &str) {
        self.owners.remove(owner);
    }

    /// Every desired entry once (first owner wins on duplicates).
    pub fn desired(&self) -> Vec<VipEntry> {
        let mut seen = HashSet::new();
        self.owners
            .values()
            .flatten()
            .filter(|e| seen.insert(e.key()))
            .cloned()
            .collect()
    }

    /// (owner, entry) pairs, for status.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &VipEntry)> {
        self.owners
            .iter()
            .flat_map(|(o, v)| v.iter().map(move |e| (o.as_str(), e)))
    }
}

/// What to do to turn `current` into `desired`: add missing desired addresses, delete
/// addresses of ours that nobody desires. Never touches addresses that are not ours.
pub fn plan(desired: &[VipEntry], current: &[KernelAddr]) -> Vec<Op> {
    let present: HashSet<(u32, IpAddr)> = current.iter().map(|k| (k.ifindex, k.addr)).collect();
    let wanted: HashSet<(u32, IpAddr)> = desired.iter().map(VipEntry::key).collect();
    let mut ops: Vec<Op> = desired
        .iter()
        .filter(|d| !present.contains(&d.key()))
        .cloned()
        .map(Op::Add)
        .collect();
    ops.extend(
        current
            .iter()
            .filter(|k| k.ours && !wanted.contains(&(k.ifindex, k.addr)))
            .cloned()
            .map(Op::Del),
    );
    ops
}

/// An interface went up or down (IFF_UP and IFF_RUNNING both set = up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up and operationally running.
    pub up: bool,
}

/// Options of the netlink task.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Period of the full resync of VIPs and links.
    pub resync: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resync: DEFAULT_RESYNC,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Messages to the task.
enum Request {
    SetVips(String, Vec<VipEntry>),
    ClearVips(String),
    Flush(oneshot::Sender<()>),
    Status(oneshot::Sender<Vec<(String, VipEntry, VipStatus)>>),
    Cleanup(Reply<usize>),
    Subscribe(oneshot::Sender<mpsc::UnboundedReceiver<LinkEvent>>),
    IfindexByName(String, Reply<u32>),
    MacOf(u32, Reply<[u8; 6]>),
    Primary(u32, Family, Reply<IpAddr>),
    CreateVmac {
        parent: u32,
        name: String,
        mac: [u8; 6],
        reply: Reply<u32>,
    },
    DeleteVmac(u32, Reply<()>),
}

/// A clonable handle to the netlink task. The task stops when every handle is dropped;
/// it does not remove VIPs then (call `clear_vips` + `flush` first).
#[derive(Debug, Clone)]
pub struct NetlinkHandle {
    /// Requests to the task, served in order.
    tx: mpsc::UnboundedSender<Request>,
    /// (owner, address) of every desired VIP the task last found applied by us, kept up
    /// to date by the task: read without a round trip (metrics on the VRRP loop).
    applied: watch::Receiver<BTreeSet<(String, IpAddr)>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("netlink request")
    }
}

impl NetlinkHandle {
    /// (owner, address) of every desired VIP applied by us, as the task last saw it.
    pub fn applied(&self) -> BTreeSet<(String, IpAddr)> {
        self.applied.borrow().clone()
    }

    fn send(&self, r: Request) -> Result<(), NetError> {
        self.tx.send(r).map_err(|_| NetError::TaskGone)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| NetError::TaskGone)?
    }

    /// Replace `owner`'s desired VIPs (empty = none). Applied in order; see `flush`.
    pub async fn set_vips(&self, owner: String, vips: Vec<VipEntry>) -> Result<(), NetError> {
        self.send(Request::SetVips(owner, vips))
    }

    /// Withdraw all of `owner`'s VIPs (only addresses we added are removed).
    pub async fn clear_vips(&self, owner: String) -> Result<(), NetError> {
        self.send(Request::ClearVips(owner))
    }

    /// Wait until every earlier request is applied (runtime: before exiting).
    pub async fn flush(&self) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Flush(tx))?;
        rx.await.map_err(|_| NetError::TaskGone)
    }

    /// Every desired entry with its owner and status.
    pub async fn status(&self) -> Result<Vec<(String, VipEntry, VipStatus)>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Status(tx))?;
        rx.await.map_err(|_| NetError::TaskGone)
    }

    /// Remove every address carrying our mark that is not desired (leftovers of a
    /// crash); returns how many were removed. Call once at start.
    pub async fn cleanup_leftovers(&self) -> Result<usize, NetError> {
        self.call(Request::Cleanup).await
    }

    /// A channel of link changes: first the current state of every link, then changes.
    pub async fn subscribe_links(&self) -> Result<mpsc::UnboundedReceiver<LinkEvent>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Subscribe(tx))?;
        rx.await.map_err(|_| NetError::TaskGone)
    }

    /// Interface index of `name`.
    pub async fn ifindex_by_name(&self, name: &str) -> Result<u32, NetError> {
        self.call(|r| Request::IfindexByName(name.to_string(), r))
            .await
    }

    /// Hardware address of an interface.
    pub async fn mac_of(&self, ifindex: u32) -> Result<[u8; 6], NetError> {
        self.call(|r| Request::MacOf(ifindex, r)).await
    }

    /// The address VRRP speaks from: IPv4, the first primary (non-secondary) address that
    /// is not a VIP of ours; IPv6, the link-local address (as keepalived does).
    pub async fn primary_address(&self, ifindex: u32, family: Family) -> Result<IpAddr, NetError> {
        self.call(|r| Request::Primary(ifindex, family, r)).await
    }

    /// Create (or reuse, or replace) the macvlan `name` on `parent` with MAC `mac`, mode
    /// private, and set it up; returns its index.
    pub async fn create_vmac(
        &self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, NetError> {
        self.call(|reply| Request::CreateVmac {
            parent,
            name: name.to_string(),
            mac,
            reply,
        })
        .await
    }

    /// Delete a virtual MAC interface (at shutdown).
    pub async fn delete_vmac(&self, ifindex: u32) -> Result<(), NetError> {
        self.call(|r| Request::DeleteVmac(ifindex, r)).await
    }
}

/// Set by the crash path: from then on no address is added (the cleanup that follows must
/// not race with the resync healing the VIPs back).
static FROZEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stop adding addresses for the rest of the process's life (the crash path).
pub fn freeze() {
    FROZEN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The virtual MAC of a VRID: 00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID (IPv6)
/// (RFC 5798 §7.3).
pub fn virtual_mac(vrid: crate::units::Vrid, family: Family) -> [u8; 6] {
    let f = match family {
        Family::V4 => 1,
        Family::V6 => 2,
    };
    [0x00, 0x00, 0x5e, 0x00, f, vrid.get()]
}

/// keepalived's default vmac interface name, `vrrp.<VRID>`.
pub fn default_vmac_name(vrid: crate::units::Vrid) -> String {
    format!("vrrp.{}", vrid.get())
}

/// Start the netlink task in the current runtime and network namespace.
pub fn spawn(opts: Options) -> Result<NetlinkHandle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    let (mconn, _mhandle, events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    tokio::spawn(mconn);
    let (tx, rx) = mpsc::unbounded_channel();
    let (applied_tx, applied) = watch::channel(BTreeSet::new());
    let task = Task {
        handle,
        applied: applied_tx,
        table: VipTable::default(),
        status: HashMap::new(),
        installed: HashSet::new(),
        mark_supported: true,
        mark_checked: false,
        links: BTreeMap::new(),
        subscribers: Vec::new(),
    };
    tokio::spawn(task.run(rx, events, opts));
    Ok(NetlinkHandle { tx, applied })
}

type Events = futures::channel::mpsc::UnboundedReceiver<(
    netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>,
    netlink_sys::SocketAddr,
)>;

struct Task {
    /// The one rtnetlink handle of the process.
    handle: Handle,
    /// Published after every request, event and resync: see [`NetlinkHandle::applied`].
    applied: watch::Sender<BTreeSet<(String, IpAddr)>>,
    /// Desired VIPs per owner.
    table: VipTable,
    /// Last outcome per desired (ifindex, address).
    status: HashMap<(u32, IpAddr), VipStatus>,
    /// What this process added (ownership fallback without IFA_PROTO).
    installed: HashSet<(u32, IpAddr)>,
    /// The kernel keeps IFA_PROTO (checked after our first add).
    mark_supported: bool,
    /// `mark_supported` has been verified once.
    mark_checked: bool,
    /// Last known state per ifindex: (name, up).
    links: BTreeMap<u32, (String, bool)>,
    /// Link event subscribers; closed ones are dropped on the next event.
    subscribers: Vec<mpsc::UnboundedSender<LinkEvent>>,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Request>,
        mut events: Events,
        opts: Options,
    ) {
        if let Err(e) = self.refresh_links().await {
            warn!(error = %e, "initial link dump failed");
        }
        // First resync one period from now: leftovers are removed by an explicit
        // `cleanup_leftovers`, not by a race with the first tick.
        let start = tokio::time::Instant::now() + opts.resync;
        let mut tick = tokio::time::interval_at(start, opts.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            tokio::select! {
                req = rx.recv() => match req {
                    Some(r) => self.serve(r).await,
                    None => break,
                },
                ev = events.next(), if events_open => match ev {
                    Some((msg, _)) => self.on_event(msg).await,
                    None => {
                        warn!("netlink event socket closed; relying on periodic resync");
                        events_open = false;
                    }
                },
                _ = tick.tick() => {
                    self.reconcile().await;
                    if let Err(e) = self.refresh_links().await {
                        warn!(error = %e, "link resync failed");
                    }
                }
            }
            self.publish_applied();
        }
        debug!("netlink task stops");
    }

    /// Publish the desired VIPs applied by us (only when that set changed).
    fn publish_applied(&self) {
        let now: BTreeSet<(String, IpAddr)> = self
            .table
            .entries()
            .filter(|(_, e)| self.status.get(&e.key()) == Some(&VipStatus::Applied))
            .map(|(o, e)| (o.to_string(), e.addr))
            .collect();
        self.applied.send_if_modified(|s| {
            let changed = *s != now;
            if changed {
                *s = now;
            }
            changed
        });
    }

    async fn serve(&mut self, r: Request) {
        match r {
            Request::SetVips(owner, vips) => {
                self.table.set(&owner, vips);
                self.reconcile().await;
            }
            Request::ClearVips(owner) => {
                self.table.remove(&owner);
                self.reconcile().await;
            }
            Request::Flush(reply) => {
                self.reconcile().await;
                let _ = reply.send(());
            }
            Request::Status(reply) => {
                let out = self
                    .table
                    .entries()
                    .map(|(o, e)| {
                        let s = self
                            .status
                            .get(&e.key())
                            .cloned()
                            .unwrap_or(VipStatus::Pending);
                        (o.to_string(), e.clone(), s)
                    })
                    .collect();
                let _ = reply.send(out);
            }
            Request::Cleanup(reply) => {
                let _ = reply.send(self.cleanup().await);
            }
            Request::Subscribe(reply) => {
                let (tx, rx) = mpsc::unbounded_channel();
                for (ifindex, (name, up)) in &self.links {
                    let _ = tx.send(LinkEvent {
                        ifindex: *ifindex,
                        name: name.clone(),
                        up: *up,
                    });
                }
                self.subscribers.push(tx);
                let _ = reply.send(rx);
            }
            Request::IfindexByName(name, reply) => {
                let _ = reply.send(self.link_by_name(&name).await.map(|m| m.header.index));
            }
            Request::MacOf(ifindex, reply) => {
                let _ = reply.send(self.mac(ifindex).await);
            }
            Request::Primary(ifindex, family, reply) => {
                let _ = reply.send(self.primary(ifindex, family).await);
            }
            Request::CreateVmac {
                parent,
                name,
                mac,
                reply,
            } => {
                let _ = reply.send(self.create_vmac(parent, &name, mac).await);
            }
            Request::DeleteVmac(ifindex, reply) => {
                let r = self.handle.link().del(ifindex).execute().await;
                let _ = reply.send(r.map_err(NetError::from));
            }
        }
    }

    async fn on_event(&mut self, msg: netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>) {
        let NetlinkPayload::InnerMessage(inner) = msg.payload else {
            return;
        };
        match inner {
            RouteNetlinkMessage::NewLink(link) => {
                let (ifindex, name, up) = link_state(&link);
                let became_up = self.update_link(ifindex, name, up);
                // IPv6 addresses are flushed when a link goes down: put VIPs back.
                if became_up && self.table.desired().iter().any(|d| d.ifindex == ifindex) {
                    self.reconcile().await;
                }
            }
            RouteNetlinkMessage::DelLink(link) => {
                let (ifindex, name, _) = link_state(&link);
                self.update_link(ifindex, name, false);
                self.links.remove(&ifindex);
            }
            RouteNetlinkMessage::DelAddress(a) => {
                // Someone removed an address we want: heal now, not at the next tick.
                if let Some(k) = kernel_addr(&a, &self.installed, self.mark_supported) {
                    if self
                        .table
                        .desired()
                        .iter()
                        .any(|d| d.key() == (k.ifindex, k.addr))
                    {
                        debug!(addr = %k.addr, "desired vip removed externally; re-adding");
                        self.reconcile().await;
                    }
                }
            }
            _ => {}
        }
    }

    /// Record a link state; emit an event if it is new or changed. Returns "became up".
    fn update_link(&mut self, ifindex: u32, name: String, up: bool) -> bool {
        let prev = self.links.insert(ifindex, (name.clone(), up));
        let changed = prev.as_ref().map(|(_, p)| *p) != Some(up);
        if changed {
            let ev = LinkEvent { ifindex, name, up };
            self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
        }
        changed && up
    }

    async fn refresh_links(&mut self) -> Result<(), NetError> {
        let links: Vec<LinkMessage> = self.handle.link().get().execute().try_collect().await?;
        let mut seen = HashSet::new();
        for l in &links {
            let (ifindex, name, up) = link_state(l);
            seen.insert(ifindex);
            self.update_link(ifindex, name, up);
        }
        let gone: Vec<u32> = self
            .links
            .keys()
            .filter(|i| !seen.contains(i))
            .copied()
            .collect();
        for ifindex in gone {
            if let Some((name, _)) = self.links.get(&ifindex).cloned() {
                self.update_link(ifindex, name, false);
            }
            self.links.remove(&ifindex);
        }
        Ok(())
    }

    async fn dump_addrs(&self) -> Result<Vec<AddressMessage>, NetError> {
        Ok(self.handle.address().get().execute().try_collect().await?)
    }

    async fn current(&self) -> Result<Vec<(KernelAddr, AddressMessage)>, NetError> {
        Ok(self
            .dump_addrs()
            .await?
            .into_iter()
            .filter_map(|m| kernel_addr(&m, &self.installed, self.mark_supported).map(|k| (k, m)))
            .collect())
    }

    async fn reconcile(&mut self) {
        let current = match self.current().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "address dump failed");
                return;
            }
        };
        let desired = self.table.desired();
        let kernel: Vec<KernelAddr> = current.iter().map(|(k, _)| k.clone()).collect();
        let ops = plan(&desired, &kernel);
        // Status of entries already present.
        for d in &desired {
            if let Some(k) = kernel.iter().find(|k| (k.ifindex, k.addr) == d.key()) {
                let s = if k.ours {
                    VipStatus::Applied
                } else {
                    VipStatus::NotOurs
                };
                self.status.insert(d.key(), s);
            }
        }
        let mut added_any = false;
        for op in ops {
            match op {
                Op::Add(e) => {
                    let s = match self.add_addr(&e).await {
                        Ok(true) => {
                            info!(addr = %e.addr, ifindex = e.ifindex, "vip added");
                            self.installed.insert(e.key());
                            added_any = true;
                            VipStatus::Applied
                        }
                        // Appeared since the dump (not by us): the next pass classifies it.
                        Ok(false) => VipStatus::Pending,
                        Err(err) => {
                            warn!(addr = %e.addr, ifindex = e.ifindex, error = %err, "vip add failed");
                            VipStatus::Error(err.to_string())
                        }
                    };
                    self.status.insert(e.key(), s);
                }
                Op::Del(k) => {
                    if let Some((_, msg)) = current.iter().find(|(c, _)| *c == k) {
                        match self.handle.address().del(msg.clone()).execute().await {
                            Ok(()) => info!(addr = %k.addr, ifindex = k.ifindex, "vip removed"),
                            Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) => {}
                            Err(e) => warn!(addr = %k.addr, error = %e, "vip removal failed"),
                        }
                        self.installed.remove(&(k.ifindex, k.addr));
                    }
                }
            }
        }
        self.status
            .retain(|key, _| desired.iter().any(|d| d.key() == *key));
        if added_any && !self.mark_checked {
            self.mark_checked = true;
            self.check_mark_support().await;
        }
    }

    /// After an add, see whether the kernel kept our IFA_PROTO; if not, fall back.
    async fn check_mark_support(&mut self) {
        let Ok(msgs) = self.dump_addrs().await else {
            return;
        };
        let ours_seen = msgs.iter().any(|m| {
            let Some(k) = kernel_addr(m, &HashSet::new(), true) else {
                return false;
            };
            k.ours
        });
        let installed_seen = msgs.iter().any(|m| {
            kernel_addr(m, &HashSet::new(), true)
                .is_some_and(|k| self.installed.contains(&(k.ifindex, k.addr)))
        });
        if installed_seen && !ours_seen {
            warn!("kernel drops IFA_PROTO; ownership falls back to this process's memory");
            self.mark_supported = false;
        }
    }

    /// Add `e`; `Ok(false)` if the kernel already had it (EEXIST: idempotent).
    async fn add_addr(&self, e: &VipEntry) -> Result<bool, NetError> {
        if FROZEN.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NetError::Frozen);
        }
        let mut req = self.handle.address().add(e.ifindex, e.addr, e.prefix_len);
        *req.message_mut() = vip_message(e);
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(err) if is_errno(&err, libc::EEXIST) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn cleanup(&mut self) -> Result<usize, NetError> {
        let current = self.current().await?;
        let wanted: HashSet<(u32, IpAddr)> =
            self.table.desired().iter().map(VipEntry::key).collect();
        let mut n = 0;
        for (k, msg) in current {
            if !k.ours || wanted.contains(&(k.ifindex, k.addr)) {
                continue;
            }
            match self.handle.address().del(msg).execute().await {
                Ok(()) => {
                    info!(addr = %k.addr, ifindex = k.ifindex, "removed leftover vip");
                    n += 1;
                }
                Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    async fn link_by_name(&self, name: &str) -> Result<LinkMessage, NetError> {
        let mut s = self.handle.link().get().match_name(name).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(NetError::NoSuchLink(name.to_string())),
            Err(e) if is_errno(&e, libc::ENODEV) => Err(NetError::NoSuchLink(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn link_by_index(&self, ifindex: u32) -> Result<LinkMessage, NetError> {
        let mut s = self.handle.link().get().match_index(ifindex).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(NetError::NoSuchLink(ifindex.to_string())),
            Err(e) if is_errno(&e, libc::ENODEV) => Err(NetError::NoSuchLink(ifindex.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn mac(&self, ifindex: u32) -> Result<[u8; 6], NetError> {
        let link = self.link_by_index(ifindex).await?;
        link_mac(&link).ok_or(NetError::NoAddress(ifindex))
    }

    async fn primary(&self, ifindex: u32, family: Family) -> Result<IpAddr, NetError> {
        let msgs = self.dump_addrs().await?;
        let candidates = msgs
            .iter()
            .filter(|m| m.header.index == ifindex)
            .filter_map(|m| {
                let k = kernel_addr(m, &self.installed, self.mark_supported)?;
                (!k.ours).then_some((k.addr, addr_flags(m)))
            });
        let mut found = None;
        for (addr, flags) in candidates {
            match (family, addr) {
                (Family::V4, IpAddr::V4(_)) if !flags.contains(AddressFlags::Secondary) => {
                    found = Some(addr);
                    break;
                }
                (Family::V6, IpAddr::V6(v6)) if is_link_local(v6) => {
                    // Prefer a usable (non-tentative) link-local; take a tentative one
                    // only if there is nothing else.
                    if !flags.contains(AddressFlags::Tentative) {
                        found = Some(addr);
                        break;
                    }
                    found.get_or_insert(addr);
                }
                _ => {}
            }
        }
        found.ok_or(NetError::NoAddress(ifindex))
    }

    async fn create_vmac(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, NetError> {
        match self.link_by_name(name).await {
            Ok(existing) => {
                let reusable = is_macvlan(&existing)
                    && link_parent(&existing) == Some(parent)
                    && link_mac(&existing) == Some(mac);
                if reusable {
                    let index = existing.header.index;
                    let up = LinkUnspec::new_with_index(index).up().build();
                    self.handle.link().set(up).execute().await?;
                    info!(name, index, "reusing existing vmac");
                    return Ok(index);
                }
                info!(name, "replacing interface in the way of the vmac");
                self.handle
                    .link()
                    .del(existing.header.index)
                    .execute()
                    .await?;
            }
            Err(NetError::NoSuchLink(_)) => {}
            Err(e) => return Err(e),
        }
        let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
            .address(mac.to_vec())
            .up()
            .build();
        self.handle.link().add(msg).execute().await?;
        let index = self.link_by_name(name).await?.header.index;
        info!(name, index, "vmac created");
        Ok(index)
    }
}

/// The netlink message adding `e`, marked as ours.
fn vip_message(e: &VipEntry) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.prefix_len = e.prefix_len;
    m.header.index = e.ifindex;
    m.header.scope = e.scope.to_netlink();
    match e.addr {
        IpAddr::V4(_) => {
            m.header.family = AddressFamily::Inet;
            m.attributes.push(AddressAttribute::Local(e.addr));
            m.attributes.push(AddressAttribute::Address(e.addr));
            if let Some(brd) = e.brd {
                m.attributes.push(AddressAttribute::Broadcast(brd));
            }
            if let Some(label) = &e.label {
                m.attributes.push(AddressAttribute::Label(label.clone()));
            }
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            // No duplicate address detection: a VIP moves between routers by design,
            // and a tentative VIP could not be used for ~1 s (keepalived does the same).
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Local(e.addr));
            m.attributes.push(AddressAttribute::Address(e.addr));
        }
    }
    m.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(
            ADDR_PROTO_MARK,
        )));
    m
}

fn addr_flags(m: &AddressMessage) -> AddressFlags {
    let mut f = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
    for a in &m.attributes {
        if let AddressAttribute::Flags(x) = a {
            f |= *x;
        }
    }
    f
}

fn kernel_addr(
    m: &AddressMessage,
    installed: &HashSet<(u32, IpAddr)>,
    mark_supported: bool,
) -> Option<KernelAddr> {
    let mut local = None;
    let mut address = None;
    let mut marked = false;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(x) => local = Some(*x),
            AddressAttribute::Address(x) => address = Some(*x),
            AddressAttribute::Protocol(p) => marked = u8::from(*p) == ADDR_PROTO_MARK,
            _ => {}
        }
    }
    let addr = local.or(address)?;
    let ifindex = m.header.index;
    let ours = marked || (!mark_supported && installed.contains(&(ifindex, addr)));
    Some(KernelAddr {
        ifindex,
        addr,
        prefix_len: m.header.prefix_len,
        ours,
    })
}

fn link_state(l: &LinkMessage) -> (u32, String, bool) {
    let name = l
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let up = l.header.flags.contains(LinkFlags::Up | LinkFlags::Running);
    (l.header.index, name, up)
}

fn link_mac(l: &LinkMessage) -> Option<[u8; 6]> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
        _ => None,
    })
}

fn link_parent(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(p) => Some(*p),
        _ => None,
    })
}

fn is_macvlan(l: &LinkMessage) -> bool {
    l.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| {
            matches!(i, LinkInfo::Kind(InfoKind::MacVlan))
                || matches!(i, LinkInfo::Data(InfoData::MacVlan(d)) if d.iter().any(|x| matches!(x, InfoMacVlan::Mode(_))))
        }),
        _ => false,
    })
}

fn is_link_local(a: Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn k(ifindex: u32, a: &str, ours: bool) -> KernelAddr {
        KernelAddr {
            ifindex,
            addr: v4(a),
            prefix_len: 24,
            ours,
        }
    }

    #[test]
    fn plan_adds_missing_only() {
        let d = vec![
            VipEntry::new(2, v4("192.0.2.10"), 24),
            VipEntry::new(2, v4("192.0.2.11"), 24),
        ];
        let cur = vec![k(2, "192.0.2.1", false), k(2, "192.0.2.10", true)];
        assert_eq!(plan(&d, &cur), vec![Op::Add(d[1].clone())]);
    }

    #[test]
    fn plan_removes_only_ours() {
        let cur = vec![
            k(2, "192.0.2.1", false),
            k(2, "192.0.2.10", true),
            k(3, "198.51.100.5", false),
        ];
        assert_eq!(plan(&[], &cur), vec![Op::Del(cur[1].clone())]);
    }

    #[test]
    fn plan_leaves_manual_copy_of_a_vip() {
        // Desired and present but not ours: nothing to add, and never deleted.
        let d = vec![VipEntry::new(2, v4("192.0.2.10"), 24)];
        let cur = vec![k(2, "192.0.2.10", false)];
        assert!(plan(&d, &cur).is_empty());
        assert!(plan(&[], &cur).is_empty());
    }

    #[test]
    fn plan_same_address_other_interface_is_distinct() {
        let d = vec![VipEntry::new(3, v4("192.0.2.10"), 24)];
        let cur = vec![k(2, "192.0.2.10", true)];
        assert_eq!(
            plan(&d, &cur),
            vec![Op::Add(d[0].clone()), Op::Del(cur[0].clone())]
        );
    }

    #[test]
    fn table_keeps_shared_address_while_any_owner_wants_it() {
        let e = VipEntry::new(2, v4("192.0.2.10"), 24);
        let mut t = VipTable::default();
        t.set("VI_1", vec![e.clone()]);
        t.set("VI_2", vec![e.clone()]);
        assert_eq!(t.desired(), vec![e.clone()]);
        t.remove("VI_1");
        assert_eq!(t.desired(), vec![e]);
        t.set("VI_2", vec![]);
        assert!(t.desired().is_empty());
    }

    #[test]
    fn vip_message_is_marked() {
        let mut e = VipEntry::new(2, v4("192.0.2.10"), 24);
        e.label = Some("eth0:1".into());
        e.brd = Some(Ipv4Addr::new(192, 0, 2, 255));
        let m = vip_message(&e);
        let got = kernel_addr(&m, &HashSet::new(), true).unwrap();
        assert!(got.ours);
        assert_eq!(got.addr, e.addr);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Label("eth0:1".into())));
        let v6 = vip_message(&VipEntry::new(2, "2001:db8::10".parse().unwrap(), 64));
        assert!(v6.header.flags.contains(AddressHeaderFlags::Nodad));
    }

    #[test]
    fn vmac_addresses() {
        let vrid = crate::units::Vrid::new(51).unwrap();
        assert_eq!(virtual_mac(vrid, Family::V4), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(vrid, Family::V6), [0, 0, 0x5e, 0, 2, 51]);
        assert_eq!(default_vmac_name(vrid), "vrrp.51");
    }
}
