//! From the checked block tree to the typed model.
//!
//! Values are parsed here (numbers, addresses, durations), each bad one an error naming
//! the field. VRRP instances go through a draft (`InstanceDraft`, raw numbers with their
//! places) so `validate.rs` can check ranges and cross-field rules with exact file:line
//! before the final [`VrrpInstance`] with typed units is made. Keyword spelling was already
//! checked by `keywords.rs`, so unknown names are not re-reported here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::lexer::Loc;
use super::model::*;
use super::tree::Node;
use super::validate;
use super::Diagnostic;
use crate::units::{Centiseconds, Priority, Version, Vrid};

/// Turn a place into a model origin.
pub(super) fn origin(loc: &Loc) -> Origin {
    Origin {
        file: loc.file.clone(),
        line: loc.line,
    }
}

/// Collects errors while reading values.
pub(super) struct Ctx<'a> {
    pub errors: &'a mut Vec<Diagnostic>,
    /// What keepalived reports and then corrects ("... - resetting"): loaded, and said.
    pub notes: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, n: &Node, msg: impl Into<String>) {
        self.errors.push(n.diag(msg));
    }

    pub(super) fn note(&mut self, n: &Node, msg: impl Into<String>) {
        self.notes.push(n.diag(msg));
    }

    /// The `i`-th argument, or an error "KEYWORD needs a value".
    pub(super) fn arg<'n>(&mut self, n: &'n Node, i: usize) -> Option<&'n str> {
        let a = n.arg(i);
        if a.is_none() {
            self.err(n, format!("{} needs a value", n.name));
        }
        a
    }

    /// An integer argument in `min..=max` (error names the field and the range).
    pub(super) fn int(&mut self, n: &Node, i: usize, min: i64, max: i64) -> Option<i64> {
        let s = self.arg(n, i)?;
        match s.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.err(n, format!("{} {v} out of range {min}-{max}", n.name));
                None
            }
            Err(_) => {
                self.err(n, format!("{} '{s}' is not a whole number", n.name));
                None
            }
        }
    }

    /// A duration in seconds (fractions allowed) up to `max_secs`.
    pub(super) fn secs(&mut self, n: &Node, i: usize, max_secs: u64) -> Option<Duration> {
        let s = self.arg(n, i)?;
        match parse_micros(s) {
            Some(us) if us <= max_secs.saturating_mul(1_000_000) => Some(Duration::from_micros(us)),
            Some(_) => {
                self.err(
                    n,
                    format!("{} {s} out of range 0-{max_secs} seconds", n.name),
                );
                None
            }
            None => {
                self.err(n, format!("{} '{s}' is not a number of seconds", n.name));
                None
            }
        }
    }

    /// An optional boolean argument (`on|off|true|false|yes|no`), absent = true.
    pub(super) fn flag(&mut self, n: &Node) -> bool {
        match n.arg(0) {
            None => true,
            Some(s) => match parse_bool(s) {
                Some(b) => b,
                None => {
                    self.err(
                        n,
                        format!("{} '{s}' is not one of on|off|true|false|yes|no", n.name),
                    );
                    false
                }
            },
        }
    }

    fn addr(&mut self, n: &Node, field: &str, s: &str) -> Option<IpAddr> {
        match s.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(n, format!("{field}: bad address '{s}'"));
                None
            }
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Decimal seconds to microseconds, exactly, with at most 6 decimals and bounded size.
pub(super) fn parse_micros(s: &str) -> Option<u64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if int.len() > 12 || frac.len() > 6 {
        return None;
    }
    let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..6 {
        f *= 10;
    }
    whole.checked_mul(1_000_000)?.checked_add(f)
}

/// Build the model. Errors go to `errors`; `None` if any was found.
pub fn build(tree: &[Node], errors: &mut Vec<Diagnostic>, notes: &mut Vec<Diagnostic>) -> Config {
    let mut cx = Ctx { errors, notes };
    let mut cfg = Config::default();
    for n in tree.iter().filter(|n| n.name == "global_defs") {
        global_defs(&mut cx, n, &mut cfg.global);
    }
    let mut drafts = Vec::new();
    for n in tree {
        match n.name.as_str() {
            "global_defs" => {}
            "vrrp_instance" => {
                if let Some(mut d) = instance(&mut cx, n) {
                    super::strict::apply(&mut d, n, &cfg.global, cx.notes, cx.errors);
                    drafts.push(d);
                }
            }
            "vrrp_script" => cfg.vrrp_scripts.push(vrrp_script(&mut cx, n)),
            "vrrp_track_file" | "track_file" => cfg.track_files.push(track_file(&mut cx, n)),
            "vrrp_track_process" => cfg.track_processes.push(section(n)),
            "vrrp_sync_group" => cfg.sync_groups.push(sync_group(&mut cx, n)),
            "virtual_server_group" => cfg.virtual_server_groups.push(section(n)),
            "virtual_server" => {
                if let Some(vs) = virtual_server(&mut cx, n) {
                    cfg.virtual_servers.push(vs);
                }
            }
            _ => cfg.other.push(n.clone()),
        }
    }
    validate::instances(&drafts, &cfg.global, cx.errors);
    validate::references(&drafts, &cfg, cx.errors);
    cfg.vrrp_instances = drafts
        .into_iter()
        .filter_map(|d| finish_instance(d, &cfg.global, cx.notes))
        .collect();
    cfg
}

fn section(n: &Node) -> Section {
    Section {
        name: n.args.join(" "),
        origin: origin(&n.loc),
        entries: n.children().to_vec(),
    }
}

fn script_user(args: &[String]) -> Option<ScriptUser> {
    let user = args.first()?.clone();
    Some(ScriptUser {
        user,
        group: args.get(1).cloned(),
    })
}

