//! End to end with the whole fleet: ha-manager on its own host, ha-agents on lb1 and lb2,
//! hactl from the client (see `ha_tests::fleet` for the drawing). Real processes in
//! namespaces; the manager and agents are driven only through their CLI contract.
//!
//! What these tests assume of the manager and the agent is listed in the report of the
//! fleet tests and in each test's comments: node names are `--node` (lb1, lb2); a
//! transition caused by an override has a reason containing "priority override"; the
//! COMMAND history event of a mutation mentions its request id (and, with mTLS, the
//! certificate's name) somewhere in its fields; alert kinds are "split-brain" and
//! "clock-offset" as in ha.proto.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_tests::fleet::{alerts_of, connected, instance, node, pki_init, pki_issue, state_of, Fleet};
use ha_tests::scenario::{fast_pair_conf, CLIENT};
use serde_json::Value;

const VIP: &str = "192.0.2.10";
const LONG: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(30);

fn conf(idx: usize) -> String {
    fast_pair_conf(idx)
}

/// Manager, then lb1 (MASTER 150) and lb2 (BACKUP 100), both connected and settled.
fn fleet(test: &str, tls: bool, lb2_clock: Option<&str>) -> Result<Fleet> {
    Fleet::settled_pair(test, tls, lb2_clock)
}

/// A request id no other run used.
fn unique_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}-{}-{nanos}", std::process::id())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Whether any string field of an event contains `needle`.
fn mentions(e: &Value, needle: &str) -> bool {
    e.to_string().contains(needle)
}

