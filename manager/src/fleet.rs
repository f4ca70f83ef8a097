//! The in-memory fleet view: per node the hello, boot id, connection, last seen, latest
//! instance states (snapshot plus applied transitions), virtual servers (from the snapshot
//! and each `LbStatus`, replaced whole) and clock offset; and the alerts
//! the manager derives from it:
//! - `split-brain`: two reachable agents MASTER for the same VRID with overlapping VIPs
//!   (the manager cannot see segments; same VRID plus a shared VIP stands for one), or
//!   a reachable master whose agent reports `peer-master` (it hears another master's
//!   adverts). Raised only from fresh state: the masters must persist longer than the
//!   instance's Master_Down_Interval plus a margin (so a preempt, a set-priority or a
//!   switchover, where both report MASTER for a moment, never raises it), and every
//!   member must have been heard from after that hold ended (proof it is still master;
//!   [`Fleet::probes`] names the nodes to ping for it). The agents' `peer-master`
//!   evidence is quoted in the message;
//! - `agent-unreachable`: a connected agent not heard from for longer than the silence
//!   limit (its link is cut but the TCP session has not timed out yet). Such a node, and
//!   a disconnected one, is never counted as a master: status shows it as unreachable
//!   with its last reported state;
//! - `clock-offset`: an agent's wall clock is off by more than the threshold (NTP-style
//!   estimate from ping/heartbeat round trips);
//! - `agent-disconnected`: a live session ended;
//! - `store-unavailable`: history writes fail (the core reports it; nothing is acked);
//! - local alerts the agents report in `InstanceState.alerts` (`vrid-collision`,
//!   `peer-master`), surfaced under their own kind; a `vrid-collision` is shown only once
//!   it has been in force for the same hold as a split brain (a VIP list changed on one
//!   node before the other is not a collision).
//!
//! Pure: no I/O, no clock (callers pass `now_ms`). Every mutation returns the manager
//! events (ALERT_RAISED / ALERT_CLEARED) to record in history and broadcast.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use ha_proto::v1::{
    Alert, Event, EventKind, Heartbeat, Hello, InstanceState, LbStatus, NodeStatus, Snapshot,
    StatusReply, VirtualServerState,
};

/// Alert kind: two masters for one VRID with overlapping VIPs.
pub const SPLIT_BRAIN: &str = "split-brain";
/// Alert kind: agent wall clock off by more than the threshold.
pub const CLOCK_OFFSET: &str = "clock-offset";
/// Alert kind: an agent's session ended.
pub const AGENT_DISCONNECTED: &str = "agent-disconnected";
/// Alert kind reported by agents for a VRID used with another VIP list.
pub const VRID_COLLISION: &str = "vrid-collision";
/// Alert kind reported by a MASTER agent that keeps hearing another master's adverts for
/// its VRID: `peer-master: <addr> advertises VRID <n> as MASTER at priority <p>`.
pub const PEER_MASTER: &str = "peer-master";
/// Alert kind: a connected agent has not been heard from for longer than the silence
/// limit.
pub const AGENT_UNREACHABLE: &str = "agent-unreachable";

/// Alert kind: the history store does not take writes (a full disk); nothing is acked.
pub const STORE_UNAVAILABLE: &str = "store-unavailable";

/// A node that leaves a liveness probe (a ping) unanswered this long is unreachable, ms:
/// a live agent answers within a round trip.
pub const PROBE_ANSWER_MS: i64 = 2_000;

/// Advert interval assumed when the agent does not send one (keepalived's default).
pub const DEFAULT_ADVERT_MS: u32 = 1000;

/// Liveness and debounce tuning of the fleet view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetOptions {
    /// Clock offset alert threshold, ms.
    pub clock_alert_ms: f64,
    /// A connected agent silent for longer than this is unreachable, ms.
    pub silent_after_ms: i64,
    /// Added to Master_Down_Interval before two masters count as a split brain, ms.
    pub split_margin_ms: i64,
    /// Advert interval assumed for instances whose agent does not send one, ms.
    pub default_advert_ms: u32,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            clock_alert_ms: 500.0,
            silent_after_ms: 15_000,
            split_margin_ms: 1_000,
            default_advert_ms: DEFAULT_ADVERT_MS,
        }
    }
}

/// Master_Down_Interval of an instance with this advert interval and priority, ms:
/// `3 x interval + skew`, skew `(256 - priority) x interval / 256` (RFC 5798 §6.1; v2's
/// seconds give the same with interval 1000). Priority 0 (unknown) counts as 1, the
/// longest skew.
pub fn master_down_ms(advert_ms: u32, priority: u32) -> i64 {
    let adv = i64::from(if advert_ms == 0 {
        DEFAULT_ADVERT_MS
    } else {
        advert_ms
    });
    let prio = i64::from(priority.clamp(1, 255));
    3 * adv + (256 - prio) * adv / 256
}

/// State spellings (keepalived's).
pub const MASTER: &str = "MASTER";

/// One clock sample: the NTP offset estimate and the round trip it came with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    /// Agent clock minus manager clock, ms.
    pub offset_ms: f64,
    /// Round trip ping -> heartbeat, ms.
    pub rtt_ms: i64,
}

/// NTP-style offset of the agent clock: `agent - (t_send + t_recv) / 2`, with the round
/// trip `t_recv - t_send` (manager times, ms). `None` when the round trip is negative
/// (the manager's clock stepped back).
pub fn ntp_sample(t_send_ms: i64, agent_ms: i64, t_recv_ms: i64) -> Option<ClockSample> {
    let rtt_ms = t_recv_ms.checked_sub(t_send_ms)?;
    if rtt_ms < 0 {
        return None;
    }
    let mid = (t_send_ms as f64 + t_recv_ms as f64) / 2.0;
    Some(ClockSample {
        offset_ms: agent_ms as f64 - mid,
        rtt_ms,
    })
}

/// Smoothing like NTP's clock filter: of the last [`ClockFilter::WINDOW`] samples, the
/// one with the shortest round trip (the least queueing delay) gives the estimate.
///
/// A sample's true offset lies within half its round trip of its estimate, whatever the
/// path asymmetry. A new sample whose interval does not overlap the best one's (beyond
/// [`ClockFilter::SLACK_MS`] of timestamp granularity) means the agent's clock was
/// stepped: the older samples no longer describe it and are dropped, so an alert clears
/// (or is raised) on the first sample after the step instead of when the old best sample
/// ages out of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClockFilter {
    /// Most recent samples, oldest first.
    samples: VecDeque<ClockSample>,
}

impl ClockFilter {
    /// Samples kept.
    pub const WINDOW: usize = 8;

    /// Timestamp granularity allowed when comparing two samples' intervals, ms.
    pub const SLACK_MS: f64 = 10.0;

    /// Adds a sample and returns the new estimate.
    pub fn add(&mut self, s: ClockSample) -> f64 {
        if let Some(best) = self.samples.iter().min_by_key(|b| b.rtt_ms) {
            let bound = (s.rtt_ms + best.rtt_ms) as f64 / 2.0 + Self::SLACK_MS;
            if (s.offset_ms - best.offset_ms).abs() > bound {
                self.samples.clear();
            }
        }
        if self.samples.len() == Self::WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        self.estimate().unwrap_or(s.offset_ms)
    }

    /// Current estimate, `None` before the first sample.
    pub fn estimate(&self) -> Option<f64> {
        self.samples
            .iter()
            .min_by_key(|s| s.rtt_ms)
            .map(|s| s.offset_ms)
    }
}

