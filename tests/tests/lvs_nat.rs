//! LVS-NAT on the nftables data plane, with real HTTP servers in namespaces.
//!
//! ```text
//!  client ns            director ns (ha-agent)               server LAN (bridge)
//!  eth0 192.0.2.2 ---- eth1 192.0.2.1, VIP 192.0.2.10  eth0 198.51.100.1 ---+--- rs1 198.51.100.11:8080 (w3)
//!                      ip_forward=1, the real servers' gateway               +--- rs2 198.51.100.12:8080 (w1)
//!                                                                            +--- sorry 198.51.100.99:8080
//! ```
//! The client asks http://192.0.2.10/ and gets a page naming the server that answered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::netns::ip;
use ha_tests::proc::wait_until;
use ha_tests::web::{self, httpd};
use ha_tests::{Agent, Lan, Netns};

const VIP: &str = "192.0.2.10";
/// Generous bound on a checker noticing a change (delay_loop 1 s x (retry 1 + 1), plus
/// process start-up and scheduling slack); not a timing assert, a hang guard.
const NOTICE: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ha-lvs-{name}-{}", std::process::id()))
}

/// `n` requests from the client; count of answers per server name ("" = failed).
fn ask(client: &Netns, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut m = BTreeMap::new();
    for a in web::ask(client, VIP, n)? {
        *m.entry(a).or_insert(0) += 1;
    }
    Ok(m)
}

struct Topo {
    client: Netns,
    lan: Lan,
    dir: PathBuf,
}

impl Topo {
    fn director(&self) -> &Netns {
        self.lan.ns(0)
    }
}

fn topology(name: &str) -> Result<Topo> {
    let mut lan = Lan::new()?;
    let d = lan.add_host("ldir", "198.51.100.1/24", None)?;
    for (p, a) in [
        ("lrs", "198.51.100.11"),
        ("lrs", "198.51.100.12"),
        ("lsry", "198.51.100.99"),
    ] {
        let i = lan.add_host(p, &format!("{a}/24"), None)?;
        lan.ns(i).sh("ip route add default via 198.51.100.1")?;
    }
    let client = Netns::new("lcli")?;
    let director = lan.ns(d);
    ip(&[
        "link",
        "add",
        "eth1",
        "netns",
        &director.name,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ])?;
    director.sh(&format!(
        "ip addr add 192.0.2.1/24 dev eth1 && ip addr add {VIP}/32 dev eth1 && ip link set eth1 up \
         && sysctl -qw net.ipv4.ip_forward=1"
    ))?;
    client.sh("ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up")?;
    let dir = scratch(name);
    std::fs::create_dir_all(&dir)?;
    Ok(Topo { client, lan, dir })
}

