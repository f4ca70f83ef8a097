//! Every example of deploy/examples runs here, as written, with real ha-agents in
//! namespaces, and shows the behaviour its comment promises (the scenario tests with
//! configs rendered in code are failover.rs, tracking.rs, dual_master.rs, lvs_nat.rs,
//! lvs_dr_dual.rs, nginx.rs and syslog.rs; these run the files an operator copies).
//!
//! The one rewrite: the namespaces share this machine's filesystem, so every path under
//! `/etc/keepalived/` and `/var/log/` in an example becomes the node's scratch directory
//! ([`localize`]); nothing else in the files changes. Addresses and `interface eth0` are
//! the examples' own: the topologies are the classic ones (tests/src/scenario.rs):
//!
//! ```text
//!   client 192.0.2.100 --+-- br0 --+-- lb1 192.0.2.1        (VRRP, directors)
//!                        |         +-- lb2 192.0.2.2
//!   lvs-dr:              +-- rs1 192.0.2.11, rs2 192.0.2.12 (VIPs on lo)
//!   lvs-nat: lb1 eth1 198.51.100.2 --- br0' --- rs1 198.51.100.11, rs2 .12, sorry .99
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ha_tests::conf::effective_priority;
use ha_tests::proc::{bin, wait_until};
use ha_tests::scenario::{Classic, Impl, CLIENT};
use ha_tests::syslog::start_rsyslogd;
use ha_tests::web::{ask, dr_helper, httpd, start_nginx, stop_nginx};
use ha_tests::{Daemon, Lan};

const VIP1: &str = "192.0.2.10";
const VIP2: &str = "192.0.2.20";
/// A hang guard, not a timing assert: adverts are 1 s and checks run every 2 s with
/// fall/rise 2 in the examples, so a change takes a few seconds.
const LONG: Duration = Duration::from_secs(30);

/// deploy/examples.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

/// The example file `rel` (e.g. "master-backup/lb1.conf"), localized for node directory
/// `dir`.
fn example(rel: &str, dir: &Path) -> Result<String> {
    let path = examples_dir().join(rel);
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(localize(&text, dir))
}

/// `/etc/keepalived/X` and `/var/log/X` become `<dir>/X`: the only change made to an
/// example before it runs.
fn localize(text: &str, dir: &Path) -> String {
    let d = format!("{}/", dir.display());
    text.replace("/etc/keepalived/", &d)
        .replace("/var/log/", &d)
}

/// The scratch directory of lb`idx+1` (where [`Classic::start`] puts its files).
fn node_dir(c: &Classic, idx: usize) -> PathBuf {
    c.dir.join(format!("lb{}", idx + 1))
}

/// Start `<name>/lb1.conf` and `<name>/lb2.conf` on lb1 and lb2.
fn start_pair(c: &mut Classic, name: &str) -> Result<()> {
    for idx in 0..2 {
        let text = example(&format!("{name}/lb{}.conf", idx + 1), &node_dir(c, idx))?;
        c.start(idx, Impl::HaAgent, &text)?;
    }
    Ok(())
}

/// lb`idx+1` is MASTER of `inst`, the other BACKUP, it alone holds `vip` and the client
/// reaches it.
fn serves(c: &Classic, idx: usize, inst: &str, vip: &str) -> Result<()> {
    c.wait_state(idx, inst, "MASTER", LONG)?;
    c.wait_state(1 - idx, inst, "BACKUP", LONG)?;
    wait_until(
        &format!("{vip} on lb{} only", idx + 1),
        LONG,
        || matches!(c.holder(vip), Ok(Some(h)) if h == idx),
    )?;
    ensure!(c.client_reaches(vip), "client cannot reach {vip}");
    Ok(())
}

