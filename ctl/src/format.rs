//! Pure rendering of manager answers: the `status` table for people (with a section per
//! virtual server when nodes run any), the JSON shapes of DESIGN.md ("CLI contract"),
//! one-line events for `history` and `watch`, and the results of commands. No I/O here.

use std::fmt::Write as _;

use ha_proto::v1::{
    Alert, CheckerState, CommandReply, Event, EventKind, InstanceState, NodeStatus,
    RealServerState, StatusReply, TrackerState, VirtualServerState,
};
use serde::Serialize;

use crate::timespec::format_rfc3339_ms;

/// `status --json`: exactly one object with `nodes` and `alerts`.
#[derive(Debug, Serialize, PartialEq)]
pub struct StatusJson {
    /// Every node the manager knows, connected or not.
    pub nodes: Vec<NodeJson>,
    /// Fleet alerts in force.
    pub alerts: Vec<AlertJson>,
}

/// One node in `status --json` and `nodes --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct NodeJson {
    /// Node name (keepalived router_id or hostname).
    pub name: String,
    /// Whether its agent has a live session.
    pub connected: bool,
    /// Connected and heard from recently; when false, the instance states are only
    /// the last the manager heard (`state` is UNREACHABLE, `last_state` what it was).
    pub reachable: bool,
    /// Time since the manager last heard from the agent, ms (null if never).
    pub silent_ms: Option<i64>,
    /// Agent wall clock minus manager wall clock, ms.
    pub clock_offset_ms: f64,
    /// Agent process identity; changes at every agent start.
    pub boot_id: String,
    /// Agent version.
    pub version: String,
    /// Manager time of the last message from the agent, ms since the epoch.
    pub last_seen_ms: i64,
    /// Generation of the overrides the agent has in force.
    pub override_generation: u64,
    /// Address the agent connects from.
    pub peer_addr: String,
    /// Digest of the agent's config (from its hello; "" if never connected).
    pub config_digest: String,
    /// VRRP instances.
    pub instances: Vec<InstanceJson>,
    /// Virtual servers (empty without virtual_server blocks).
    pub virtual_servers: Vec<VirtualServerJson>,
}

/// One virtual server as the node's load-balancer runtime reports it.
#[derive(Debug, Serialize, PartialEq)]
pub struct VirtualServerJson {
    /// "192.0.2.10:80/TCP", "fwmark 1", "group NAME" (what `hactl rs` takes).
    pub name: String,
    /// "nftables" or "ipvs".
    pub backend: String,
    /// "NAT", "DR", "TUN".
    pub method: String,
    /// Scheduler (rr, wrr, lc, ...).
    pub scheduler: String,
    /// Weight needed for quorum.
    pub quorum: u64,
    /// Weight of the live real servers.
    pub live_weight: u64,
    /// Whether quorum is met.
    pub quorum_up: bool,
    /// Whether the sorry server is in use.
    pub sorry_active: bool,
    /// Not programmed (ha_suspend, VIP not held here).
    pub suspended: bool,
    /// Last data-plane error, null if none.
    pub dataplane_error: Option<String>,
    /// Real servers.
    pub real_servers: Vec<RealServerJson>,
}

/// One real server.
#[derive(Debug, Serialize, PartialEq)]
pub struct RealServerJson {
    /// Address (IPv6 without brackets).
    pub addr: String,
    /// Port.
    pub port: u32,
    /// All checkers pass.
    pub alive: bool,
    /// Configured (or rs add) weight.
    pub weight_base: u32,
    /// Weight in force after overrides.
    pub weight_effective: u32,
    /// In the data-plane table now.
    pub in_table: bool,
    /// Drained (weight 0, connections kept).
    pub drained: bool,
    /// Added by an override rather than the config.
    pub from_override: bool,
    /// Health checkers.
    pub checkers: Vec<CheckerJson>,
}

/// One health checker of a real server.
#[derive(Debug, Serialize, PartialEq)]
pub struct CheckerJson {
    /// HTTP_GET, TCP_CHECK, ...
    pub kind: String,
    /// Whether the last check passed.
    pub up: bool,
    /// What the last check said.
    pub detail: String,
    /// Duration of the last check, microseconds.
    pub latency_us: u64,
}

/// `rs ... --json`: the command's answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct RsResultJson {
    /// Node.
    pub node: String,
    /// Request id.
    pub request_id: String,
    /// Override generation stored.
    pub generation: u64,
    /// The stored answer of an earlier run of the same request id.
    pub replayed: bool,
    /// The virtual server after the change, null if unknown.
    pub virtual_server: Option<VirtualServerJson>,
}

/// One VRRP instance.
#[derive(Debug, Serialize, PartialEq)]
pub struct InstanceJson {
    /// vrrp_instance name.
    pub name: String,
    /// Virtual router id.
    pub vrid: u32,
    /// Interface VRRP runs on.
    pub interface: String,
    /// MASTER, BACKUP, FAULT or INIT; UNREACHABLE when the node is not reachable
    /// (disconnected or silent): never count such a node as a master.
    pub state: String,
    /// The state last reported, when `state` is UNREACHABLE (null otherwise).
    pub last_state: Option<String>,
    /// Priority from keepalived.conf.
    pub base_priority: u32,
    /// Priority in effect (overrides and trackers applied).
    pub effective_priority: u32,
    /// Priority override in force, null if none.
    pub override_priority: Option<u32>,
    /// VIPs in force, "addr/plen".
    pub vips: Vec<String>,
    /// Alerts the agent sees locally.
    pub alerts: Vec<String>,
    /// Sender of the last accepted advert, null if none.
    pub last_advert_from: Option<String>,
    /// Trackers and their state.
    pub trackers: Vec<TrackerJson>,
    /// Last notify result.
    pub last_notify: String,
}

/// One tracker of an instance.
#[derive(Debug, Serialize, PartialEq)]
pub struct TrackerJson {
    /// script, interface, file, process...
    pub kind: String,
    /// Tracker name.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// Weight it applies.
    pub weight: i32,
}

