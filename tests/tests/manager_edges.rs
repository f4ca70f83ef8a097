//! The manager and hactl at their edges (issue 18, items 3 to 6), with real processes in
//! namespaces (see `ha_tests::fleet` for the drawing):
//!
//! - a disk that fills while commands run (the data dir on a small tmpfs): every command
//!   answered ok has its audit record in history, even after a kill -9 of the manager;
//!   the others fail with a clear error;
//! - `hactl --timeout 1s` against a listener that accepts TCP and never speaks TLS: exit
//!   3 in about a second;
//! - a flood of client connections that are then closed (some half-closed, some mid
//!   handshake): no ESTABLISHED leftover on the manager's port;
//! - refused agent sessions (an impostor certificate, an operator certificate on the
//!   agent stream) and a refused read are audit events in history, and the refused agent
//!   never logs "manager connected".

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::fleet::{connected, Fleet};
use ha_tests::scenario::fast_pair_conf;
use ha_tests::tmpfs::Tmpfs;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);

/// The request id of a COMMAND history event, and its result.
fn command_record(ev: &Value) -> Option<(String, String)> {
    let detail: Value = serde_json::from_str(ev["detail"].as_str()?).ok()?;
    Some((
        detail["request_id"].as_str()?.to_string(),
        detail["result"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The disk fills while 40 commands run: each one answered ok has its audit record in
/// history, also after the manager is killed with -9 and restarted (durable, not only
/// in memory); each one refused says why.
#[test]
fn every_ok_command_is_audited_on_a_filling_disk() -> Result<()> {
    let mut f = Fleet::new("medisk", false)?;
    let mnt = f.classic.dir.join("mgr-mnt");
    let tmpfs = Tmpfs::mount(&mnt, "24m")?;
    f.data = mnt.join("data");
    f.manager_args = ["--ping-interval-s", "1"].map(String::from).to_vec();
    f.start_manager()?;
    f.start_agent(0, &fast_pair_conf(0), None)?;
    f.start_agent(1, &fast_pair_conf(1), None)?;
    f.wait_status("both agents connected", SETTLE, |s| {
        connected(s, "lb1") && connected(s, "lb2")
    })?;

    // Leave a little room (a 32 KiB pad freed after the fill): the commands and the
    // agents' events fill it up while the commands run.
    let pad = mnt.join("pad");
    std::fs::write(&pad, vec![0u8; 32 * 1024])?;
    let filler = tmpfs.fill("filler")?;
    std::fs::remove_file(&pad)?;

    let mut ok = BTreeSet::new();
    let mut refused = Vec::new();
    for i in 0..40 {
        let rid = format!("edge-disk-{i}");
        let prio = (110 + i % 20).to_string();
        let out = f.hactl(&["set-priority", "lb2", "VI_1", &prio, "--request-id", &rid])?;
        match out.code {
            0 => {
                ok.insert(rid);
            }
            1 => {
                refused.push((rid, prio));
                assert!(
                    out.stderr.contains("not writable")
                        || out.stderr.contains("could not be stored")
                        || out.stderr.contains("history store"),
                    "a refusal says the store is the cause: {out:?}"
                );
            }
            _ => bail!("unexpected exit: {out:?}"),
        }
    }
    println!(
        "{} of 40 commands ok, {} refused on a filling disk",
        ok.len(),
        refused.len()
    );

    // Durable means it survives a kill -9: kill, free the space, restart, read history.
    f.kill_manager()?;
    std::fs::remove_file(&filler)?;
    f.start_manager()?;
    // Retried with the same request id: an ok now (run now, or answered from the
    // request-id record) must have its audit record too.
    f.wait_status("lb2 connected again", SETTLE, |s| connected(s, "lb2"))?;
    let mut retried_ok = 0;
    for (rid, prio) in &refused {
        let out = f.hactl(&["set-priority", "lb2", "VI_1", prio, "--request-id", rid])?;
        if out.code == 0 {
            retried_ok += 1;
            ok.insert(rid.clone());
        } else {
            println!("retry of {rid}: {}", out.stderr.trim());
        }
    }
    println!(
        "{retried_ok} of {} refused commands ok when retried",
        refused.len()
    );
    let events = f.history(&["--kind", "command", "--limit", "1000"])?;
    let audited: BTreeSet<String> = events
        .iter()
        .filter_map(command_record)
        .filter(|(_, result)| result == "ok")
        .map(|(rid, _)| rid)
        .collect();
    let missing: Vec<&String> = ok.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "ok commands without an audit record: {missing:?}\naudited: {audited:?}"
    );
    println!(
        "every ok command is in history ({} audited ok)",
        audited.len()
    );
    Ok(())
}

/// Start `cmd` with its stdout piped and wait for its first line (it is ready then).
fn spawn_and_read_line(
    cmd: &mut std::process::Command,
    what: &str,
) -> Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let out = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    Ok((child, line))
}

/// How long `f` took, and its value.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let start = Instant::now();
    let v = f()?;
    Ok((v, start.elapsed()))
}

/// A listener that accepts TCP and never answers the TLS handshake: `hactl --timeout 1s
/// status` gives up after about a second with exit 3 (manager unreachable).
#[test]
fn hactl_timeout_covers_the_tls_handshake() -> Result<()> {
    let f = Fleet::new("metls", true)?;
    // Not a manager: a TCP listener on the manager's address that never writes (the
    // kernel completes the TCP handshake from its backlog).
    let ns = f.mgr_ns();
    let (mut silent, line) = spawn_and_read_line(
        ns.command("python3").args([
            "-c",
            "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('192.0.2.50',7400))\ns.listen(64)\nprint('listening',flush=True)\nconns=[]\nwhile True:\n    c,_=s.accept(); conns.append(c)\n",
        ]),
        "the silent listener",
    )?;
    assert!(line.contains("listening"), "{line}");
    let res = (|| -> Result<()> {
        for timeout in ["1s", "2s"] {
            let pki = f.classic.dir.join("pki");
            let p = |n: &str| pki.join(n).to_string_lossy().into_owned();
            let (ca, cert, key) = (p("ca.pem"), p("operator.pem"), p("operator.key"));
            let url = f.url();
            let args = [
                "--manager",
                &url,
                "--ca",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                "--timeout",
                timeout,
                "status",
            ];
            let (out, took) = timed(|| f.hactl_raw(&args))?;
            println!(
                "hactl --timeout {timeout} status: exit {} after {took:?}",
                out.code
            );
            assert_eq!(out.code, 3, "{out:?}");
            let want = humantime_secs(timeout);
            assert!(
                took >= want && took < want + Duration::from_millis(900),
                "--timeout {timeout} ended after {took:?}: {out:?}"
            );
            assert!(out.stderr.contains("timed out"), "{out:?}");
        }
        Ok(())
    })();
    let _ = silent.kill();
    let _ = silent.wait();
    res
}

fn humantime_secs(s: &str) -> Duration {
    Duration::from_secs(s.trim_end_matches('s').parse().unwrap_or(0))
}

/// The flood client: `python3 -c FLOOD MODE COUNT CA CERT KEY`. MODE `close`: every
/// connection ends (a third right after the TCP connect, a third after the TLS
/// handshake, a third half-closed after the HTTP/2 preface, read to the server's close);
/// MODE `hold`: TLS and the preface, "ready", then it waits to be cut off and killed.
const FLOOD: &str = r#"
import socket, ssl, sys, time
mode, count, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2"])
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
held = []
for i in range(count):
    s = socket.create_connection(("192.0.2.50", 7400), timeout=10)
    kind = i % 3 if mode == "close" else 3
    if kind == 0:
        s.close()
        continue
    t = ctx.wrap_socket(s, server_hostname="192.0.2.50")
    if kind == 1:
        t.close()
        continue
    t.sendall(PREFACE)
    if kind == 2:
        t.shutdown(socket.SHUT_WR)
        held.append(t)
        continue
    held.append(t)
print("ready", len(held), flush=True)
if mode == "close":
    for t in held:
        try:
            t.settimeout(30)
            while t.recv(65536):
                pass
        except Exception:
            pass
        t.close()
    print("done", flush=True)
else:
    time.sleep(3600)
"#;

/// ESTABLISHED and CLOSE-WAIT connections on the manager's port, from its namespace.
fn leftovers(f: &Fleet) -> Result<Vec<String>> {
    let out = f
        .mgr_ns()
        .sh("ss -Htn state established state close-wait '( sport = :7400 )'")?;
    Ok(out
        .lines()
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Client connections closed in every way (at once, after TLS, half-closed after the
/// HTTP/2 preface) and peers that vanish without a FIN (their link cut, then killed):
/// the manager closes its side; none stays ESTABLISHED or CLOSE-WAIT beyond a bound
/// (TCP keepalive 10 s + 3 x 5 s, HTTP/2 ping 10 s + 20 s), and it still answers.
#[test]
fn closed_and_dead_clients_leave_no_established_connections() -> Result<()> {
    let mut f = Fleet::new("meflood", true)?;
    f.start_manager()?;
    let pki = f.classic.dir.join("pki");
    let p = |n: &str| pki.join(n).to_string_lossy().into_owned();
    let (ca, cert, key) = (p("ca.pem"), p("operator.pem"), p("operator.key"));

    // Peers that will vanish: their own host, cut off after connecting.
    let dead = f.classic.lan.add_host("hdd", "192.0.2.67/24", None)?;
    let (mut hold, line) = spawn_and_read_line(
        f.classic
            .lan
            .ns(dead)
            .command("python3")
            .args(["-c", FLOOD, "hold", "20", &ca, &cert, &key]),
        "the holding client",
    )?;
    assert!(line.starts_with("ready 20"), "holding client: {line:?}");
    // The closing flood from the client host.
    let out = f
        .classic
        .lan
        .ns(ha_tests::scenario::CLIENT)
        .command("python3")
        .args(["-c", FLOOD, "close", "150", &ca, &cert, &key])
        .output()
        .context("run the closing flood")?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("done"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let during = leftovers(&f)?;
    println!(
        "after the closing flood: {} open on :7400 (20 held)",
        during.len()
    );

    // Cut the holders off without a FIN reaching the manager, then kill them.
    f.classic.lan.ns(dead).sh("ip link set eth0 down")?;
    let _ = hold.kill();
    let _ = hold.wait();
    let cut = Instant::now();
    let limit = Duration::from_secs(60);
    loop {
        let left = leftovers(&f)?;
        if left.is_empty() {
            println!(
                "no leftover {:?} after the dead peers were cut off",
                cut.elapsed()
            );
            break;
        }
        if cut.elapsed() > limit {
            bail!(
                "{} connections still open {limit:?} after the flood:\n{}",
                left.len(),
                left.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // And it still serves.
    f.status()?;
    Ok(())
}

/// Start ha-agent on LAN host `idx` with `cert`'s certificate, claiming node `node`.
fn start_agent_as(f: &mut Fleet, idx: usize, cert: &str, node: &str) -> Result<ha_tests::Daemon> {
    let dir = f.classic.dir.join(format!("as-{cert}"));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("keepalived.conf");
    std::fs::write(&cfg, fast_pair_conf(idx))?;
    let mut args =
        ha_tests::fleet::agent_args(&cfg, &dir.join("state"), cert, &f.url(), &f.security);
    let at = args.iter().position(|a| a == "--node").context("--node")?;
    args[at + 1] = node.to_string();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = ha_tests::bin("ha-agent")?;
    ha_tests::Daemon::start(f.classic.lan.ns(idx), &dir, "ha-agent", &agent, &argv)
}

/// Refused COMMAND records in history: (who, op, node, result).
fn refusals(events: &[Value]) -> Vec<(String, String, String, String)> {
    events
        .iter()
        .filter_map(|ev| {
            let detail: Value = serde_json::from_str(ev["detail"].as_str()?).ok()?;
            let result = detail["result"].as_str()?.to_string();
            result.starts_with("denied").then(|| {
                (
                    detail["who"].as_str().unwrap_or_default().to_string(),
                    ev["reason"].as_str().unwrap_or_default().to_string(),
                    ev["node"].as_str().unwrap_or_default().to_string(),
                    result,
                )
            })
        })
        .collect()
}

/// An impostor (lb1's certificate claiming lb2) and an operator certificate opening the
/// agent stream are refused, and each refusal is an audit record in history, once per
/// minute however often the agent retries; a refused read (an agent certificate asking
/// for status) too. The refused agents never log "manager connected".
#[test]
fn refused_sessions_and_reads_are_audited() -> Result<()> {
    let mut f = Fleet::new("merefuse", true)?;
    f.start_manager()?;
    let impostor = start_agent_as(&mut f, 0, "lb1", "lb2")?;
    let operator = start_agent_as(&mut f, 1, "operator", "lb2")?;
    let read = f.hactl_as("lb1", &["status"])?;
    assert_eq!(read.code, 1, "{read:?}");
    assert!(read.stderr.contains("may not call"), "{read:?}");

    let events = f.wait_history(
        "the three refusals",
        &["--kind", "command"],
        SETTLE,
        |evs| {
            let r = refusals(evs);
            let has = |who: &str, op: &str| r.iter().any(|(w, o, _, _)| w == who && o == op);
            has("lb1", "agent-session") && has("operator", "agent-session") && has("lb1", "status")
        },
    )?;
    let r = refusals(&events);
    for x in &r {
        println!("refusal in history: {x:?}");
    }
    assert!(
        r.iter().any(|(w, o, n, res)| w == "lb1"
            && o == "agent-session"
            && n == "lb2"
            && res.contains("certificate lb1 may not speak for node lb2")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|(w, o, _, res)| w == "operator"
            && o == "agent-session"
            && res.contains("role operator may not call /ha.v1.AgentLink/Session")),
        "{r:?}"
    );

    // The impostor keeps retrying: several refusals, one record (rate limit).
    let mgr = || f.manager_log();
    ha_tests::proc::wait_until("three refused impostor sessions", SETTLE, || {
        mgr().matches("agent session refused").count() >= 3
    })
    .with_context(mgr)?;
    let events = f.history(&["--kind", "command"])?;
    let impostor_records = refusals(&events)
        .iter()
        .filter(|(w, o, _, _)| w == "lb1" && o == "agent-session")
        .count();
    println!(
        "impostor: {} refusals logged by the manager, {impostor_records} in history",
        mgr().matches("agent session refused").count()
    );
    assert_eq!(impostor_records, 1, "rate-limited to one a minute");

    for (name, agent) in [("impostor", &impostor), ("operator", &operator)] {
        let log = agent.log_text();
        assert!(
            !log.contains("manager connected"),
            "the {name} agent logged a connection it never had:\n{log}"
        );
        assert!(
            log.contains("manager unreachable"),
            "the {name} agent says why:\n{log}"
        );
    }
    Ok(())
}
