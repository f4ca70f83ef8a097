//! Virtual servers through the fleet: ha-agent (lb1) runs VI_1 and an LVS-DR virtual
//! server over two real servers; ha-manager (mTLS) and hactl (operator certificate) see
//! and change it.
//!
//! ```text
//!  lb1 192.0.2.1  VI_1 MASTER, VIP 192.0.2.10; virtual_server 192.0.2.10 80 (DR, rr)
//!  lb2 192.0.2.2  idle             client 192.0.2.100    manager 192.0.2.50
//!  rs1 192.0.2.11, rs2 192.0.2.12: VIP on lo (deploy/lvs-dr-realserver.sh), httpd :80
//! ```
//! Asserted, with real traffic from the client:
//! - `hactl status --json` shows the virtual server, both real servers alive, their
//!   TCP_CHECK checkers up; the table view names it;
//! - `hactl rs drain lb1 VS rs2`: the reply shows rs2 drained (weight 0), new requests
//!   all go to rs1; `hactl rs reset`: both serve again;
//! - `hactl rs del` of rs1 (a configured server): only rs2 serves; reset: both;
//! - an unknown real server is refused (exit 1, says why), a bad spelling is a usage
//!   error (exit 2);
//! - rs2's server stops: its checker fails; history has CHECKER and REAL_SERVER events
//!   for the virtual server, status shows rs2 dead; it comes back: alive again.

use std::time::Duration;

use anyhow::Result;
use ha_tests::conf::{global, instance};
use ha_tests::fleet::{connected, node, Fleet};
use ha_tests::proc::wait_until;
use ha_tests::scenario::CLIENT;
use ha_tests::web::{ask, dr_helper, httpd};
use serde_json::Value;

const VIP: &str = "192.0.2.10";
const VS: &str = "192.0.2.10:80/TCP";
const LONG: Duration = Duration::from_secs(25);

fn conf() -> String {
    let rs = |addr: &str| {
        format!(
            "    real_server {addr} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n"
        )
    };
    format!(
        "{}{}virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n{}{}}}\n",
        global("lb1", "lvs_backend nftables\n"),
        instance("VI_1", 51, "MASTER", 150, "192.0.2.10/24", ""),
        rs("192.0.2.11"),
        rs("192.0.2.12")
    )
}

/// The distinct answers of `n` requests to the VIP ("" for a failure).
fn answers(f: &Fleet, n: usize) -> Vec<String> {
    let mut v = ask(f.classic.lan.ns(CLIENT), VIP, n).unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

fn vs_of(status: &Value) -> Option<&Value> {
    node(status, "lb1")?["virtual_servers"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == VS)
}

fn rs_of<'a>(vs: &'a Value, addr: &str) -> Option<&'a Value> {
    vs["real_servers"]
        .as_array()?
        .iter()
        .find(|r| r["addr"] == addr)
}

fn alive(status: &Value, addr: &str) -> Option<bool> {
    rs_of(vs_of(status)?, addr)?["alive"].as_bool()
}

