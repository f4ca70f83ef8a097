//! keepalived's command line on ha-agent, as Debian runs keepalived, with real processes.
//!
//! ```text
//!   host ns "hka" eth0 192.0.2.1/24 --- bridge br0 (switch ns)
//!     ha-agent <keepalived options> -f <scratch>/keepalived.conf
//!       VI_1: VRRPv3, 100 ms adverts, state MASTER priority 150, VIP 192.0.2.10/24
//! ```
//!
//! - Debian's own line: the `ExecStart` of Debian's keepalived.service with
//!   /etc/default/keepalived's `DAEMON_ARGS` (read from the installed keepalived package,
//!   which tests/run.sh installs), plus `-f` (the test's config instead of
//!   /etc/keepalived/keepalived.conf) and the scratch state/runtime directories.
//! - The issue's line `-D -l -n -S 3`: VRRP runs (MASTER, VIP added), the console gets
//!   the log (with -D's debug detail), syslog facility local3 gets it too (a private
//!   socket through the hidden `--log-socket`), the pid files of `-p -r -c` hold the pid
//!   and go at exit.
//! - `-t -f BAD` exits non-zero naming file:line; `--config-test=FILE`, `--check`, `-i`,
//!   `--signum`, `-v`.
//! - `-C` (checkers only: no VRRP instance runs) and `-P` (VRRP only: no load balancer),
//!   `-d` (config dumped to the log).
//! - global_defs `state_dump_file` / `json_dump_file` / `stats_dump_file` move the
//!   SIGUSR1 / SIGUSR2 dumps; `vrrp_delay_after_boot` holds VRRP back after boot.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_tests::conf::{global, instance};
use ha_tests::proc::{bin, wait_until, Agent, Daemon};
use ha_tests::Lan;

const LONG: Duration = Duration::from_secs(20);
const VIP: &str = "192.0.2.10";

/// A scratch directory for one test.
fn scratch(name: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("ha-tests-kacli-{name}-"))
        .tempdir()?)
}

/// The LAN with one host, `eth0` at 192.0.2.1/24.
fn lan() -> Result<Lan> {
    let mut lan = Lan::new()?;
    lan.add_host("hka", "192.0.2.1/24", None)?;
    Ok(lan)
}

/// The config: `global_defs` with `global_extra`, VI_1 as MASTER 150 with the VIP.
fn config(global_extra: &str) -> String {
    format!(
        "{}{}",
        global("lb1", global_extra),
        instance("VI_1", 51, "MASTER", 150, &format!("{VIP}/24"), "")
    )
}

/// Start ha-agent with exactly `args` in the host namespace; the agent's runtime dir is
/// `<dir>/state` (pass it in `args`), where [`Agent::stats`] reads.
fn start(lan: &Lan, dir: &Path, args: &[String]) -> Result<Agent> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(lan.ns(0), dir, "ha-agent", &bin("ha-agent")?, &args)?;
    Ok(Agent {
        daemon,
        state_dir: dir.join("state"),
    })
}

/// `-f CONF --state-dir D --runtime-dir D`, the config written to `<dir>/keepalived.conf`.
fn base_args(dir: &Path, conf: &str) -> Result<Vec<String>> {
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, conf)?;
    let state = dir.join("state").to_string_lossy().into_owned();
    Ok(vec![
        "-f".into(),
        cfg.to_string_lossy().into_owned(),
        "--state-dir".into(),
        state.clone(),
        "--runtime-dir".into(),
        state,
    ])
}

/// Wait until VI_1 is MASTER with the VIP on eth0.
fn wait_master(lan: &Lan, agent: &Agent) -> Result<()> {
    wait_until("VI_1 MASTER with its VIP", LONG, || {
        lan.ns(0).has_addr(VIP) && agent.state("VI_1").is_ok_and(|s| s == "MASTER")
    })
    .with_context(|| format!("agent log:\n{}", agent.daemon.log_text()))
}

