//! keepalived's own shipped sample (`/etc/keepalived/keepalived.conf.sample` of Debian's
//! keepalived 2.2.7: `vrrp_strict`, `auth_type PASS`, `state MASTER` at priority 100)
//! with only its interface and addresses changed, on both nodes: keepalived on one,
//! ha-agent on the other, each way round. Strict mode drops the authentication and
//! makes both start as BACKUP; at equal priority the first to time out stays master
//! (a backup does not preempt an equal priority, RFC 3768 §6.4.2), so one is master and
//! the other backup, the VIPs are on the master only, and on the wire both send `authtype none` (before issue 19, ha-agent sent
//! `auth_type 1` and each side dropped the other's adverts: both held the VIPs).
//!
//! Both run VRRP only (`-P`): the sample's virtual servers need IPVS, which this kernel
//! does not have.

use std::fs;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::scenario::{Classic, Impl, CLIENT};

const LONG: Duration = Duration::from_secs(20);
const SAMPLE: &str = "/etc/keepalived/keepalived.conf.sample";
const VIPS: [&str; 3] = ["192.0.2.16", "192.0.2.17", "192.0.2.18"];

/// The shipped sample with documentation addresses: the VIPs on this LAN (192.0.2.0/24),
/// everything else in 203.0.113.0/24 (same last byte). The LAN's interface is eth0 as in
/// the sample.
fn sample() -> Result<String> {
    let text = fs::read_to_string(SAMPLE).with_context(|| format!("read {SAMPLE}"))?;
    assert!(text.contains("vrrp_strict") && text.contains("auth_type PASS"));
    let mut out = text.replace("192.168.201.", "203.0.113.");
    for (old, new) in ["192.168.200.16", "192.168.200.17", "192.168.200.18"]
        .iter()
        .zip(VIPS)
    {
        out = out.replace(old, new);
    }
    out = out.replace("192.168.200.", "203.0.113.");
    assert!(!out.contains("192.168."), "address left: {out}");
    Ok(out)
}

/// tcpdump of VRRP on the client, verbose (prints `authtype ...`).
struct Capture {
    child: Child,
    out: std::path::PathBuf,
}

impl Capture {
    fn start(c: &Classic) -> Result<Capture> {
        let out = c.dir.join("vrrp.txt");
        let file = fs::File::create(&out)?;
        let child = c
            .lan
            .ns(CLIENT)
            .command("tcpdump")
            .args(["-n", "-l", "-v", "-i", "eth0", "ip proto 112"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("start tcpdump")?;
        Ok(Capture { child, out })
    }

    /// Stop and return `(source, authtype)` for every advert seen.
    fn finish(mut self) -> Result<Vec<(String, String)>> {
        // SIGINT so tcpdump flushes its buffer.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        Ok(adverts(&fs::read_to_string(&self.out)?))
    }
}

/// `(source, authtype)` of each advert in `tcpdump -v` text, whose VRRP lines read
/// `192.0.2.2 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 100, authtype none, ...`.
fn adverts(text: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = text.split("VRRPv").collect();
    parts
        .windows(2)
        .map(|w| {
            let src = w[0].split_whitespace().rev().nth(2).unwrap_or("?");
            let auth = w[1]
                .split("authtype ")
                .nth(1)
                .and_then(|r| r.split([',', ' ', '\n']).next())
                .unwrap_or("?");
            (src.to_owned(), auth.to_owned())
        })
        .collect()
}

#[test]
fn adverts_are_read_from_tcpdump_text() {
    let t = "12:00:00.1 IP (tos 0xc0, ttl 255, proto VRRP (112), length 40)\n    192.0.2.2 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 100, authtype none, intvl 1s, length 20\n12:00:00.2 IP (tos 0xc0)\n    192.0.2.1 > 224.0.0.18: VRRPv2, Advertisement, vrid 51, prio 100, authtype simple, intvl 1s, length 20, authdata 1111\n";
    assert_eq!(
        adverts(t),
        vec![
            ("192.0.2.2".to_owned(), "none".to_owned()),
            ("192.0.2.1".to_owned(), "simple".to_owned())
        ]
    );
}

fn sample_pair(test: &str, lb1: Impl, lb2: Impl) -> Result<()> {
    let conf = sample()?;
    let mut c = Classic::new(test)?;
    let cap = Capture::start(&c)?;
    for (idx, which) in [(0, lb1), (1, lb2)] {
        match which {
            Impl::HaAgent => c.start_agent_with(idx, &conf, &["-P"])?,
            Impl::Keepalived => c.start(idx, which, &conf)?,
        }
    }
    // Whichever is master first stays master (a backup never preempts an equal
    // priority); the address tie-break only settles two simultaneous masters.
    ha_tests::proc::wait_until("one master, one backup", LONG, || {
        let (a, b) = (c.node(0).state("VI_1"), c.node(1).state("VI_1"));
        matches!(
            (a.as_deref(), b.as_deref()),
            (Some("MASTER"), Some("BACKUP")) | (Some("BACKUP"), Some("MASTER"))
        )
    })
    .with_context(|| logs(&c))?;
    // Settled: no flapping, each VIP on the master alone.
    std::thread::sleep(Duration::from_secs(4));
    let master = usize::from(c.node(1).state("VI_1").as_deref() == Some("MASTER"));
    assert_eq!(c.node(master).state("VI_1").as_deref(), Some("MASTER"));
    assert_eq!(c.node(1 - master).state("VI_1").as_deref(), Some("BACKUP"));
    assert_eq!(c.node(master).entered("VI_1", "MASTER"), 1, "{}", logs(&c));
    for vip in VIPS {
        assert_eq!(
            c.holder(vip)?,
            Some(master),
            "{vip} not on the master alone"
        );
    }
    let master_addr = format!("192.0.2.{}", master + 1);
    let seen = cap.finish()?;
    assert!(!seen.is_empty(), "no advert captured");
    // Every advert of either node says authtype none; the backup stayed silent once
    // the master was heard, so at least the master's adverts are there.
    for (src, auth) in &seen {
        assert_eq!(auth, "none", "advert from {src} with authtype {auth}");
    }
    assert!(
        seen.iter().any(|(s, _)| *s == master_addr),
        "no advert from the master {master_addr}: {seen:?}"
    );
    // Both applied strict mode to the sample (keepalived logs its own messages; ha-agent
    // the same text as a warning).
    for idx in 0..2 {
        let log = c.node(idx).daemon().log_text();
        assert!(
            log.contains("Strict mode does not support authentication. Ignoring."),
            "lb{} did not drop authentication:\n{log}",
            idx + 1
        );
        assert!(
            log.contains("State MASTER must match being address owner"),
            "lb{} did not reset state:\n{log}",
            idx + 1
        );
    }
    Ok(())
}

/// Both nodes' logs, for a failure message.
fn logs(c: &Classic) -> String {
    (0..2)
        .map(|i| format!("log of lb{}:\n{}", i + 1, c.node(i).daemon().log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_sample_keepalived_lb1_agent_lb2() -> Result<()> {
    sample_pair("strict-ka", Impl::Keepalived, Impl::HaAgent)
}

#[test]
fn shipped_sample_agent_lb1_keepalived_lb2() -> Result<()> {
    sample_pair("strict-ak", Impl::HaAgent, Impl::Keepalived)
}