/// Wait until `n` requests from the client to `vip` are all answered, by exactly the
/// servers in `want`.
fn wait_served_by(c: &Classic, vip: &str, want: &[&str], n: usize) -> Result<()> {
    let want: BTreeSet<String> = want.iter().map(|w| w.to_string()).collect();
    let mut last = Vec::new();
    wait_until(&format!("{vip} served by {want:?}"), LONG, || {
        last = ask(c.lan.ns(CLIENT), vip, n).unwrap_or_default();
        last.iter().cloned().collect::<BTreeSet<_>>() == want
    })
    .with_context(|| format!("last answers {last:?}"))
}

/// Both nodes' logs, for a failure message.
fn logs(c: &Classic) -> String {
    (0..2)
        .filter_map(|i| c.nodes[i].as_ref().map(|n| (i, n.daemon().log_text())))
        .map(|(i, l)| format!("--- lb{}:\n{l}", i + 1))
        .collect()
}

#[test]
fn every_example_checks_and_uses_documentation_addresses() -> Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![examples_dir()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let doc_v4 = ["192.0.2.", "198.51.100.", "203.0.113.", "127.0.0.1"];
    let mut checked = 0;
    for f in &files {
        let text = fs::read_to_string(f)?;
        for word in text.split(|ch: char| !(ch.is_ascii_digit() || ch == '.')) {
            let dotted = word.trim_matches('.');
            if dotted.split('.').count() == 4 && dotted.split('.').all(|o| o.parse::<u8>().is_ok())
            {
                ensure!(
                    doc_v4.iter().any(|d| dotted.starts_with(d)),
                    "{}: {dotted} is not a documentation address",
                    f.display()
                );
            }
        }
        for line in text.lines() {
            let t = line.trim();
            if let Some(dev) = t.strip_prefix("interface ") {
                ensure!(dev.trim() == "eth0", "{}: {t}", f.display());
            }
        }
        let in_rsyslog = f.components().any(|c| c.as_os_str() == "rsyslog.d");
        if f.extension().is_some_and(|x| x == "conf") && !in_rsyslog {
            let out = std::process::Command::new(bin("ha-agent")?)
                .arg("--check")
                .arg("-f")
                .arg(f)
                .output()?;
            ensure!(
                out.status.success(),
                "{}: {}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    eprintln!(
        "{checked} example configs checked, {} files scanned",
        files.len()
    );
    ensure!(checked >= 12, "only {checked} example configs found");
    ensure!(
        examples_dir().join("README.md").exists(),
        "deploy/examples/README.md missing"
    );
    Ok(())
}

#[test]
fn master_backup_fails_over_on_stop_and_returns() -> Result<()> {
    let mut c = Classic::new("ex-mb")?;
    start_pair(&mut c, "master-backup")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    // lb1 stops (priority 0 on the way out): lb2 takes the VIP.
    c.node_mut(0).stop()?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    wait_until("lb2 holds the VIP", LONG, || {
        matches!(c.holder(VIP1), Ok(Some(1)))
    })?;
    ensure!(c.client_reaches(VIP1), "client cannot reach the VIP on lb2");
    // lb1 comes back and preempts.
    let text = example("master-backup/lb1.conf", &node_dir(&c, 0))?;
    c.start(0, Impl::HaAgent, &text)?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    Ok(())
}

#[test]
fn track_script_maintenance_file_flips_the_master() -> Result<()> {
    let mut c = Classic::new("ex-trk")?;
    start_pair(&mut c, "track-script")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    // `touch /etc/keepalived/maintenance` on lb1: 150 - 20 < 140, lb2 serves.
    let flag = node_dir(&c, 0).join("maintenance");
    fs::write(&flag, "")?;
    serves(&c, 1, "VI_1", VIP1).with_context(|| logs(&c))?;
    ensure!(
        effective_priority(c.node(0), "VI_1")? == 130,
        "lb1 not at 130"
    );
    // The file goes: lb1 rises back to 150 and preempts.
    fs::remove_file(&flag)?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    ensure!(
        effective_priority(c.node(0), "VI_1")? == 150,
        "lb1 not at 150"
    );
    Ok(())
}

#[test]
fn dual_master_each_holds_its_vip() -> Result<()> {
    let mut c = Classic::new("ex-dual")?;
    start_pair(&mut c, "dual-master")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    serves(&c, 1, "VI_2", VIP2).with_context(|| logs(&c))?;
    // lb2 goes: lb1 holds both.
    c.node_mut(1).stop()?;
    c.wait_state(0, "VI_2", "MASTER", LONG)?;
    wait_until("lb1 holds both VIPs", LONG, || {
        matches!(c.holder(VIP1), Ok(Some(0))) && matches!(c.holder(VIP2), Ok(Some(0)))
    })?;
    ensure!(
        c.client_reaches(VIP1) && c.client_reaches(VIP2),
        "VIPs unreachable"
    );
    Ok(())
}

#[test]
fn lvs_nat_director_serves_the_real_servers() -> Result<()> {
    let mut c = Classic::new("ex-nat")?;
    // The real servers' LAN; their gateway 198.51.100.1 is the director's VRRP VIP.
    let mut servers = Lan::new()?;
    let mut web = Vec::new();
    for (who, addr) in [
        ("rs1", "198.51.100.11"),
        ("rs2", "198.51.100.12"),
        ("sorry", "198.51.100.99"),
    ] {
        let i = servers.add_host("hxr", &format!("{addr}/24"), None)?;
        servers.ns(i).sh("ip route add default via 198.51.100.1")?;
        web.push(httpd(servers.ns(i), &c.dir, who, 8080)?);
    }
    servers.plug(c.lan.ns(0), "eth1", "198.51.100.2/24")?;
    c.lan.ns(0).sh("sysctl -qw net.ipv4.ip_forward=1")?;
    let text = example("lvs-nat/lb1.conf", &node_dir(&c, 0))?;
    c.start(0, Impl::HaAgent, &text)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    ensure!(
        c.lan.ns(0).has_addr("198.51.100.1"),
        "gateway VIP missing on eth1"
    );
    wait_served_by(&c, VIP1, &["rs1", "rs2"], 12).with_context(|| logs(&c))?;
    // Both real servers down: the sorry server answers.
    web.drain(..2).for_each(drop);
    wait_served_by(&c, VIP1, &["sorry"], 4).with_context(|| logs(&c))?;
    Ok(())
}

#[test]
fn lvs_dr_dual_directors_serve_both_vips_through_a_cut() -> Result<()> {
    let mut c = Classic::new("ex-dr")?;
    let state = c.dir.join("dr-state");
    let mut web = Vec::new();
    for (who, addr) in [("rs1", "192.0.2.11/24"), ("rs2", "192.0.2.12/24")] {
        let i = c.lan.add_host("hxd", addr, None)?;
        c.lan.ns(i).sh(&format!(
            "STATE_DIR={} {} up {VIP1} {VIP2}",
            state.display(),
            dr_helper().display()
        ))?;
        web.push(httpd(c.lan.ns(i), &c.dir, who, 80)?);
    }
    start_pair(&mut c, "lvs-dr")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    serves(&c, 1, "VI_2", VIP2).with_context(|| logs(&c))?;
    for vip in [VIP1, VIP2] {
        wait_served_by(&c, vip, &["rs1", "rs2"], 8).with_context(|| logs(&c))?;
    }
    // lb1's link goes: lb2 directs both VIPs.
    c.lan.set_link(0, false)?;
    wait_until("lb2 holds both VIPs", LONG, || {
        matches!(c.holder(VIP1), Ok(Some(1))) && matches!(c.holder(VIP2), Ok(Some(1)))
    })?;
    for vip in [VIP1, VIP2] {
        wait_served_by(&c, vip, &["rs1", "rs2"], 8).with_context(|| logs(&c))?;
    }
    let log = c.node(1).daemon().log_text();
    ensure!(log.contains("load-balancer data plane"), "{log}");
    Ok(())
}

#[test]
fn nginx_check_script_moves_the_vip() -> Result<()> {
    let mut c = Classic::new("ex-nginx")?;
    let mut web1 = start_nginx(c.lan.ns(0), &c.dir.join("nginx1"), "lb1")?;
    let _web2 = start_nginx(c.lan.ns(1), &c.dir.join("nginx2"), "lb2")?;
    start_pair(&mut c, "nginx")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    wait_served_by(&c, VIP1, &["served by lb1"], 1)?;
    // nginx stops on lb1: chk_nginx fails twice, lb2 takes the VIP and serves the page.
    stop_nginx(&mut web1)?;
    serves(&c, 1, "VI_1", VIP1).with_context(|| logs(&c))?;
    wait_served_by(&c, VIP1, &["served by lb2"], 1)?;
    // nginx back: lb1 rises and preempts.
    let _web1 = start_nginx(c.lan.ns(0), &c.dir.join("nginx1"), "lb1")?;
    serves(&c, 0, "VI_1", VIP1).with_context(|| logs(&c))?;
    wait_served_by(&c, VIP1, &["served by lb1"], 1)?;
    Ok(())
}

/// The words of `DAEMON_ARGS="..."` in an /etc/default file.
fn daemon_args(default_file: &str) -> Result<Vec<String>> {
    let line = default_file
        .lines()
        .find_map(|l| l.trim().strip_prefix("DAEMON_ARGS="))
        .context("no DAEMON_ARGS line")?;
    Ok(line
        .trim_matches('"')
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

#[test]
fn syslog_example_lands_in_its_own_file() -> Result<()> {
    let c = Classic::new("ex-syslog")?;
    let dir = node_dir(&c, 0);
    fs::create_dir_all(&dir)?;
    // rsyslog with the example's snippet (/var/log/keepalived.log -> <dir>/keepalived.log)
    // and a catch-all after it: the snippet's `& stop` keeps ha-agent out of it.
    let rules = format!(
        "{}\n*.* action(type=\"omfile\" file=\"{}\")\n",
        example("syslog/rsyslog.d/ha-agent.conf", &dir)?,
        dir.join("other.log").display()
    );
    let (rsyslog, sock) = start_rsyslogd(&c.lan.switch, &dir.join("rsyslog"), &rules)?;
    // The agent runs with the example's DAEMON_ARGS (-D -S 3 -f .../keepalived.conf).
    fs::write(
        dir.join("keepalived.conf"),
        example("syslog/keepalived.conf", &dir)?,
    )?;
    let mut args = daemon_args(&example("syslog/ha-agent.default", &dir)?)?;
    ensure!(args.iter().any(|a| a == "-S"), "no -S in {args:?}");
    let s = dir.join("state").display().to_string();
    for a in ["--state-dir", &s, "--runtime-dir", &s, "--log-socket"] {
        args.push(a.to_string());
    }
    args.push(sock.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Daemon::start(c.lan.ns(0), &dir, "ha-agent", &bin("ha-agent")?, &argv)?;
    let own = dir.join("keepalived.log");
    let other = dir.join("other.log");
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    wait_until("the transition in keepalived.log", LONG, || {
        read(&own).contains("(VI_1) Entering MASTER STATE")
    })
    .with_context(|| {
        format!(
            "keepalived.log:\n{}\nrsyslogd:\n{}\nagent:\n{}",
            read(&own),
            rsyslog.log_text(),
            agent.log_text()
        )
    })?;
    let tag = format!("ha-agent[{}]", agent.pid().unwrap_or_default());
    ensure!(read(&own).contains(&tag), "no {tag} in\n{}", read(&own));
    ensure!(
        !read(&other).contains("ha-agent"),
        "ha-agent lines outside its file:\n{}",
        read(&other)
    );
    Ok(())
}
