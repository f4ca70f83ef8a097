//! Syslog output against a real rsyslogd: the classic keepalived setup where rsyslog routes
//! facility local3 to its own file keeps working with ha-agent.
//!
//! ```text
//!   rsyslogd (private config, socket <scratch>/log.sock)
//!      local3.*          -> keepalived.log
//!      everything else   -> other.log
//!         ^ datagrams
//!   lb1 ha-agent --log-facility local3  VI_1
//!   lb2 ha-agent -S 3                   VI_2   (keepalived's numeric form)
//!   lb3 ha-agent --log-facility local4  VI_3   (must not reach keepalived.log;
//!                                              console lines in JSON)
//! ```
//!
//! Needs Debian's `rsyslog` package (`/usr/sbin/rsyslogd`); the system /dev/log is never
//! touched: the agents get the private socket through the hidden `--log-socket`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ha_tests::proc::{bin, wait_until, Daemon};
use ha_tests::scenario::{render, Inst};
use ha_tests::syslog;
use ha_tests::Lan;

const LONG: Duration = Duration::from_secs(20);

/// rsyslogd routing local3 to keepalived.log and the rest to other.log, under `dir`.
fn start_rsyslogd(lan: &Lan, dir: &Path) -> Result<(Daemon, PathBuf)> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    // The template shows facility and severity, so the test checks the PRI end to end.
    let rules = format!(
        r#"template(name="tagged" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg%\n")
local3.* action(type="omfile" file="{k}" template="tagged")
*.*;local3.none action(type="omfile" file="{o}" template="tagged")"#,
        k = p("keepalived.log"),
        o = p("other.log"),
    );
    syslog::start_rsyslogd(&lan.switch, dir, &rules)
}

/// ha-agent on lan host `idx` running instance `inst`, with extra logging arguments.
fn start_agent(lan: &Lan, dir: &Path, idx: usize, inst: Inst, log_args: &[&str]) -> Result<Daemon> {
    let dir = dir.join(format!("lb{}", idx + 1));
    fs::create_dir_all(&dir)?;
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, render(&format!("lb{}", idx + 1), &[inst]))?;
    let state = dir.join("state");
    let mut args = vec![
        "--config".to_string(),
        cfg.to_string_lossy().into_owned(),
        "--state-dir".to_string(),
        state.to_string_lossy().into_owned(),
        "--runtime-dir".to_string(),
        state.to_string_lossy().into_owned(),
    ];
    args.extend(log_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(lan.ns(idx), &dir, "ha-agent", &bin("ha-agent")?, &args)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// rsyslogd and the agents of one run, with their scratch directory.
struct Run {
    dir: PathBuf,
    rsyslog: Daemon,
    agents: Vec<Daemon>,
}

impl Run {
    /// A failure message with both rsyslog files and every process log.
    fn explain(&self, what: &str) -> String {
        let mut s = format!(
            "{what}\n--- keepalived.log:\n{}\n--- other.log:\n{}\n--- rsyslogd:\n{}",
            read(&self.dir.join("keepalived.log")),
            read(&self.dir.join("other.log")),
            self.rsyslog.log_text()
        );
        for (i, d) in self.agents.iter().enumerate() {
            s.push_str(&format!("\n--- lb{}:\n{}", i + 1, d.log_text()));
        }
        s
    }

    /// Wait until `file` (in the scratch dir) contains every one of `needles`.
    fn wait_for(&self, file: &str, needles: &[&str]) -> Result<()> {
        let path = self.dir.join(file);
        wait_until(&format!("{needles:?} in {file}"), LONG, || {
            let text = read(&path);
            needles.iter().all(|n| text.contains(n))
        })
        .with_context(|| self.explain("lines missing"))
    }
}

#[test]
fn transitions_reach_rsyslog_local3_file() -> Result<()> {
    let mut lan = Lan::new()?;
    lan.add_host("hsa", "192.0.2.1/24", None)?;
    lan.add_host("hsb", "192.0.2.2/24", None)?;
    lan.add_host("hsc", "192.0.2.3/24", None)?;
    let dir = std::env::temp_dir().join(format!("ha-tests-syslog-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let (rsyslog, sock) = start_rsyslogd(&lan, &dir)?;
    let sock = sock.to_string_lossy().into_owned();

    let inst = |name: &str, vrid: u8, vip: &str| {
        let mut i = Inst::new(name, vrid, "MASTER", 150);
        i.vips = vec![vip.to_string()];
        i
    };
    let agents = vec![
        start_agent(
            &lan,
            &dir,
            0,
            inst("VI_1", 51, "192.0.2.10/24"),
            &["--log-facility", "local3", "--log-socket", &sock],
        )?,
        start_agent(
            &lan,
            &dir,
            1,
            inst("VI_2", 52, "192.0.2.11/24"),
            &["-S", "3", "--log-socket", &sock],
        )?,
        start_agent(
            &lan,
            &dir,
            2,
            inst("VI_3", 53, "192.0.2.12/24"),
            &[
                "--log-facility",
                "local4",
                "--log-socket",
                &sock,
                "--log-format",
                "json",
            ],
        )?,
    ];
    let mut run = Run {
        dir: dir.clone(),
        rsyslog,
        agents,
    };
    let pid = |i: usize| run.agents[i].pid().unwrap_or_default();

    // Each agent's transition line arrives with its tag, facility and severity (info).
    let want_a = format!(
        "local3.info ha-agent[{}]: (VI_1) Entering MASTER STATE",
        pid(0)
    );
    let want_b = format!(
        "local3.info ha-agent[{}]: (VI_2) Entering MASTER STATE",
        pid(1)
    );
    let want_c = format!(
        "local4.info ha-agent[{}]: (VI_3) Entering MASTER STATE",
        pid(2)
    );
    run.wait_for("keepalived.log", &[&want_a, &want_b])?;
    run.wait_for("other.log", &[&want_c])?;

    // Facilities are kept apart: local4 never lands in the local3 file and vice versa.
    let k = read(&dir.join("keepalived.log"));
    let o = read(&dir.join("other.log"));
    assert!(
        !k.contains("VI_3"),
        "{}",
        run.explain("local4 line in keepalived.log")
    );
    assert!(
        !o.contains("(VI_1)") && !o.contains("(VI_2)"),
        "{}",
        run.explain("local3 line in other.log")
    );
    // Fields follow the message, as on the console.
    let line = k.lines().find(|l| l.contains(&want_a)).unwrap_or_default();
    assert!(line.contains("instance=VI_1"), "no fields: {line}");
    // The console keeps its lines too: syslog is added, not substituted.
    assert!(
        run.agents[0]
            .log_text()
            .contains("(VI_1) Entering MASTER STATE"),
        "{}",
        run.explain("console line missing")
    );

    // --log-format json changes the console lines, not the syslog ones.
    let console = run.agents[2].log_text();
    let json = console
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "(VI_3) Entering MASTER STATE");
    let json = json.with_context(|| run.explain("no JSON transition line on lb3's console"))?;
    assert_eq!(json["level"], "INFO", "{json}");
    assert_eq!(json["fields"]["instance"], "VI_3", "{json}");
    assert!(json["timestamp"].is_string(), "{json}");

    // Lines logged on the way out are flushed before the process exits.
    let want_stop = format!("ha-agent[{}]: stopped", pid(0));
    run.agents[0].signal("TERM")?;
    run.agents[0].wait_exit(LONG)?;
    run.wait_for("keepalived.log", &[&want_stop])?;

    drop(run);
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
