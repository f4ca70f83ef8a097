//! Data-driven state machine tests: every `agent/tests/fsm/*.txt` case is a script of
//! timed inputs for one instance; the transcript of actions and states is compared with
//! the case's `.expected` file, and `expect` lines are checked on the way.
//!
//! Regenerate transcripts with `FSM_REGENERATE=1 cargo test -p ha-agent --test fsm_table`
//! and review the diff; `expect` lines are hand-written and are never regenerated.
//!
//! Case format (one directive a line, `#` starts a comment):
//! ```text
//! config version=2 vrid=51 prio=100 interval=1s primary=192.0.2.1 vips=192.0.2.100
//!        [preempt=no] [preempt_delay=5s] [start=master] [auth=secret]
//!        [peers=192.0.2.2,192.0.2.3] [garp_delay=5s] [garp_repeat=5] [garp_refresh=60s]
//!        [garp_refresh_repeat=1] [lower_prio_delay=2s] [lower_prio_repeat=3]
//! at 0s start
//! at 0.5s recv src=192.0.2.2 prio=100 [ttl=255] [version=2] [vrid=51] [interval=1s]
//!        [vips=192.0.2.100,...] [auth=none|pass:secret|other:2]
//! at 1s dropped checksum          # a codec drop reason, by its as_str() name
//! at 1s link down | link up | set-priority 90 | shutdown | tick
//! run 10s                         # tick at every deadline up to and including 10s
//! expect state=MASTER prio=100 next=4.609375s|none drop.ttl=1 drops=1 rx=2 tx=3 ...
//! ```
//! Times are `1.25s`, `250ms` or `40us`. Adverts received default to the config's
//! version, VRID, interval, VIPs, auth, and TTL 255.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_agent::units::{Centiseconds, Mono, Priority, Version, Vrid};
use ha_agent::vrrp::fsm::{Action, Input};
use ha_agent::vrrp::instance::{GarpConfig, Instance, InstanceConfig, StartState};
use ha_agent::vrrp::packet::{Advert, Auth, DropReason, Received, RxMeta};

fn parse_time(s: &str) -> Duration {
    let (num, scale_ns) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000_000u128)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000_000)
    } else {
        panic!("time without unit: {s}")
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u128 = int.parse().unwrap_or_else(|_| panic!("bad time {s}"));
    let mut nanos = int * scale_ns;
    let mut scale = scale_ns;
    for c in frac.chars() {
        scale /= 10;
        assert!(scale > 0 || c == '0', "time too precise: {s}");
        nanos += u128::from(c.to_digit(10).unwrap_or_else(|| panic!("bad time {s}"))) * scale;
    }
    Duration::from_nanos(u64::try_from(nanos).unwrap())
}

fn fmt_time(d: Duration) -> String {
    let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}s")
}

fn fmt_next(n: Option<Mono>) -> String {
    n.map_or_else(|| "none".to_string(), |m| fmt_time(m.0))
}

fn parse_interval(s: &str) -> Centiseconds {
    let d = parse_time(s);
    assert_eq!(
        d.as_nanos() % 10_000_000,
        0,
        "interval not whole centiseconds: {s}"
    );
    Centiseconds(u16::try_from(d.as_millis() / 10).unwrap())
}

fn parse_version(s: &str) -> Version {
    match s {
        "2" => Version::V2,
        "3" => Version::V3,
        _ => panic!("bad version {s}"),
    }
}

fn parse_addrs(s: &str) -> Vec<IpAddr> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',').map(|a| a.parse().unwrap()).collect()
}

fn password(s: &str) -> [u8; 8] {
    let mut pw = [0u8; 8];
    assert!(s.len() <= 8, "password longer than 8: {s}");
    pw[..s.len()].copy_from_slice(s.as_bytes());
    pw
}

fn drop_reason(s: &str) -> DropReason {
    DropReason::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .unwrap_or_else(|| panic!("unknown drop reason {s}"))
}