/// One fleet alert.
#[derive(Debug, Serialize, PartialEq)]
pub struct AlertJson {
    /// split-brain, clock-offset, agent-disconnected, agent-unreachable, store-unavailable;
    /// agent-reported vrid-collision, peer-master.
    pub kind: String,
    /// What it is about (node, instance, VRID).
    pub subject: String,
    /// Human-readable explanation.
    pub message: String,
    /// When it was raised, ms since the epoch.
    pub since_ms: i64,
}

/// One history or watch event.
#[derive(Debug, Serialize, PartialEq)]
pub struct EventJson {
    /// Position in manager history (0 for live events not stored yet).
    pub history_id: u64,
    /// Agent wall clock at the event, RFC 3339.
    pub time: String,
    /// Agent wall clock at the event, ms since the epoch.
    pub wall_time_ms: i64,
    /// Manager wall clock when stored, ms since the epoch.
    pub stored_ms: i64,
    /// Node.
    pub node: String,
    /// Agent process identity.
    pub boot_id: String,
    /// Sequence number within the boot.
    pub seq: u64,
    /// TRANSITION, COMMAND, ALERT_RAISED...
    pub kind: String,
    /// Instance, empty for node-wide events.
    pub instance: String,
    /// Old state (transitions).
    pub from_state: String,
    /// New state (transitions).
    pub to_state: String,
    /// Why.
    pub reason: String,
    /// Details.
    pub detail: String,
}

/// `history --json`: one object.
#[derive(Debug, Serialize, PartialEq)]
pub struct HistoryJson {
    /// Events oldest first.
    pub events: Vec<EventJson>,
}

/// `nodes --json`: one object.
#[derive(Debug, Serialize, PartialEq)]
pub struct NodesJson {
    /// Nodes.
    pub nodes: Vec<NodeJson>,
}

/// Convert the manager's status reply to the JSON shape.
pub fn status_json(reply: &StatusReply) -> StatusJson {
    StatusJson {
        nodes: reply.nodes.iter().map(node_json).collect(),
        alerts: reply.alerts.iter().map(alert_json).collect(),
    }
}

/// Whether the node's instance states are current: connected and not silent. (A manager
/// that does not report reachability, silent_ms 0, is trusted on `connected`.)
pub fn reachable(n: &NodeStatus) -> bool {
    n.connected && (n.reachable || n.silent_ms == 0)
}

/// Convert one node.
pub fn node_json(n: &NodeStatus) -> NodeJson {
    let up = reachable(n);
    NodeJson {
        name: n.name.clone(),
        connected: n.connected,
        reachable: up,
        silent_ms: (n.last_seen_ms != 0).then_some(n.silent_ms),
        clock_offset_ms: n.clock_offset_ms,
        boot_id: n.boot_id.clone(),
        version: n.version.clone(),
        last_seen_ms: n.last_seen_ms,
        override_generation: n.override_generation,
        peer_addr: n.peer_addr.clone(),
        config_digest: n.config_digest.clone(),
        instances: n
            .instances
            .iter()
            .map(|i| {
                let mut j = instance_json(i);
                if !up {
                    j.last_state = Some(std::mem::replace(&mut j.state, UNREACHABLE.into()));
                }
                j
            })
            .collect(),
        virtual_servers: n.virtual_servers.iter().map(virtual_server_json).collect(),
    }
}

/// The state shown for instances of a node that is not reachable.
pub const UNREACHABLE: &str = "UNREACHABLE";

/// The STATE cell: the state, or `unreachable (last seen MASTER 12 s ago)`.
pub fn state_text(n: &NodeStatus, i: &InstanceState) -> String {
    if reachable(n) {
        return state_name(&i.state);
    }
    let st = state_name(&i.state);
    if n.last_seen_ms == 0 {
        format!("unreachable (never seen, last known {st})")
    } else if n.silent_ms == 0 {
        format!("unreachable (last seen {st})")
    } else {
        format!("unreachable (last seen {st} {} s ago)", n.silent_ms / 1000)
    }
}

/// The CONNECTED cell: yes, no, or "yes (silent)" for a session that stopped talking.
fn connected_text(n: &NodeStatus) -> String {
    match (n.connected, reachable(n)) {
        (true, true) => "yes".into(),
        (true, false) => "yes (silent)".into(),
        (false, _) => "no".into(),
    }
}

/// Convert one virtual server.
pub fn virtual_server_json(v: &VirtualServerState) -> VirtualServerJson {
    VirtualServerJson {
        name: v.name.clone(),
        backend: v.backend.clone(),
        method: v.method.clone(),
        scheduler: v.scheduler.clone(),
        quorum: v.quorum,
        live_weight: v.live_weight,
        quorum_up: v.quorum_up,
        sorry_active: v.sorry_active,
        suspended: v.suspended,
        dataplane_error: (!v.dataplane_error.is_empty()).then(|| v.dataplane_error.clone()),
        real_servers: v.real_servers.iter().map(real_server_json).collect(),
    }
}

fn real_server_json(r: &RealServerState) -> RealServerJson {
    RealServerJson {
        addr: r.addr.clone(),
        port: r.port,
        alive: r.alive,
        weight_base: r.weight_base,
        weight_effective: r.weight_effective,
        in_table: r.in_table,
        drained: r.drained,
        from_override: r.from_override,
        checkers: r
            .checkers
            .iter()
            .map(|c| CheckerJson {
                kind: c.kind.clone(),
                up: c.up,
                detail: c.detail.clone(),
                latency_us: c.latency_us,
            })
            .collect(),
    }
}

/// Convert the answer of an `rs` command.
pub fn rs_result_json(node: &str, reply: &CommandReply) -> RsResultJson {
    RsResultJson {
        node: if reply.node.is_empty() {
            node.to_string()
        } else {
            reply.node.clone()
        },
        request_id: reply.request_id.clone(),
        generation: reply.generation,
        replayed: reply.replayed,
        virtual_server: reply.virtual_server.as_ref().map(virtual_server_json),
    }
}

