//! Notify scripts and the notify FIFO: every transition arrives, complete and in the
//! order of the agent's own log; `notify_stop` at shutdown; a hung notify script is
//! killed at its timeout and leaves nothing behind while VRRP carries on; an insecure
//! root script is refused, naming the offending path.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::conf::{self, global, instance, p, transitions, write_script};
use ha_tests::measure::process_tree;
use ha_tests::proc::wait_until;
use ha_tests::scenario::{Classic, Impl};

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(15);

fn lb2_conf() -> String {
    format!(
        "{}{}",
        global("lb2", ""),
        instance("VI_1", 51, "BACKUP", 140, "192.0.2.10/24", "")
    )
}

/// Lines of a file (empty if it does not exist yet).
fn lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The notify state keepalived reports for a logged state (INIT after a stop is STOP).
fn notify_word(state: &str) -> &str {
    if state == "INIT" {
        "STOP"
    } else {
        state
    }
}

/// lb1 with a track file (weight -20, so writing 1 hands the VIP to lb2 at 140), every
/// `notify*` script appending its arguments to `notify.log`, and a notify FIFO whose
/// reader script copies it to `fifo.log`; `slow` notify scripts take 0.3 s each, so
/// events queue up behind them. Returns (notify.log, fifo.log, weight file).
fn notify_setup(c: &mut Classic, slow: bool) -> Result<[std::path::PathBuf; 3]> {
    let d = conf::mkdir(&c.dir.join("scripts"))?;
    let log = d.join("notify.log");
    let fifo_log = d.join("fifo.log");
    let weight = d.join("weight");
    fs::write(&weight, "0\n")?;
    let notify = write_script(
        &d.join("notify.sh"),
        &format!(
            "{}echo \"$*\" >> {}",
            if slow { "sleep 0.3\n" } else { "" },
            p(&log)
        ),
    )?;
    let reader = write_script(
        &d.join("fifo-reader.sh"),
        &format!("exec cat \"$1\" >> {}", p(&fifo_log)),
    )?;
    let n = p(&notify);
    let lb1 = format!(
        "{}vrrp_track_file tf {{\n    file {}\n    weight -20\n}}\n\n{}",
        global(
            "lb1",
            &format!(
                "notify_fifo {}\nnotify_fifo_script {}",
                p(&d.join("lb1.fifo")),
                p(&reader)
            )
        ),
        p(&weight),
        instance(
            "VI_1",
            51,
            "MASTER",
            150,
            "192.0.2.10/24",
            &format!(
                "track_file {{\n    tf\n}}\nnotify_master \"{n} master\"\nnotify_backup \"{n} backup\"\n\
                 notify_fault \"{n} fault\"\nnotify_stop \"{n} stop\"\nnotify {n}"
            )
        )
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.start(1, Impl::HaAgent, &lb2_conf())?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    Ok([log, fifo_log, weight])
}

/// What notify.log must hold for these logged states: the specific script's word, then
/// the generic script's four arguments.
fn expected_script_lines(states: &[String]) -> Vec<String> {
    states
        .iter()
        .map(|s| notify_word(s))
        .fold(Vec::new(), |mut v, s| {
            v.push(s.to_lowercase());
            v.push(format!("INSTANCE VI_1 {s}"));
            v
        })
}

/// notify.log with the generic lines' priority cut off (checked separately).
fn without_priority(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.rsplit_once(' ') {
            Some((head, prio)) if l.starts_with("INSTANCE ") && prio.parse::<u8>().is_ok() => {
                head.to_string()
            }
            _ => l.clone(),
        })
        .collect()
}

#[test]
fn twenty_transitions_reach_scripts_and_fifo_in_order() -> Result<()> {
    let mut c = Classic::new("notify-order")?;
    let [log, fifo_log, weight] = notify_setup(&mut c, true)?;

    // 20 transitions of lb1: BACKUP (weight file 1: 150 - 20 < 140), MASTER (0: preempt),
    // faster than the slow notify scripts finish, so they queue.
    for round in 0..10 {
        fs::write(&weight, "1\n")?;
        c.wait_state(0, "VI_1", "BACKUP", LONG)
            .with_context(|| format!("round {round}"))?;
        fs::write(&weight, "0\n")?;
        c.wait_state(0, "VI_1", "MASTER", LONG)
            .with_context(|| format!("round {round}"))?;
    }
    let states = transitions(c.node(0), "VI_1");
    assert!(
        states.len() >= 21,
        "fewer transitions than toggles: {states:?}"
    );
    let want = expected_script_lines(&states);
    wait_until("every notify script line", LONG, || {
        lines(&log).len() >= want.len()
    })
    .with_context(|| format!("notify.log:\n{}", lines(&log).join("\n")))?;
    let got = lines(&log);
    assert_eq!(
        without_priority(&got),
        want,
        "notify.log differs from the log's transitions {states:?}"
    );
    // The generic script's priority is the effective one: 150 as master, 130 as a
    // backup pushed down by the track file (the first BACKUP is the startup one).
    for (k, l) in got
        .iter()
        .filter(|l| l.starts_with("INSTANCE "))
        .enumerate()
    {
        let want_prio = match (l.contains(" MASTER "), k) {
            (true, _) | (false, 0) => "150",
            (false, _) => "130",
        };
        assert!(l.ends_with(&format!(" {want_prio}")), "line {k}: {l}");
    }

    // The FIFO: keepalived's `INSTANCE "VI_1" STATE PRIO`, one line per transition.
    let want_fifo: Vec<String> = states
        .iter()
        .map(|s| format!("INSTANCE \"VI_1\" {}", notify_word(s)))
        .collect();
    let fifo_lines = || -> Vec<String> {
        lines(&fifo_log)
            .into_iter()
            .filter(|l| l.starts_with("INSTANCE "))
            .collect()
    };
    wait_until("every fifo line", LONG, || {
        fifo_lines().len() >= want_fifo.len()
    })
    .with_context(|| format!("fifo.log:\n{}", lines(&fifo_log).join("\n")))?;
    assert_eq!(without_priority(&fifo_lines()), want_fifo, "fifo.log");
    Ok(())
}