/// Wait for the agent's start line (its signal handlers are in place from then on).
fn wait_started(agent: &Agent) -> Result<()> {
    wait_until("agent started", LONG, || {
        agent.daemon.log_text().contains("ha-agent started")
    })
    .with_context(|| agent.daemon.log_text())
}

/// SIGTERM, exit 0, VIP gone.
fn stop(lan: &Lan, agent: &mut Agent) -> Result<()> {
    agent.daemon.signal("TERM")?;
    let code = agent.daemon.wait_exit(LONG)?;
    anyhow::ensure!(
        code == Some(0),
        "exit {code:?}; log:\n{}",
        agent.daemon.log_text()
    );
    anyhow::ensure!(!lan.ns(0).has_addr(VIP), "VIP left after a clean stop");
    Ok(())
}

/// The shell words of `VAR="..."` in a defaults file (comments and other lines skipped).
fn shell_var(text: &str, var: &str) -> Option<Vec<String>> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{var}=")))?;
    let value = line.split_once('=')?.1.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some(value.split_whitespace().map(str::to_owned).collect())
}

/// Debian's keepalived command line: its unit's `ExecStart` arguments with
/// /etc/default/keepalived's `DAEMON_ARGS` in place of `$DAEMON_ARGS`.
fn debian_command_line() -> Result<Vec<String>> {
    let defaults = "/etc/default/keepalived";
    let unit = [
        "/lib/systemd/system/keepalived.service",
        "/usr/lib/systemd/system/keepalived.service",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .context("Debian's keepalived.service missing: install Debian's keepalived package")?;
    let daemon_args = shell_var(
        &fs::read_to_string(defaults)
            .with_context(|| format!("{defaults}: install Debian's keepalived package"))?,
        "DAEMON_ARGS",
    )
    .with_context(|| format!("no DAEMON_ARGS line in {defaults}"))?;
    let unit_text = fs::read_to_string(unit)?;
    let exec = unit_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .with_context(|| format!("no ExecStart in {unit}"))?;
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap_or_default();
    anyhow::ensure!(program.ends_with("keepalived"), "ExecStart runs {program}");
    let mut out = Vec::new();
    for w in words {
        if w == "$DAEMON_ARGS" || w == "${DAEMON_ARGS}" {
            out.extend(daemon_args.iter().cloned());
        } else {
            out.push(w.to_owned());
        }
    }
    Ok(out)
}

#[test]
fn debian_daemon_args_line_runs_vrrp() -> Result<()> {
    let line = debian_command_line()?;
    let lan = lan()?;
    let dir = scratch("debian")?;
    let mut args = line.clone();
    args.extend(base_args(dir.path(), &config(""))?);
    let mut agent = start(&lan, dir.path(), &args)?;
    wait_master(&lan, &agent)?;
    let log = agent.daemon.log_text();
    assert!(
        log.contains("(VI_1) Entering MASTER STATE"),
        "{line:?}: console log:\n{log}"
    );
    if line.iter().any(|a| a == "--dont-fork" || a == "-n") {
        assert!(log.contains("ha-agent never forks"), "{log}");
    }
    stop(&lan, &mut agent)
}

/// Syslog datagrams received on a private socket.
struct Syslog {
    sock: UnixDatagram,
    lines: Vec<String>,
}

impl Syslog {
    fn bind(path: &Path) -> Result<Syslog> {
        let sock = UnixDatagram::bind(path)?;
        sock.set_nonblocking(true)?;
        Ok(Syslog {
            sock,
            lines: Vec::new(),
        })
    }

    /// Read what arrived; true if some line has every needle.
    fn has(&mut self, needles: &[&str]) -> bool {
        let mut buf = [0u8; 8192];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.lines
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.lines
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    }
}

#[test]
fn issue_line_d_l_n_s3_runs_vrrp_logs_and_writes_pid_files() -> Result<()> {
    let lan = lan()?;
    let dir = scratch("dlns")?;
    let d = dir.path();
    let sock_path = d.join("log.sock");
    let mut syslog = Syslog::bind(&sock_path)?;
    let pid = d.join("keepalived.pid");
    let vrrp_pid = d.join("vrrp.pid");
    let checkers_pid = d.join("checkers.pid");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut args: Vec<String> = ["-D", "-l", "-n", "-S", "3"].map(String::from).to_vec();
    args.extend(base_args(d, &config(""))?);
    args.extend([
        "-p".into(),
        s(&pid),
        "-r".into(),
        s(&vrrp_pid),
        "-c".into(),
        s(&checkers_pid),
        "--log-socket".into(),
        s(&sock_path),
    ]);
    let mut agent = start(&lan, d, &args)?;
    wait_master(&lan, &agent)?;
    let log = agent.daemon.log_text();
    assert!(log.contains("(VI_1) Entering MASTER STATE"), "{log}");
    assert!(log.contains("ha-agent never forks"), "{log}");
    if std::env::var_os("RUST_LOG").is_none() {
        // -D: debug detail (the GARP burst of a new master is a debug line).
        wait_until("a debug line from -D", LONG, || {
            agent.daemon.log_text().contains("sent gratuitous ARP / NA")
        })
        .with_context(|| agent.daemon.log_text())?;
    }
    // -S 3: local3 (facility 19); informational (6): PRI 19 x 8 + 6 = 158.
    wait_until("local3 syslog line", LONG, || {
        syslog.has(&["<158>", "(VI_1) Entering MASTER STATE"])
    })
    .with_context(|| format!("syslog: {:?}", syslog.lines))?;
    let want = format!("{}\n", agent.daemon.pid().context("pid")?);
    for p in [&pid, &vrrp_pid, &checkers_pid] {
        assert_eq!(fs::read_to_string(p)?, want, "{}", p.display());
    }
    stop(&lan, &mut agent)?;
    for p in [&pid, &vrrp_pid, &checkers_pid] {
        assert!(!p.exists(), "{} left after exit", p.display());
    }
    Ok(())
}

/// Run ha-agent outside any namespace (config test, --signum, -v): (code, stdout, stderr).
fn run_once(args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = Command::new(bin("ha-agent")?).args(args).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn config_test_signum_version_and_config_id() -> Result<()> {
    let dir = scratch("t")?;
    let bad = dir.path().join("bad.conf");
    // Line 9: the VRID.
    fs::write(
        &bad,
        config("").replace("virtual_router_id 51", "virtual_router_id 300"),
    )?;
    let good = dir.path().join("good.conf");
    fs::write(&good, config(""))?;
    let (b, g) = (bad.to_string_lossy(), good.to_string_lossy());
    let line = fs::read_to_string(&bad)?
        .lines()
        .position(|l| l.contains("virtual_router_id 300"))
        .context("vrid line")?
        + 1;
    let want = format!("{b}:{line}: virtual_router_id 300 out of range 1-255");
    let (code, _, err) = run_once(&["-t", "-f", &b])?;
    assert_ne!(code, Some(0));
    assert!(err.contains(&want), "{err}");
    // The whole keepalived line, in -t mode.
    let (code, _, err) = run_once(&["-D", "-l", "-n", "-S", "3", "-t", "-f", &b])?;
    assert_ne!(code, Some(0));
    assert!(err.contains(&want), "{err}");
    for args in [
        vec!["-t", "-f", &g],
        vec!["--check", "--config", &g],
        vec!["--config-test", "--use-file", &g],
    ] {
        let (code, out, err) = run_once(&args)?;
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        assert!(out.contains("configuration ok"), "{args:?}: {out}");
    }
    // --config-test=FILE: the messages go to FILE (appended), not to stderr.
    let log = dir.path().join("test.log");
    let opt = format!("--config-test={}", log.display());
    let (code, _, err) = run_once(&[&opt, "-f", &b])?;
    assert_ne!(code, Some(0));
    assert!(err.is_empty(), "{err}");
    assert!(fs::read_to_string(&log)?.contains(&want));
    // -i: `@ID` lines apply only under that config-id.
    let idconf = dir.path().join("id.conf");
    fs::write(
        &idconf,
        config("").replace(
            "    priority 150",
            "    priority 150\n@lbx virtual_router_id 300",
        ),
    )?;
    let i = idconf.to_string_lossy();
    let (code, _, err) = run_once(&["-t", "-i", "lbx", "-f", &i])?;
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("virtual_router_id 300 out of range"), "{err}");
    let (code, out, err) = run_once(&["-t", "--config-id", "lby", "-f", &i])?;
    assert_eq!(code, Some(0), "{out}{err}");
    // --signum as keepalived prints it (JSON: the SIGUSR1 dump writes keepalived.json).
    for (func, n) in [
        ("STOP", 15),
        ("RELOAD", 1),
        ("DATA", 10),
        ("STATS", 12),
        ("JSON", 10),
    ] {
        let (code, out, _) = run_once(&[&format!("--signum={func}")])?;
        assert_eq!(
            (code, out.trim()),
            (Some(0), n.to_string().as_str()),
            "{func}"
        );
    }
    let (code, _, err) = run_once(&["--signum=NOPE"])?;
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown sigfunc NOPE"), "{err}");
    let (code, out, _) = run_once(&["-v"])?;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ha-agent "), "{out}");
    Ok(())
}

#[test]
fn checkers_only_runs_no_vrrp_and_vrrp_only_no_load_balancer() -> Result<()> {
    let lan = lan()?;
    let dir = scratch("pc")?;
    let vs = "virtual_server 192.0.2.10 80 {\n    lb_kind NAT\n    protocol TCP\n    real_server 192.0.2.50 80 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    let conf = format!("{}{vs}", config(""));
    // -C (and -d): the config is dumped, no VRRP instance runs.
    let c_dir = dir.path().join("c");
    fs::create_dir_all(&c_dir)?;
    let mut args: Vec<String> = vec!["-C".into(), "-d".into(), "-l".into()];
    args.extend(base_args(&c_dir, &conf)?);
    let mut agent = start(&lan, &c_dir, &args)?;
    wait_started(&agent)?;
    let stats = agent.stats()?;
    assert_eq!(
        stats["instances"].as_array().map(Vec::len),
        Some(0),
        "{stats}"
    );
    assert!(!lan.ns(0).has_addr(VIP));
    let log = agent.daemon.log_text();
    assert!(log.contains("-C: checkers only"), "{log}");
    assert!(log.contains("VrrpInstance {"), "-d dumps the config: {log}");
    agent.daemon.signal("TERM")?;
    assert_eq!(agent.daemon.wait_exit(LONG)?, Some(0));
    // -P: VRRP runs, the load balancer does not.
    let p_dir = dir.path().join("p");
    fs::create_dir_all(&p_dir)?;
    let mut args: Vec<String> = vec!["-P".into()];
    args.extend(base_args(&p_dir, &conf)?);
    let mut agent = start(&lan, &p_dir, &args)?;
    wait_master(&lan, &agent)?;
    let stats = agent.stats()?;
    assert!(stats["lb"].is_null(), "-P runs no load balancer: {stats}");
    stop(&lan, &mut agent)?;
    // Both: nothing to run, refused.
    let (code, _, err) = run_once(&["-P", "-C", "-t", "-f", "/dev/null"])?;
    assert_eq!(code, Some(2), "{err}");
    Ok(())
}

/// Wait for `path` to hold text containing `needle` (newer than `after`, when given).
fn wait_file(path: &Path, needle: &str, after: Option<&str>) -> Result<String> {
    let mut got = String::new();
    wait_until(
        &format!("{} with {needle:?}", path.display()),
        LONG,
        || match fs::read_to_string(path) {
            Ok(t) if t.contains(needle) && Some(t.as_str()) != after => {
                got = t;
                true
            }
            _ => false,
        },
    )?;
    Ok(got)
}

#[test]
fn dump_file_keywords_move_the_dumps() -> Result<()> {
    let lan = lan()?;
    let dir = scratch("dump")?;
    let d = dir.path();
    let dumps = d.join("dumps");
    // state: a file name; json: relative (under --runtime-dir); stats: a directory.
    let extra = format!(
        "state_dump_file {}\njson_dump_file my.json\nstats_dump_file {}/\n",
        dumps.join("ka.data").display(),
        dumps.display()
    );
    let mut agent = start(&lan, d, &base_args(d, &config(&extra))?)?;
    let runtime = d.join("state");
    // Agent::stats reads <runtime>/stats.json, which must not be written: poll ours, once
    // the signal handlers are in place (SIGUSR2's default action ends a process).
    wait_started(&agent)?;
    let stats_path = dumps.join("stats.json");
    wait_until("VI_1 MASTER", LONG, || {
        let _ = agent.daemon.signal("USR2");
        std::thread::sleep(Duration::from_millis(100));
        fs::read_to_string(&stats_path).is_ok_and(|t| t.contains("\"MASTER\""))
    })
    .with_context(|| agent.daemon.log_text())?;
    let stats: serde_json::Value = serde_json::from_str(&fs::read_to_string(&stats_path)?)?;
    assert_eq!(stats["instances"][0]["name"], "VI_1", "{stats}");
    agent.daemon.signal("USR1")?;
    let text = wait_file(&dumps.join("ka.data"), "VRRP Instance = VI_1", None)?;
    assert!(text.contains("State = MASTER"), "{text}");
    let json = wait_file(&runtime.join("my.json"), "VI_1", None)?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["instances"][0]["name"], "VI_1");
    for default in ["stats.json", "keepalived.data", "keepalived.json"] {
        assert!(
            !runtime.join(default).exists(),
            "{default} written in the runtime dir despite the *_dump_file keywords"
        );
    }
    stop(&lan, &mut agent)
}