/// Convert one instance.
pub fn instance_json(i: &InstanceState) -> InstanceJson {
    InstanceJson {
        name: i.name.clone(),
        vrid: i.vrid,
        interface: i.interface.clone(),
        state: state_name(&i.state),
        last_state: None,
        base_priority: i.base_priority,
        effective_priority: i.effective_priority,
        override_priority: (i.override_priority != 0).then_some(i.override_priority),
        vips: i.vips.clone(),
        alerts: i.alerts.clone(),
        last_advert_from: (!i.last_advert_from.is_empty()).then(|| i.last_advert_from.clone()),
        trackers: i.trackers.iter().map(tracker_json).collect(),
        last_notify: i.last_notify.clone(),
    }
}

fn tracker_json(t: &TrackerState) -> TrackerJson {
    TrackerJson {
        kind: t.kind.clone(),
        name: t.name.clone(),
        ok: t.ok,
        weight: t.weight,
    }
}

fn alert_json(a: &Alert) -> AlertJson {
    AlertJson {
        kind: a.kind.clone(),
        subject: a.subject.clone(),
        message: a.message.clone(),
        since_ms: a.since_ms,
    }
}

/// Convert one event.
pub fn event_json(e: &Event) -> EventJson {
    EventJson {
        history_id: e.history_id,
        time: format_rfc3339_ms(e.wall_time_ms),
        wall_time_ms: e.wall_time_ms,
        stored_ms: e.stored_ms,
        node: e.node.clone(),
        boot_id: e.boot_id.clone(),
        seq: e.seq,
        kind: kind_name(e.kind),
        instance: e.instance.clone(),
        from_state: e.from_state.clone(),
        to_state: e.to_state.clone(),
        reason: e.reason.clone(),
        detail: e.detail.clone(),
    }
}

/// The proto name of an event kind ("TRANSITION"), or the number if unknown.
pub fn kind_name(kind: i32) -> String {
    match EventKind::try_from(kind) {
        Ok(k) => k.as_str_name().to_string(),
        Err(_) => format!("KIND_{kind}"),
    }
}

/// Read a `--kind` value: a proto name in any case, `-` or `_` ("transition",
/// "alert-raised").
pub fn parse_kind(s: &str) -> Result<EventKind, String> {
    let name = s.trim().to_ascii_uppercase().replace('-', "_");
    match EventKind::from_str_name(&name) {
        Some(k) if k != EventKind::Unspecified => Ok(k),
        _ => {
            let known: Vec<String> = (1..=30)
                .filter_map(|n| EventKind::try_from(n).ok())
                .map(|k| k.as_str_name().to_ascii_lowercase().replace('_', "-"))
                .collect();
            Err(format!(
                "unknown event kind {s:?}; kinds: {}",
                known.join(", ")
            ))
        }
    }
}