#[test]
fn notify_stop_and_fifo_stop_at_shutdown() -> Result<()> {
    let mut c = Classic::new("notify-stop")?;
    let [log, fifo_log, _] = notify_setup(&mut c, true)?;
    wait_until("MASTER notified", LONG, || {
        lines(&log)
            .iter()
            .any(|l| l.starts_with("INSTANCE VI_1 MASTER"))
    })?;
    c.node_mut(0).stop()?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    let text = c.node(0).daemon().log_text();
    // notify_stop (keepalived: "executed when stopping vrrp") and the generic script's
    // STOP, then the FIFO's STOP line, all before the agent exits.
    let got = lines(&log);
    assert!(
        got.iter().any(|l| l == "stop") && got.iter().any(|l| l.starts_with("INSTANCE VI_1 STOP")),
        "no notify_stop / generic STOP run before exit.\nnotify.log:\n{}\nagent log:\n{text}",
        got.join("\n")
    );
    assert!(
        lines(&fifo_log)
            .iter()
            .any(|l| l.starts_with("INSTANCE \"VI_1\" STOP")),
        "no STOP line in the FIFO:\n{}",
        lines(&fifo_log).join("\n")
    );
    Ok(())
}

/// Processes whose command line contains `marker`, anywhere on the machine.
fn leftovers(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            out.push(format!("{pid} {cmd}"));
        }
    }
    out
}

/// Zombie children of `pid` (a notify script nobody reaped).
fn zombies_under(pid: u32) -> Vec<String> {
    process_tree(pid)
        .into_iter()
        .filter(|p| *p != pid)
        .filter_map(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            Some(format!("{p}: {stat}"))
        })
        .collect()
}