fn global_defs(cx: &mut Ctx<'_>, g: &Node, out: &mut GlobalDefs) {
    const DAY: u64 = 86_400;
    out.origin = Some(origin(&g.loc));
    let mut lower_delay_set = false;
    let mut lower_repeat_set = false;
    let mut min_garp = false;
    for n in g.children() {
        match n.name.as_str() {
            "router_id" => out.router_id = cx.arg(n, 0).map(str::to_owned),
            "vrrp_version" => {
                out.vrrp_version = match cx.int(n, 0, 2, 3) {
                    Some(2) => Some(Version::V2),
                    Some(_) => Some(Version::V3),
                    None => None,
                }
            }
            "vrrp_garp_master_delay" => {
                if let Some(d) = cx.secs(n, 0, DAY) {
                    out.garp.master_delay = (!d.is_zero()).then_some(d);
                }
            }
            "vrrp_garp_master_repeat" => {
                if let Some(v) = cx.int(n, 0, 0, 1_000_000) {
                    out.garp.master_repeat = v as u32;
                }
            }
            "vrrp_garp_master_refresh" => {
                if let Some(d) = cx.secs(n, 0, DAY) {
                    out.garp.master_refresh = (!d.is_zero()).then_some(d);
                }
            }
            "vrrp_garp_master_refresh_repeat" => {
                if let Some(v) = cx.int(n, 0, 1, 1_000_000) {
                    out.garp.master_refresh_repeat = v as u32;
                }
            }
            "vrrp_garp_lower_prio_delay" => {
                lower_delay_set = true;
                if let Some(d) = cx.secs(n, 0, DAY) {
                    out.garp.lower_prio_delay = (!d.is_zero()).then_some(d);
                }
            }
            "vrrp_garp_lower_prio_repeat" => {
                lower_repeat_set = true;
                if let Some(v) = cx.int(n, 0, 0, 1_000_000) {
                    out.garp.lower_prio_repeat = v as u32;
                }
            }
            "vrrp_garp_interval" => {
                if let Some(d) = cx.secs(n, 0, 1) {
                    out.garp.interval = d;
                }
            }
            "vrrp_gna_interval" => {
                if let Some(d) = cx.secs(n, 0, 1) {
                    out.garp.na_interval = d;
                }
            }
            "vrrp_min_garp" => min_garp = cx.flag(n),
            "script_user" => {
                out.script_user = script_user(&n.args);
                if out.script_user.is_none() {
                    cx.err(n, "script_user needs a user name");
                }
            }
            "enable_script_security" => out.enable_script_security = true,
            "vrrp_check_unicast_src" => out.vrrp_check_unicast_src = true,
            "v3_checksum_as_v2" => out.v3_checksum_as_v2 = cx.flag(n),
            "vrrp_strict" => out.vrrp_strict = true,
            "vrrp_skip_check_adv_addr" => out.vrrp_skip_check_adv_addr = cx.flag(n),
            "vrrp_higher_prio_send_advert" => out.vrrp_higher_prio_send_advert = cx.flag(n),
            // keepalived's process tuning of its VRRP process: here, of the agent's VRRP
            // thread (the engine), applied at start (runtime/sched.rs).
            "vrrp_priority" => {
                out.process.nice = cx.int(n, 0, -20, 19).map(|v| v as i32);
            }
            "vrrp_rt_priority" => {
                // keepalived: 1..99 (sched_get_priority_max(SCHED_RR)).
                out.process.rt_priority = cx.int(n, 0, 1, 99).map(|v| v as u32);
            }
            "vrrp_no_swap" => out.process.no_swap = true,
            // keepalived: the longer of the two delays wins (runtime/engine.rs).
            "vrrp_startup_delay" => {
                if let Some(d) = cx.secs(n, 0, 4_294_967) {
                    out.vrrp_startup_delay = out.vrrp_startup_delay.max(d);
                }
            }
            "vrrp_delay_after_boot" => {
                if let Some(d) = cx.secs(n, 0, 4_294_967) {
                    out.vrrp_delay_after_boot = Some(d);
                }
            }
            "vrrp_owner_ignore_adverts" => out.vrrp_owner_ignore_adverts = cx.flag(n),
            "state_dump_file" | "json_dump_file" | "stats_dump_file" => {
                let slot = match n.name.as_str() {
                    "state_dump_file" => &mut out.dump_files.state,
                    "json_dump_file" => &mut out.dump_files.json,
                    _ => &mut out.dump_files.stats,
                };
                match n.args.as_slice() {
                    [p] if !p.is_empty() => *slot = Some(PathBuf::from(p)),
                    _ => cx.err(n, format!("{} requires a non-empty path", n.name)),
                }
            }
            "vrrp_lower_prio_no_advert" => out.vrrp_lower_prio_no_advert = Some(cx.flag(n)),
            "vrrp_mcast_group4" => {
                if let Some(s) = cx.arg(n, 0) {
                    match s.parse::<Ipv4Addr>() {
                        Ok(a) if a.is_multicast() => out.vrrp_mcast_group4 = a,
                        _ => cx.err(
                            n,
                            format!("vrrp_mcast_group4: bad IPv4 multicast address '{s}'"),
                        ),
                    }
                }
            }
            "vrrp_mcast_group6" => {
                if let Some(s) = cx.arg(n, 0) {
                    match s.parse::<std::net::Ipv6Addr>() {
                        Ok(a) if a.is_multicast() => out.vrrp_mcast_group6 = a,
                        _ => cx.err(
                            n,
                            format!("vrrp_mcast_group6: bad IPv6 multicast address '{s}'"),
                        ),
                    }
                }
            }
            _ => out.other.push(n.clone()),
        }
    }
    if min_garp {
        // keepalived: one message, no second burst.
        out.garp.master_repeat = 1;
        out.garp.master_delay = None;
    }
    if !lower_delay_set {
        out.garp.lower_prio_delay = out.garp.master_delay;
    }
    if !lower_repeat_set {
        out.garp.lower_prio_repeat = out.garp.master_repeat;
    }
}

/// A vrrp_instance before validation: raw values with their places.
pub(super) struct InstanceDraft {
    pub name: String,
    pub loc: Loc,
    pub state: InitialState,
    pub state_loc: Option<Loc>,
    pub interface: Option<String>,
    pub vrid: Option<(i64, Loc)>,
    pub priority: Option<(i64, Loc)>,
    /// advert_int in microseconds, with the text as written.
    pub advert: Option<(u64, String, Loc)>,
    pub version: Option<Version>,
    pub native_ipv6: bool,
    pub auth: Option<AuthPass>,
    pub vips: Vec<VipSpec>,
    pub vips_excluded: Vec<VipSpec>,
    pub unicast_src_ip: Option<(IpAddr, Loc)>,
    pub unicast_peers: Vec<UnicastPeer>,
    /// Each `unicast_peer` block, with its number of peers.
    pub unicast_peer_blocks: Vec<(Loc, usize)>,
    pub check_unicast_src: bool,
    pub nopreempt: Option<Loc>,
    pub preempt_delay: Duration,
    pub accept: Option<bool>,
    pub strict_mode: Option<bool>,
    pub track_interfaces: Vec<TrackRef>,
    pub track_scripts: Vec<TrackRef>,
    pub track_files: Vec<TrackRef>,
    pub track_processes: Vec<TrackRef>,
    pub garp_master_delay: Option<Option<Duration>>,
    pub garp_master_repeat: Option<u32>,
    pub garp_master_refresh: Option<Option<Duration>>,
    pub garp_master_refresh_repeat: Option<u32>,
    pub garp_lower_prio_delay: Option<Option<Duration>>,
    pub garp_lower_prio_repeat: Option<u32>,
    pub use_vmac: Option<Option<String>>,
    pub vmac_xmit_base: bool,
    pub dont_track_primary: bool,
    pub v3_checksum_as_v2: Option<bool>,
    pub lower_prio_no_advert: Option<bool>,
    pub higher_prio_send_advert: Option<bool>,
    pub skip_check_adv_addr: Option<bool>,
    /// `timer_expired_backup [PRIO]` (or its alias `thread_timer_expired`), with its place.
    pub timer_expired_backup: Option<(Priority, Loc)>,
    /// `owner_ignore_adverts [BOOL]`, with its place.
    pub owner_ignore_adverts: Option<(bool, Loc)>,
    /// `no_virtual_ipaddress`, with its place.
    pub no_vips: Option<Loc>,
    /// `auth_hmac { }`.
    pub auth_hmac: Option<super::auth_hmac::HmacDraft>,
    pub notify: Notify,
    pub other: Vec<Node>,
    /// Set when a value error already made this instance unusable.
    pub broken: bool,
}

fn notify_script(n: &Node) -> Option<NotifyScript> {
    let command = n.arg(0)?.to_owned();
    Some(NotifyScript {
        command,
        user: script_user(n.args.get(1..).unwrap_or(&[])),
        origin: origin(&n.loc),
    })
}