fn kv(words: &[&str]) -> Vec<(String, String)> {
    words
        .iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("expected key=value: {w}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn parse_config(words: &[&str]) -> (InstanceConfig, IpAddr) {
    let mut cfg = InstanceConfig {
        name: "VI_1".into(),
        vrid: Vrid::new(51).unwrap(),
        version: Version::V2,
        priority: Priority::DEFAULT,
        interval: Centiseconds::DEFAULT,
        preempt: true,
        preempt_delay: Duration::ZERO,
        start: StartState::Backup,
        vips: vec!["192.0.2.100".parse().unwrap()],
        auth: None,
        unicast_peers: Vec::new(),
        garp: GarpConfig::default(),
        timer_expired_backup: None,
        owner_ignore_adverts: false,
    };
    let mut primary: IpAddr = "192.0.2.1".parse().unwrap();
    for (k, v) in kv(words) {
        match k.as_str() {
            "version" => cfg.version = parse_version(&v),
            "vrid" => cfg.vrid = Vrid::new(v.parse().unwrap()).unwrap(),
            "prio" => cfg.priority = Priority(v.parse().unwrap()),
            "interval" => cfg.interval = parse_interval(&v),
            "primary" => primary = v.parse().unwrap(),
            "vips" => cfg.vips = parse_addrs(&v),
            "preempt" => cfg.preempt = v == "yes",
            "preempt_delay" => cfg.preempt_delay = parse_time(&v),
            "start" => {
                cfg.start = match v.as_str() {
                    "master" => StartState::Master,
                    "backup" => StartState::Backup,
                    _ => panic!("bad start {v}"),
                }
            }
            "auth" => cfg.auth = Some(password(&v)),
            "peers" => cfg.unicast_peers = parse_addrs(&v),
            "garp_delay" => cfg.garp.delay = parse_time(&v),
            "garp_repeat" => cfg.garp.repeat = v.parse().unwrap(),
            "garp_refresh" => cfg.garp.refresh = Some(parse_time(&v)),
            "garp_refresh_repeat" => cfg.garp.refresh_repeat = v.parse().unwrap(),
            "lower_prio_delay" => cfg.garp.lower_prio_delay = Some(parse_time(&v)),
            "lower_prio_repeat" => cfg.garp.lower_prio_repeat = v.parse().unwrap(),
            "timer_expired_backup" => cfg.timer_expired_backup = Some(Priority(v.parse().unwrap())),
            "owner_ignore_adverts" => cfg.owner_ignore_adverts = v == "yes",
            _ => panic!("unknown config key {k}"),
        }
    }
    (cfg, primary)
}

fn parse_recv(cfg: &InstanceConfig, primary: IpAddr, words: &[&str]) -> Received {
    let mut src = None;
    let mut ttl = 255;
    let mut advert = Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority: Priority::DEFAULT,
        interval: cfg.interval,
        addrs: cfg.vips.clone(),
        auth: cfg.auth.map_or(Auth::None, Auth::Pass),
    };
    if cfg.version == Version::V3 {
        advert.auth = Auth::None;
    }
    for (k, v) in kv(words) {
        match k.as_str() {
            "src" => src = Some(v.parse().unwrap()),
            "prio" => advert.priority = Priority(v.parse().unwrap()),
            "ttl" => ttl = v.parse().unwrap(),
            "version" => advert.version = parse_version(&v),
            "vrid" => advert.vrid = Vrid::new(v.parse().unwrap()).unwrap(),
            "interval" => advert.interval = parse_interval(&v),
            "vips" => advert.addrs = parse_addrs(&v),
            "auth" => {
                advert.auth = match v.split_once(':') {
                    None if v == "none" => Auth::None,
                    Some(("pass", pw)) => Auth::Pass(password(pw)),
                    Some(("other", t)) => Auth::Other(t.parse().unwrap()),
                    _ => panic!("bad auth {v}"),
                }
            }
            _ => panic!("unknown recv key {k}"),
        }
    }
    let src: IpAddr = src.expect("recv needs src=");
    let dst: IpAddr = match (cfg.unicast_peers.is_empty(), src) {
        (true, IpAddr::V4(_)) => "224.0.0.18".parse().unwrap(),
        (true, IpAddr::V6(_)) => "ff02::12".parse().unwrap(),
        (false, _) => primary,
    };
    Received {
        meta: RxMeta {
            src,
            dst,
            ttl,
            ifindex: 2,
        },
        advert,
    }
}

fn fmt_action(a: &Action) -> String {
    match a {
        Action::SendAdvert(ad) => {
            let addrs: Vec<String> = ad.addrs.iter().map(ToString::to_string).collect();
            let auth = match ad.auth {
                Auth::None => "none".to_string(),
                Auth::Pass(pw) => format!(
                    "pass:{}",
                    String::from_utf8_lossy(&pw).trim_end_matches('\0')
                ),
                Auth::Other(t) => format!("other:{t}"),
            };
            format!(
                "send v{} vrid={} prio={} interval={} vips={} auth={auth}",
                ad.version.wire(),
                ad.vrid,
                ad.priority,
                ad.interval,
                addrs.join(",")
            )
        }
        Action::AddVips => "add-vips".into(),
        Action::RemoveVips => "remove-vips".into(),
        Action::Announce { count } => format!("announce {count}"),
        Action::Transition { from, to, reason } => format!("transition {from} -> {to} ({reason})"),
        Action::LogDrop { reason, src } => format!("log-drop {} from {src}", reason.as_str()),
        Action::AddressListMismatch { src } => format!("address-list-mismatch from {src}"),
        Action::Stalled { late, deferred } => {
            format!("stalled late={}ms deferred={deferred}", late.as_millis())
        }
        Action::PeerMaster { src, priority } => format!("peer-master {src} prio={priority}"),
    }
}