#[test]
fn real_servers_in_status_changed_by_hactl_and_in_history() -> Result<()> {
    let mut f = Fleet::new("lbfleet", true)?;
    let rs1 = f.classic.lan.add_host("hr1", "192.0.2.11/24", None)?;
    let rs2 = f.classic.lan.add_host("hr2", "192.0.2.12/24", None)?;
    let dir = f.classic.dir.clone();
    let state = dir.join("dr-state");
    for i in [rs1, rs2] {
        f.classic.lan.ns(i).sh(&format!(
            "STATE_DIR={} {} up {VIP}",
            state.display(),
            dr_helper().display()
        ))?;
    }
    let _h1 = httpd(f.classic.lan.ns(rs1), &dir, "rs1", 80)?;
    let mut h2 = Some(httpd(f.classic.lan.ns(rs2), &dir, "rs2", 80)?);
    f.start_manager()?;
    f.start_agent(0, &conf(), None)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;

    // Status: the virtual server with both real servers alive and checked.
    let st = f.wait_status("lb1 reports its virtual server", LONG, |s| {
        connected(s, "lb1")
            && alive(s, "192.0.2.11") == Some(true)
            && alive(s, "192.0.2.12") == Some(true)
    })?;
    let vs = vs_of(&st).cloned().unwrap_or_default();
    assert_eq!(vs["backend"], "nftables", "{vs:#}");
    assert_eq!(vs["method"], "DR", "{vs:#}");
    let r1 = rs_of(&vs, "192.0.2.11").cloned().unwrap_or_default();
    assert_eq!(r1["checkers"][0]["kind"], "TCP_CHECK", "{r1:#}");
    assert_eq!(r1["checkers"][0]["up"], true, "{r1:#}");
    let table = f.hactl(&["status"])?.ok()?.stdout;
    assert!(table.contains(VS), "{table}");
    wait_until("both real servers serve", LONG, || {
        answers(&f, 8) == ["rs1", "rs2"]
    })?;

    // Drain rs2: the reply shows it; new connections all go to rs1.
    let out = f
        .hactl(&["rs", "drain", "lb1", VS, "192.0.2.12:80", "--json"])?
        .ok()?
        .json()?;
    let r2 = rs_of(&out["virtual_server"], "192.0.2.12")
        .cloned()
        .unwrap_or_default();
    assert_eq!(r2["drained"], true, "{out:#}");
    assert_eq!(r2["weight_effective"], 0, "{out:#}");
    wait_until("drained rs2 gets no new requests", LONG, || {
        answers(&f, 8) == ["rs1"]
    })?;
    // Reset: both again.
    f.hactl(&["rs", "reset", "lb1", VS, "192.0.2.12:80"])?
        .ok()?;
    wait_until("rs2 back after reset", LONG, || {
        answers(&f, 8) == ["rs1", "rs2"]
    })?;
    // Delete rs1 (a configured server): only rs2; reset brings it back.
    f.hactl(&["rs", "del", "lb1", VS, "192.0.2.11:80"])?.ok()?;
    wait_until("only rs2 after rs del", LONG, || answers(&f, 8) == ["rs2"])?;
    f.hactl(&["rs", "reset", "lb1", VS, "192.0.2.11:80"])?
        .ok()?;
    wait_until("rs1 back", LONG, || answers(&f, 8) == ["rs1", "rs2"])?;

    // Refusals say why; usage errors are exit 2.
    let out = f.hactl(&["rs", "drain", "lb1", VS, "192.0.2.99:80"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        (out.stdout.clone() + &out.stderr).contains("not configured"),
        "{out:?}"
    );
    let out = f.hactl(&["rs", "drain", "lb1", VS, "192.0.2.12"])?;
    assert_eq!(out.code, 2, "{out:?}");

    // rs2's server stops: checker and real-server events in history, status says dead.
    drop(h2.take());
    f.wait_status("rs2 dead in status", LONG, |s| {
        alive(s, "192.0.2.12") == Some(false)
    })?;
    let ev = f.wait_history(
        "rs2 down in history",
        &["--kind", "real-server"],
        LONG,
        |e| {
            e.iter()
                .any(|e| e["instance"] == VS && e["to_state"] == "DOWN")
        },
    )?;
    assert!(
        ev.iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains("192.0.2.12:80")),
        "{ev:?}"
    );
    let checks = f.history(&["--kind", "checker"])?;
    assert!(
        checks
            .iter()
            .any(|e| e["reason"] == "TCP_CHECK" && e["to_state"] == "DOWN"),
        "{checks:?}"
    );
    assert_eq!(answers(&f, 6), ["rs1"], "a dead server gets no traffic");
    h2 = Some(httpd(f.classic.lan.ns(rs2), &dir, "rs2", 80)?);
    f.wait_status("rs2 alive again", LONG, |s| {
        alive(s, "192.0.2.12") == Some(true)
    })?;
    drop(h2);
    Ok(())
}

#[test]
fn a_data_plane_that_cannot_program_shows_nothing_in_table() -> Result<()> {
    // The agent cannot run nft (not on its PATH, as on a machine without nftables): the
    // virtual server is configured and its checkers run, but nothing is programmed, so
    // status must not claim the real servers are in the table.
    let mut f = Fleet::new("lbnonft", true)?;
    let rs1 = f.classic.lan.add_host("hr1", "192.0.2.11/24", None)?;
    let dir = f.classic.dir.clone();
    let _h1 = httpd(f.classic.lan.ns(rs1), &dir, "rs1", 80)?;
    f.agent_env = vec!["PATH=/nonexistent".into()];
    f.start_manager()?;
    f.start_agent(0, &conf(), None)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    let st = f.wait_status(
        "lb1 reports rs1 alive and the data plane error",
        LONG,
        |s| {
            alive(s, "192.0.2.11") == Some(true)
                && vs_of(s).is_some_and(|v| v["dataplane_error"].is_string())
        },
    )?;
    let vs = vs_of(&st).cloned().unwrap_or_default();
    let r1 = rs_of(&vs, "192.0.2.11").cloned().unwrap_or_default();
    assert_eq!(r1["in_table"], false, "{vs:#}");
    let table = f.hactl(&["status"])?.ok()?.stdout;
    let line = table
        .lines()
        .find(|l| l.contains("192.0.2.11:80"))
        .unwrap_or_default();
    // REAL SERVER, STATE, WEIGHT, DRAINED, IN TABLE, CHECKERS.
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.get(4), Some(&"no"), "IN TABLE of rs1: {line}\n{table}");
    Ok(())
}
