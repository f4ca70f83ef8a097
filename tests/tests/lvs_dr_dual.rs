//! The classic LVS-DR dual-master, with ha-agent as both directors: each director runs
//! two VRRP instances with crossing priorities (VI_1 vrid 51 holds 192.0.2.10 on lb1,
//! VI_2 vrid 52 holds 192.0.2.20 on lb2) and two DR virtual servers (one per VIP) over
//! the same two real servers, which hold both VIPs on lo (deploy/lvs-dr-realserver.sh).
//!
//! ```text
//!  lb1 192.0.2.1   ---+  VI_1 MASTER (150), VI_2 BACKUP (100); ha-agent: VRRP + DR table
//!  lb2 192.0.2.2   ---+  VI_1 BACKUP (100), VI_2 MASTER (150); same config otherwise
//!  client 192.0.2.100 +  curl loops against both VIPs, counting failures
//!  rs1 192.0.2.11  ---+  both VIPs on lo, arp_ignore=1 / arp_announce=2, httpd :80
//!  rs2 192.0.2.12  ---+  same                                    (one bridge)
//! ```
//! The virtual servers have `ha_suspend`: a director programs a VIP's service only while
//! it holds the VIP (asserted from the nft table before, during and after the cut).
//! Asserted: both VIPs serve HTTP from both real servers through their masters; lb1's
//! link is cut: lb2 takes VI_1 and HTTP to both VIPs works again (answered by the real
//! servers directly, not by a director); link back: lb1 takes VI_1 back and both work.
//! The client's failed requests per VIP during the cut are printed (not asserted: no
//! timing asserts). The directors' logs show the data plane and checker lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::conf::{global, instance};
use ha_tests::proc::wait_until;
use ha_tests::scenario::{Classic, Impl, CLIENT};
use ha_tests::web::{ask, dr_helper, httpd};
use ha_tests::{Daemon, Netns};

const VIP1: &str = "192.0.2.10";
const VIP2: &str = "192.0.2.20";
const LONG: Duration = Duration::from_secs(20);

fn virtual_server(vip: &str) -> String {
    let rs = |addr: &str| {
        format!(
            "    real_server {addr} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n"
        )
    };
    format!(
        "virtual_server {vip} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    ha_suspend\n{}{}}}\n",
        rs("192.0.2.11"),
        rs("192.0.2.12")
    )
}

/// One director: both instances (crossing priorities) and both virtual servers.
fn director(node: &str, p1: u8, p2: u8) -> String {
    let state = |p: u8| if p > 120 { "MASTER" } else { "BACKUP" };
    format!(
        "{}{}{}{}{}",
        global(node, "lvs_backend nftables\n"),
        instance("VI_1", 51, state(p1), p1, "192.0.2.10/24", ""),
        instance("VI_2", 52, state(p2), p2, "192.0.2.20/24", ""),
        virtual_server(VIP1),
        virtual_server(VIP2)
    )
}

/// Every answer from a real server, and both real servers used.
fn served_by_both(answers: &[String]) -> bool {
    answers.iter().all(|a| a == "rs1" || a == "rs2")
        && answers.iter().any(|a| a == "rs1")
        && answers.iter().any(|a| a == "rs2")
}

/// A bounded curl loop in the client (at most 600 requests, until `stop` exists),
/// writing one line per request, "ok" or "fail", to `out`.
fn start_loop(client: &Netns, dir: &Path, vip: &str, stop: &Path) -> Result<(Daemon, PathBuf)> {
    let out = dir.join(format!("loop-{vip}.txt"));
    let script = format!(
        "for i in $(seq 600); do [ -e {stop} ] && break; \
         if curl -s -o /dev/null --max-time 1 http://{vip}/; then echo ok; else echo fail; fi; \
         sleep 0.05; done > {out}",
        stop = stop.display(),
        out = out.display()
    );
    let d = Daemon::start(
        client,
        dir,
        &format!("loop-{vip}"),
        Path::new("/bin/sh"),
        &["-c", &script],
    )?;
    Ok((d, out))
}

/// The VIPs whose DR service director `idx` has programmed (sorted).
fn dr_services(c: &Classic, idx: usize) -> Vec<&'static str> {
    let table = c
        .lan
        .ns(idx)
        .sh("nft list table netdev ha_lb_dr 2>/dev/null || true")
        .unwrap_or_default();
    [VIP1, VIP2]
        .into_iter()
        .filter(|v| table.contains(&format!("ip daddr {v} tcp dport 80")))
        .collect()
}

fn count(path: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let ok = text.lines().filter(|l| *l == "ok").count();
    let fail = text.lines().filter(|l| *l == "fail").count();
    (ok, fail)
}