#[test]
fn hung_notify_script_is_killed_and_vrrp_carries_on() -> Result<()> {
    let mut c = Classic::new("notify-hung")?;
    let d = conf::mkdir(&c.dir.join("scripts"))?;
    let started = d.join("hang.started");
    // Ignores SIGTERM (and so do its children: an ignored signal survives exec), so only
    // the SIGKILL to the whole process group ends it; a background child too.
    let marker = format!("1000.{}", std::process::id());
    let hang = write_script(
        &d.join("hang.sh"),
        &format!(
            "trap '' TERM\necho $$ >> {}\nsleep {marker} &\nsleep {marker}",
            p(&started)
        ),
    )?;
    let lb1 = format!(
        "{}{}",
        global("lb1", ""),
        instance(
            "VI_1",
            51,
            "MASTER",
            150,
            "192.0.2.10/24",
            &format!("notify_master {}", p(&hang))
        )
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    c.start(1, Impl::HaAgent, &lb2_conf())?;
    c.wait_state(1, "VI_1", "BACKUP", LONG)?;
    wait_until("hung script started", LONG, || started.exists())?;
    wait_until("both sleeps running", LONG, || {
        leftovers(&marker).len() >= 2
    })?;

    // While it hangs VRRP goes on: lb1 still serves, lb2 stays BACKUP.
    assert!(c.client_reaches(VIP), "client cannot reach the VIP");
    assert_eq!(c.holder(VIP)?, Some(0));

    // keepalived-compatible default: 10 s, then SIGTERM, then SIGKILL after a grace.
    let timed_out = |c: &Classic| {
        c.node(0)
            .daemon()
            .log_text()
            .lines()
            .any(|l| l.contains("notify: MASTER") && l.contains("timed out"))
    };
    wait_until("notify run timed out", Duration::from_secs(25), || {
        timed_out(&c)
    })
    .with_context(|| c.node(0).daemon().log_text())?;
    wait_until("no sleep left", LONG, || leftovers(&marker).is_empty())
        .with_context(|| format!("left behind: {:?}", leftovers(&marker)))?;
    let agent_pid = c.node(0).daemon().pid().context("lb1 not running")?;
    wait_until("no child left under the agent", LONG, || {
        zombies_under(agent_pid).is_empty()
    })
    .with_context(|| format!("under the agent: {:?}", zombies_under(agent_pid)))?;

    // The peer never missed the master: no transition after its startup BACKUP.
    assert_eq!(transitions(c.node(1), "VI_1"), vec!["BACKUP".to_string()]);
    assert_eq!(
        transitions(c.node(0), "VI_1").last().map(String::as_str),
        Some("MASTER")
    );
    assert_eq!(c.node(0).entered("VI_1", "MASTER"), 1);
    assert!(
        c.client_reaches(VIP),
        "client cannot reach the VIP after the kill"
    );
    Ok(())
}

#[test]
fn insecure_root_script_is_refused_with_its_path() -> Result<()> {
    let mut c = Classic::new("notify-insecure")?;
    let d = conf::mkdir(&c.dir.join("scripts"))?;
    // A world-writable directory without the sticky bit: anyone could swap the script.
    let open = d.join("open");
    let bad_ran = d.join("bad.ran");
    let good_ran = d.join("good.ran");
    let bad = write_script(
        &open.join("notify.sh"),
        &format!("echo \"$*\" >> {}", p(&bad_ran)),
    )?;
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777))?;
    let good = write_script(
        &d.join("good.sh"),
        &format!("echo \"$*\" >> {}", p(&good_ran)),
    )?;
    let lb1 = format!(
        "{}{}{}",
        global("lb1", "script_user root\nenable_script_security"),
        conf::vrrp_script("chk_bad", &format!("{} check", p(&bad)), "interval 0.2"),
        instance(
            "VI_1",
            51,
            "MASTER",
            150,
            "192.0.2.10/24",
            &format!(
                "track_script {{\n    chk_bad\n}}\nnotify_master {}\nnotify {}",
                p(&bad),
                p(&good)
            )
        )
    );
    c.start(0, Impl::HaAgent, &lb1)?;
    // The refused tracker is ignored (keepalived disables it): lb1 still becomes MASTER.
    c.wait_state(0, "VI_1", "MASTER", LONG)?;
    // The secure generic script runs after the refused notify_master.
    wait_until("secure notify ran", LONG, || {
        lines(&good_ran)
            .iter()
            .any(|l| l.starts_with("INSTANCE VI_1 MASTER"))
    })?;
    wait_until("notify_master refusal reported", LONG, || {
        c.node(0)
            .daemon()
            .log_text()
            .lines()
            .any(|l| l.contains("notify: MASTER") && l.contains(&p(&bad)))
    })
    .with_context(|| c.node(0).daemon().log_text())?;
    assert!(
        !bad_ran.exists(),
        "the insecure script ran: {:?}",
        lines(&bad_ran)
    );

    let text = c.node(0).daemon().log_text();
    let component = p(&open);
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.to_lowercase().contains("insecure")
                && l.contains(&component)
                && l.contains("writable by others")
        })
        .collect();
    assert!(
        refusals.iter().any(|l| l.contains("chk_bad")),
        "the tracker's refusal does not name {component}:\n{text}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("notify")),
        "the notify refusal does not name {component}:\n{text}"
    );
    Ok(())
}

#[test]
fn notify_scripts_and_fifo_work_after_a_reload() -> Result<()> {
    let mut c = Classic::new("notify-reload")?;
    let [log, fifo_log, weight] = notify_setup(&mut c, false)?;
    wait_until("MASTER in the FIFO", LONG, || {
        lines(&fifo_log)
            .iter()
            .any(|l| l.starts_with("INSTANCE \"VI_1\" MASTER"))
    })?;
    // SIGHUP with the same file: the notifier and the FIFO writer are rebuilt.
    c.node(0).daemon().signal("HUP")?;
    wait_until("reload done", LONG, || {
        c.node(0)
            .daemon()
            .log_text()
            .contains("configuration reloaded")
    })
    .with_context(|| c.node(0).daemon().log_text())?;
    fs::write(&weight, "1\n")?;
    c.wait_state(0, "VI_1", "BACKUP", LONG)?;
    c.wait_state(1, "VI_1", "MASTER", LONG)?;
    let text = || c.node(0).daemon().log_text();
    wait_until("BACKUP notified after the reload", LONG, || {
        lines(&log).iter().any(|l| l == "INSTANCE VI_1 BACKUP 130")
    })
    .with_context(|| format!("notify.log: {:?}\n{}", lines(&log), text()))?;
    wait_until("BACKUP in the FIFO after the reload", LONG, || {
        lines(&fifo_log)
            .iter()
            .any(|l| l == "INSTANCE \"VI_1\" BACKUP 130")
    })
    .with_context(|| format!("fifo.log: {:?}\n{}", lines(&fifo_log), text()))?;
    Ok(())
}