fn set_notify(cx: &mut Ctx<'_>, n: &Node, notify: &mut Notify) -> bool {
    let slot = match n.name.as_str() {
        "notify_master" => &mut notify.master,
        "notify_backup" => &mut notify.backup,
        "notify_fault" => &mut notify.fault,
        "notify_stop" => &mut notify.stop,
        "notify" => &mut notify.any,
        "notify_master_rx_lower_pri" => &mut notify.master_rx_lower_pri,
        _ => return false,
    };
    *slot = notify_script(n);
    if slot.is_none() {
        cx.err(n, format!("{} needs a script", n.name));
    }
    true
}

/// `NAME [weight N [reverse|noreverse|no_reverse]]` lines of a track block.
fn track_refs(cx: &mut Ctx<'_>, block: &Node, out: &mut Vec<TrackRef>) {
    for line in block.children() {
        let mut r = TrackRef {
            name: line.name.clone(),
            weight: None,
            reverse: false,
            origin: origin(&line.loc),
        };
        let mut i = 0;
        while let Some(a) = line.arg(i) {
            match a {
                "weight" => {
                    match line.arg(i + 1).map(str::parse::<i32>) {
                        Some(Ok(w)) if (-254..=254).contains(&w) => r.weight = Some(w),
                        _ => cx.err(
                            line,
                            format!(
                                "{}: weight of '{}' must be -254..254",
                                block.name, line.name
                            ),
                        ),
                    }
                    i += 1;
                }
                "reverse" => r.reverse = true,
                "noreverse" | "no_reverse" => r.reverse = false,
                other => cx.err(
                    line,
                    format!("{}: unexpected '{other}' after '{}'", block.name, line.name),
                ),
            }
            i += 1;
        }
        out.push(r);
    }
}

/// One `virtual_ipaddress` line: `ADDR[/LEN] [brd A] [dev D] [scope S] [label L] ...`.
fn vip(cx: &mut Ctx<'_>, block: &str, line: &Node) -> Option<VipSpec> {
    let (a, len) = match line.name.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (line.name.as_str(), None),
    };
    let Ok(addr) = a.parse::<IpAddr>() else {
        cx.err(line, format!("{block}: bad address '{}'", line.name));
        return None;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(v) if v <= max => v,
            _ => {
                cx.err(
                    line,
                    format!("{block}: bad prefix length '/{l}' for {addr}"),
                );
                return None;
            }
        },
    };
    let mut v = VipSpec {
        addr,
        prefix_len,
        dev: None,
        label: None,
        scope: None,
        brd: None,
        extra: Vec::new(),
        origin: origin(&line.loc),
    };
    let mut i = 0;
    let mut ok = true;
    while let Some(opt) = line.arg(i) {
        let val = line.arg(i + 1);
        let takes = matches!(
            opt,
            "dev"
                | "label"
                | "scope"
                | "brd"
                | "broadcast"
                | "peer"
                | "preferred_lft"
                | "track_group"
        );
        if takes && val.is_none() {
            cx.err(line, format!("{block}: '{opt}' needs a value"));
            return None;
        }
        let val = val.unwrap_or_default();
        match opt {
            "dev" => v.dev = Some(val.to_owned()),
            "label" => v.label = Some(val.to_owned()),
            "scope" => {
                v.scope = Some(match val {
                    "global" => Scope::Global,
                    "site" => Scope::Site,
                    "link" => Scope::Link,
                    "host" => Scope::Host,
                    "nowhere" => Scope::Nowhere,
                    _ => {
                        cx.err(line, format!("{block}: bad scope '{val}'"));
                        ok = false;
                        Scope::Global
                    }
                })
            }
            "brd" | "broadcast" => match (addr, val.parse::<Ipv4Addr>()) {
                (IpAddr::V4(_), Ok(b)) => v.brd = Some(b),
                // iproute2: `+` sets the host bits, `-` clears them.
                (IpAddr::V4(a), Err(_)) if val == "+" || val == "-" => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(prefix_len))
                        .unwrap_or(0);
                    let a = u32::from(a);
                    let b = if val == "+" { a | !mask } else { a & mask };
                    v.brd = Some(Ipv4Addr::from(b));
                }
                _ => {
                    cx.err(line, format!("{block}: bad broadcast address '{val}'"));
                    ok = false;
                }
            },
            "peer" | "preferred_lft" | "track_group" => {
                v.extra.push(opt.to_owned());
                v.extra.push(val.to_owned());
            }
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
            | "no_track" | "use_vmac" => v.extra.push(opt.to_owned()),
            other => {
                cx.err(
                    line,
                    format!("{block}: unknown option '{other}' for {}", line.name),
                );
                ok = false;
            }
        }
        i += if takes { 2 } else { 1 };
    }
    ok.then_some(v)
}