/// Seconds since boot, from /proc/uptime.
fn uptime_s() -> Result<f64> {
    let t = fs::read_to_string("/proc/uptime")?;
    match t.split_whitespace().next().map(str::parse::<f64>) {
        Some(Ok(v)) => Ok(v),
        _ => bail!("/proc/uptime: {t}"),
    }
}

#[test]
fn vrrp_delay_after_boot_holds_vrrp_back_until_then() -> Result<()> {
    let lan = lan()?;
    let dir = scratch("boot")?;
    // Booted "just now" as far as the config says: 300 s from now.
    let held = dir.path().join("held");
    fs::create_dir_all(&held)?;
    let extra = format!("vrrp_delay_after_boot {:.2}\n", uptime_s()? + 300.0);
    let mut agent = start(&lan, &held, &base_args(&held, &config(&extra))?)?;
    wait_until("delay logged and agent started", LONG, || {
        let l = agent.daemon.log_text();
        l.contains("delaying vrrp start") && l.contains("ha-agent started")
    })
    .with_context(|| agent.daemon.log_text())?;
    // Nothing started: INIT, no VIP (the delay is minutes, the checks take a moment).
    assert_eq!(agent.state("VI_1")?, "INIT");
    assert!(!lan.ns(0).has_addr(VIP));
    agent.daemon.signal("TERM")?;
    assert_eq!(agent.daemon.wait_exit(LONG)?, Some(0));
    // Long after boot (the machine has been up more than a second): no delay at all.
    let late = dir.path().join("late");
    fs::create_dir_all(&late)?;
    let mut agent = start(
        &lan,
        &late,
        &base_args(&late, &config("vrrp_delay_after_boot 1\n"))?,
    )?;
    wait_master(&lan, &agent)?;
    assert!(!agent.daemon.log_text().contains("delaying vrrp start"));
    stop(&lan, &mut agent)
}