#[test]
fn lvs_dr_dual_master_survives_a_director_link_cut() -> Result<()> {
    let mut c = Classic::new("lvs-dr-dual")?;
    let rs1 = c.lan.add_host("hr1", "192.0.2.11/24", None)?;
    let rs2 = c.lan.add_host("hr2", "192.0.2.12/24", None)?;
    let dir = c.dir.clone();
    let state = dir.join("dr-state");
    for i in [rs1, rs2] {
        c.lan.ns(i).sh(&format!(
            "STATE_DIR={} {} up {VIP1} {VIP2}",
            state.display(),
            dr_helper().display()
        ))?;
    }
    let _h1 = httpd(c.lan.ns(rs1), &dir, "rs1", 80)?;
    let _h2 = httpd(c.lan.ns(rs2), &dir, "rs2", 80)?;

    c.start(0, Impl::HaAgent, &director("lb1", 150, 100))?;
    c.start(1, Impl::HaAgent, &director("lb2", 100, 150))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_2", "MASTER", LONG)?;
    c.wait_state(0, "VI_2", "BACKUP", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    // ha_suspend: each director programs only the service of the VIP it holds.
    for (idx, mine, other) in [(0, VIP1, VIP2), (1, VIP2, VIP1)] {
        wait_until(
            &format!("lb{} programs only {mine}'s DR service", idx + 1),
            LONG,
            || dr_services(&c, idx) == [mine],
        )
        .with_context(|| {
            format!(
                "{}\n{:?} (not {other})",
                c.node(idx).daemon().log_text(),
                dr_services(&c, idx)
            )
        })?;
    }
    for vip in [VIP1, VIP2] {
        wait_until(
            &format!("{vip} serves from both real servers"),
            LONG,
            || ask(c.lan.ns(CLIENT), vip, 8).is_ok_and(|a| served_by_both(&a)),
        )
        .with_context(|| {
            format!(
                "lb1:\n{}\nlb2:\n{}",
                c.node(0).daemon().log_text(),
                c.node(1).daemon().log_text()
            )
        })?;
    }

    // Background clients on both VIPs, then lb1's link goes.
    let stop = dir.join("stop-loops");
    let (loop1, out1) = start_loop(c.lan.ns(CLIENT), &dir, VIP1, &stop)?;
    let (loop2, out2) = start_loop(c.lan.ns(CLIENT), &dir, VIP2, &stop)?;
    std::thread::sleep(Duration::from_millis(500));
    c.lan.set_link(0, false)?;
    wait_until("lb2 holds both VIPs", LONG, || {
        matches!(c.holder(VIP1), Ok(Some(1))) && matches!(c.holder(VIP2), Ok(Some(1)))
    })?;
    wait_until("lb2 programs both DR services", LONG, || {
        dr_services(&c, 1) == [VIP1, VIP2]
    })?;
    for vip in [VIP1, VIP2] {
        wait_until(&format!("{vip} serves through lb2"), LONG, || {
            ask(c.lan.ns(CLIENT), vip, 8).is_ok_and(|a| served_by_both(&a))
        })?;
    }
    // Requests in flight at the cut end within their 1 s limit.
    std::thread::sleep(Duration::from_millis(1200));
    let (ok1, fail1) = count(&out1);
    let (ok2, fail2) = count(&out2);
    eprintln!(
        "during the cut: {VIP1} {fail1} failed / {} requests, {VIP2} {fail2} failed / {} requests",
        ok1 + fail1,
        ok2 + fail2
    );

    // Link back: lb1 preempts VI_1 back; both VIPs serve again.
    c.lan.set_link(0, true)?;
    wait_until("VIPs split again", LONG, || {
        matches!(c.holder(VIP1), Ok(Some(0))) && matches!(c.holder(VIP2), Ok(Some(1)))
    })?;
    wait_until("lb2 suspends VIP1's service again", LONG, || {
        dr_services(&c, 1) == [VIP2]
    })?;
    for vip in [VIP1, VIP2] {
        wait_until(
            &format!("{vip} serves after the link is back"),
            LONG,
            || ask(c.lan.ns(CLIENT), vip, 8).is_ok_and(|a| served_by_both(&a)),
        )?;
    }
    std::fs::write(&stop, "")?;
    let mut loops = [loop1, loop2];
    for l in &mut loops {
        l.wait_exit(Duration::from_secs(10))?;
    }
    let (ok1b, fail1b) = count(&out1);
    let (ok2b, fail2b) = count(&out2);
    eprintln!(
        "whole run: {VIP1} {fail1b} failed / {} requests, {VIP2} {fail2b} failed / {} requests",
        ok1b + fail1b,
        ok2b + fail2b
    );
    assert!(ok1b > 0 && ok2b > 0, "the client loops ran");

    // The directors said what they did, keepalived-style.
    let log = c.node(1).daemon().log_text();
    assert!(log.contains("load-balancer data plane"), "{log}");
    assert!(log.contains("(VI_1) Entering MASTER STATE"), "{log}");
    for i in [rs1, rs2] {
        c.lan.ns(i).sh(&format!(
            "STATE_DIR={} {} undo {VIP1} {VIP2}",
            state.display(),
            dr_helper().display()
        ))?;
    }
    Ok(())
}