/// States spelled as keepalived spells them; an empty state is INIT.
fn state_name(s: &str) -> String {
    if s.is_empty() {
        "INIT".to_string()
    } else {
        s.to_ascii_uppercase()
    }
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(l, "{c:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Clock offset for people: "+5001.3 ms", "-0.2 ms", "-" when not known.
pub fn offset_text(n: &NodeStatus) -> String {
    if n.last_seen_ms == 0 && n.clock_offset_ms == 0.0 && !n.connected {
        "-".to_string()
    } else {
        format!("{:+.1} ms", n.clock_offset_ms)
    }
}

/// How to render a table: the time ages are relative to, and whether `-o wide`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    /// Now, ms since the epoch (0: absolute times only, no age).
    pub now_ms: i64,
    /// Add the wide columns (peer, boot id, config digest, last seen).
    pub wide: bool,
}

/// The columns `-o wide` adds after CLOCK.
const WIDE_HEADERS: [&str; 4] = ["PEER", "BOOT", "CONFIG", "LAST SEEN"];

/// The wide cells of node `n`.
fn wide_cells(n: &NodeStatus, now_ms: i64) -> Vec<String> {
    vec![
        dash_if_empty(n.peer_addr.clone()),
        dash_if_empty(n.boot_id.clone()),
        dash_if_empty(n.config_digest.clone()),
        time_with_age(n.last_seen_ms, now_ms),
    ]
}

/// The `status` table and its alerts section.
pub fn render_status(reply: &StatusReply, view: View) -> String {
    let mut headers = vec!["NODE", "CONNECTED", "CLOCK"];
    if view.wide {
        headers.extend(WIDE_HEADERS);
    }
    headers.extend([
        "INSTANCE",
        "VRID",
        "STATE",
        "BASE",
        "EFFECTIVE",
        "VIPS",
        "ALERTS",
    ]);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for n in &reply.nodes {
        let connected = connected_text(n);
        let offset = offset_text(n);
        let first = rows.len();
        if n.instances.is_empty() {
            rows.push(vec![
                n.name.clone(),
                connected.clone(),
                offset.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for i in &n.instances {
            let eff = if i.override_priority != 0 {
                format!("{} (override)", i.effective_priority)
            } else {
                i.effective_priority.to_string()
            };
            rows.push(vec![
                n.name.clone(),
                connected.clone(),
                offset.clone(),
                i.name.clone(),
                i.vrid.to_string(),
                state_text(n, i),
                i.base_priority.to_string(),
                eff,
                dash_if_empty(i.vips.join(",")),
                dash_if_empty(i.alerts.join("; ")),
            ]);
        }
        if view.wide {
            let cells = wide_cells(n, view.now_ms);
            for row in &mut rows[first..] {
                row.splice(3..3, cells.iter().cloned());
            }
        }
    }
    let mut out = if rows.is_empty() {
        "no nodes\n".to_string()
    } else {
        render_table(&headers, &rows)
    };
    out.push('\n');
    let vs: Vec<String> = reply
        .nodes
        .iter()
        .flat_map(|n| {
            n.virtual_servers
                .iter()
                .map(|v| render_virtual_server(&n.name, v))
        })
        .collect();
    if !vs.is_empty() {
        out.push_str("VIRTUAL SERVERS\n");
        for block in vs {
            out.push_str(&block);
            out.push('\n');
        }
    }
    let mut trk = Vec::new();
    for n in &reply.nodes {
        for i in &n.instances {
            for t in &i.trackers {
                trk.push(vec![
                    n.name.clone(),
                    i.name.clone(),
                    t.kind.clone(),
                    t.name.clone(),
                    if t.ok { "ok" } else { "FAILED" }.to_string(),
                    t.weight.to_string(),
                ]);
            }
            if !i.last_notify.is_empty() {
                trk.push(vec![
                    n.name.clone(),
                    i.name.clone(),
                    "notify".into(),
                    "-".into(),
                    i.last_notify.clone(),
                    "-".into(),
                ]);
            }
        }
    }
    if !trk.is_empty() {
        out.push_str("TRACKERS AND LAST NOTIFY\n");
        out.push_str(&render_table(
            &["NODE", "INSTANCE", "KIND", "NAME", "STATE", "WEIGHT"],
            &trk,
        ));
        out.push('\n');
    }
    if reply.alerts.is_empty() {
        out.push_str("no alerts\n");
    } else {
        out.push_str("ALERTS\n");
        let rows: Vec<Vec<String>> = reply
            .alerts
            .iter()
            .map(|a| {
                vec![
                    a.kind.clone(),
                    a.subject.clone(),
                    time_with_age(a.since_ms, view.now_ms),
                    a.message.clone(),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["KIND", "SUBJECT", "SINCE", "MESSAGE"],
            &rows,
        ));
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A real server as people write it: 192.0.2.21:80, [2001:db8::21]:80.
pub fn real_server_text(addr: &str, port: u32) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn checker_text(c: &CheckerState) -> String {
    let verdict = if c.up { "up" } else { "DOWN" };
    let detail = c.detail.replace('\n', " ");
    if detail.is_empty() {
        format!("{} {verdict}", c.kind)
    } else {
        format!("{} {verdict} ({detail})", c.kind)
    }
}

/// One virtual server: a summary line, then one indented line per real server
/// (address, alive, weight effective/base, drained, in table, checkers).
pub fn render_virtual_server(node: &str, v: &VirtualServerState) -> String {
    let mut out = format!(
        "{node} {}: backend {}, method {}, scheduler {}, quorum {} (live weight {}, quorum {}), sorry server {}, suspended {}",
        v.name,
        dash_if_empty(v.backend.clone()),
        dash_if_empty(v.method.clone()),
        dash_if_empty(v.scheduler.clone()),
        if v.quorum_up { "up" } else { "DOWN" },
        v.live_weight,
        v.quorum,
        if v.sorry_active { "active" } else { "inactive" },
        yes_no(v.suspended),
    );
    if !v.dataplane_error.is_empty() {
        let _ = write!(out, ", data plane error: {}", v.dataplane_error);
    }
    out.push('\n');
    if v.real_servers.is_empty() {
        out.push_str("  (no real servers)\n");
        return out;
    }
    let rows: Vec<Vec<String>> = v
        .real_servers
        .iter()
        .map(|r| {
            let mut addr = real_server_text(&r.addr, r.port);
            if r.from_override {
                addr.push_str(" (rs add)");
            }
            let checkers: Vec<String> = r.checkers.iter().map(checker_text).collect();
            vec![
                addr,
                if r.alive { "alive" } else { "DEAD" }.to_string(),
                format!("{}/{}", r.weight_effective, r.weight_base),
                yes_no(r.drained).to_string(),
                yes_no(r.in_table).to_string(),
                dash_if_empty(checkers.join("; ")),
            ]
        })
        .collect();
    let table = render_table(
        &[
            "REAL SERVER",
            "STATE",
            "WEIGHT",
            "DRAINED",
            "IN TABLE",
            "CHECKERS",
        ],
        &rows,
    );
    for line in table.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Result of `rs ACTION`: "lb1 192.0.2.10:80/TCP: rs drain 192.0.2.21:80 done", then
/// the virtual server after the change.
pub fn rs_result(node: &str, vs: &str, action: &str, rs: &str, reply: &CommandReply) -> String {
    let node = if reply.node.is_empty() {
        node
    } else {
        &reply.node
    };
    let mut out = with_replayed(format!("{node} {vs}: rs {action} {rs} done"), reply);
    out.push('\n');
    if let Some(v) = &reply.virtual_server {
        out.push_str(&render_virtual_server(node, v));
    }
    out
}

/// The `nodes` table (last seen with its age relative to `now_ms`, 0 for none).
pub fn render_nodes(nodes: &[NodeStatus], now_ms: i64) -> String {
    if nodes.is_empty() {
        return "no nodes\n".to_string();
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.connected { "yes" } else { "no" }.to_string(),
                dash_if_empty(n.peer_addr.clone()),
                dash_if_empty(n.version.clone()),
                dash_if_empty(n.boot_id.clone()),
                time_with_age(n.last_seen_ms, now_ms),
                offset_text(n),
                n.instances.len().to_string(),
                n.override_generation.to_string(),
            ]
        })
        .collect();
    render_table(
        &[
            "NODE",
            "CONNECTED",
            "PEER",
            "VERSION",
            "BOOT",
            "LAST SEEN",
            "CLOCK",
            "INSTANCES",
            "OVERRIDE GEN",
        ],
        &rows,
    )
}

/// How long before `now_ms` the time `then_ms` was, for people: "just now", "45s ago",
/// "5m ago", "3h ago", "2d ago" (whole units, rounded down), "in 3s" for a time ahead
/// (clocks differ). "" when either time is unknown (0).
pub fn age_text(then_ms: i64, now_ms: i64) -> String {
    if then_ms == 0 || now_ms == 0 {
        return String::new();
    }
    let d = now_ms.saturating_sub(then_ms);
    let secs = d.unsigned_abs() / 1000;
    if secs == 0 {
        return "just now".into();
    }
    let span = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if d < 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// An absolute time with its age beside it: "2026-12-03T12:00:00.000Z (5m ago)"; "-"
/// when unknown (0), the absolute time alone when `now_ms` is 0.
pub fn time_with_age(ms: i64, now_ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let age = age_text(ms, now_ms);
    if age.is_empty() {
        format_rfc3339_ms(ms)
    } else {
        format!("{} ({age})", format_rfc3339_ms(ms))
    }
}

/// `status [NODE] [--instance NAME]`: only that node, only nodes with that instance and
/// only that instance of them; the fleet's alerts are kept whole. Unknown names are an
/// error naming the known ones.
pub fn filter_status(
    mut reply: StatusReply,
    node: Option<&str>,
    instance: Option<&str>,
) -> Result<StatusReply, String> {
    if let Some(want) = node {
        if !reply.nodes.iter().any(|n| n.name == want) {
            let known: Vec<&str> = reply.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(format!(
                "unknown node {want:?} (known: {})",
                list_or_none(&known)
            ));
        }
        reply.nodes.retain(|n| n.name == want);
    }
    if let Some(want) = instance {
        let mut known: Vec<&str> = reply
            .nodes
            .iter()
            .flat_map(|n| n.instances.iter().map(|i| i.name.as_str()))
            .collect();
        known.sort_unstable();
        known.dedup();
        if !known.contains(&want) {
            return Err(format!(
                "unknown instance {want:?} (known: {})",
                list_or_none(&known)
            ));
        }
        for n in &mut reply.nodes {
            n.instances.retain(|i| i.name == want);
        }
        reply.nodes.retain(|n| !n.instances.is_empty());
    }
    Ok(reply)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `version -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct VersionJson {
    /// hactl's version.
    pub hactl: String,
    /// The manager's ("" from a manager too old to say; null if unreachable).
    pub manager: Option<String>,
    /// The manager asked.
    pub manager_url: String,
}

/// `hactl version`: "hactl 0.1.0\nmanager 0.1.0 (URL)\n".
pub fn version_text(hactl: &str, manager: Option<&str>, url: &str) -> String {
    let m = match manager {
        Some("") => format!("manager (version not reported) ({url})"),
        Some(v) => format!("manager {v} ({url})"),
        None => format!("manager unreachable ({url})"),
    };
    format!("hactl {hactl}\n{m}\n")
}

fn dash_if_empty(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// One line per event: time, node, instance, kind, then what happened.
pub fn event_line(e: &Event) -> String {
    event_line_at(e, 0)
}

/// [`event_line`] with the event's age beside its time (`history`):
/// "2026-12-03T12:00:00.000Z (5m ago) lb1 VI_1 TRANSITION ...".
pub fn event_line_at(e: &Event, now_ms: i64) -> String {
    let when = match age_text(e.wall_time_ms, now_ms) {
        a if a.is_empty() => format_rfc3339_ms(e.wall_time_ms),
        a => format!("{} ({a})", format_rfc3339_ms(e.wall_time_ms)),
    };
    let mut line = format!(
        "{} {} {} {}",
        when,
        dash_if_empty(e.node.clone()),
        dash_if_empty(e.instance.clone()),
        kind_name(e.kind)
    );
    if !e.from_state.is_empty() || !e.to_state.is_empty() {
        let _ = write!(
            line,
            " {} -> {}",
            dash_if_empty(e.from_state.clone()),
            dash_if_empty(e.to_state.clone())
        );
    }
    if !e.reason.is_empty() {
        let _ = write!(line, " ({})", e.reason);
    }
    if !e.detail.is_empty() {
        let _ = write!(line, " {}", e.detail.replace('\n', " "));
    }
    line
}

/// Result of `set-priority` (and `switchover`):
/// "lb2 VI_1: BACKUP -> MASTER, priority 100 -> 200 (override)".
/// `before` is the instance as status showed it before the command, if known.
pub fn priority_result(
    node: &str,
    instance: &str,
    before: Option<&InstanceState>,
    reply: &CommandReply,
) -> String {
    let node = if reply.node.is_empty() {
        node
    } else {
        &reply.node
    };
    let mut line = format!("{node} {instance}:");
    let Some(after) = reply.instance.as_ref() else {
        line.push_str(" done");
        return with_replayed(line, reply);
    };
    let new_state = state_name(&after.state);
    match before {
        Some(b) if state_name(&b.state) != new_state => {
            let _ = write!(line, " {} -> {new_state}", state_name(&b.state));
        }
        _ => {
            let _ = write!(line, " {new_state}");
        }
    }
    match before {
        Some(b) if b.effective_priority != after.effective_priority => {
            let _ = write!(
                line,
                ", priority {} -> {}",
                b.effective_priority, after.effective_priority
            );
        }
        _ => {
            let _ = write!(line, ", priority {}", after.effective_priority);
        }
    }
    if after.override_priority != 0 {
        line.push_str(" (override)");
    } else {
        let _ = write!(line, " (configured {})", after.base_priority);
    }
    with_replayed(line, reply)
}

/// Result of `vip add|del`.
pub fn vip_result(
    node: &str,
    instance: &str,
    addr: &str,
    add: bool,
    reply: &CommandReply,
) -> String {
    let node = if reply.node.is_empty() {
        node
    } else {
        &reply.node
    };
    let verb = if add { "added" } else { "removed" };
    let mut line = format!("{node} {instance}: {addr} {verb}");
    if let Some(after) = reply.instance.as_ref() {
        let _ = write!(
            line,
            "; VIPs now {} ({})",
            dash_if_empty(after.vips.join(", ")),
            state_name(&after.state)
        );
    }
    with_replayed(line, reply)
}

fn with_replayed(mut line: String, reply: &CommandReply) -> String {
    if reply.generation != 0 {
        let _ = write!(line, " [generation {}]", reply.generation);
    }
    if reply.replayed {
        let _ = write!(
            line,
            " (replayed: request {} already ran)",
            reply.request_id
        );
    }
    line
}

/// Find an instance in a status reply.
pub fn find_instance<'a>(
    reply: &'a StatusReply,
    node: &str,
    instance: &str,
) -> Option<&'a InstanceState> {
    reply
        .nodes
        .iter()
        .find(|n| n.name == node)?
        .instances
        .iter()
        .find(|i| i.name == instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, state: &str, base: u32, eff: u32, ovr: u32) -> InstanceState {
        InstanceState {
            name: name.into(),
            vrid: 51,
            interface: "eth0".into(),
            state: state.into(),
            base_priority: base,
            effective_priority: eff,
            vips: vec!["192.0.2.10/24".into()],
            override_priority: ovr,
            ..Default::default()
        }
    }

    fn sample() -> StatusReply {
        StatusReply {
            nodes: vec![
                NodeStatus {
                    name: "lb1".into(),
                    connected: true,
                    clock_offset_ms: 0.25,
                    last_seen_ms: 1,
                    instances: vec![inst("VI_1", "MASTER", 150, 150, 0)],
                    ..Default::default()
                },
                NodeStatus {
                    name: "lb2".into(),
                    connected: false,
                    clock_offset_ms: 5001.0,
                    last_seen_ms: 1,
                    instances: vec![inst("VI_1", "BACKUP", 100, 200, 200)],
                    ..Default::default()
                },
            ],
            alerts: vec![Alert {
                kind: "clock-offset".into(),
                subject: "lb2".into(),
                message: "lb2 clock is 5001 ms ahead".into(),
                since_ms: 0,
            }],
            ..Default::default()
        }
    }

    /// 2026-12-03T12:00:00Z in ms.
    const NOON: i64 = 1_796_299_200_000;

    #[test]
    fn ages_are_relative_and_rounded_down() {
        assert_eq!(age_text(NOON, NOON), "just now");
        assert_eq!(age_text(NOON - 999, NOON), "just now");
        assert_eq!(age_text(NOON - 45_000, NOON), "45s ago");
        assert_eq!(age_text(NOON - 59_999, NOON), "59s ago");
        assert_eq!(age_text(NOON - 60_000, NOON), "1m ago");
        assert_eq!(age_text(NOON - 5 * 60_000 - 30_000, NOON), "5m ago");
        assert_eq!(age_text(NOON - 3 * 3_600_000, NOON), "3h ago");
        assert_eq!(age_text(NOON - 2 * 86_400_000 - 1, NOON), "2d ago");
        assert_eq!(age_text(NOON + 3_000, NOON), "in 3s");
        assert_eq!(age_text(0, NOON), "");
        assert_eq!(age_text(NOON, 0), "");
        assert_eq!(
            time_with_age(NOON - 300_000, NOON),
            "2026-12-03T11:55:00.000Z (5m ago)"
        );
        assert_eq!(time_with_age(NOON, 0), "2026-12-03T12:00:00.000Z");
        assert_eq!(time_with_age(0, NOON), "-");
    }

    #[test]
    fn history_lines_carry_the_age() {
        let e = Event {
            node: "lb1".into(),
            instance: "VI_1".into(),
            wall_time_ms: NOON - 120_000,
            ..Default::default()
        };
        let line = event_line_at(&e, NOON);
        assert!(
            line.starts_with("2026-12-03T11:58:00.000Z (2m ago) lb1 VI_1 "),
            "{line}"
        );
        assert!(!event_line(&e).contains("ago"), "{}", event_line(&e));
    }

    #[test]
    fn status_filters_by_node_and_instance() {
        let mut all = sample();
        all.nodes[1]
            .instances
            .push(inst("VI_2", "MASTER", 150, 150, 0));
        let one = filter_status(all.clone(), Some("lb2"), None).unwrap();
        assert_eq!(one.nodes.len(), 1);
        assert_eq!(one.nodes[0].name, "lb2");
        assert_eq!(one.alerts.len(), 1, "the fleet's alerts stay");
        let vi2 = filter_status(all.clone(), None, Some("VI_2")).unwrap();
        assert_eq!(vi2.nodes.len(), 1, "lb1 has no VI_2");
        assert_eq!(vi2.nodes[0].instances.len(), 1);
        assert_eq!(vi2.nodes[0].instances[0].name, "VI_2");
        let both = filter_status(all.clone(), Some("lb1"), Some("VI_1")).unwrap();
        assert_eq!(both.nodes[0].instances[0].name, "VI_1");
        let err = filter_status(all.clone(), Some("lb9"), None).unwrap_err();
        assert_eq!(err, "unknown node \"lb9\" (known: lb1, lb2)");
        let err = filter_status(all.clone(), Some("lb1"), Some("VI_2")).unwrap_err();
        assert_eq!(err, "unknown instance \"VI_2\" (known: VI_1)");
        let err = filter_status(StatusReply::default(), Some("lb1"), None).unwrap_err();
        assert!(err.ends_with("(known: none)"), "{err}");
        assert_eq!(filter_status(all.clone(), None, None).unwrap(), all);
    }

    #[test]
    fn wide_status_adds_identity_columns() {
        let mut s = sample();
        s.nodes[0].peer_addr = "192.0.2.1:40000".into();
        s.nodes[0].boot_id = "boot-1".into();
        s.nodes[0].config_digest = "sha256:abcd".into();
        s.nodes[0].last_seen_ms = NOON - 5_000;
        let view = View {
            now_ms: NOON,
            wide: true,
        };
        let t = render_status(&s, view);
        let header = t.lines().next().unwrap();
        for h in ["PEER", "BOOT", "CONFIG", "LAST SEEN", "INSTANCE"] {
            assert!(header.contains(h), "{header}");
        }
        let row = t.lines().find(|l| l.starts_with("lb1")).unwrap();
        for cell in [
            "192.0.2.1:40000",
            "boot-1",
            "sha256:abcd",
            "2026-12-03T11:59:55.000Z (5s ago)",
            "VI_1",
        ] {
            assert!(row.contains(cell), "{row}");
        }
        // The plain table has none of them.
        let plain = render_status(&s, View::default());
        assert!(!plain.lines().next().unwrap().contains("PEER"), "{plain}");
        assert!(!plain.contains("sha256:abcd"), "{plain}");
        // JSON carries the digest.
        let j = serde_json::to_value(node_json(&s.nodes[0])).unwrap();
        assert_eq!(j["config_digest"], "sha256:abcd");
    }

    #[test]
    fn version_lines() {
        assert_eq!(
            version_text("0.1.0", Some("0.1.0"), "http://192.0.2.1:7400"),
            "hactl 0.1.0\nmanager 0.1.0 (http://192.0.2.1:7400)\n"
        );
        assert!(version_text("0.1.0", Some(""), "u").contains("not reported"));
        assert!(version_text("0.1.0", None, "u").contains("manager unreachable (u)"));
    }

    #[test]
    fn status_json_has_the_contract_shape() {
        let v = serde_json::to_value(status_json(&sample())).unwrap();
        let n = &v["nodes"][1];
        assert_eq!(n["name"], "lb2");
        assert_eq!(n["connected"], false);
        assert_eq!(n["clock_offset_ms"], 5001.0);
        assert_eq!(n["reachable"], false);
        let i = &n["instances"][0];
        assert_eq!(i["name"], "VI_1");
        assert_eq!(i["vrid"], 51);
        // Disconnected: never shown as a current state.
        assert_eq!(i["state"], "UNREACHABLE");
        assert_eq!(i["last_state"], "BACKUP");
        assert_eq!(v["nodes"][0]["reachable"], true);
        assert_eq!(v["nodes"][0]["instances"][0]["state"], "MASTER");
        assert_eq!(
            v["nodes"][0]["instances"][0]["last_state"],
            serde_json::Value::Null
        );
        assert_eq!(i["base_priority"], 100);
        assert_eq!(i["effective_priority"], 200);
        assert_eq!(i["override_priority"], 200);
        assert_eq!(i["vips"][0], "192.0.2.10/24");
        assert_eq!(
            v["nodes"][0]["instances"][0]["override_priority"],
            serde_json::Value::Null
        );
        assert_eq!(v["alerts"][0]["kind"], "clock-offset");
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "only nodes and alerts: {v}"
        );
    }

    #[test]
    fn a_silent_node_is_unreachable_with_its_last_state() {
        let mut n = NodeStatus {
            name: "lb1".into(),
            connected: true,
            reachable: false,
            last_seen_ms: 1,
            silent_ms: 12_400,
            instances: vec![inst("VI_1", "MASTER", 150, 150, 0)],
            ..Default::default()
        };
        let t = render_status(
            &StatusReply {
                nodes: vec![n.clone()],
                alerts: vec![],
                ..Default::default()
            },
            View::default(),
        );
        assert!(
            t.contains("yes (silent)") && t.contains("unreachable (last seen MASTER 12 s ago)"),
            "{t}"
        );
        let j = serde_json::to_value(node_json(&n)).unwrap();
        assert_eq!(j["reachable"], false);
        assert_eq!(j["silent_ms"], 12_400);
        assert_eq!(j["instances"][0]["state"], "UNREACHABLE");
        assert_eq!(j["instances"][0]["last_state"], "MASTER");
        // Fresh again.
        n.reachable = true;
        n.silent_ms = 300;
        let j = serde_json::to_value(node_json(&n)).unwrap();
        assert_eq!(j["instances"][0]["state"], "MASTER");
        assert!(!render_status(
            &StatusReply {
                nodes: vec![n],
                alerts: vec![],
                ..Default::default()
            },
            View::default()
        )
        .contains("unreachable"));
    }

    #[test]
    fn empty_state_is_init() {
        let j = instance_json(&inst("VI_1", "", 100, 100, 0));
        assert_eq!(j.state, "INIT");
    }

    #[test]
    fn table_aligns_columns() {
        let t = render_table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }

    #[test]
    fn status_table_shows_every_column_and_alerts() {
        let t = render_status(&sample(), View::default());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NODE  CONNECTED  CLOCK"), "{t}");
        assert!(
            lines[1].contains("lb1") && lines[1].contains("yes") && lines[1].contains("+0.2 ms")
        );
        assert!(lines[1].contains("MASTER") && lines[1].contains("150"));
        assert!(
            lines[2].contains("no") && lines[2].contains("+5001.0 ms"),
            "{t}"
        );
        assert!(lines[2].contains("200 (override)") && lines[2].contains("192.0.2.10/24"));
        assert!(t.contains("ALERTS\nKIND"), "{t}");
        assert!(t.contains("clock-offset  lb2"), "{t}");
        let empty = render_status(&StatusReply::default(), View::default());
        assert_eq!(empty, "no nodes\n\nno alerts\n");
    }

    #[test]
    fn priority_result_line() {
        let before = inst("VI_1", "BACKUP", 100, 100, 0);
        let reply = CommandReply {
            request_id: "r1".into(),
            ok: true,
            node: "lb2".into(),
            instance: Some(inst("VI_1", "MASTER", 100, 200, 200)),
            ..Default::default()
        };
        assert_eq!(
            priority_result("lb2", "VI_1", Some(&before), &reply),
            "lb2 VI_1: BACKUP -> MASTER, priority 100 -> 200 (override)"
        );
        let mut again = reply.clone();
        again.replayed = true;
        let line = priority_result("lb2", "VI_1", None, &again);
        assert_eq!(
            line,
            "lb2 VI_1: MASTER, priority 200 (override) (replayed: request r1 already ran)"
        );
        let cleared = CommandReply {
            instance: Some(inst("VI_1", "BACKUP", 100, 100, 0)),
            generation: 7,
            ..Default::default()
        };
        assert_eq!(
            priority_result("lb2", "VI_1", None, &cleared),
            "lb2 VI_1: BACKUP, priority 100 (configured 100) [generation 7]"
        );
    }

    #[test]
    fn event_lines_and_json() {
        let e = Event {
            node: "lb2".into(),
            boot_id: "b".into(),
            seq: 4,
            wall_time_ms: 1000,
            kind: EventKind::Transition as i32,
            instance: "VI_1".into(),
            from_state: "BACKUP".into(),
            to_state: "MASTER".into(),
            reason: "priority override".into(),
            history_id: 9,
            ..Default::default()
        };
        assert_eq!(
            event_line(&e),
            "1970-01-01T00:00:01.000Z lb2 VI_1 TRANSITION BACKUP -> MASTER (priority override)"
        );
        let v = serde_json::to_value(event_json(&e)).unwrap();
        assert_eq!(v["kind"], "TRANSITION");
        assert_eq!(v["reason"], "priority override");
        assert_eq!(v["seq"], 4);
        assert_eq!(v["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(kind_name(999), "KIND_999");
    }

    #[test]
    fn kinds_parse_in_any_spelling() {
        assert_eq!(parse_kind("transition"), Ok(EventKind::Transition));
        assert_eq!(parse_kind("alert-raised"), Ok(EventKind::AlertRaised));
        assert_eq!(parse_kind("COMMAND"), Ok(EventKind::Command));
        assert_eq!(parse_kind("checker"), Ok(EventKind::Checker));
        assert_eq!(parse_kind("real-server"), Ok(EventKind::RealServer));
        assert_eq!(parse_kind("quorum"), Ok(EventKind::Quorum));
        let err = parse_kind("bogus").unwrap_err();
        assert!(err.contains("transition") && err.contains("gap"), "{err}");
        assert!(parse_kind("event-kind-unspecified").is_err());
    }

    fn web_vs() -> VirtualServerState {
        VirtualServerState {
            name: "192.0.2.10:80/TCP".into(),
            backend: "nftables".into(),
            scheduler: "rr".into(),
            method: "NAT".into(),
            quorum: 1,
            live_weight: 1,
            quorum_up: true,
            real_servers: vec![
                RealServerState {
                    addr: "192.0.2.21".into(),
                    port: 80,
                    alive: true,
                    weight_base: 1,
                    weight_effective: 0,
                    in_table: true,
                    drained: true,
                    checkers: vec![CheckerState {
                        kind: "HTTP_GET".into(),
                        up: true,
                        detail: "200 OK".into(),
                        latency_us: 800,
                    }],
                    ..Default::default()
                },
                RealServerState {
                    addr: "2001:db8::22".into(),
                    port: 80,
                    alive: false,
                    weight_base: 3,
                    weight_effective: 3,
                    from_override: true,
                    checkers: vec![
                        CheckerState {
                            kind: "TCP_CHECK".into(),
                            up: false,
                            detail: "connection refused".into(),
                            latency_us: 0,
                        },
                        CheckerState {
                            kind: "MISC_CHECK".into(),
                            up: true,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn virtual_server_block() {
        let t = render_virtual_server("lb1", &web_vs());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "lb1 192.0.2.10:80/TCP: backend nftables, method NAT, scheduler rr, quorum up (live weight 1, quorum 1), sorry server inactive, suspended no"
        );
        assert_eq!(
            lines[1],
            "  REAL SERVER                 STATE  WEIGHT  DRAINED  IN TABLE  CHECKERS"
        );
        assert_eq!(
            lines[2],
            "  192.0.2.21:80               alive  0/1     yes      yes       HTTP_GET up (200 OK)"
        );
        assert_eq!(
            lines[3],
            "  [2001:db8::22]:80 (rs add)  DEAD   3/3     no       no        TCP_CHECK DOWN (connection refused); MISC_CHECK up"
        );
        assert_eq!(lines.len(), 4);
        let mut down = web_vs();
        down.quorum_up = false;
        down.sorry_active = true;
        down.dataplane_error = "nft: table busy".into();
        down.real_servers.clear();
        let t = render_virtual_server("lb1", &down);
        assert!(
            t.contains("quorum DOWN") && t.contains("sorry server active"),
            "{t}"
        );
        assert!(
            t.ends_with(", data plane error: nft: table busy\n  (no real servers)\n"),
            "{t}"
        );
    }

    #[test]
    fn status_shows_virtual_servers_only_where_there_are_some() {
        let plain = render_status(&sample(), View::default());
        assert!(!plain.contains("VIRTUAL SERVERS"), "{plain}");
        let mut s = sample();
        s.nodes[0].virtual_servers = vec![web_vs()];
        let t = render_status(&s, View::default());
        let after = t.split("VIRTUAL SERVERS\n").nth(1).unwrap();
        let section = after.split("\n\n").next().unwrap();
        assert!(
            section.starts_with("lb1 192.0.2.10:80/TCP: backend nftables"),
            "{t}"
        );
        assert!(!section.contains("lb2 "), "{t}");
        // The instance table is as it was without virtual servers.
        assert!(t.starts_with(plain.split("\n\n").next().unwrap()), "{t}");
        let v = serde_json::to_value(status_json(&s)).unwrap();
        let vs = &v["nodes"][0]["virtual_servers"][0];
        assert_eq!(vs["name"], "192.0.2.10:80/TCP");
        assert_eq!(vs["quorum_up"], true);
        assert_eq!(vs["dataplane_error"], serde_json::Value::Null);
        assert_eq!(vs["real_servers"][0]["drained"], true);
        assert_eq!(vs["real_servers"][1]["checkers"][0]["kind"], "TCP_CHECK");
        assert_eq!(v["nodes"][1]["virtual_servers"], serde_json::json!([]));
    }

    #[test]
    fn rs_result_lines() {
        let reply = CommandReply {
            request_id: "r9".into(),
            ok: true,
            generation: 4,
            node: "lb1".into(),
            virtual_server: Some(web_vs()),
            ..Default::default()
        };
        let t = rs_result("lb1", "192.0.2.10:80/TCP", "drain", "192.0.2.21:80", &reply);
        let mut lines = t.lines();
        assert_eq!(
            lines.next(),
            Some("lb1 192.0.2.10:80/TCP: rs drain 192.0.2.21:80 done [generation 4]")
        );
        assert!(lines
            .next()
            .unwrap()
            .starts_with("lb1 192.0.2.10:80/TCP: backend"));
        let j = serde_json::to_value(rs_result_json("lb1", &reply)).unwrap();
        assert_eq!(j["generation"], 4);
        assert_eq!(
            j["virtual_server"]["real_servers"][0]["weight_effective"],
            0
        );
    }

    #[test]
    fn vip_result_line() {
        let reply = CommandReply {
            instance: Some(InstanceState {
                state: "MASTER".into(),
                vips: vec!["192.0.2.10/24".into(), "192.0.2.20/24".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            vip_result("lb1", "VI_1", "192.0.2.20/24", true, &reply),
            "lb1 VI_1: 192.0.2.20/24 added; VIPs now 192.0.2.10/24, 192.0.2.20/24 (MASTER)"
        );
    }
}
