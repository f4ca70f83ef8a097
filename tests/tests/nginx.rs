//! nginx HA: a real nginx (Debian's `nginx` package) on lb1 and lb2 behind the VIP, a
//! `chk_nginx` vrrp_script asking the local nginx over 127.0.0.1 (both namespaces share
//! one PID namespace, so `pgrep nginx` would see the other node's). Stop nginx on the
//! master: the VIP moves and the client's HTTP request to the VIP is answered by lb2;
//! start it again: lb1 takes the VIP back.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_tests::conf::{self, global, instance, vrrp_script};
use ha_tests::proc::wait_until;
use ha_tests::scenario::{Classic, Impl, CLIENT};
use ha_tests::web::{start_nginx, stop_nginx, CURL, NGINX};

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(15);

/// The page the client gets from the VIP (None if the request fails).
fn client_page(c: &Classic) -> Option<String> {
    c.lan
        .ns(CLIENT)
        .sh(&format!("{CURL} -sf --max-time 2 http://{VIP}/"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn conf_for(node: &str, state: &str, prio: u8) -> String {
    format!(
        "{}{}{}",
        global(node, "script_user root\nenable_script_security"),
        vrrp_script(
            "chk_nginx",
            &format!("{CURL} -sf -o /dev/null --max-time 1 http://127.0.0.1/"),
            "interval 0.2\ntimeout 2\nfall 2\nrise 2\nweight -20"
        ),
        instance(
            "VI_1",
            51,
            state,
            prio,
            "192.0.2.10/24",
            "track_script {\n    chk_nginx\n}"
        )
    )
}

/// Wait until `idx` is master, the other backup, and the client's page comes from it.
fn serves(c: &Classic, idx: usize) -> Result<()> {
    c.wait_state(idx, "VI_1", "MASTER", LONG)?;
    c.wait_state(1 - idx, "VI_1", "BACKUP", LONG)?;
    let want = format!("served by lb{}", idx + 1);
    let mut last = None;
    wait_until(&format!("client gets '{want}' from the VIP"), LONG, || {
        last = client_page(c);
        last.as_deref() == Some(want.as_str())
    })
    .with_context(|| format!("last answer {last:?}"))?;
    assert_eq!(c.holder(VIP)?, Some(idx));
    Ok(())
}

#[test]
fn nginx_stopped_on_the_master_moves_the_vip() -> Result<()> {
    for bin in [NGINX, CURL] {
        if !Path::new(bin).exists() {
            bail!("{bin} is missing: install Debian's nginx and curl (tests/run.sh does)");
        }
    }
    let mut c = Classic::new("nginx")?;
    let mut web1 = start_nginx(c.lan.ns(0), &c.dir.join("nginx1"), "lb1")?;
    let _web2 = start_nginx(c.lan.ns(1), &c.dir.join("nginx2"), "lb2")?;
    c.start(0, Impl::HaAgent, &conf_for("lb1", "MASTER", 150))?;
    c.start(1, Impl::HaAgent, &conf_for("lb2", "BACKUP", 140))?;
    serves(&c, 0)?;

    // nginx dies on lb1: chk_nginx fails twice, 150 - 20 < 140, lb2 serves the VIP.
    stop_nginx(&mut web1)?;
    serves(&c, 1)?;
    assert_eq!(conf::effective_priority(c.node(0), "VI_1")?, 130);

    // nginx back on lb1: the check rises, lb1 preempts and serves again.
    let _web1 = start_nginx(c.lan.ns(0), &c.dir.join("nginx1"), "lb1")?;
    serves(&c, 0)?;
    assert_eq!(conf::effective_priority(c.node(0), "VI_1")?, 150);
    Ok(())
}