/// `hactl watch --json` running in the client namespace; lines arrive on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(f: &Fleet, args: &[&str]) -> Result<Watch> {
        let hactl = ha_tests::bin("hactl")?;
        let mut all = vec!["--manager".to_string(), f.url(), "--insecure".into()];
        all.extend(["watch", "--json"].map(String::from));
        all.extend(args.iter().map(|a| a.to_string()));
        let mut child = f
            .classic
            .lan
            .ns(CLIENT)
            .command(&hactl.to_string_lossy())
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Watch { child, lines })
    }

    /// Wait for a line whose JSON satisfies `cond`.
    fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = std::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .with_context(|| format!("watch line is not JSON: {line}"))?;
                    if cond(&v) {
                        return Ok(v);
                    }
                    seen.push(line);
                }
                Err(_) => bail!(
                    "watch: no {what} within {limit:?}; saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn status_set_priority_history_watch_and_retried_request() -> Result<()> {
    let f = fleet("flprio", false, None)?;

    // Status: both nodes, right states, base and effective priorities, the VIP.
    let st = f.status()?;
    let a = instance(&st, "lb1", "VI_1").context("lb1 VI_1")?;
    let b = instance(&st, "lb2", "VI_1").context("lb2 VI_1")?;
    assert_eq!(a["vrid"], 51);
    assert_eq!(
        (
            a["base_priority"].as_u64(),
            a["effective_priority"].as_u64()
        ),
        (Some(150), Some(150))
    );
    assert_eq!(
        (
            b["base_priority"].as_u64(),
            b["effective_priority"].as_u64()
        ),
        (Some(100), Some(100))
    );
    assert!(
        a["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| s(x) == "192.0.2.10/24")),
        "{st:#}"
    );
    assert!(node(&st, "lb1").is_some_and(|n| n["clock_offset_ms"].is_number()));
    assert!(st["alerts"].is_array(), "{st:#}");
    let table = f.hactl(&["status"])?.ok()?.stdout;
    for word in [
        "lb1",
        "lb2",
        "VI_1",
        "MASTER",
        "BACKUP",
        "150",
        "192.0.2.10/24",
    ] {
        assert!(table.contains(word), "status table lacks {word}:\n{table}");
    }
    let nodes = f.hactl(&["nodes", "--json"])?.ok()?.json()?;
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .map(|n| s(&n["name"]))
        .collect();
    assert!(names.contains(&"lb1") && names.contains(&"lb2"), "{nodes}");

    // Watch lb2 live while the override lands.
    let watch = Watch::start(&f, &["--node", "lb2"])?;
    std::thread::sleep(Duration::from_millis(500)); // let the stream open before acting

    let id = unique_id("prio");
    let out = f
        .hactl(&["set-priority", "lb2", "VI_1", "200", "--request-id", &id])?
        .ok()?;
    assert!(
        out.stdout.contains("lb2 VI_1") && out.stdout.contains("200"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("replayed"), "{}", out.stdout);

    // The backup becomes master; the old master steps down.
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(0, "VI_1", "BACKUP", LONG)?;
    assert_eq!(f.classic.holder(VIP)?, Some(1));
    let st = f.wait_status("lb2 MASTER at 200 over base 100", SETTLE, |s| {
        instance(s, "lb2", "VI_1").is_some_and(|i| {
            i["state"] == "MASTER" && i["base_priority"] == 100 && i["effective_priority"] == 200
        }) && state_of(s, "lb1", "VI_1") == "BACKUP"
    })?;
    assert_eq!(
        instance(&st, "lb1", "VI_1").context("lb1")?["effective_priority"],
        150
    );

    // History: the transition, with its reason.
    f.wait_history(
        "lb2 VI_1 BACKUP -> MASTER with reason priority override",
        &[
            "--node",
            "lb2",
            "--instance",
            "VI_1",
            "--kind",
            "transition",
        ],
        SETTLE,
        |ev| {
            ev.iter().any(|e| {
                e["kind"] == "TRANSITION"
                    && e["to_state"] == "MASTER"
                    && s(&e["reason"]).contains("priority override")
            })
        },
    )?;
    // And live, on the watch stream.
    watch.wait("lb2 transition to MASTER", LONG, |e| {
        e["node"] == "lb2" && e["kind"] == "TRANSITION" && e["to_state"] == "MASTER"
    })?;

    // A retried request id runs once: the second answer is the stored one.
    let again = f
        .hactl(&["set-priority", "lb2", "VI_1", "200", "--request-id", &id])?
        .ok()?;
    assert!(again.stdout.contains("replayed"), "{}", again.stdout);
    let commands = f.history(&["--kind", "command"])?;
    let runs = commands.iter().filter(|e| mentions(e, &id)).count();
    assert_eq!(runs, 1, "request {id} ran {runs} times: {commands:#?}");
    Ok(())
}

#[test]
fn errors_name_what_is_wrong_and_vips_move() -> Result<()> {
    let f = fleet("flerr", false, None)?;

    // Unknown node or instance: exit 1, and the message lists what exists.
    let out = f.hactl(&["set-priority", "lb9", "VI_1", "200"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("lb1") && out.stderr.contains("lb2"),
        "{out:?}"
    );
    let out = f.hactl(&["set-priority", "lb2", "VI_9", "200"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("VI_1"), "{out:?}");

    // Usage errors: exit 2, nothing sent.
    let out = f.hactl(&["set-priority", "lb2", "VI_1", "300"])?;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("1..=255"), "{out:?}");
    let out = f.hactl(&["vip", "add", "lb2", "VI_1", "192.0.2.300/24"])?;
    assert_eq!(out.code, 2, "{out:?}");
    let out = f.hactl_raw(&["--manager", &f.url(), "status"])?;
    assert_eq!(out.code, 2, "plaintext without --insecure: {out:?}");
    assert!(out.stderr.contains("--insecure"), "{out:?}");

    // Manager unreachable: exit 3, with the URL.
    let wrong = "http://192.0.2.50:7401";
    let out = f.hactl_raw(&[
        "--manager",
        wrong,
        "--insecure",
        "--timeout",
        "3s",
        "status",
    ])?;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains(wrong), "{out:?}");

    // Nothing changed on the way.
    let st = f.status()?;
    assert_eq!(
        instance(&st, "lb2", "VI_1").context("lb2")?["effective_priority"],
        100
    );

    // VIP add and delete on the master.
    f.hactl(&["vip", "add", "lb1", "VI_1", "192.0.2.20/24"])?
        .ok()?;
    ha_tests::proc::wait_until("192.0.2.20 on lb1", LONG, || {
        f.classic.lan.ns(0).has_addr("192.0.2.20")
    })?;
    f.wait_status("192.0.2.20/24 among lb1's VIPs", SETTLE, |s| {
        instance(s, "lb1", "VI_1").is_some_and(|i| {
            i["vips"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "192.0.2.20/24"))
        })
    })?;
    assert!(f.classic.client_reaches("192.0.2.20"));
    f.hactl(&["vip", "del", "lb1", "VI_1", "192.0.2.20/24"])?
        .ok()?;
    ha_tests::proc::wait_until("192.0.2.20 gone from lb1", LONG, || {
        !f.classic.lan.ns(0).has_addr("192.0.2.20")
    })?;
    assert!(
        f.classic.lan.ns(0).has_addr(VIP),
        "the configured VIP must stay"
    );
    Ok(())
}

/// (node, boot_id) -> seqs in history order; fails on duplicates, disorder, holes, gaps.
fn check_history_integrity(events: &[Value]) -> Result<()> {
    let mut last_id = 0;
    let mut seen = HashSet::new();
    let mut per_boot: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for e in events {
        let hid = e["history_id"].as_u64().context("history_id")?;
        if hid <= last_id {
            bail!("history out of order at history_id {hid} (after {last_id})");
        }
        last_id = hid;
        if e["kind"] == "GAP" {
            bail!("history records a gap: {e}");
        }
        if e["kind"] == "COMMAND" || s(&e["boot_id"]).is_empty() {
            continue; // manager-side events carry no agent seq
        }
        let key = (s(&e["node"]).to_string(), s(&e["boot_id"]).to_string());
        let seq = e["seq"].as_u64().context("seq")?;
        if !seen.insert((key.clone(), seq)) {
            bail!("duplicate event {key:?} seq {seq}");
        }
        per_boot.entry(key).or_default().push(seq);
    }
    for (key, seqs) in &per_boot {
        for w in seqs.windows(2) {
            if w[1] != w[0] + 1 {
                bail!(
                    "{key:?}: seq {} follows {} (lost or reordered events): {seqs:?}",
                    w[1],
                    w[0]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn failover_while_the_manager_is_down_reaches_history_after_restart() -> Result<()> {
    let mut f = fleet("fldown", false, None)?;
    let before = f.history(&[])?;
    check_history_integrity(&before)?;
    let lb2_seq_before = before
        .iter()
        .filter(|e| e["node"] == "lb2")
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(0);

    // Manager gone; the master loses its link: VRRP fails over all the same.
    f.kill_manager()?;
    f.classic.lan.set_link(0, false)?;
    f.classic.wait_state(0, "VI_1", "FAULT", LONG)?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert_eq!(f.classic.holder(VIP)?, Some(1));
    assert!(f.classic.client_reaches(VIP));
    // The link comes back: lb1 preempts again.
    f.classic.lan.set_link(0, true)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;

    // Same --data: the agents replay what the manager missed.
    f.start_manager()?;
    f.wait_status("both agents back", SETTLE, |s| {
        connected(s, "lb1") && connected(s, "lb2")
    })?;
    let after = f.wait_history(
        "the failover and the return in history",
        &[],
        SETTLE,
        |ev| {
            let lb2: Vec<&Value> = ev
                .iter()
                .filter(|e| {
                    e["node"] == "lb2"
                        && e["kind"] == "TRANSITION"
                        && e["seq"].as_u64() > Some(lb2_seq_before)
                })
                .collect();
            let up = lb2.iter().position(|e| e["to_state"] == "MASTER");
            let down = lb2.iter().rposition(|e| e["to_state"] == "BACKUP");
            let lb1_fault = ev.iter().any(|e| {
                e["node"] == "lb1" && e["kind"] == "TRANSITION" && e["to_state"] == "FAULT"
            });
            matches!((up, down), (Some(u), Some(d)) if u < d) && lb1_fault
        },
    )?;
    check_history_integrity(&after)?;
    // Nothing from before the crash was lost.
    let ids: HashSet<u64> = after
        .iter()
        .filter_map(|e| e["history_id"].as_u64())
        .collect();
    for e in &before {
        let hid = e["history_id"].as_u64().context("history_id")?;
        assert!(
            ids.contains(&hid),
            "event lost across the manager restart: {e}"
        );
    }
    // lb1's story in order: MASTER, FAULT, then MASTER again.
    let lb1: Vec<&str> = after
        .iter()
        .filter(|e| e["node"] == "lb1" && e["kind"] == "TRANSITION")
        .map(|e| s(&e["to_state"]))
        .collect();
    let fault = lb1
        .iter()
        .position(|x| *x == "FAULT")
        .context("lb1 FAULT")?;
    assert!(lb1[..fault].contains(&"MASTER"), "{lb1:?}");
    assert!(lb1[fault..].contains(&"MASTER"), "{lb1:?}");
    Ok(())
}

#[test]
fn switchover_moves_the_master_and_it_stays_until_the_override_ends() -> Result<()> {
    let f = fleet("flswitch", false, None)?;
    let out = f.hactl(&["switchover", "VI_1", "--to", "lb2"])?.ok()?;
    assert!(out.stdout.contains("lb2"), "{out:?}");
    f.wait_status("lb2 master at 151 after the switchover", SETTLE, |s| {
        state_of(s, "lb2", "VI_1") == "MASTER"
            && instance(s, "lb2", "VI_1").is_some_and(|i| i["effective_priority"] == 151)
    })?;
    assert_eq!(f.classic.holder(VIP)?, Some(1));
    // lb1 (preempt, 150) does not take it back: lb2 advertises 151. Three seconds of
    // adverts later it is still lb2's (a state check, not a timing one).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state_of(&f.status()?, "lb2", "VI_1"), "MASTER");
    assert_eq!(
        f.classic.node(0).entered("VI_1", "MASTER"),
        1,
        "lb1 took it back"
    );
    // Ending the override hands the instance back to lb1.
    f.hactl(&["set-priority", "lb2", "VI_1", "clear"])?.ok()?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    Ok(())
}

#[test]
fn override_stays_in_force_when_the_agent_restarts_without_a_manager() -> Result<()> {
    let mut f = fleet("flkeep", false, None)?;
    f.hactl(&["set-priority", "lb2", "VI_1", "200"])?.ok()?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    f.wait_status("lb2 override at 200", SETTLE, |s| {
        instance(s, "lb2", "VI_1").is_some_and(|i| i["effective_priority"] == 200)
    })?;

    f.kill_manager()?;
    f.classic.node_mut(1).stop()?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;

    // No manager anywhere: the agent re-applies its persisted override at start.
    f.start_agent(1, &conf(1), None)?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(0, "VI_1", "BACKUP", LONG)?;
    let stats = f.agent(1)?.stats()?;
    let inst = stats["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "VI_1"))
        .context("VI_1 in stats")?;
    assert_eq!(inst["effective_priority"], 200, "{stats:#}");
    assert_eq!(inst["base_priority"], 100, "{stats:#}");
    assert_eq!(f.classic.holder(VIP)?, Some(1));
    Ok(())
}

#[test]
fn mtls_roles_are_enforced_and_foreign_certificates_refused() -> Result<()> {
    let f = fleet("fltls", true, None)?;
    let pki = match &f.security {
        ha_tests::fleet::Security::Tls(p) => p.clone(),
        _ => bail!("not a TLS fleet"),
    };

    // A viewer reads but cannot change anything.
    f.hactl_as("viewer", &["status", "--json"])?.ok()?;
    let out = f.hactl_as("viewer", &["set-priority", "lb2", "VI_1", "200"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stderr.trim().is_empty(), "{out:?}");

    // A certificate from another CA is refused, whatever role it claims.
    let other = f.classic.dir.join("other-ca");
    pki_init(&other)?;
    pki_issue(&other, "intruder", "admin", &[])?;
    let p = |d: &std::path::Path, n: &str| d.join(n).to_string_lossy().into_owned();
    for args in [vec!["status"], vec!["set-priority", "lb2", "VI_1", "200"]] {
        let mut all = vec![
            "--manager".to_string(),
            f.url(),
            "--ca".into(),
            p(&pki, "ca.pem"),
            "--cert".into(),
            p(&other, "intruder.pem"),
            "--key".into(),
            p(&other, "intruder.key"),
            "--timeout".into(),
            "5s".into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = f.hactl_raw(&argv)?;
        assert_ne!(out.code, 0, "foreign certificate accepted: {out:?}");
        assert!(!out.stderr.trim().is_empty(), "{out:?}");
    }
    // No client certificate at all, or plaintext: refused too.
    let out = f.hactl_raw(&[
        "--manager",
        &f.url(),
        "--ca",
        &p(&pki, "ca.pem"),
        "--timeout",
        "5s",
        "status",
    ])?;
    assert_ne!(out.code, 0, "no client certificate accepted: {out:?}");
    let plain = format!(
        "http://{}:{}",
        ha_tests::fleet::MGR_ADDR,
        ha_tests::fleet::MGR_PORT
    );
    let out = f.hactl_raw(&[
        "--manager",
        &plain,
        "--insecure",
        "--timeout",
        "5s",
        "status",
    ])?;
    assert_ne!(out.code, 0, "plaintext accepted by a TLS manager: {out:?}");

    // Nothing changed; the operator can, and the audit names the certificate.
    let st = f.status()?;
    assert_eq!(
        instance(&st, "lb2", "VI_1").context("lb2")?["effective_priority"],
        100
    );
    let id = unique_id("tlsop");
    f.hactl_as(
        "operator",
        &["set-priority", "lb2", "VI_1", "200", "--request-id", &id],
    )?
    .ok()?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    let commands = f.history(&["--kind", "command"])?;
    let mine: Vec<&Value> = commands.iter().filter(|e| mentions(e, &id)).collect();
    assert_eq!(mine.len(), 1, "{commands:#?}");
    assert!(
        mentions(mine[0], "operator"),
        "audit lacks the identity: {:#}",
        mine[0]
    );
    assert!(
        !commands.iter().any(|e| mentions(e, "intruder")),
        "{commands:#?}"
    );
    Ok(())
}

#[test]
fn wrong_agent_clock_shows_as_offset_and_alert() -> Result<()> {
    // lb2's wall clock runs 5 s ahead (libfaketime); its monotonic clock is untouched, so
    // VRRP is unaffected (the fleet settled normally).
    let f = fleet("flclock", false, Some("+5s"))?;
    let st = f.wait_status(
        "lb2 offset near 5 s with a clock-offset alert",
        SETTLE,
        |s| {
            let off = |n: &str| node(s, n).and_then(|x| x["clock_offset_ms"].as_f64());
            off("lb2").is_some_and(|o| (4000.0..=6000.0).contains(&o.abs()))
                && alerts_of(s, "clock-offset")
                    .iter()
                    .any(|a| mentions(a, "lb2"))
        },
    )?;
    let lb1 = node(&st, "lb1")
        .and_then(|x| x["clock_offset_ms"].as_f64())
        .context("lb1 offset")?;
    assert!(lb1.abs() < 1000.0, "lb1 offset {lb1} ms: {st:#}");
    assert!(
        !alerts_of(&st, "clock-offset")
            .iter()
            .any(|a| mentions(a, "lb1")),
        "lb1 has a good clock: {st:#}"
    );
    let table = f.hactl(&["status"])?.ok()?.stdout;
    assert!(table.contains("clock-offset"), "{table}");
    Ok(())
}

#[test]
fn split_brain_raises_an_alert_and_healing_clears_it() -> Result<()> {
    let f = fleet("flsplit", false, None)?;
    assert!(alerts_of(&f.status()?, "split-brain").is_empty());

    // lb2 stops hearing lb1: it takes over while lb1 stays master.
    f.block_vrrp(1, true)?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    assert_eq!(f.classic.node(0).state("VI_1").as_deref(), Some("MASTER"));
    let st = f.wait_status("split-brain alert", SETTLE, |s| {
        state_of(s, "lb1", "VI_1") == "MASTER"
            && state_of(s, "lb2", "VI_1") == "MASTER"
            && !alerts_of(s, "split-brain").is_empty()
    })?;
    let alert = alerts_of(&st, "split-brain")[0].to_string();
    assert!(
        alert.contains("51") || alert.contains("VI_1"),
        "alert names the VRID or instance: {alert}"
    );
    let table = f.hactl(&["status"])?.ok()?.stdout;
    assert!(table.contains("split-brain"), "{table}");

    // Heal: lb2 hears the higher priority again and steps back; the alert clears.
    f.block_vrrp(1, false)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status("split-brain cleared", SETTLE, |s| {
        state_of(s, "lb2", "VI_1") == "BACKUP" && alerts_of(s, "split-brain").is_empty()
    })?;
    let raised = f.history(&["--kind", "alert-raised"])?;
    assert!(
        raised.iter().any(|e| mentions(e, "split-brain")),
        "{raised:#?}"
    );
    let cleared = f.history(&["--kind", "alert-cleared"])?;
    assert!(
        cleared.iter().any(|e| mentions(e, "split-brain")),
        "{cleared:#?}"
    );
    Ok(())
}