fn check_expect(inst: &Instance, words: &[&str], line_no: usize, case: &Path) {
    let c = inst.counters();
    for (k, v) in kv(words) {
        let got = match k.as_str() {
            "state" => inst.state().to_string(),
            "prio" => inst.effective_priority().to_string(),
            "next" => fmt_next(inst.next_deadline()),
            "mdi" => fmt_time(inst.master_down_interval()),
            "adver" => inst.master_adver_interval().to_string(),
            "rx" => c.rx.to_string(),
            "tx" => c.tx.to_string(),
            "became_master" => c.became_master.to_string(),
            "prio0_sent" => c.prio0_sent.to_string(),
            "prio0_received" => c.prio0_received.to_string(),
            "ignored" => c.ignored.to_string(),
            "address_list_mismatch" => c.address_list_mismatch.to_string(),
            "stalls" => c.stalls.to_string(),
            "stall_deferrals" => c.stall_deferrals.to_string(),
            "peer_master_adverts" => c.peer_master_adverts.to_string(),
            "drops" => c.total_dropped().to_string(),
            other => match other.strip_prefix("drop.") {
                Some(r) => c.dropped(drop_reason(r)).to_string(),
                None => panic!("{}:{line_no}: unknown expect key {k}", case.display()),
            },
        };
        assert_eq!(got, v, "{}:{line_no}: expect {k}", case.display());
    }
}

/// Run one case; returns the transcript.
fn run_case(case: &Path) -> String {
    let text = std::fs::read_to_string(case).unwrap();
    let mut inst: Option<(Instance, InstanceConfig, IpAddr)> = None;
    let mut out = String::new();
    let mut now = Mono::default();
    let record = |out: &mut String, inst: &Instance, at: Mono, what: &str, actions: &[Action]| {
        writeln!(out, "at {} {what}", fmt_time(at.0)).unwrap();
        for a in actions {
            writeln!(out, "  {}", fmt_action(a)).unwrap();
        }
        writeln!(
            out,
            "  = {} next={}",
            inst.state(),
            fmt_next(inst.next_deadline())
        )
        .unwrap();
    };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "config" => {
                let (cfg, primary) = parse_config(&words[1..]);
                writeln!(out, "{line}").unwrap();
                inst = Some((Instance::new(cfg.clone(), primary), cfg, primary));
            }
            "expect" => {
                let (i, _, _) = inst.as_ref().expect("config first");
                check_expect(i, &words[1..], line_no, case);
            }
            "run" => {
                let until = Mono(parse_time(words[1]));
                let (i, _, _) = inst.as_mut().expect("config first");
                while let Some(at) = i.next_deadline().filter(|d| *d <= until) {
                    assert!(
                        at >= now,
                        "{}:{line_no}: deadline in the past",
                        case.display()
                    );
                    now = at;
                    let acts = i.handle(now, Input::Tick);
                    record(&mut out, i, now, "tick", &acts);
                }
                now = until;
            }
            "at" => {
                let at = Mono(parse_time(words[1]));
                assert!(
                    at >= now,
                    "{}:{line_no}: time goes backwards",
                    case.display()
                );
                now = at;
                let (i, cfg, primary) = inst.as_mut().expect("config first");
                let rest = &words[2..];
                let input = match rest[0] {
                    "start" => Input::Start,
                    "tick" => Input::Tick,
                    "shutdown" => Input::Shutdown,
                    "link" => Input::Link {
                        up: rest[1] == "up",
                    },
                    "set-priority" => Input::SetPriority(Priority(rest[1].parse().unwrap())),
                    "dropped" => Input::Dropped(drop_reason(rest[1])),
                    "recv" => Input::Packet(parse_recv(cfg, *primary, &rest[1..])),
                    other => panic!("{}:{line_no}: unknown input {other}", case.display()),
                };
                let acts = i.handle(now, input);
                record(&mut out, i, now, &rest.join(" "), &acts);
            }
            other => panic!("{}:{line_no}: unknown directive {other}", case.display()),
        }
    }
    out
}

#[test]
fn fsm_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fsm");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "cases missing in {}", dir.display());
    let regenerate = std::env::var_os("FSM_REGENERATE").is_some();
    let mut failed = Vec::new();
    for case in &cases {
        let got = run_case(case);
        let expected_path = case.with_extension("expected");
        if regenerate {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            let first = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
            eprintln!(
                "{}: transcript differs at line {}:\n  got:  {}\n  want: {}",
                case.display(),
                first + 1,
                got.lines().nth(first).unwrap_or("<end>"),
                want.lines().nth(first).unwrap_or("<end>")
            );
            failed.push(case.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ (FSM_REGENERATE=1 to rewrite): {failed:?}"
    );
}

#[test]
fn time_format_round_trips() {
    assert_eq!(parse_time("3.609375s"), Duration::from_micros(3_609_375));
    assert_eq!(parse_time("250ms"), Duration::from_millis(250));
    assert_eq!(parse_time("40us"), Duration::from_micros(40));
    assert_eq!(fmt_time(Duration::from_micros(3_609_375)), "3.609375s");
    assert_eq!(fmt_time(Duration::ZERO), "0s");
    assert_eq!(parse_interval("10ms"), Centiseconds(1));
}