fn instance(cx: &mut Ctx<'_>, inst: &Node) -> Option<InstanceDraft> {
    let Some(name) = inst.arg(0) else {
        cx.err(inst, "vrrp_instance needs a name");
        return None;
    };
    let mut d = InstanceDraft {
        name: name.to_owned(),
        loc: inst.loc.clone(),
        state: InitialState::Backup,
        state_loc: None,
        interface: None,
        vrid: None,
        priority: None,
        advert: None,
        version: None,
        native_ipv6: false,
        auth: None,
        vips: Vec::new(),
        vips_excluded: Vec::new(),
        unicast_src_ip: None,
        unicast_peers: Vec::new(),
        unicast_peer_blocks: Vec::new(),
        check_unicast_src: false,
        nopreempt: None,
        preempt_delay: Duration::ZERO,
        accept: None,
        strict_mode: None,
        track_interfaces: Vec::new(),
        track_scripts: Vec::new(),
        track_files: Vec::new(),
        track_processes: Vec::new(),
        garp_master_delay: None,
        garp_master_repeat: None,
        garp_master_refresh: None,
        garp_master_refresh_repeat: None,
        garp_lower_prio_delay: None,
        garp_lower_prio_repeat: None,
        use_vmac: None,
        vmac_xmit_base: false,
        dont_track_primary: false,
        v3_checksum_as_v2: None,
        lower_prio_no_advert: None,
        higher_prio_send_advert: None,
        skip_check_adv_addr: None,
        timer_expired_backup: None,
        owner_ignore_adverts: None,
        no_vips: None,
        auth_hmac: None,
        notify: Notify::default(),
        other: Vec::new(),
        broken: false,
    };
    let errs_before = cx.errors.len();
    for n in inst.children() {
        if set_notify(cx, n, &mut d.notify) {
            continue;
        }
        match n.name.as_str() {
            "state" => {
                if let Some(s) = cx.arg(n, 0) {
                    d.state = match s {
                        "MASTER" => InitialState::Master,
                        "BACKUP" => InitialState::Backup,
                        _ => {
                            cx.err(n, format!("state '{s}' must be MASTER or BACKUP"));
                            InitialState::Backup
                        }
                    };
                    d.state_loc = Some(n.loc.clone());
                }
            }
            "interface" => d.interface = cx.arg(n, 0).map(str::to_owned),
            "virtual_router_id" => {
                if let Some(s) = cx.arg(n, 0) {
                    match s.parse::<i64>() {
                        Ok(v) => d.vrid = Some((v, n.loc.clone())),
                        Err(_) => {
                            cx.err(n, format!("virtual_router_id '{s}' is not a whole number"))
                        }
                    }
                }
            }
            "priority" => {
                if let Some(s) = cx.arg(n, 0) {
                    match s.parse::<i64>() {
                        Ok(v) => d.priority = Some((v, n.loc.clone())),
                        Err(_) => cx.err(n, format!("priority '{s}' is not a whole number")),
                    }
                }
            }
            "advert_int" => {
                if let Some(s) = cx.arg(n, 0) {
                    match parse_micros(s) {
                        Some(us) => d.advert = Some((us, s.to_owned(), n.loc.clone())),
                        None => cx.err(n, format!("advert_int '{s}' is not a number of seconds")),
                    }
                }
            }
            "version" => {
                d.version = match cx.int(n, 0, 2, 3) {
                    Some(2) => Some(Version::V2),
                    Some(_) => Some(Version::V3),
                    None => None,
                }
            }
            "native_ipv6" => d.native_ipv6 = true,
            "authentication" => {
                let mut kind: Option<&str> = None;
                let mut pass: Option<&str> = None;
                for a in n.children() {
                    match a.name.as_str() {
                        "auth_type" => kind = cx.arg(a, 0),
                        "auth_pass" => pass = cx.arg(a, 0),
                        _ => {}
                    }
                }
                match kind {
                    Some("PASS") => {
                        let mut p = [0u8; 8];
                        let bytes = pass.unwrap_or_default().as_bytes();
                        let take = bytes.len().min(p.len());
                        p[..take].copy_from_slice(&bytes[..take]);
                        if pass.is_none() {
                            cx.err(n, "authentication: auth_type PASS needs auth_pass");
                        }
                        d.auth = Some(AuthPass(p));
                    }
                    Some("AH") => cx.err(
                        n,
                        "authentication: auth_type AH is not supported by ha-agent",
                    ),
                    Some(other) => cx.err(
                        n,
                        format!("authentication: auth_type '{other}' must be PASS"),
                    ),
                    None => cx.err(n, "authentication needs auth_type"),
                }
            }
            "virtual_ipaddress" => {
                for l in n.children() {
                    if let Some(v) = vip(cx, "virtual_ipaddress", l) {
                        d.vips.push(v);
                    }
                }
            }
            "virtual_ipaddress_excluded" => {
                for l in n.children() {
                    if let Some(v) = vip(cx, "virtual_ipaddress_excluded", l) {
                        d.vips_excluded.push(v);
                    }
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                if let Some(s) = cx.arg(n, 0) {
                    if let Some(a) = cx.addr(n, n.name.as_str(), s) {
                        d.unicast_src_ip = Some((a, n.loc.clone()));
                    }
                }
            }
            "unicast_peer" => {
                let mut count = 0;
                for l in n.children() {
                    count += 1;
                    let Some(addr) = cx.addr(l, "unicast_peer", &l.name) else {
                        continue;
                    };
                    let mut p = UnicastPeer {
                        addr,
                        min_ttl: None,
                        max_ttl: None,
                        origin: origin(&l.loc),
                    };
                    let mut i = 0;
                    while let Some(opt) = l.arg(i) {
                        let val = l.arg(i + 1).and_then(|v| v.parse::<u8>().ok());
                        match (opt, val) {
                            ("min_ttl", Some(v)) => p.min_ttl = Some(v),
                            ("max_ttl", Some(v)) => p.max_ttl = Some(v),
                            _ => cx.err(
                                l,
                                format!("unicast_peer: bad option '{opt}' for {addr} (min_ttl|max_ttl 0-255)"),
                            ),
                        }
                        i += 2;
                    }
                    if p.min_ttl.is_some() || p.max_ttl.is_some() {
                        d.check_unicast_src = true;
                    }
                    d.unicast_peers.push(p);
                }
                d.unicast_peer_blocks.push((n.loc.clone(), count));
            }
            "check_unicast_src" => d.check_unicast_src = true,
            "nopreempt" => d.nopreempt = Some(n.loc.clone()),
            "preempt" => d.nopreempt = None,
            "preempt_delay" => {
                if let Some(v) = cx.secs(n, 0, 1000) {
                    d.preempt_delay = v;
                }
            }
            "accept" => d.accept = Some(true),
            "no_accept" => d.accept = Some(false),
            "strict_mode" => d.strict_mode = Some(cx.flag(n)),
            "track_interface" => track_refs(cx, n, &mut d.track_interfaces),
            "track_script" => track_refs(cx, n, &mut d.track_scripts),
            "track_file" => track_refs(cx, n, &mut d.track_files),
            "track_process" => track_refs(cx, n, &mut d.track_processes),
            "garp_master_delay" => {
                d.garp_master_delay = cx.secs(n, 0, 86_400).map(|v| (!v.is_zero()).then_some(v))
            }
            "garp_master_repeat" => {
                d.garp_master_repeat = cx.int(n, 0, 0, 1_000_000).map(|v| v as u32)
            }
            "garp_master_refresh" => {
                d.garp_master_refresh = cx.secs(n, 0, 86_400).map(|v| (!v.is_zero()).then_some(v))
            }
            "garp_master_refresh_repeat" => {
                d.garp_master_refresh_repeat = cx.int(n, 0, 1, 1_000_000).map(|v| v as u32)
            }
            "garp_lower_prio_delay" => {
                d.garp_lower_prio_delay = cx.secs(n, 0, 86_400).map(|v| (!v.is_zero()).then_some(v))
            }
            "garp_lower_prio_repeat" => {
                d.garp_lower_prio_repeat = cx.int(n, 0, 0, 1_000_000).map(|v| v as u32)
            }
            "use_vmac" => {
                let name = n.arg(0).map(str::to_owned);
                if let Some(nm) = &name {
                    // IFNAMSIZ is 16 with the terminating NUL.
                    if nm.len() > 15 || nm.contains('/') || nm.contains(char::is_whitespace) {
                        cx.err(n, format!("use_vmac: bad interface name '{nm}'"));
                    }
                }
                d.use_vmac = Some(name);
            }
            "vmac_xmit_base" => d.vmac_xmit_base = true,
            "dont_track_primary" => d.dont_track_primary = true,
            "v3_checksum_as_v2" => d.v3_checksum_as_v2 = Some(cx.flag(n)),
            "lower_prio_no_advert" => d.lower_prio_no_advert = Some(cx.flag(n)),
            "higher_prio_send_advert" => d.higher_prio_send_advert = Some(cx.flag(n)),
            "skip_check_adv_addr" => d.skip_check_adv_addr = Some(cx.flag(n)),
            "owner_ignore_adverts" => {
                d.owner_ignore_adverts = Some((cx.flag(n), n.loc.clone()));
            }
            "no_virtual_ipaddress" => d.no_vips = Some(n.loc.clone()),
            "auth_hmac" => d.auth_hmac = super::auth_hmac::parse(cx, n),
            "timer_expired_backup" | "thread_timer_expired" => {
                if n.name == "thread_timer_expired" {
                    cx.note(
                        n,
                        "thread_timer_expired - please replace with keyword 'timer_expired_backup'",
                    );
                }
                // keepalived: the highest priority of the other routers, default 254 (the
                // quickest takeover another router can make).
                let prio = match n.arg(0) {
                    None => Some(254),
                    Some(_) => cx.int(n, 0, 1, 254),
                };
                if let Some(p) = prio {
                    d.timer_expired_backup = Some((Priority(p as u8), n.loc.clone()));
                }
            }
            _ => d.other.push(n.clone()),
        }
    }
    d.broken = cx.errors.len() > errs_before;
    Some(d)
}

/// The effective version of a draft: own, global, IPv6 implies 3, else 2.
pub(super) fn effective_version(d: &InstanceDraft, g: &GlobalDefs) -> Version {
    if d.native_ipv6 || d.vips.first().is_some_and(|v| v.addr.is_ipv6()) {
        // keepalived: IPv6 instances always use version 3.
        return Version::V3;
    }
    d.version.or(g.vrrp_version).unwrap_or_default()
}

/// An advert's count field is 8 bits wide (RFC 3768/5798 §5.2.5).
const MAX_ADVERT_ADDRS: usize = 255;
/// keepalived's MTU when the interface's is not known.
const DEFAULT_MTU: usize = 1500;

/// How many addresses fit one advert on a link of `mtu` bytes: keepalived counts the
/// Ethernet, IP and VRRP headers (and v2's 8 authentication bytes), at most 255.
pub fn max_advert_addrs(mtu: usize, family: Family, version: Version) -> usize {
    let (ip_hdr, addr_len) = match family {
        Family::V4 => (20, 4),
        Family::V6 => (40, 16),
    };
    let auth = if version == Version::V2 && family == Family::V4 {
        8
    } else {
        0
    };
    let hdr = 14 + ip_hdr + 8 + auth;
    (mtu.saturating_sub(hdr) / addr_len).min(MAX_ADVERT_ADDRS)
}

/// The MTU of `interface` from sysfs, else keepalived's default of 1500.
fn interface_mtu(interface: &str) -> usize {
    if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
        return DEFAULT_MTU;
    }
    std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(DEFAULT_MTU)
}