/// What the manager knows about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Node name (hello.node).
    pub name: String,
    /// Boot id of the current (or last) agent process.
    pub boot_id: String,
    /// Agent version.
    pub version: String,
    /// Config digest from hello.
    pub config_digest: String,
    /// A session is live.
    pub connected: bool,
    /// Session id that owns `connected` (a newer session replaces an older one).
    pub conn: u64,
    /// Peer address of the session.
    pub peer_addr: String,
    /// Manager time of the last message, ms.
    pub last_seen_ms: i64,
    /// Override generation the agent has in force.
    pub override_generation: u64,
    /// Instance states by name.
    pub instances: BTreeMap<String, InstanceState>,
    /// Virtual servers as the agent's load-balancer runtime last reported them.
    pub virtual_servers: Vec<VirtualServerState>,
    /// Highest event seq (of this boot) applied to `instances`.
    pub applied_seq: u64,
    /// Clock offset filter.
    pub clock: ClockFilter,
    /// Advert interval per instance from hello, ms (0 = not sent).
    pub advert_ms: BTreeMap<String, u32>,
    /// Manager time each local alert (instance, text) was first seen, ms.
    pub local_since: BTreeMap<(String, String), i64>,
    /// Manager time of the oldest liveness probe not answered yet (any message from the
    /// node answers it), ms.
    pub probe_sent_ms: Option<i64>,
}

impl NodeView {
    /// Connected, heard from within `silent_after_ms` of `now_ms`, and not leaving a
    /// probe unanswered for longer than [`PROBE_ANSWER_MS`] (a node whose link is cut
    /// while its TCP session lingers shows as unreachable within seconds of the probe
    /// that a second master triggers, not only after the silence limit).
    pub fn reachable(&self, now_ms: i64, silent_after_ms: i64) -> bool {
        self.connected
            && now_ms.saturating_sub(self.last_seen_ms) <= silent_after_ms
            && !self.probe_overdue(now_ms)
    }

    /// A probe has gone unanswered for longer than [`PROBE_ANSWER_MS`].
    pub fn probe_overdue(&self, now_ms: i64) -> bool {
        self.probe_sent_ms
            .is_some_and(|p| now_ms.saturating_sub(p) > PROBE_ANSWER_MS)
    }

    /// A message from the node arrived at `now_ms`: it is alive, any probe is answered.
    fn heard(&mut self, now_ms: i64) {
        self.last_seen_ms = now_ms;
        self.probe_sent_ms = None;
    }

    /// Master_Down_Interval plus the margin of one instance (its advert interval from
    /// hello, else the assumed one; its effective priority, else its base priority).
    pub fn hold_ms(&self, instance: &str, opts: &FleetOptions) -> i64 {
        let adv = self
            .advert_ms
            .get(instance)
            .copied()
            .filter(|a| *a != 0)
            .unwrap_or(opts.default_advert_ms);
        let prio = self.instances.get(instance).map_or(0, |i| {
            if i.effective_priority != 0 {
                i.effective_priority
            } else {
                i.base_priority
            }
        });
        master_down_ms(adv, prio) + opts.split_margin_ms
    }

    /// Keeps `local_since` in step with the instances' local alerts.
    fn sync_local_since(&mut self, now_ms: i64) {
        let live: BTreeSet<(String, String)> = self
            .instances
            .values()
            .flat_map(|i| i.alerts.iter().map(|a| (i.name.clone(), a.clone())))
            .collect();
        self.local_since.retain(|k, _| live.contains(k));
        for k in live {
            self.local_since.entry(k).or_insert(now_ms);
        }
    }

    /// The node as `Status` shows it at `now_ms` (reachability and silence filled in).
    pub fn status_at(&self, now_ms: i64, silent_after_ms: i64) -> NodeStatus {
        let mut st = self.status();
        st.reachable = self.reachable(now_ms, silent_after_ms);
        if self.last_seen_ms != 0 {
            st.silent_ms = now_ms.saturating_sub(self.last_seen_ms).max(0);
        }
        st
    }

    /// The node as it is saved (no reachability: that is a matter of the moment).
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            name: self.name.clone(),
            connected: self.connected,
            clock_offset_ms: self.clock.estimate().unwrap_or(0.0),
            boot_id: self.boot_id.clone(),
            version: self.version.clone(),
            last_seen_ms: self.last_seen_ms,
            instances: self.instances.values().cloned().collect(),
            override_generation: self.override_generation,
            peer_addr: self.peer_addr.clone(),
            virtual_servers: self.virtual_servers.clone(),
            reachable: false,
            silent_ms: 0,
            config_digest: self.config_digest.clone(),
        }
    }
}

/// An alert the manager raised, with the (node, instance) pairs it concerns.
#[derive(Debug, Clone, PartialEq)]
struct Active {
    /// As shown in status.
    alert: Alert,
    /// Who it concerns: one history event per member.
    members: Vec<(String, String)>,
}

/// A split brain seen but not alerted yet (debounce).
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    /// Manager time it was first seen, ms.
    since_ms: i64,
    /// How long it must persist: the longest Master_Down_Interval of its members plus
    /// the margin, ms.
    hold_ms: i64,
    /// Nodes whose fresh word is needed to raise it.
    nodes: Vec<String>,
}

/// The fleet view.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Nodes by name.
    nodes: BTreeMap<String, NodeView>,
    /// Manager-raised alerts by (kind, subject).
    alerts: BTreeMap<(String, String), Active>,
    /// Split brains waiting out their hold, by subject.
    pending: BTreeMap<String, Pending>,
    /// VRID -> (node, instance) pairs using it, for split-brain checks.
    by_vrid: HashMap<u32, BTreeSet<(String, String)>>,
    /// Thresholds.
    opts: FleetOptions,
}

fn vip_addr(v: &str) -> &str {
    v.split('/').next().unwrap_or(v)
}

/// A `(node, instance)` pair.
pub type Member = (String, String);

/// Masters of one VRID on different nodes that share VIPs.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SplitGroup {
    /// Sorted members (at least two nodes).
    pub members: Vec<Member>,
    /// Shared addresses (without prefix length).
    pub vips: BTreeSet<String>,
}

/// Groups of masters of one VRID (`(node, instance, vips)`) that share VIPs across
/// nodes, transitively.
pub fn split_brain_groups(masters: &[(String, String, Vec<String>)]) -> Vec<SplitGroup> {
    let n = masters.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let sets: Vec<BTreeSet<&str>> = masters
        .iter()
        .map(|(_, _, v)| v.iter().map(|s| vip_addr(s)).collect())
        .collect();
    let mut shared: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if masters[i].0 == masters[j].0 {
                continue;
            }
            let common: Vec<&str> = sets[i].intersection(&sets[j]).copied().collect();
            if common.is_empty() {
                continue;
            }
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            parent[a] = b;
            for c in common {
                shared[i].insert(c.to_string());
                shared[j].insert(c.to_string());
            }
        }
    }
    let mut groups: BTreeMap<usize, SplitGroup> = BTreeMap::new();
    for i in 0..n {
        if shared[i].is_empty() {
            continue;
        }
        let root = find(&mut parent, i);
        let g = groups.entry(root).or_default();
        g.members.push((masters[i].0.clone(), masters[i].1.clone()));
        g.vips.extend(shared[i].iter().cloned());
    }
    let mut out: Vec<SplitGroup> = groups
        .into_values()
        .map(|mut g| {
            g.members.sort();
            g
        })
        .collect();
    out.sort();
    out
}

/// Kind of an agent-reported alert text: the token before ':' ("vrid-collision: ...").
pub fn local_alert_kind(text: &str) -> &str {
    match text.split_once(':') {
        Some((k, _)) if !k.is_empty() && !k.contains(char::is_whitespace) => k,
        _ => "agent-alert",
    }
}

fn alert_event(kind: EventKind, member: &(String, String), a: &Alert, now_ms: i64) -> Event {
    Event {
        node: member.0.clone(),
        instance: member.1.clone(),
        wall_time_ms: now_ms,
        kind: kind as i32,
        reason: a.kind.clone(),
        detail: format!("{}: {}", a.subject, a.message),
        ..Default::default()
    }
}

impl Fleet {
    /// An empty fleet with the clock alert threshold (other options default).
    pub fn new(clock_alert_ms: f64) -> Self {
        Fleet::with_options(FleetOptions {
            clock_alert_ms,
            ..FleetOptions::default()
        })
    }

    /// An empty fleet with these options.
    pub fn with_options(opts: FleetOptions) -> Self {
        Fleet {
            opts,
            ..Default::default()
        }
    }

