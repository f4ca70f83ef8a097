//! Live reload on SIGHUP: changing only VI_2's priority leaves VI_1 untouched (no
//! transition, its VIP never leaves the interface, watched throughout with
//! `ip monitor address`); a broken config keeps the running one.

use std::fs;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Result;
use ha_tests::proc::wait_until;
use ha_tests::scenario::{render, Classic, Impl, Inst};

const LONG: Duration = Duration::from_secs(15);

fn inst(name: &str, vrid: u8, state: &'static str, prio: u8, vip: &str) -> Inst {
    let mut i = Inst::new(name, vrid, state, prio);
    i.version = 3;
    i.advert_int = "0.1".into();
    i.vips = vec![vip.into()];
    i
}

/// lb1's config with VI_2 at `p2`.
fn lb1_conf(p2: u8) -> String {
    render(
        "lb1",
        &[
            inst("VI_1", 51, "MASTER", 150, "192.0.2.10/24"),
            inst("VI_2", 52, "BACKUP", p2, "192.0.2.20/24"),
        ],
    )
}

struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn priority_change_of_one_instance_leaves_the_other_untouched() -> Result<()> {
    let mut c = Classic::new("reload")?;
    c.start(0, Impl::HaAgent, &lb1_conf(100))?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    let lb2 = render(
        "lb2",
        &[
            inst("VI_1", 51, "BACKUP", 100, "192.0.2.10/24"),
            inst("VI_2", 52, "MASTER", 150, "192.0.2.20/24"),
        ],
    );
    c.start(1, Impl::HaAgent, &lb2)?;
    c.wait_state(1, "VI_2", "MASTER", LONG)?;
    c.wait_state(0, "VI_2", "BACKUP", LONG)?;

    // Watch lb1's addresses for the whole reload.
    let log = c.dir.join("ip-monitor.log");
    let mon = Monitor(
        c.lan
            .ns(0)
            .command("ip")
            .args(["-o", "monitor", "address"])
            .stdout(fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(200));

    // Raise VI_2 on lb1 above lb2's 150: VI_2 moves, VI_1 must not notice.
    let cfg = c.dir.join("lb1").join("keepalived.conf");
    fs::write(&cfg, lb1_conf(200))?;
    c.node(0).daemon().signal("HUP")?;
    c.wait_state(0, "VI_2", "MASTER", LONG)?;
    c.wait_state(1, "VI_2", "BACKUP", LONG)?;
    std::thread::sleep(Duration::from_millis(500));
    drop(mon);
    let watched = fs::read_to_string(&log)?;
    assert!(
        !watched
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains("192.0.2.10/")),
        "VI_1's VIP left the interface during reload:\n{watched}"
    );
    assert!(
        watched.contains("192.0.2.20/"),
        "monitor saw nothing: {watched}"
    );
    assert_eq!(c.node(0).entered("VI_1", "MASTER"), 1, "VI_1 transitioned");
    assert_eq!(c.node(0).entered("VI_1", "BACKUP"), 1, "VI_1 transitioned");
    assert!(c.lan.ns(0).has_addr("192.0.2.10"));

    // A broken config is refused and the running one stays.
    fs::write(
        &cfg,
        lb1_conf(200).replace("virtual_router_id 52", "virtual_router_id 300"),
    )?;
    c.node(0).daemon().signal("HUP")?;
    wait_until("reload refused in the log", LONG, || {
        c.node(0).daemon().log_text().contains("reload refused")
    })?;
    let text = c.node(0).daemon().log_text();
    assert!(
        text.contains("keepalived.conf:"),
        "the error names no file:line:\n{text}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.node(0).state("VI_1").as_deref(), Some("MASTER"));
    assert_eq!(c.node(0).state("VI_2").as_deref(), Some("MASTER"));
    assert!(c.client_reaches("192.0.2.10") && c.client_reaches("192.0.2.20"));
    Ok(())
}