/// keepalived (`vrrp_complete_instance`): VIPs beyond what fits one advert are moved to
/// `virtual_ipaddress_excluded` (still added, not advertised), with a warning.
/// Returns the advertised and the excluded VIPs.
fn move_excess_vips(
    d: &mut InstanceDraft,
    interface: &str,
    family: Family,
    version: Version,
    notes: &mut Vec<Diagnostic>,
) -> (Vec<VipSpec>, Vec<VipSpec>) {
    let mut vips = std::mem::take(&mut d.vips);
    let mut excluded = std::mem::take(&mut d.vips_excluded);
    let mtu = interface_mtu(interface);
    let max = max_advert_addrs(mtu, family, version);
    if vips.len() <= max {
        return (vips, excluded);
    }
    let excess = vips.split_off(max);
    let at = excess.first().map(|v| Loc {
        file: v.origin.file.clone(),
        line: v.origin.line,
    });
    notes.push(at.unwrap_or_else(|| d.loc.clone()).diag(format!(
        "warning: ({}) {} VIPs exceed the space in one advert (max {max} addresses at MTU {mtu} on {interface}): the last {} moved to virtual_ipaddress_excluded (added, not advertised), as keepalived does",
        d.name,
        max.saturating_add(excess.len()),
        excess.len()
    )));
    excluded.extend(excess);
    (vips, excluded)
}

fn finish_instance(
    mut d: InstanceDraft,
    g: &GlobalDefs,
    notes: &mut Vec<Diagnostic>,
) -> Option<VrrpInstance> {
    // keepalived: "expired_timer_backup requires nopreempt - resetting".
    let timer_expired_backup = match &d.timer_expired_backup {
        Some((p, _)) if d.nopreempt.is_some() => Some(*p),
        Some((_, loc)) => {
            notes.push(loc.diag(format!(
                "({}) timer_expired_backup requires nopreempt - ignored",
                d.name
            )));
            None
        }
        None => None,
    };
    let version = effective_version(&d, g);
    let vrid = d
        .vrid
        .as_ref()
        .and_then(|(v, _)| u8::try_from(*v).ok())
        .and_then(Vrid::new)?;
    let priority = match &d.priority {
        Some((p, _)) => Priority(u8::try_from(*p).ok()?),
        None => Priority::DEFAULT,
    };
    let advert_int = match &d.advert {
        Some((us, _, _)) => Centiseconds(u16::try_from(us / 10_000).ok()?),
        None => Centiseconds::DEFAULT,
    };
    let owner_ignore_adverts = owner_ignore_adverts(
        &d,
        priority,
        d.strict_mode.unwrap_or(g.vrrp_strict),
        g,
        notes,
    );
    if d.vips.is_empty() && d.no_vips.is_none() {
        // keepalived warns; v3 and strict mode made it an error already (validate.rs).
        notes.push(d.loc.diag(format!(
            "({}) no virtual_ipaddress; at least one is sensible (say no_virtual_ipaddress if none is intended)",
            d.name
        )));
    }
    let interface = d.interface.take()?;
    let family = if d.native_ipv6 {
        Family::V6
    } else {
        d.vips
            .first()
            .map(|v| Family::of(&v.addr))
            .unwrap_or_default()
    };
    let strict = d.strict_mode.unwrap_or(g.vrrp_strict);
    let (vips, vips_excluded) = move_excess_vips(&mut d, &interface, family, version, notes);
    let garp = Garp {
        master_delay: d.garp_master_delay.unwrap_or(g.garp.master_delay),
        master_repeat: d.garp_master_repeat.unwrap_or(g.garp.master_repeat),
        master_refresh: d.garp_master_refresh.unwrap_or(g.garp.master_refresh),
        master_refresh_repeat: d
            .garp_master_refresh_repeat
            .unwrap_or(g.garp.master_refresh_repeat),
        lower_prio_delay: d.garp_lower_prio_delay.unwrap_or(g.garp.lower_prio_delay),
        lower_prio_repeat: d.garp_lower_prio_repeat.unwrap_or(g.garp.lower_prio_repeat),
        interval: g.garp.interval,
        na_interval: g.garp.na_interval,
    };
    if d.broken {
        return None;
    }
    Some(VrrpInstance {
        name: d.name,
        origin: origin(&d.loc),
        state: d.state,
        interface,
        vrid,
        priority,
        advert_int,
        version,
        version_configured: d.version,
        family,
        auth: d.auth,
        auth_hmac: d
            .auth_hmac
            .map(|h| h.finish(Duration::from_micros(u64::from(advert_int.0) * 10_000))),
        owner_ignore_adverts,
        no_virtual_ipaddress: d.no_vips.is_some() && !strict,
        vips,
        vips_excluded,
        unicast_src_ip: d.unicast_src_ip.map(|(a, _)| a),
        unicast_peers: d.unicast_peers,
        check_unicast_src: d.check_unicast_src || g.vrrp_check_unicast_src,
        nopreempt: d.nopreempt.is_some(),
        preempt_delay: d.preempt_delay,
        // keepalived: accept by default; strict mode accepts only as address owner.
        accept: d.accept.unwrap_or(!strict || priority == Priority::OWNER),
        strict_mode: strict,
        track_interfaces: d.track_interfaces,
        track_scripts: d.track_scripts,
        track_files: d.track_files,
        track_processes: d.track_processes,
        garp,
        use_vmac: d.use_vmac,
        vmac_xmit_base: d.vmac_xmit_base,
        dont_track_primary: d.dont_track_primary,
        v3_checksum_as_v2: d.v3_checksum_as_v2.unwrap_or(g.v3_checksum_as_v2),
        lower_prio_no_advert: d
            .lower_prio_no_advert
            .or(g.vrrp_lower_prio_no_advert)
            .unwrap_or(strict),
        higher_prio_send_advert: d
            .higher_prio_send_advert
            .unwrap_or(g.vrrp_higher_prio_send_advert),
        skip_check_adv_addr: d.skip_check_adv_addr.unwrap_or(g.vrrp_skip_check_adv_addr),
        timer_expired_backup,
        notify: d.notify,
        other: d.other,
    })
}

