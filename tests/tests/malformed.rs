//! Invalid packets never change state (promise 2): a generator in the client namespace
//! sends each malformed kind at a lone master, with priority 254 (above the master's
//! 100), so an advert that slipped through would make the master step down. After each
//! kind: still MASTER, and the matching drop counter rose. A valid advert at the end is
//! the control: it does make the master step down, so the test can fail.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use ha_tests::proc::wait_until;
use ha_tests::scenario::{render, Classic, Impl, Inst, Node, CLIENT};

fn inject(c: &Classic, kind: &str) -> Result<()> {
    let bin = ha_tests::bin("vrrp-inject")?;
    let ns = &c.lan.ns(CLIENT).name;
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .args([
            "--vrid", "51", "--prio", "254", "--auth", "s3cret", "--kind", kind,
        ])
        .args(["--count", "3"])
        .output()?;
    if !out.status.success() {
        bail!(
            "vrrp-inject {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The drop counter `reason` of the instance, or of the socket for `socket_level`.
fn drops(stats: &serde_json::Value, reason: &str, socket_level: bool) -> u64 {
    let v = if socket_level {
        &stats["sockets"][0]["drops"][reason]
    } else {
        &stats["instances"][0]["counters"]["drops"][reason]
    };
    v.as_u64().unwrap_or(0)
}

#[test]
fn each_malformed_kind_is_dropped_and_counted_without_state_change() -> Result<()> {
    let mut c = Classic::new("malformed")?;
    let mut i = Inst::new("VI_1", 51, "MASTER", 100);
    i.auth_pass = Some("s3cret".into());
    c.start(0, Impl::HaAgent, &render("lb1", &[i]))?;
    c.wait_state(0, "VI_1", "MASTER", Duration::from_secs(10))?;
    let Node::Agent(agent) = c.node(0) else {
        bail!("lb1 is not ha-agent");
    };

    // (kind sent, drop counter expected, counted by the socket rather than the instance)
    let cases = [
        ("ttl254", "ttl", false),
        ("badsum", "checksum", false),
        ("version", "version", false),
        ("type", "type", false),
        ("truncated", "length", false),
        ("count", "length", false),
        ("auth", "auth", false),
        ("interval0", "interval", false),
        ("vrid", "vrid", true),
    ];
    for (kind, reason, socket_level) in cases {
        let before = drops(&agent.stats()?, reason, socket_level);
        inject(&c, kind)?;
        let mut after = before;
        wait_until(
            &format!("{reason} counter to rise after {kind}"),
            Duration::from_secs(5),
            || {
                after = agent
                    .stats()
                    .map(|s| drops(&s, reason, socket_level))
                    .unwrap_or(before);
                after > before
            },
        )?;
        let s = agent.stats()?;
        assert_eq!(
            s["instances"][0]["state"], "MASTER",
            "state changed after {kind}"
        );
        assert_eq!(
            c.node(0).entered("VI_1", "BACKUP"),
            1,
            "stepped down after {kind}"
        );
    }

    // Control: a well-formed higher-priority advert is accepted and wins.
    inject(&c, "valid")?;
    wait_until(
        "master to step down for a valid advert",
        Duration::from_secs(5),
        || c.node(0).entered("VI_1", "BACKUP") == 2,
    )?;
    Ok(())
}