    /// The options in force.
    pub fn options(&self) -> FleetOptions {
        self.opts
    }

    /// Seeds the view with nodes known from the store (all disconnected).
    pub fn load(&mut self, nodes: Vec<NodeStatus>) {
        for n in nodes {
            let view = NodeView {
                name: n.name.clone(),
                boot_id: n.boot_id,
                version: n.version,
                last_seen_ms: n.last_seen_ms,
                override_generation: n.override_generation,
                peer_addr: n.peer_addr,
                instances: n
                    .instances
                    .into_iter()
                    .map(|i| (i.name.clone(), i))
                    .collect(),
                virtual_servers: n.virtual_servers,
                ..Default::default()
            };
            self.index(&view, true);
            self.nodes.insert(n.name, view);
        }
    }

    /// The node, if known.
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.get(name)
    }

    /// Known node names, sorted.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Every node as `Status`/`Nodes` show it at `now_ms`.
    pub fn nodes(&self, now_ms: i64) -> Vec<NodeStatus> {
        let silent = self.opts.silent_after_ms;
        self.nodes
            .values()
            .map(|n| n.status_at(now_ms, silent))
            .collect()
    }

    /// The full status at `now_ms`: nodes and alerts (manager-raised, then the local
    /// ones of reachable agents; a `vrid-collision` once it has lasted the hold).
    pub fn status(&self, now_ms: i64) -> StatusReply {
        let mut alerts: Vec<Alert> = self.alerts.values().map(|a| a.alert.clone()).collect();
        let silent = self.opts.silent_after_ms;
        for n in self.nodes.values().filter(|n| n.reachable(now_ms, silent)) {
            for i in n.instances.values() {
                for text in &i.alerts {
                    let kind = local_alert_kind(text);
                    let since = n
                        .local_since
                        .get(&(i.name.clone(), text.clone()))
                        .copied()
                        .unwrap_or(n.last_seen_ms);
                    if kind == VRID_COLLISION && now_ms - since < n.hold_ms(&i.name, &self.opts) {
                        continue;
                    }
                    alerts.push(Alert {
                        kind: kind.to_string(),
                        subject: format!("{}/{}", n.name, i.name),
                        message: text.clone(),
                        since_ms: since,
                    });
                }
            }
        }
        StatusReply {
            nodes: self.nodes(now_ms),
            alerts,
            manager_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Manager-raised alerts.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.values().map(|a| a.alert.clone()).collect()
    }

    /// Among reachable nodes other than `except`, the (node, instance) that is MASTER
    /// for `vrid`.
    pub fn master_of(
        &self,
        vrid: u32,
        except: &str,
        now_ms: i64,
    ) -> Option<(String, InstanceState)> {
        let members = self.by_vrid.get(&vrid)?;
        let silent = self.opts.silent_after_ms;
        members.iter().find_map(|(node, inst)| {
            let n = self.nodes.get(node)?;
            let i = n.instances.get(inst)?;
            (node != except && n.reachable(now_ms, silent) && i.state == MASTER)
                .then(|| (node.clone(), i.clone()))
        })
    }

    fn index(&mut self, n: &NodeView, add: bool) {
        for i in n.instances.values() {
            let key = (n.name.clone(), i.name.clone());
            if add {
                self.by_vrid.entry(i.vrid).or_default().insert(key);
            } else if let Some(s) = self.by_vrid.get_mut(&i.vrid) {
                s.remove(&key);
                if s.is_empty() {
                    self.by_vrid.remove(&i.vrid);
                }
            }
        }
    }

    fn vrids(&self, node: &str) -> BTreeSet<u32> {
        self.nodes
            .get(node)
            .map(|n| n.instances.values().map(|i| i.vrid).collect())
            .unwrap_or_default()
    }

    /// Replaces a node's instances (keeping the VRID index right) and rechecks every
    /// VRID involved before or after.
    fn set_instances(
        &mut self,
        node: &str,
        instances: BTreeMap<String, InstanceState>,
        now_ms: i64,
    ) -> Vec<Event> {
        let mut vrids = self.vrids(node);
        let Some(mut n) = self.nodes.remove(node) else {
            return Vec::new();
        };
        self.index(&n, false);
        n.instances = instances;
        n.sync_local_since(now_ms);
        self.index(&n, true);
        vrids.extend(n.instances.values().map(|i| i.vrid));
        self.nodes.insert(node.to_string(), n);
        self.recheck(vrids, now_ms)
    }

    /// A session said hello: the node is connected under session id `conn`.
    pub fn connect(&mut self, hello: &Hello, peer: &str, conn: u64, now_ms: i64) -> Vec<Event> {
        let n = self
            .nodes
            .entry(hello.node.clone())
            .or_insert_with(|| NodeView {
                name: hello.node.clone(),
                ..Default::default()
            });
        if n.boot_id != hello.boot_id {
            n.applied_seq = 0;
        }
        n.boot_id = hello.boot_id.clone();
        n.version = hello.version.clone();
        n.config_digest = hello.config_digest.clone();
        n.override_generation = hello.override_generation;
        n.connected = true;
        n.conn = conn;
        n.peer_addr = peer.to_string();
        n.heard(now_ms);
        n.advert_ms = hello
            .instances
            .iter()
            .map(|s| (s.name.clone(), s.advert_interval_ms))
            .collect();
        let old = n.instances.clone();
        let instances = hello
            .instances
            .iter()
            .map(|s| {
                let mut st = old.get(&s.name).cloned().unwrap_or_else(|| InstanceState {
                    name: s.name.clone(),
                    state: "INIT".into(),
                    ..Default::default()
                });
                st.vrid = s.vrid;
                st.interface = s.interface.clone();
                (s.name.clone(), st)
            })
            .collect();
        let mut out = self.clear(AGENT_DISCONNECTED, &hello.node, now_ms);
        out.extend(self.clear(AGENT_UNREACHABLE, &hello.node, now_ms));
        out.extend(self.set_instances(&hello.node, instances, now_ms));
        out
    }

    /// A full snapshot: replaces the node's instance states; events up to `snap.seq` are
    /// in it.
    pub fn snapshot(&mut self, node: &str, snap: &Snapshot, now_ms: i64) -> Vec<Event> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        n.applied_seq = snap.seq;
        n.heard(now_ms);
        n.virtual_servers = snap.virtual_servers.clone();
        let instances = snap
            .instances
            .iter()
            .map(|i| (i.name.clone(), i.clone()))
            .collect();
        self.set_instances(node, instances, now_ms)
    }

    /// The load-balancer runtime's state: replaces the node's virtual servers.
    pub fn lb_status(&mut self, node: &str, lb: &LbStatus, now_ms: i64) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.virtual_servers = lb.virtual_servers.clone();
            n.heard(now_ms);
        }
    }

    /// One virtual server as an override result reported it (replaces the one of that
    /// name, or is added).
    pub fn virtual_server_update(&mut self, node: &str, vs: &VirtualServerState) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        match n.virtual_servers.iter_mut().find(|v| v.name == vs.name) {
            Some(v) => *v = vs.clone(),
            None => n.virtual_servers.push(vs.clone()),
        }
    }

    /// The virtual server `name` of `node`, as last reported.
    pub fn virtual_server(&self, node: &str, name: &str) -> Option<&VirtualServerState> {
        self.nodes
            .get(node)?
            .virtual_servers
            .iter()
            .find(|v| v.name == name)
    }

    /// An agent event (in seq order); events already in the snapshot are skipped.
    pub fn event(&mut self, node: &str, ev: &Event, now_ms: i64) -> Vec<Event> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        n.heard(now_ms);
        if ev.seq != 0 {
            if ev.seq <= n.applied_seq {
                return Vec::new();
            }
            n.applied_seq = ev.seq;
        }
        let Some(i) = n.instances.get_mut(&ev.instance) else {
            return Vec::new();
        };
        let text = if ev.detail.is_empty() {
            &ev.reason
        } else {
            &ev.detail
        };
        match EventKind::try_from(ev.kind) {
            Ok(EventKind::Transition) if !ev.to_state.is_empty() => {
                i.state = ev.to_state.clone();
                let vrid = i.vrid;
                return self.recheck([vrid].into(), now_ms);
            }
            Ok(EventKind::AlertRaised) if !text.is_empty() && !i.alerts.contains(text) => {
                i.alerts.push(text.clone());
                let vrid = i.vrid;
                n.sync_local_since(now_ms);
                return self.recheck([vrid].into(), now_ms);
            }
            Ok(EventKind::AlertCleared) => {
                let kind = local_alert_kind(text).to_string();
                i.alerts
                    .retain(|a| a != text && local_alert_kind(a) != kind);
                let vrid = i.vrid;
                n.sync_local_since(now_ms);
                return self.recheck([vrid].into(), now_ms);
            }
            Ok(EventKind::Tracker) => apply_tracker(i, &ev.detail),
            Ok(EventKind::Notify) if !ev.detail.is_empty() => i.last_notify = ev.detail.clone(),
            _ => {}
        }
        Vec::new()
    }

    /// The state of one instance as an override result reported it.
    pub fn instance_update(&mut self, node: &str, st: &InstanceState, now_ms: i64) -> Vec<Event> {
        let Some(n) = self.nodes.get(node) else {
            return Vec::new();
        };
        let mut instances = n.instances.clone();
        instances.insert(st.name.clone(), st.clone());
        self.set_instances(node, instances, now_ms)
    }

    /// The agent applied overrides of this generation.
    pub fn set_override_generation(&mut self, node: &str, generation: u64) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.override_generation = n.override_generation.max(generation);
        }
    }

    /// A heartbeat received at `now_ms`: updates last seen and, when it answers a ping,
    /// the clock offset (raising or clearing `clock-offset`).
    pub fn heartbeat(&mut self, node: &str, hb: &Heartbeat, now_ms: i64) -> Vec<Event> {
        let threshold = self.opts.clock_alert_ms;
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        n.heard(now_ms);
        if hb.ping_id == 0 {
            return Vec::new();
        }
        let Some(s) = ntp_sample(hb.ping_manager_ms, hb.wall_time_ms, now_ms) else {
            return Vec::new();
        };
        let est = n.clock.add(s);
        if est.abs() > threshold {
            let msg =
                format!("clock of {node} is off by {est:.0} ms (threshold {threshold:.0} ms)");
            self.raise(
                CLOCK_OFFSET,
                node,
                msg,
                vec![(node.into(), String::new())],
                now_ms,
            )
        } else {
            self.clear(CLOCK_OFFSET, node, now_ms)
        }
    }

    /// Session `conn` of `node` ended; ignored when a newer session owns the node.
    pub fn disconnect(&mut self, node: &str, conn: u64, now_ms: i64) -> Vec<Event> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        if n.conn != conn || !n.connected {
            return Vec::new();
        }
        n.connected = false;
        n.heard(now_ms);
        let msg = format!("agent {node} disconnected");
        let mut out = self.clear(AGENT_UNREACHABLE, node, now_ms);
        out.extend(self.raise(
            AGENT_DISCONNECTED,
            node,
            msg,
            vec![(node.into(), String::new())],
            now_ms,
        ));
        let vrids = self.vrids(node);
        out.extend(self.recheck(vrids, now_ms));
        out
    }

    fn raise(
        &mut self,
        kind: &str,
        subject: &str,
        message: String,
        members: Vec<(String, String)>,
        now_ms: i64,
    ) -> Vec<Event> {
        let key = (kind.to_string(), subject.to_string());
        if let Some(a) = self.alerts.get_mut(&key) {
            // Still raised: refresh the text (e.g. a new offset), no new event.
            a.alert.message = message;
            return Vec::new();
        }
        let alert = Alert {
            kind: kind.into(),
            subject: subject.into(),
            message,
            since_ms: now_ms,
        };
        let out = members
            .iter()
            .map(|m| alert_event(EventKind::AlertRaised, m, &alert, now_ms))
            .collect();
        self.alerts.insert(key, Active { alert, members });
        out
    }

    fn clear(&mut self, kind: &str, subject: &str, now_ms: i64) -> Vec<Event> {
        match self.alerts.remove(&(kind.to_string(), subject.to_string())) {
            Some(a) => a
                .members
                .iter()
                .map(|m| alert_event(EventKind::AlertCleared, m, &a.alert, now_ms))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Periodic pass at `now_ms` (the caller runs it every few hundred ms): raises
    /// split brains whose hold has ended with fresh word from every member, clears those
    /// gone, and raises or clears `agent-unreachable`.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Event> {
        let silent = self.opts.silent_after_ms;
        let mut out = Vec::new();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let Some(n) = self.nodes.get(&name) else {
                continue;
            };
            if !n.connected {
                continue;
            }
            if n.reachable(now_ms, silent) {
                out.extend(self.clear(AGENT_UNREACHABLE, &name, now_ms));
                continue;
            }
            let ago = now_ms.saturating_sub(n.last_seen_ms) / 1000;
            let last: Vec<String> = n
                .instances
                .values()
                .map(|i| format!("{} {}", i.name, i.state))
                .collect();
            let why = if n.probe_overdue(now_ms) {
                format!(
                    "did not answer a probe within {} s, silent for {ago} s",
                    PROBE_ANSWER_MS / 1000
                )
            } else {
                format!("not heard from for {ago} s")
            };
            let msg = format!(
                "agent {name} connected but {why} (last seen: {}); not counted as master",
                if last.is_empty() {
                    "no instances".to_string()
                } else {
                    last.join(", ")
                }
            );
            let key = (AGENT_UNREACHABLE.to_string(), name.clone());
            if let Some(a) = self.alerts.get_mut(&key) {
                a.alert.message = msg;
                continue;
            }
            out.extend(self.raise(
                AGENT_UNREACHABLE,
                &name,
                msg,
                vec![(name.clone(), String::new())],
                now_ms,
            ));
        }
        let vrids: BTreeSet<u32> = self.by_vrid.keys().copied().collect();
        out.extend(self.recheck(vrids, now_ms));
        out
    }

    /// Raises (with `Some(message)`, refreshing its text) or clears `store-unavailable`.
    pub fn store_alert(&mut self, problem: Option<String>, now_ms: i64) -> Vec<Event> {
        const SUBJECT: &str = "history";
        match problem {
            Some(msg) => {
                let key = (STORE_UNAVAILABLE.to_string(), SUBJECT.to_string());
                if let Some(a) = self.alerts.get_mut(&key) {
                    a.alert.message = msg;
                    return Vec::new();
                }
                self.raise(
                    STORE_UNAVAILABLE,
                    SUBJECT,
                    msg,
                    vec![(String::new(), String::new())],
                    now_ms,
                )
            }
            None => self.clear(STORE_UNAVAILABLE, SUBJECT, now_ms),
        }
    }

    /// Nodes to ping now, each recorded as probed (one probe outstanding per node): the
    /// members of a pending split brain not heard from since it began (is the old master
    /// still there?) and, once its hold has ended, those not heard from since then (fresh
    /// word to raise it). The caller pings them; an answer is any message, and a probe
    /// left unanswered for [`PROBE_ANSWER_MS`] makes the node unreachable.
    pub fn probes(&mut self, now_ms: i64) -> Vec<String> {
        let mut out = BTreeSet::new();
        for p in self.pending.values() {
            let due = p.since_ms + p.hold_ms;
            let mark = if now_ms < due { p.since_ms } else { due };
            for node in &p.nodes {
                if self
                    .nodes
                    .get(node)
                    .is_some_and(|n| n.last_seen_ms < mark && n.probe_sent_ms.is_none())
                {
                    out.insert(node.clone());
                }
            }
        }
        for node in &out {
            if let Some(n) = self.nodes.get_mut(node) {
                n.probe_sent_ms = Some(now_ms);
            }
        }
        out.into_iter().collect()
    }

    /// `peer-master` reports of a member (its local alerts of that kind).
    fn evidence(&self, (node, inst): &Member) -> Vec<String> {
        self.nodes
            .get(node)
            .and_then(|n| n.instances.get(inst))
            .map(|i| {
                i.alerts
                    .iter()
                    .filter(|a| local_alert_kind(a) == PEER_MASTER)
                    .map(|a| format!("{node}/{inst} reports {a}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Split brains of one VRID as the view shows them now: subject -> (message,
    /// members, hold).
    fn split_brains(&self, vrid: u32, now_ms: i64) -> BTreeMap<String, (String, Vec<Member>, i64)> {
        let (silent, margin) = (self.opts.silent_after_ms, self.opts.split_margin_ms);
        let masters: Vec<(String, String, Vec<String>)> = self
            .by_vrid
            .get(&vrid)
            .into_iter()
            .flatten()
            .filter_map(|(node, inst)| {
                let n = self.nodes.get(node)?;
                let i = n.instances.get(inst)?;
                (n.reachable(now_ms, silent) && i.state == MASTER)
                    .then(|| (node.clone(), inst.clone(), i.vips.clone()))
            })
            .collect();
        let hold = |m: &Member| {
            self.nodes.get(&m.0).map_or(
                master_down_ms(self.opts.default_advert_ms, 0) + margin,
                |n| n.hold_ms(&m.1, &self.opts),
            )
        };
        let mut wanted = BTreeMap::new();
        let mut grouped = BTreeSet::new();
        for SplitGroup { members, vips } in split_brain_groups(&masters) {
            let who: Vec<String> = members.iter().map(|(n, i)| format!("{n}/{i}")).collect();
            let subject = format!("vrid {vrid}: {}", who.join(", "));
            let vips: Vec<String> = vips.into_iter().collect();
            let mut msg = format!(
                "split brain: vrid {vrid} is MASTER on {} with shared VIPs {}",
                who.join(" and "),
                vips.join(", ")
            );
            let evidence: Vec<String> = members.iter().flat_map(|m| self.evidence(m)).collect();
            if !evidence.is_empty() {
                msg.push_str(&format!("; agent evidence: {}", evidence.join("; ")));
            }
            let h = members.iter().map(hold).max().unwrap_or(margin);
            grouped.extend(members.iter().cloned());
            wanted.insert(subject, (msg, members, h));
        }
        // A master whose agent hears another master (one the manager does not see as
        // master, or does not know). The agent raised it after hearing that master for
        // Master_Down_Interval and clears it Master_Down_Interval after the last advert;
        // the same hold as two visible masters applies from when the manager saw it, so
        // evidence of a split that has just healed never raises one.
        for (node, inst, _) in &masters {
            let m = (node.clone(), inst.clone());
            if grouped.contains(&m) {
                continue;
            }
            let evidence = self.evidence(&m);
            if evidence.is_empty() {
                continue;
            }
            let subject = format!("vrid {vrid}: {node}/{inst} (agent evidence)");
            let msg = format!(
                "split brain: vrid {vrid} is MASTER on {node}/{inst}, which hears another master: {}",
                evidence.join("; ")
            );
            let h = hold(&m);
            wanted.insert(subject, (msg, vec![m], h));
        }
        wanted
    }

    /// Recomputes the split-brain alerts of each VRID: clears those gone, refreshes
    /// those raised, and raises those past their hold with fresh word from every member.
    fn recheck(&mut self, vrids: BTreeSet<u32>, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        for vrid in vrids {
            let wanted = self.split_brains(vrid, now_ms);
            let prefix = format!("vrid {vrid}: ");
            let stale: Vec<String> = self
                .alerts
                .keys()
                .filter(|(k, s)| {
                    k == SPLIT_BRAIN && s.starts_with(&prefix) && !wanted.contains_key(s)
                })
                .map(|(_, s)| s.clone())
                .collect();
            for s in stale {
                out.extend(self.clear(SPLIT_BRAIN, &s, now_ms));
            }
            self.pending
                .retain(|s, _| !s.starts_with(&prefix) || wanted.contains_key(s));
            for (subject, (msg, members, hold_ms)) in wanted {
                let key = (SPLIT_BRAIN.to_string(), subject.clone());
                if let Some(a) = self.alerts.get_mut(&key) {
                    a.alert.message = msg;
                    continue;
                }
                let nodes: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
                let p = self.pending.entry(subject.clone()).or_insert(Pending {
                    since_ms: now_ms,
                    hold_ms,
                    nodes: nodes.clone(),
                });
                p.hold_ms = hold_ms;
                p.nodes = nodes;
                let due = p.since_ms + p.hold_ms;
                let fresh = p
                    .nodes
                    .iter()
                    .all(|n| self.nodes.get(n).is_some_and(|v| v.last_seen_ms >= due));
                if now_ms >= due && fresh {
                    self.pending.remove(&subject);
                    out.extend(self.raise(SPLIT_BRAIN, &subject, msg, members, now_ms));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_proto::v1::InstanceSummary;

    fn hello(node: &str) -> Hello {
        Hello {
            node: node.into(),
            boot_id: format!("{node}-boot"),
            instances: vec![InstanceSummary {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                advert_interval_ms: 0,
            }],
            ..Default::default()
        }
    }

    fn snap(state: &str, vips: &[&str]) -> Snapshot {
        Snapshot {
            seq: 0,
            instances: vec![InstanceState {
                name: "VI_1".into(),
                vrid: 51,
                state: state.into(),
                vips: vips.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }],
            wall_time_ms: 0,
            virtual_servers: Default::default(),
        }
    }

    fn transition(seq: u64, to: &str) -> Event {
        Event {
            seq,
            kind: EventKind::Transition as i32,
            instance: "VI_1".into(),
            to_state: to.into(),
            ..Default::default()
        }
    }

    fn kinds(evs: &[Event]) -> Vec<(String, i32, String)> {
        evs.iter()
            .map(|e| (e.node.clone(), e.kind, e.reason.clone()))
            .collect()
    }

    /// Hold of VI_1 in these tests: priority unknown (counts as 1), 1 s adverts:
    /// Master_Down_Interval 3996 ms plus the 1 s margin.
    const HOLD: i64 = 4996;

    fn hb(ping_id: u64) -> Heartbeat {
        Heartbeat {
            wall_time_ms: 0,
            ping_id,
            ping_manager_ms: 0,
        }
    }

    /// lb1 MASTER, lb2 BACKUP, both connected, sharing 192.0.2.10, at t = 1.
    fn pair() -> Fleet {
        let mut f = Fleet::new(500.0);
        assert!(f.connect(&hello("lb1"), "", 1, 0).is_empty());
        assert!(f.connect(&hello("lb2"), "", 2, 0).is_empty());
        assert!(f
            .snapshot("lb1", &snap("MASTER", &["192.0.2.10/24"]), 1)
            .is_empty());
        assert!(f
            .snapshot("lb2", &snap("BACKUP", &["192.0.2.10/24"]), 1)
            .is_empty());
        f
    }

    #[test]
    fn split_brain_raised_after_the_hold_and_cleared() {
        let mut f = pair();
        // lb2 becomes master too (t = 10): nothing yet, the hold runs.
        assert!(f.event("lb2", &transition(1, "MASTER"), 10).is_empty());
        // lb1 has not spoken since lb2 became master: is it still there? One probe.
        assert_eq!(f.probes(10), vec!["lb1".to_string()]);
        assert!(f.probes(11).is_empty(), "one probe outstanding per node");
        f.heartbeat("lb1", &hb(0), 12);
        assert!(f.tick(10 + HOLD - 1).is_empty());
        assert!(f.status(10 + HOLD - 1).alerts.is_empty());
        // The hold is over but neither has spoken since it ended: ping them, no alert.
        let due = 10 + HOLD;
        assert!(f.tick(due).is_empty());
        assert_eq!(f.probes(due), vec!["lb1".to_string(), "lb2".to_string()]);
        f.heartbeat("lb1", &hb(0), due + 5);
        assert!(f.tick(due + 6).is_empty());
        assert!(
            f.probes(due + 6).is_empty(),
            "lb2's probe is still outstanding"
        );
        // Both heard after the hold: one alert, one history event per node.
        f.heartbeat("lb2", &hb(0), due + 7);
        let evs = f.tick(due + 8);
        let raised = EventKind::AlertRaised as i32;
        assert_eq!(
            kinds(&evs),
            vec![
                ("lb1".into(), raised, SPLIT_BRAIN.into()),
                ("lb2".into(), raised, SPLIT_BRAIN.into())
            ]
        );
        assert!(f.probes(due + 8).is_empty());
        let st = f.status(due + 8);
        assert_eq!(st.alerts.len(), 1);
        assert_eq!(st.alerts[0].kind, SPLIT_BRAIN);
        assert_eq!(st.alerts[0].subject, "vrid 51: lb1/VI_1, lb2/VI_1");
        assert!(st.alerts[0].message.contains("192.0.2.10"));
        // Same state again: nothing new. A replayed old event is ignored.
        assert!(f.event("lb2", &transition(1, "BACKUP"), due + 9).is_empty());
        assert!(f.tick(due + 10).is_empty());
        assert_eq!(f.status(due + 10).alerts.len(), 1);
        // The partition heals: lb2 goes back to backup, the alert clears.
        let evs = f.event("lb2", &transition(2, "BACKUP"), due + 11);
        let cleared = EventKind::AlertCleared as i32;
        assert_eq!(evs.len(), 2);
        assert!(evs.iter().all(|e| e.kind == cleared));
        assert!(f.status(due + 11).alerts.is_empty());
    }

    #[test]
    fn a_handover_never_raises_split_brain() {
        let mut f = pair();
        let mut t = 10;
        let mut seq1 = 0;
        let mut seq2 = 0;
        for round in 0..20 {
            // Both report MASTER for a moment (the new master's event arrives before
            // the old master's), then the old one steps down.
            let (new, old, sn, so) = if round % 2 == 0 {
                ("lb2", "lb1", &mut seq2, &mut seq1)
            } else {
                ("lb1", "lb2", &mut seq1, &mut seq2)
            };
            *sn += 1;
            assert!(f.event(new, &transition(*sn, "MASTER"), t).is_empty());
            assert!(f.tick(t + 300).is_empty());
            *so += 1;
            assert!(f.event(old, &transition(*so, "BACKUP"), t + 400).is_empty());
            assert!(f.tick(t + HOLD + 100).is_empty());
            assert!(f.probes(t + HOLD + 100).is_empty());
            t += HOLD + 200;
        }
        assert!(f.status(t).alerts.is_empty());
    }

    #[test]
    fn the_hold_follows_advert_interval_and_priority() {
        assert_eq!(master_down_ms(1000, 100), 3000 + 156 * 1000 / 256);
        assert_eq!(master_down_ms(0, 255), 3000 + 1000 / 256);
        assert_eq!(master_down_ms(100, 0), 300 + 255 * 100 / 256);
        let mut f = Fleet::new(500.0);
        let mut h = hello("lb1");
        h.instances[0].advert_interval_ms = 100;
        f.connect(&h, "", 1, 0);
        let mut s = snap("MASTER", &[]);
        s.instances[0].effective_priority = 200;
        f.snapshot("lb1", &s, 1);
        let n = f.node("lb1").unwrap();
        let o = FleetOptions::default();
        assert_eq!(n.hold_ms("VI_1", &o), 300 + 56 * 100 / 256 + 1000);
        // Unknown instance: the assumed interval, longest skew.
        assert_eq!(n.hold_ms("VI_9", &o), 3996 + 1000);
        let o = FleetOptions {
            default_advert_ms: 200,
            split_margin_ms: 0,
            ..o
        };
        assert_eq!(n.hold_ms("VI_9", &o), 600 + 255 * 200 / 256);
    }

    #[test]
    fn an_unanswered_probe_makes_the_old_master_unreachable() {
        // lb1's link is cut (its TCP session lingers); lb2 takes over at t = 10.
        let mut f = pair();
        assert!(f.event("lb2", &transition(1, "MASTER"), 10).is_empty());
        assert_eq!(f.probes(10), vec!["lb1".to_string()]);
        assert!(f.nodes["lb1"].reachable(10 + PROBE_ANSWER_MS, 15_000));
        // No answer: unreachable once the probe is overdue, long before the silence limit.
        let late = 10 + PROBE_ANSWER_MS + 1;
        assert!(!f.nodes["lb1"].reachable(late, 15_000));
        let evs = f.tick(late);
        assert_eq!(
            kinds(&evs),
            vec![(
                "lb1".into(),
                EventKind::AlertRaised as i32,
                AGENT_UNREACHABLE.into()
            )]
        );
        let st = f.status(late + HOLD);
        let lb1 = st
            .nodes
            .iter()
            .find(|n| n.name == "lb1")
            .map(|n| n.reachable);
        assert_eq!(lb1, Some(false));
        assert!(
            f.tick(late + HOLD).is_empty(),
            "no split brain from a node we cannot hear"
        );
        assert!(st.alerts.iter().all(|a| a.kind != SPLIT_BRAIN));
        // Its link comes back: any message answers the probe.
        f.heartbeat("lb1", &hb(0), late + HOLD + 1);
        assert!(f.nodes["lb1"].reachable(late + HOLD + 2, 15_000));
    }

    #[test]
    fn a_silent_master_is_unreachable_and_never_counted() {
        let mut f = pair();
        // lb1's link is cut: the manager hears nothing more from it, but the TCP
        // session is still up. lb2 takes over (t = 1000) and keeps talking.
        f.event("lb2", &transition(1, "MASTER"), 1000);
        let mut t = 1000;
        while t < 40_000 {
            f.heartbeat("lb2", &hb(0), t);
            let evs = f.tick(t);
            assert!(
                evs.iter().all(|e| e.reason != SPLIT_BRAIN),
                "split brain from a silent node at {t}: {evs:?}"
            );
            t += 500;
        }
        let st = f.status(t);
        assert!(alerts(&st, SPLIT_BRAIN).is_empty(), "{:?}", st.alerts);
        let lb1 = st.nodes.iter().find(|n| n.name == "lb1").unwrap();
        assert!(lb1.connected && !lb1.reachable);
        assert_eq!(lb1.silent_ms, t - 1);
        assert_eq!(lb1.instances[0].state, MASTER, "last known state kept");
        let un = alerts(&st, AGENT_UNREACHABLE);
        assert_eq!(un.len(), 1);
        assert_eq!(un[0].subject, "lb1");
        assert!(un[0].message.contains("VI_1 MASTER"), "{}", un[0].message);
        assert!(st.nodes.iter().find(|n| n.name == "lb2").unwrap().reachable);
        // Not a master for switchover either.
        assert_eq!(f.master_of(51, "lb2", t), None);
        assert_eq!(f.master_of(51, "lb1", t).map(|m| m.0), Some("lb2".into()));
        // lb1 comes back and reports its FAULT: unreachable clears, still no split brain.
        f.event("lb1", &transition(1, "FAULT"), t + 1);
        let evs = f.tick(t + 2);
        assert_eq!(
            kinds(&evs),
            vec![(
                "lb1".into(),
                EventKind::AlertCleared as i32,
                AGENT_UNREACHABLE.into()
            )]
        );
        assert!(f.status(t + 2).alerts.is_empty());
    }

    #[test]
    fn a_silent_member_stops_a_pending_split_brain() {
        let mut f = pair();
        f.event("lb2", &transition(1, "MASTER"), 10);
        // lb1 answers nothing after the hold: no alert, ever; once silent it is not
        // even a candidate.
        let mut t = 10;
        while t < 30_000 {
            f.heartbeat("lb2", &hb(0), t);
            assert!(f.tick(t).iter().all(|e| e.reason != SPLIT_BRAIN));
            t += 250;
        }
        assert!(f.probes(t).is_empty(), "no pings for a node that is gone");
    }

    fn alerts<'a>(st: &'a StatusReply, kind: &str) -> Vec<&'a Alert> {
        st.alerts.iter().filter(|a| a.kind == kind).collect()
    }

    fn alert_event_at(seq: u64, kind: EventKind, text: &str) -> Event {
        Event {
            seq,
            kind: kind as i32,
            instance: "VI_1".into(),
            detail: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn peer_master_evidence_is_quoted_in_the_split_brain() {
        let mut f = pair();
        let text = "peer-master: 192.0.2.2 advertises VRID 51 as MASTER at priority 100";
        f.event("lb2", &transition(1, "MASTER"), 10);
        f.event("lb1", &alert_event_at(1, EventKind::AlertRaised, text), 20);
        let due = 10 + HOLD;
        f.heartbeat("lb1", &hb(0), due);
        f.heartbeat("lb2", &hb(0), due);
        assert_eq!(f.tick(due).len(), 2);
        let st = f.status(due);
        let sb = alerts(&st, SPLIT_BRAIN);
        assert_eq!(sb.len(), 1);
        assert!(
            sb[0]
                .message
                .contains(&format!("agent evidence: lb1/VI_1 reports {text}")),
            "{}",
            sb[0].message
        );
        // The agent's report is also shown under its own kind.
        let pm = alerts(&st, PEER_MASTER);
        assert_eq!(pm.len(), 1);
        assert_eq!(pm[0].subject, "lb1/VI_1");
        assert_eq!(pm[0].message, text);
        // Evidence gone: the alert stays (two masters) but no longer quotes it.
        f.event(
            "lb1",
            &alert_event_at(2, EventKind::AlertCleared, text),
            due + 1,
        );
        let st = f.status(due + 1);
        assert!(!alerts(&st, SPLIT_BRAIN)[0].message.contains("evidence"));
        assert!(alerts(&st, PEER_MASTER).is_empty());
    }

    #[test]
    fn peer_master_evidence_alone_raises_split_brain() {
        // lb1 hears a master the manager does not see as one (here: lb2 is BACKUP in
        // the view; in the field it may be a router the manager does not know).
        let mut f = pair();
        let text = "peer-master: 192.0.2.9 advertises VRID 51 as MASTER at priority 90";
        assert!(f
            .event("lb1", &alert_event_at(1, EventKind::AlertRaised, text), 10)
            .is_empty());
        // The hold applies from when the manager saw it (a split that just healed
        // leaves evidence for one more Master_Down_Interval, shorter than the hold).
        assert!(f.tick(10 + HOLD - 1).is_empty());
        f.heartbeat("lb1", &hb(0), 10 + HOLD + 1);
        let evs = f.tick(10 + HOLD + 2);
        assert_eq!(
            kinds(&evs),
            vec![(
                "lb1".into(),
                EventKind::AlertRaised as i32,
                SPLIT_BRAIN.into()
            )]
        );
        let st = f.status(10 + HOLD + 2);
        let sb = alerts(&st, SPLIT_BRAIN);
        assert_eq!(sb[0].subject, "vrid 51: lb1/VI_1 (agent evidence)");
        assert!(sb[0].message.contains("192.0.2.9"), "{}", sb[0].message);
        // The agent clears it: so does the manager.
        let evs = f.event(
            "lb1",
            &alert_event_at(2, EventKind::AlertCleared, text),
            10 + HOLD + 100,
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, EventKind::AlertCleared as i32);
        // A BACKUP reporting it is no evidence of a split brain.
        f.event(
            "lb2",
            &alert_event_at(1, EventKind::AlertRaised, text),
            10 + HOLD + 200,
        );
        f.heartbeat("lb2", &hb(0), 3 * HOLD);
        assert!(f.tick(3 * HOLD + 1).is_empty());
    }

    #[test]
    fn vrid_collision_is_shown_after_the_hold() {
        let mut f = pair();
        let text = "vrid-collision: 192.0.2.9 advertises VRID 51 with another address list";
        f.event("lb2", &alert_event_at(1, EventKind::AlertRaised, text), 100);
        assert!(alerts(&f.status(100 + HOLD - 1), VRID_COLLISION).is_empty());
        f.heartbeat("lb2", &hb(0), 100 + HOLD);
        let st = f.status(100 + HOLD);
        let c = alerts(&st, VRID_COLLISION);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].since_ms, 100);
        // A snapshot carrying the same alert keeps its first-seen time.
        let mut s = snap("BACKUP", &["192.0.2.10/24"]);
        s.seq = 5;
        s.instances[0].alerts = vec![text.into()];
        f.snapshot("lb2", &s, 200 + HOLD);
        assert_eq!(
            alerts(&f.status(200 + HOLD), VRID_COLLISION)[0].since_ms,
            100
        );
        // Gone from the agent: gone here, and a new one starts its hold again.
        f.snapshot("lb2", &snap("BACKUP", &[]), 300 + HOLD);
        s.seq = 6;
        f.snapshot("lb2", &s, 400 + HOLD);
        assert!(alerts(&f.status(401 + HOLD), VRID_COLLISION).is_empty());
    }

    #[test]
    fn split_brain_needs_shared_vips_and_connected_agents() {
        let mut f = Fleet::new(500.0);
        f.connect(&hello("lb1"), "", 1, 0);
        f.connect(&hello("lb2"), "", 2, 0);
        f.snapshot("lb1", &snap("MASTER", &["192.0.2.10/24"]), 1);
        // Disjoint VIPs: two different groups sharing a VRID by accident, no split brain.
        f.snapshot("lb2", &snap("MASTER", &["198.51.100.10/24"]), 1);
        f.heartbeat("lb1", &hb(0), 2 + HOLD);
        f.heartbeat("lb2", &hb(0), 2 + HOLD);
        assert!(f.tick(2 + HOLD).is_empty());
        // Overlap (plen ignored): raised after the hold.
        f.snapshot("lb2", &snap("MASTER", &["192.0.2.10/25"]), 3 + HOLD);
        f.heartbeat("lb1", &hb(0), 3 + 2 * HOLD);
        f.heartbeat("lb2", &hb(0), 3 + 2 * HOLD);
        assert_eq!(f.tick(3 + 2 * HOLD).len(), 2);
        // lb2 disconnects: split brain clears, agent-disconnected raised.
        let t = 4 + 2 * HOLD;
        let evs = f.disconnect("lb2", 2, t);
        let mut reasons: Vec<_> = evs.iter().map(|e| (e.kind, e.reason.as_str())).collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                (EventKind::AlertRaised as i32, AGENT_DISCONNECTED),
                (EventKind::AlertCleared as i32, SPLIT_BRAIN),
                (EventKind::AlertCleared as i32, SPLIT_BRAIN),
            ]
        );
        // Disconnected: unreachable in status.
        let st = f.status(t + 1);
        assert!(!st.nodes.iter().find(|n| n.name == "lb2").unwrap().reachable);
        // It reconnects (BACKUP after the heal): disconnected clears, no split brain.
        let evs = f.connect(&hello("lb2"), "", 3, t + 2);
        assert_eq!(kinds(&evs)[0].2, AGENT_DISCONNECTED);
        f.snapshot("lb2", &snap("BACKUP", &["192.0.2.10/24"]), t + 3);
        assert!(f.status(t + 3).alerts.is_empty());
        // A stale session ending does not disconnect the new one.
        assert!(f.disconnect("lb2", 2, t + 4).is_empty());
        assert!(f.node("lb2").unwrap().connected);
    }

    #[test]
    fn groups_are_transitive() {
        let m = |n: &str, v: &[&str]| {
            (
                n.to_string(),
                "VI".to_string(),
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let g = split_brain_groups(&[
            m("a", &["192.0.2.1"]),
            m("b", &["192.0.2.1", "192.0.2.2"]),
            m("c", &["192.0.2.2"]),
            m("d", &["192.0.2.9"]),
        ]);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].members.len(), 3);
        assert_eq!(g[0].vips.len(), 2);
    }

    #[test]
    fn clock_offset_math() {
        // Sent at 1000, answered with agent time 1600, received at 1020: offset 590.
        let s = ntp_sample(1000, 1600, 1020).unwrap();
        assert_eq!(s.offset_ms, 590.0);
        assert_eq!(s.rtt_ms, 20);
        assert_eq!(ntp_sample(1000, 0, 999), None);
        // The filter keeps the sample with the shortest round trip.
        let mut f = ClockFilter::default();
        assert_eq!(f.add(s), 590.0);
        let fast = ntp_sample(2000, 2505, 2002).unwrap();
        assert_eq!(f.add(fast), 504.0);
        // A slow sample consistent with it (450 +- 200) does not move the estimate.
        let slow = ntp_sample(3000, 3650, 3400).unwrap();
        assert_eq!(f.add(slow), 504.0);
        // A step of the agent's clock (0 +- 5 cannot be 504 +- 1): the old samples go,
        // the new offset is the estimate at once.
        let stepped = ntp_sample(3500, 3505, 3510).unwrap();
        assert_eq!(f.add(stepped), 0.0);
        assert_eq!(
            f.add(ntp_sample(3600, 3700, 3800).unwrap()),
            0.0,
            "0 +- 100 agrees"
        );
        // Old samples age out of the window.
        for i in 0..ClockFilter::WINDOW as i64 {
            f.add(ntp_sample(4000 + i, 4000 + i + 5, 4000 + i + 10).unwrap());
        }
        assert_eq!(f.estimate(), Some(0.0));
    }

    #[test]
    fn clock_alert_raised_and_cleared() {
        let mut f = Fleet::new(500.0);
        f.connect(&hello("lb1"), "", 1, 0);
        let hb = |agent: i64| Heartbeat {
            wall_time_ms: agent,
            ping_id: 1,
            ping_manager_ms: 10_000,
        };
        let evs = f.heartbeat("lb1", &hb(10_000 + 800 + 5), 10_010);
        assert_eq!(
            kinds(&evs),
            vec![(
                "lb1".into(),
                EventKind::AlertRaised as i32,
                CLOCK_OFFSET.into()
            )]
        );
        assert!((f.node("lb1").unwrap().status().clock_offset_ms - 800.0).abs() < 1e-9);
        // Unsolicited heartbeats carry no round trip.
        let unsolicited = Heartbeat {
            wall_time_ms: 0,
            ping_id: 0,
            ping_manager_ms: 0,
        };
        assert!(f.heartbeat("lb1", &unsolicited, 10_020).is_empty());
        // The clock is fixed; a faster round trip wins the filter and clears the alert.
        let evs = f.heartbeat(
            "lb1",
            &Heartbeat {
                ping_manager_ms: 20_000,
                ..hb(20_001)
            },
            20_002,
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, EventKind::AlertCleared as i32);
    }

    #[test]
    fn local_alerts_and_events_after_snapshot() {
        let mut f = Fleet::new(500.0);
        f.connect(&hello("lb1"), "", 1, 0);
        let mut s = snap("BACKUP", &[]);
        s.seq = 5;
        s.instances[0].alerts = vec!["vrid-collision: 192.0.2.9 advertises vrid 51".into()];
        f.snapshot("lb1", &s, 1);
        let st = f.status(HOLD);
        assert_eq!(st.alerts.len(), 0, "not shown before the hold");
        let st = f.status(1 + HOLD);
        assert_eq!(st.alerts.len(), 1);
        assert_eq!(st.alerts[0].kind, VRID_COLLISION);
        assert_eq!(st.alerts[0].subject, "lb1/VI_1");
        // An event already in the snapshot is not applied again.
        f.event("lb1", &transition(5, "MASTER"), 2);
        assert_eq!(f.node("lb1").unwrap().instances["VI_1"].state, "BACKUP");
        f.event("lb1", &transition(6, "MASTER"), 2);
        assert_eq!(f.node("lb1").unwrap().instances["VI_1"].state, "MASTER");
        // Alert cleared by event.
        let cleared = Event {
            seq: 7,
            kind: EventKind::AlertCleared as i32,
            instance: "VI_1".into(),
            detail: "vrid-collision: gone".into(),
            ..Default::default()
        };
        f.event("lb1", &cleared, 3);
        assert!(f.status(3).alerts.is_empty());
        // A new boot restarts seq.
        let mut h = hello("lb1");
        h.boot_id = "other".into();
        f.connect(&h, "", 2, 4);
        f.event("lb1", &transition(1, "FAULT"), 5);
        assert_eq!(f.node("lb1").unwrap().instances["VI_1"].state, "FAULT");
        assert_eq!(f.master_of(51, "", 5), None);
    }
}

/// A per-instance TRACKER event's detail, `kind=K name=N ok=B weight=W effective=P`:
/// update that tracker and the effective priority (the agent sends one per instance).
fn apply_tracker(i: &mut InstanceState, detail: &str) {
    let field = |k: &str| {
        detail
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(kind), Some(name)) = (field("kind"), field("name")) else {
        return;
    };
    let ok = field("ok") == Some("true");
    let weight = field("weight").and_then(|w| w.parse().ok()).unwrap_or(0);
    match i
        .trackers
        .iter_mut()
        .find(|t| t.kind == kind && t.name == name)
    {
        Some(t) => {
            t.ok = ok;
            t.weight = weight;
        }
        None => i.trackers.push(ha_proto::v1::TrackerState {
            kind: kind.to_string(),
            name: name.to_string(),
            ok,
            weight,
        }),
    }
    if let Some(p) = field("effective").and_then(|p| p.parse().ok()) {
        i.effective_priority = p;
    }
}

#[cfg(test)]
mod virtual_server_tests {
    use super::*;
    use ha_proto::v1::RealServerState;

    fn vs(name: &str, alive: bool) -> VirtualServerState {
        VirtualServerState {
            name: name.into(),
            real_servers: vec![RealServerState {
                addr: "192.0.2.21".into(),
                port: 80,
                alive,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_and_lb_status_replace_the_list() {
        let mut f = Fleet::new(500.0);
        let hello = Hello {
            node: "lb1".into(),
            boot_id: "b".into(),
            ..Default::default()
        };
        f.connect(&hello, "", 1, 0);
        let snap = Snapshot {
            virtual_servers: vec![vs("192.0.2.10:80/TCP", true), vs("fwmark 1", true)],
            ..Default::default()
        };
        f.snapshot("lb1", &snap, 1);
        assert_eq!(f.nodes(1)[0].virtual_servers.len(), 2);
        // A whole new list, not a merge.
        let lb = LbStatus {
            virtual_servers: vec![vs("192.0.2.10:80/TCP", false)],
        };
        f.lb_status("lb1", &lb, 2);
        let st = f.status(2);
        assert_eq!(st.nodes[0].virtual_servers, lb.virtual_servers);
        // An override result updates one by name.
        f.virtual_server_update("lb1", &vs("192.0.2.10:80/TCP", true));
        assert!(
            f.virtual_server("lb1", "192.0.2.10:80/TCP")
                .unwrap()
                .real_servers[0]
                .alive
        );
        assert_eq!(f.nodes(2)[0].virtual_servers.len(), 1);
        // Saved node state brings them back after a restart.
        let mut g = Fleet::new(500.0);
        g.load(f.nodes(2));
        assert_eq!(g.nodes(2)[0].virtual_servers, f.nodes(2)[0].virtual_servers);
        // Unknown nodes are ignored.
        f.lb_status("lb9", &lb, 3);
        assert!(f.node("lb9").is_none());
    }
}

#[cfg(test)]
mod tracker_event_tests {
    use super::*;

    #[test]
    fn tracker_detail_updates_tracker_and_priority() {
        let mut i = InstanceState {
            effective_priority: 150,
            ..Default::default()
        };
        apply_tracker(
            &mut i,
            "kind=script name=chk ok=false weight=-20 effective=130",
        );
        assert_eq!(i.effective_priority, 130);
        assert_eq!(i.trackers.len(), 1);
        assert!(!i.trackers[0].ok);
        apply_tracker(
            &mut i,
            "kind=script name=chk ok=true weight=-20 effective=150",
        );
        assert_eq!(i.trackers.len(), 1);
        assert!(i.trackers[0].ok);
        assert_eq!(i.effective_priority, 150);
        apply_tracker(&mut i, "garbage");
        assert_eq!(i.trackers.len(), 1);
    }
}