/// keepalived's resolution of `owner_ignore_adverts`: only an address owner can ignore
/// adverts; unset, it follows strict mode, then `vrrp_owner_ignore_adverts`.
fn owner_ignore_adverts(
    d: &InstanceDraft,
    priority: Priority,
    strict: bool,
    g: &GlobalDefs,
    notes: &mut Vec<Diagnostic>,
) -> bool {
    let owner = priority == Priority::OWNER;
    match &d.owner_ignore_adverts {
        Some((true, loc)) if !owner => {
            notes.push(loc.diag(format!(
                "({}) owner_ignore_adverts needs priority 255 - ignored",
                d.name
            )));
            false
        }
        Some((false, loc)) if owner && strict => {
            notes.push(loc.diag(format!(
                "({}) strict_mode with priority 255 requires owner_ignore_adverts - set",
                d.name
            )));
            true
        }
        Some((v, _)) => *v,
        None => owner && (strict || g.vrrp_owner_ignore_adverts),
    }
}

fn vrrp_script(cx: &mut Ctx<'_>, n: &Node) -> VrrpScript {
    let mut s = VrrpScript {
        name: n.arg(0).unwrap_or_default().to_owned(),
        origin: origin(&n.loc),
        script: None,
        interval: Duration::from_secs(1),
        timeout: Duration::ZERO,
        weight: 0,
        weight_reverse: false,
        rise: 1,
        fall: 1,
        user: None,
        init_fail: false,
        other: Vec::new(),
    };
    if n.arg(0).is_none() {
        cx.err(n, "vrrp_script needs a name");
    }
    let mut timeout = None;
    for c in n.children() {
        match c.name.as_str() {
            "script" => s.script = cx.arg(c, 0).map(str::to_owned),
            "interval" => s.interval = cx.secs(c, 0, 86_400).unwrap_or(s.interval),
            "timeout" => timeout = cx.secs(c, 0, 86_400),
            "weight" => {
                s.weight = cx.int(c, 0, -253, 253).map(|v| v as i32).unwrap_or(0);
                s.weight_reverse = c.arg(1) == Some("reverse");
            }
            "rise" => s.rise = cx.int(c, 0, 1, 1_000_000).map(|v| v as u32).unwrap_or(1),
            "fall" => s.fall = cx.int(c, 0, 1, 1_000_000).map(|v| v as u32).unwrap_or(1),
            "user" => s.user = script_user(&c.args),
            "init_fail" => s.init_fail = true,
            _ => s.other.push(c.clone()),
        }
    }
    s.timeout = timeout.unwrap_or(s.interval);
    if s.script.is_none() {
        cx.err(n, format!("vrrp_script {}: missing script", s.name));
    }
    s
}

fn track_file(cx: &mut Ctx<'_>, n: &Node) -> TrackFile {
    let mut t = TrackFile {
        name: n.arg(0).unwrap_or_default().to_owned(),
        origin: origin(&n.loc),
        file: None,
        weight: 1,
        reverse: false,
        other: Vec::new(),
    };
    if n.arg(0).is_none() {
        cx.err(n, format!("{} needs a name", n.name));
    }
    for c in n.children() {
        match c.name.as_str() {
            "file" => t.file = cx.arg(c, 0).map(PathBuf::from),
            "weight" => {
                t.weight = cx
                    .int(c, 0, -2_147_483_647, 2_147_483_647)
                    .map(|v| v as i32)
                    .unwrap_or(1);
                t.reverse = c.arg(1) == Some("reverse");
            }
            _ => t.other.push(c.clone()),
        }
    }
    if t.file.is_none() {
        cx.err(n, format!("{} {}: missing file", n.name, t.name));
    }
    t
}

fn sync_group(cx: &mut Ctx<'_>, n: &Node) -> SyncGroup {
    let mut g = SyncGroup {
        name: n.arg(0).unwrap_or_default().to_owned(),
        origin: origin(&n.loc),
        instances: Vec::new(),
        notify: Notify::default(),
        other: Vec::new(),
    };
    if n.arg(0).is_none() {
        cx.err(n, "vrrp_sync_group needs a name");
    }
    for c in n.children() {
        if set_notify(cx, c, &mut g.notify) {
            continue;
        }
        match c.name.as_str() {
            "group" => {
                for l in c.children() {
                    g.instances.push(l.name.clone());
                    g.instances.extend(l.args.iter().cloned());
                }
            }
            _ => g.other.push(c.clone()),
        }
    }
    g
}

fn port(cx: &mut Ctx<'_>, n: &Node, s: Option<&str>) -> Option<u16> {
    let s = s?;
    match s.parse::<u16>() {
        Ok(p) => Some(p),
        Err(_) => {
            cx.err(n, format!("{}: bad port '{s}'", n.name));
            None
        }
    }
}

fn virtual_server(cx: &mut Ctx<'_>, n: &Node) -> Option<VirtualServer> {
    let target = match (n.arg(0), n.arg(1)) {
        (Some("fwmark"), Some(m)) => match m.parse::<u32>() {
            Ok(m) => VsTarget::Fwmark(m),
            Err(_) => {
                cx.err(n, format!("virtual_server: bad fwmark '{m}'"));
                return None;
            }
        },
        (Some("group"), Some(g)) => VsTarget::Group(g.to_owned()),
        (Some(a), p) => {
            let addr = cx.addr(n, "virtual_server", a)?;
            VsTarget::Addr {
                addr,
                port: port(cx, n, p),
            }
        }
        (None, _) => {
            cx.err(
                n,
                "virtual_server needs an address, 'fwmark N' or 'group NAME'",
            );
            return None;
        }
    };
    let mut vs = VirtualServer {
        target,
        origin: origin(&n.loc),
        protocol: None,
        scheduler: None,
        method: None,
        delay_loop: None,
        persistence_timeout: None,
        sorry_server: None,
        real_servers: Vec::new(),
        other: Vec::new(),
    };
    for c in n.children() {
        match c.name.as_str() {
            "protocol" => vs.protocol = cx.arg(c, 0).map(str::to_owned),
            "lb_algo" | "lvs_sched" => vs.scheduler = cx.arg(c, 0).map(str::to_owned),
            "lb_kind" | "lvs_method" => vs.method = cx.arg(c, 0).map(str::to_owned),
            "delay_loop" => vs.delay_loop = cx.secs(c, 0, 86_400),
            "persistence_timeout" => vs.persistence_timeout = cx.secs(c, 0, 86_400 * 365),
            "sorry_server" => {
                if let Some(a) = cx.arg(c, 0) {
                    if let Some(addr) = cx.addr(c, "sorry_server", a) {
                        vs.sorry_server = Some((addr, port(cx, c, c.arg(1))));
                    }
                }
            }
            "real_server" => {
                if let Some(rs) = real_server(cx, c) {
                    vs.real_servers.push(rs);
                }
            }
            _ => vs.other.push(c.clone()),
        }
    }
    Some(vs)
}

