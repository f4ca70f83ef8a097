//! LVS-DR on the nftables data plane: the director only rewrites MACs, the real servers
//! hold the VIP on lo (deploy/lvs-dr-realserver.sh) and answer the client directly.
//!
//! ```text
//!  client 192.0.2.2 ---+
//!  director 192.0.2.1 -+  VIP 192.0.2.10 on eth0 (answers ARP), ha-agent: netdev ingress fwd
//!  rs1 192.0.2.11 -----+  VIP on lo, arp_ignore=1, arp_announce=2, httpd :80
//!  rs2 192.0.2.12 -----+  same                                   (one bridge)
//! ```
//! Proof that replies bypass the director: every reply the client captures from
//! VIP:80 carries a real server's source MAC, never the director's.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::proc::wait_until;
use ha_tests::web::{ask, dr_helper, httpd};
use ha_tests::{Agent, Daemon, Lan, Netns};

const VIP: &str = "192.0.2.10";
const NOTICE: Duration = Duration::from_secs(20);

const CONF: &str = r#"
virtual_server 192.0.2.10 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.11 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 192.0.2.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"#;

fn mac(ns: &Netns) -> Result<String> {
    Ok(ns.sh("cat /sys/class/net/eth0/address")?.trim().to_string())
}

#[test]
fn dr_real_servers_answer_the_client_directly() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ha-lvs-dr-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut lan = Lan::new()?;
    let client = lan.add_host("dcli", "192.0.2.2/24", None)?;
    let director = lan.add_host("ddir", "192.0.2.1/24", None)?;
    let rs: Vec<usize> = vec![
        lan.add_host("drs", "192.0.2.11/24", None)?,
        lan.add_host("drs", "192.0.2.12/24", None)?,
    ];
    lan.ns(director)
        .sh(&format!("ip addr add {VIP}/24 dev eth0"))?;
    let state = dir.join("dr-state");
    for &i in &rs {
        lan.ns(i).sh(&format!(
            "STATE_DIR={} {} up {VIP}",
            state.display(),
            dr_helper().display()
        ))?;
        let s = lan.ns(i).sh(&format!("{} status", dr_helper().display()))?;
        assert!(s.contains("net.ipv4.conf.all.arp_ignore=1"), "{s}");
        assert!(s.contains("net.ipv4.conf.lo.arp_announce=2"), "{s}");
    }
    let _h1 = httpd(lan.ns(rs[0]), &dir, "rs1", 80)?;
    let mut h2 = Some(httpd(lan.ns(rs[1]), &dir, "rs2", 80)?);
    let rs_macs: BTreeSet<String> = rs.iter().map(|&i| mac(lan.ns(i))).collect::<Result<_>>()?;
    let dir_mac = mac(lan.ns(director))?;

    let lb = Agent::start(lan.ns(director), &dir.join("director"), CONF)?;
    wait_until("the DR table is programmed", NOTICE, || {
        lan.ns(director)
            .ok("nft list table netdev ha_lb_dr | grep -q fwd")
    })
    .with_context(|| lb.daemon.log_text())?;

    // Capture on the client what comes back from VIP:80.
    let pcap = dir.join("client.pcap");
    let mut cap = Daemon::start(
        lan.ns(client),
        &dir,
        "tcpdump",
        Path::new("/usr/bin/tcpdump"),
        &[
            "-i",
            "eth0",
            "-n",
            "-U",
            "-w",
            &pcap.to_string_lossy(),
            "--immediate-mode",
            "src host 192.0.2.10 and tcp src port 80",
        ],
    )?;
    wait_until("tcpdump listens", Duration::from_secs(10), || {
        cap.log_text().contains("listening on")
    })?;
    let answers = ask(lan.ns(client), VIP, 40)?;
    cap.signal("INT")?;
    cap.wait_exit(Duration::from_secs(10))?;

    let who: BTreeSet<&str> = answers.iter().map(String::as_str).collect();
    assert!(
        answers.iter().all(|a| a == "rs1" || a == "rs2"),
        "every request answered by a real server: {answers:?}"
    );
    assert_eq!(who.len(), 2, "both real servers used: {answers:?}");

    let dump = lan
        .ns(client)
        .sh(&format!("tcpdump -e -n -r {} 2>/dev/null", pcap.display()))?;
    let srcs: BTreeSet<String> = dump
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    eprintln!("reply source MACs {srcs:?}; real servers {rs_macs:?}; director {dir_mac}");
    assert!(!srcs.is_empty(), "no reply captured: {dump}");
    assert!(
        !srcs.contains(&dir_mac),
        "a reply came through the director: {dump}"
    );
    assert!(
        srcs.is_subset(&rs_macs),
        "replies from {srcs:?}, real servers {rs_macs:?}"
    );

    // rs2 stops: its checker takes it out, rs1 answers everything.
    drop(h2.take());
    wait_until("rs2 leaves rotation", NOTICE, || {
        ask(lan.ns(client), VIP, 12).is_ok_and(|a| a.iter().all(|x| x == "rs1"))
    })?;

    // The helper's undo puts the real server back as it was.
    lan.ns(rs[0]).sh(&format!(
        "STATE_DIR={} {} undo {VIP}",
        state.display(),
        dr_helper().display()
    ))?;
    assert!(!lan.ns(rs[0]).has_addr(VIP));
    let s = lan
        .ns(rs[0])
        .sh(&format!("{} status", dr_helper().display()))?;
    assert!(s.contains("net.ipv4.conf.all.arp_ignore=0"), "{s}");
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