const CONF: &str = r#"
virtual_server 192.0.2.10 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    quorum 2
    sorry_server 198.51.100.99 8080
    real_server 198.51.100.11 8080 {
        weight 3
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server 198.51.100.12 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
"#;

/// ha-agent on the director with [`CONF`] (virtual servers only, no VRRP).
fn start_lb(t: &Topo) -> Result<Agent> {
    Agent::start(t.director(), &t.dir.join("director"), CONF)
}

/// Wait until `k` consecutive requests satisfy `ok`.
fn wait_answers(t: &Topo, what: &str, ok: impl Fn(&BTreeMap<String, usize>) -> bool) -> Result<()> {
    let mut last = BTreeMap::new();
    let r = wait_until(what, NOTICE, || match ask(&t.client, 12) {
        Ok(m) => {
            let good = ok(&m);
            last = m;
            good
        }
        Err(_) => false,
    });
    r.with_context(|| format!("last answers {last:?}"))
}

#[test]
fn nat_weights_failover_return_and_sorry_server() -> Result<()> {
    let t = topology("nat")?;
    let mut rs1 = Some(httpd(t.lan.ns(1), &t.dir, "rs1", 8080)?);
    let mut rs2 = Some(httpd(t.lan.ns(2), &t.dir, "rs2", 8080)?);
    let _sorry = httpd(t.lan.ns(3), &t.dir, "sorry", 8080)?;
    let lb = start_lb(&t)?;
    wait_answers(&t, "the VIP answers from both servers", |m| {
        m.contains_key("rs1") && m.contains_key("rs2")
    })
    .with_context(|| lb.daemon.log_text())?;

    // Weights 3:1 over 400 requests.
    let m = ask(&t.client, 400)?;
    eprintln!("400 requests: {m:?}");
    let (a, b) = (
        m.get("rs1").copied().unwrap_or(0),
        m.get("rs2").copied().unwrap_or(0),
    );
    assert_eq!(a + b, 400, "every request answered by a real server: {m:?}");
    let ratio = a as f64 / b.max(1) as f64;
    assert!((2.2..=4.0).contains(&ratio), "rs1:rs2 = {a}:{b}");
    // The table is ours alone and read back as programmed.
    let nft = t.director().sh("nft list ruleset")?;
    assert!(nft.contains("table ip ha_lb"), "{nft}");

    // rs2 stops: it leaves rotation (only rs1 answers).
    drop(rs2.take());
    wait_answers(&t, "rs2 leaves rotation", |m| m.get("rs1") == Some(&12))?;
    // rs2 starts again: it returns.
    rs2 = Some(httpd(t.lan.ns(2), &t.dir, "rs2", 8080)?);
    wait_answers(&t, "rs2 returns", |m| {
        m.contains_key("rs2") && m.contains_key("rs1")
    })?;

    // rs1 (weight 3) stops: live weight 1 < quorum 2, the sorry server takes over.
    drop(rs1.take());
    wait_answers(&t, "sorry server takes over", |m| {
        m.get("sorry") == Some(&12)
    })?;
    // rs1 back: quorum regained, sorry server out.
    rs1 = Some(httpd(t.lan.ns(1), &t.dir, "rs1", 8080)?);
    wait_answers(&t, "quorum back", |m| {
        m.contains_key("rs1") && m.contains_key("rs2") && !m.contains_key("sorry")
    })?;
    // The agent's stats dump shows the virtual server as the runtime sees it.
    let stats = lb.stats()?;
    let vs = &stats["lb"]["virtual_servers"][0];
    assert_eq!(vs["name"], "192.0.2.10:80/TCP", "{stats}");
    assert_eq!(vs["quorum_up"], true, "{stats}");
    assert_eq!(stats["lb"]["backend"], "nftables", "{stats}");
    // keepalived-style lines for every change the checkers saw.
    let log = lb.daemon.log_text();
    for line in [
        "Removing service 198.51.100.12:8080 from VS 192.0.2.10:80/TCP",
        "Adding service 198.51.100.12:8080 to VS 192.0.2.10:80/TCP",
        "Lost quorum for VS 192.0.2.10:80/TCP",
        "Gained quorum for VS 192.0.2.10:80/TCP",
    ] {
        assert!(log.contains(line), "missing '{line}' in\n{log}");
    }
    drop((rs1, rs2));

    // Clean stop removes our table and nothing else.
    t.director().sh("nft add table inet keepme")?;
    let mut lb = lb;
    lb.daemon.signal("TERM")?;
    lb.daemon.wait_exit(Duration::from_secs(15))?;
    let nft = t.director().sh("nft list tables")?;
    assert!(!nft.contains("ha_lb"), "{nft}");
    assert!(nft.contains("keepme"), "{nft}");
    let _ = std::fs::remove_dir_all(&t.dir);
    Ok(())
}

#[test]
fn nat_drift_is_healed_by_resync() -> Result<()> {
    let t = topology("drift")?;
    let _rs1 = httpd(t.lan.ns(1), &t.dir, "rs1", 8080)?;
    let _rs2 = httpd(t.lan.ns(2), &t.dir, "rs2", 8080)?;
    let _lb = start_lb(&t)?;
    wait_answers(&t, "the VIP answers", |m| m.contains_key("rs1"))?;
    // Someone deletes our table: the periodic resync puts it back.
    t.director().sh("nft delete table ip ha_lb")?;
    wait_until("table re-created", NOTICE, || {
        t.director().ok("nft list table ip ha_lb")
    })?;
    wait_answers(&t, "the VIP answers again", |m| m.contains_key("rs1"))?;
    let _ = std::fs::remove_dir_all(&t.dir);
    Ok(())
}