fn real_server(cx: &mut Ctx<'_>, n: &Node) -> Option<RealServer> {
    let Some(a) = n.arg(0) else {
        cx.err(n, "real_server needs an address");
        return None;
    };
    let addr = cx.addr(n, "real_server", a)?;
    let mut rs = RealServer {
        addr,
        port: port(cx, n, n.arg(1)),
        origin: origin(&n.loc),
        weight: 1,
        checkers: Vec::new(),
        other: Vec::new(),
    };
    for c in n.children() {
        if let Some(kind) = CheckerKind::from_keyword(&c.name) {
            rs.checkers.push(checker(cx, kind, c));
            continue;
        }
        match c.name.as_str() {
            "weight" => rs.weight = cx.int(c, 0, 0, 65_535).map(|v| v as i32).unwrap_or(1),
            _ => rs.other.push(c.clone()),
        }
    }
    Some(rs)
}

fn checker(cx: &mut Ctx<'_>, kind: CheckerKind, n: &Node) -> Checker {
    let mut ck = Checker {
        kind,
        origin: origin(&n.loc),
        connect_ip: None,
        connect_port: None,
        connect_timeout: None,
        urls: Vec::new(),
        misc_path: None,
        other: Vec::new(),
    };
    for c in n.children() {
        match c.name.as_str() {
            "connect_ip" => {
                if let Some(s) = cx.arg(c, 0) {
                    ck.connect_ip = cx.addr(c, "connect_ip", s);
                }
            }
            "connect_port" => {
                let a = cx.arg(c, 0);
                ck.connect_port = port(cx, c, a);
            }
            "connect_timeout" => ck.connect_timeout = cx.secs(c, 0, 86_400),
            "misc_path" => ck.misc_path = cx.arg(c, 0).map(str::to_owned),
            "url" => {
                let mut u = UrlCheck::default();
                for l in c.children() {
                    match l.name.as_str() {
                        "path" => u.path = cx.arg(l, 0).map(str::to_owned),
                        "digest" => u.digest = cx.arg(l, 0).map(str::to_owned),
                        "status_code" => u.status_code.extend(l.args.iter().cloned()),
                        _ => u.other.push(l.clone()),
                    }
                }
                ck.urls.push(u);
            }
            _ => ck.other.push(c.clone()),
        }
    }
    ck
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{parse_with, Options};
    use super::*;

    #[test]
    fn advert_capacity_is_keepalived_s() {
        // v2 IPv4: 1500 - 14 - 20 - 8 - 8 = 1450 / 4 = 362, capped at the 8-bit count.
        assert_eq!(max_advert_addrs(1500, Family::V4, Version::V2), 255);
        // IPv6: (1500 - 14 - 40 - 8) / 16 = 89.
        assert_eq!(max_advert_addrs(1500, Family::V6, Version::V3), 89);
        assert_eq!(max_advert_addrs(9000, Family::V6, Version::V3), 255);
        assert_eq!(max_advert_addrs(0, Family::V4, Version::V3), 0);
    }
    use std::path::Path;

    fn load(text: &str) -> Config {
        let opts = Options {
            config_id: None,
            follow_includes: false,
        };
        match parse_with(Path::new("k.conf"), text, &opts) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:#?}"),
        }
    }

    fn one(text: &str) -> VrrpInstance {
        let mut c = load(text);
        assert_eq!(c.vrrp_instances.len(), 1);
        c.vrrp_instances.remove(0)
    }

    #[test]
    fn owner_ignore_adverts_resolves_as_keepalived() {
        let inst = |global: &str, body: &str| {
            let text = format!("global_defs {{\n{global}\n}}\nvrrp_instance A {{\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {{\n 192.0.2.1\n }}\n{body}\n}}\n");
            let l = parse_with(Path::new("k.conf"), &text, &Options::default())
                .unwrap_or_else(|e| panic!("{e:#?}"));
            let notes: Vec<String> = l.notes.iter().map(ToString::to_string).collect();
            (l.config.vrrp_instances[0].owner_ignore_adverts, notes)
        };
        // Default off, even for the owner; strict mode or the global turn it on for owners.
        assert!(!inst("", "priority 255").0);
        assert!(inst("", "priority 255\nowner_ignore_adverts").0);
        assert!(inst("vrrp_owner_ignore_adverts", "priority 255").0);
        assert!(inst("", "priority 255\nstrict_mode").0);
        assert!(!inst("vrrp_owner_ignore_adverts", "priority 254").0);
        // Below 255 it is ignored, with a note on its line.
        let (on, notes) = inst("", "priority 200\nowner_ignore_adverts");
        assert!(!on);
        assert!(
            notes.contains(
                &"k.conf:11: (A) owner_ignore_adverts needs priority 255 - ignored".to_owned()
            ),
            "{notes:?}"
        );
        // Strict mode at 255 forces it, saying so.
        let (on, notes) = inst("", "priority 255\nstrict_mode\nowner_ignore_adverts off");
        assert!(on);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("requires owner_ignore_adverts - set")),
            "{notes:?}"
        );
    }

    #[test]
    fn startup_delays_and_dump_files() {
        let c = load("global_defs {\n vrrp_startup_delay 5.5\n vrrp_delay_after_boot 30\n state_dump_file /var/tmp/ka/\n json_dump_file ka.json\n stats_dump_file /srv/s.json\n}\n");
        let g = &c.global;
        assert_eq!(g.vrrp_startup_delay, Duration::from_millis(5500));
        assert_eq!(g.vrrp_delay_after_boot, Some(Duration::from_secs(30)));
        let dir = Path::new("/run/ha-agent");
        let r = |p: &Option<PathBuf>, name| DumpFiles::resolve(p.as_deref(), dir, name);
        assert_eq!(
            r(&g.dump_files.state, "keepalived.data"),
            Path::new("/var/tmp/ka/keepalived.data")
        );
        assert_eq!(
            r(&g.dump_files.json, "keepalived.json"),
            Path::new("/run/ha-agent/ka.json")
        );
        assert_eq!(
            r(&g.dump_files.stats, "stats.json"),
            Path::new("/srv/s.json")
        );
        assert_eq!(
            r(&None, "stats.json"),
            Path::new("/run/ha-agent/stats.json")
        );
        let e = parse_with(
            Path::new("k.conf"),
            "global_defs {\n state_dump_file\n}\n",
            &Options::default(),
        )
        .err()
        .unwrap_or_default();
        assert_eq!(
            e[0].to_string(),
            "k.conf:2: state_dump_file requires a non-empty path"
        );
    }

    #[test]
    fn instance_defaults_are_keepalived_s() {
        let i = one("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n");
        assert_eq!(i.name, "VI_1");
        assert_eq!(i.origin.line, 1);
        assert_eq!(i.state, InitialState::Backup);
        assert_eq!(i.vrid.get(), 51);
        assert_eq!(i.priority, Priority::DEFAULT);
        assert_eq!(i.advert_int, Centiseconds(100));
        assert_eq!(i.version, Version::V2);
        assert_eq!(i.version_configured, None);
        assert_eq!(i.family, Family::V4);
        assert!(i.accept);
        assert!(!i.nopreempt);
        assert_eq!(i.preempt_delay, Duration::ZERO);
        assert_eq!(i.garp, Garp::default());
        assert_eq!(i.vips[0].prefix_len, 32);
        assert_eq!(i.vips[0].origin.line, 5);
        assert!(i.unicast_peers.is_empty());
        assert_eq!(i.use_vmac, None);
    }

    #[test]
    fn instance_values_are_typed() {
        let c = load(
            r#"global_defs {
    vrrp_garp_master_delay 2
    vrrp_garp_master_refresh 60
    vrrp_garp_lower_prio_repeat 2
    v3_checksum_as_v2
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 7
    priority 255
    advert_int 3
    authentication {
        auth_type PASS
        auth_pass "0123456789"
    }
    virtual_ipaddress {
        192.0.2.10/24 brd 192.0.2.255 dev eth1 scope link label eth1:v no_track
        192.0.2.11/25 brd +
        192.0.2.12/0 brd +
    }
    unicast_src_ip 192.0.2.1
    unicast_peer {
        192.0.2.2 max_ttl 255
    }
    garp_master_repeat 2
    use_vmac vrrp7
    vmac_xmit_base
    no_accept
    preempt_delay 1.25
    track_interface {
        eth1 weight -20 reverse
    }
}
"#,
        );
        let i = &c.vrrp_instances[0];
        assert_eq!(i.state, InitialState::Master);
        assert_eq!(i.priority, Priority::OWNER);
        assert_eq!(i.advert_int, Centiseconds(300));
        assert_eq!(i.auth, Some(AuthPass(*b"01234567")));
        let v = &i.vips[0];
        assert_eq!(v.addr, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(v.prefix_len, 24);
        assert_eq!(v.brd, Some(Ipv4Addr::new(192, 0, 2, 255)));
        assert_eq!(v.dev.as_deref(), Some("eth1"));
        assert_eq!(v.scope, Some(Scope::Link));
        assert_eq!(v.label.as_deref(), Some("eth1:v"));
        assert_eq!(v.extra, vec!["no_track"]);
        assert_eq!(i.vips[1].brd, Some(Ipv4Addr::new(192, 0, 2, 127)));
        assert_eq!(i.vips[2].brd, Some(Ipv4Addr::BROADCAST));
        assert_eq!(i.unicast_src_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(i.unicast_peers[0].max_ttl, Some(255));
        assert!(
            i.check_unicast_src,
            "a TTL bound turns on check_unicast_src"
        );
        assert_eq!(i.garp.master_delay, Some(Duration::from_secs(2)));
        assert_eq!(i.garp.master_repeat, 2);
        assert_eq!(i.garp.master_refresh, Some(Duration::from_secs(60)));
        assert_eq!(i.garp.lower_prio_delay, Some(Duration::from_secs(2)));
        assert_eq!(i.garp.lower_prio_repeat, 2);
        assert_eq!(i.use_vmac, Some(Some("vrrp7".to_string())));
        assert!(i.vmac_xmit_base);
        assert!(!i.accept);
        assert!(i.v3_checksum_as_v2);
        assert_eq!(i.preempt_delay, Duration::from_millis(1250));
        assert_eq!(i.track_interfaces[0].weight, Some(-20));
        assert!(i.track_interfaces[0].reverse);
    }

    #[test]
    fn ipv6_implies_v3_and_fractional_interval() {
        let i = one("vrrp_instance V6 {\n interface eth0\n virtual_router_id 9\n advert_int 0.01\n virtual_ipaddress {\n 2001:db8::9/64\n }\n}\n");
        assert_eq!(i.version, Version::V3);
        assert_eq!(i.family, Family::V6);
        assert_eq!(i.advert_int, Centiseconds(1));
    }

    #[test]
    fn global_version_and_strict_mode() {
        let i = one("global_defs {\n vrrp_version 3\n vrrp_strict\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 9\n advert_int 0.5\n virtual_ipaddress {\n 192.0.2.9\n }\n}\n");
        assert_eq!(i.version, Version::V3);
        assert_eq!(i.advert_int, Centiseconds(50));
        assert!(i.strict_mode);
        assert!(!i.accept, "strict mode: no accept unless address owner");
        assert!(i.lower_prio_no_advert);
    }

    #[test]
    fn min_garp_and_use_vmac_default_name() {
        let i = one("global_defs {\n vrrp_min_garp\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 9\n use_vmac\n}\n");
        assert_eq!(i.garp.master_repeat, 1);
        assert_eq!(i.garp.master_delay, None);
        assert_eq!(i.use_vmac, Some(None));
    }

    #[test]
    fn lvs_model() {
        let c = load(
            "virtual_server 192.0.2.1 80 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 192.0.2.2 8080 {\n weight 2\n HTTP_GET {\n url {\n path /h\n status_code 200-299\n }\n connect_port 8080\n }\n }\n}\nvirtual_server fwmark 5 {\n}\n",
        );
        let vs = &c.virtual_servers[0];
        assert_eq!(
            vs.target,
            VsTarget::Addr {
                addr: "192.0.2.1".parse().unwrap(),
                port: Some(80)
            }
        );
        assert_eq!(vs.scheduler.as_deref(), Some("rr"));
        assert_eq!(vs.method.as_deref(), Some("DR"));
        let rs = &vs.real_servers[0];
        assert_eq!(rs.port, Some(8080));
        assert_eq!(rs.weight, 2);
        let ck = &rs.checkers[0];
        assert_eq!(ck.kind, CheckerKind::HttpGet);
        assert_eq!(ck.connect_port, Some(8080));
        assert_eq!(ck.urls[0].path.as_deref(), Some("/h"));
        assert_eq!(ck.urls[0].status_code, vec!["200-299"]);
        assert_eq!(c.virtual_servers[1].target, VsTarget::Fwmark(5));
    }

    #[test]
    fn scripts_and_track_files() {
        let c = load("vrrp_script s {\n script \"/bin/true x\"\n interval 2\n weight -10\n}\ntrack_file f {\n file /run/f\n}\nvrrp_sync_group G {\n group {\n A\n B\n }\n notify_master /bin/true\n}\n");
        let s = &c.vrrp_scripts[0];
        assert_eq!(s.script.as_deref(), Some("/bin/true x"));
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(
            s.timeout,
            Duration::from_secs(2),
            "timeout defaults to interval"
        );
        assert_eq!(s.weight, -10);
        assert_eq!(c.track_files[0].weight, 1);
        assert_eq!(c.sync_groups[0].instances, vec!["A", "B"]);
        assert!(c.sync_groups[0].notify.master.is_some());
    }

    #[test]
    fn micros_are_exact_and_bounded() {
        assert_eq!(parse_micros("1"), Some(1_000_000));
        assert_eq!(parse_micros("0.01"), Some(10_000));
        assert_eq!(parse_micros("40.95"), Some(40_950_000));
        assert_eq!(parse_micros(".5"), Some(500_000));
        assert_eq!(parse_micros("0.000001"), Some(1));
        assert_eq!(parse_micros("0.0000001"), None);
        assert_eq!(parse_micros("-1"), None);
        assert_eq!(parse_micros("1e3"), None);
        assert_eq!(parse_micros("."), None);
        assert_eq!(parse_micros(""), None);
        assert_eq!(parse_micros("999999999999"), Some(999_999_999_999_000_000));
        assert_eq!(parse_micros("9999999999999"), None);
    }
}
