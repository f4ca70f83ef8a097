//! Telemetry end to end with real processes (issue 6): the fleet of `ha_tests::fleet`
//! (ha-manager, ha-agents on lb1 and lb2, hactl from the client) plus, in the client
//! namespace, a real Prometheus (Debian package `prometheus`) and an OTLP/gRPC receiver
//! run by this test (tonic services generated from the opentelemetry-proto definitions).
//!
//! ```text
//!   client 192.0.2.100: prometheus :9090 (scrapes :9464 of mgr, lb1, lb2)
//!                       OTLP receiver :4317 (this test; manager, agents, hactl export)
//!   mgr 192.0.2.50: ha-manager --metrics-listen :9464 --otlp-endpoint client:4317
//!   lb1, lb2: ha-agent (--metrics-listen :9464 --otlp-endpoint client:4317 once the
//!             agent binary has those flags; until then only the manager is scraped)
//! ```
//!
//! Checked: every PromQL expression of deploy/grafana/dashboards/ha-fleet.json returns at
//! least one series (the agents run a virtual server so the load-balancer panels have
//! series too; agent expressions are listed as pending only if the agent binary lacks
//! `--metrics-listen`); a failover caused by `hactl set-priority` shows in the transitions
//! metric; the receiver gets OTLP metrics; one trace id covers the spans of hactl, the
//! manager and (once wired) the agent, each the child of the previous one; and the
//! failover itself arrives as lb2's `vrrp transition` span (BACKUP to MASTER, with its
//! `state change` event).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::fleet::{connected, state_of, Fleet, MGR, MGR_ADDR, MGR_PORT};
use ha_tests::otlp::{GotSpan, Receiver};
use ha_tests::proc::{bin, Agent, Daemon};
use ha_tests::scenario::{render, Inst, Node, CLIENT};
use serde_json::Value;

const CLIENT_ADDR: &str = "192.0.2.100";
const METRICS_PORT: u16 = 9464;
const PROM_PORT: u16 = 9090;
const OTLP_PORT: u16 = 4317;
const LONG: Duration = Duration::from_secs(30);
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Whether `program --help` mentions `flag`.
fn has_flag(program: &Path, flag: &str) -> bool {
    Command::new(program)
        .arg("--help")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains(flag)
                || String::from_utf8_lossy(&o.stderr).contains(flag)
        })
        .unwrap_or(false)
}

fn conf(idx: usize) -> String {
    let mut i = if idx == 0 {
        Inst::new("VI_1", 51, "MASTER", 150)
    } else {
        Inst::new("VI_1", 51, "BACKUP", 100)
    };
    i.version = 3;
    i.advert_int = "0.1".into();
    let text = render(&format!("lb{}", idx + 1), &[i]);
    // A tracker, so that the tracker panels have series; a virtual server (its real
    // server, the client, serves nothing: a failing checker), so that the load-balancer
    // panels have series.
    let text = text.replacen(
        "    interface eth0\n",
        "    interface eth0\n    track_interface {\n        eth0\n    }\n",
        1,
    );
    format!(
        "{text}virtual_server 192.0.2.10 80 {{\n    delay_loop 1\n    lb_kind DR\n    protocol TCP\n    \
         real_server 192.0.2.100 80 {{\n        weight 2\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\n"
    )
}

/// ha-manager with metrics and OTLP; waits until hactl gets a status.
fn start_manager(f: &mut Fleet, otlp: &str) -> Result<()> {
    let listen = format!("{MGR_ADDR}:{MGR_PORT}");
    let metrics = format!("{MGR_ADDR}:{METRICS_PORT}");
    let data = f.data.to_string_lossy().into_owned();
    let args = [
        "--listen",
        listen.as_str(),
        "--data",
        data.as_str(),
        "--insecure",
        "--metrics-listen",
        metrics.as_str(),
        "--otlp-endpoint",
        otlp,
        "--ping-interval-s",
        "1",
    ];
    let d = Daemon::start(
        f.classic.lan.ns(MGR),
        &f.classic.dir.join("mgr"),
        "ha-manager",
        &bin("ha-manager")?,
        &args,
    )?;
    f.manager = Some(d);
    let start = Instant::now();
    while f.hactl(&["status", "--json"])?.code != 0 {
        if start.elapsed() > LONG {
            bail!("manager not answering:\n{}", f.manager_log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// ha-agent on lb`idx+1` with `--metrics-listen` (and `--otlp-endpoint` if it has it).
fn start_agent(f: &mut Fleet, idx: usize, otlp: Option<&str>) -> Result<()> {
    let name = format!("lb{}", idx + 1);
    let dir = f.classic.dir.join(&name);
    fs::create_dir_all(&dir)?;
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, conf(idx))?;
    let state_dir = dir.join("state");
    let metrics = format!("192.0.2.{}:{METRICS_PORT}", idx + 1);
    let (c, s, url) = (
        cfg.to_string_lossy().into_owned(),
        state_dir.to_string_lossy().into_owned(),
        f.url(),
    );
    let mut args = vec![
        "--config",
        c.as_str(),
        "--state-dir",
        s.as_str(),
        "--runtime-dir",
        s.as_str(),
        "--node",
        name.as_str(),
        "--manager",
        url.as_str(),
        "--insecure",
        "--metrics-listen",
        metrics.as_str(),
    ];
    if let Some(o) = otlp {
        args.extend(["--otlp-endpoint", o]);
    }
    f.classic.nodes[idx] = None;
    let daemon = Daemon::start(
        f.classic.lan.ns(idx),
        &dir,
        "ha-agent",
        &bin("ha-agent")?,
        &args,
    )?;
    f.classic.nodes[idx] = Some(Node::Agent(Agent { daemon, state_dir }));
    Ok(())
}

/// Prometheus in the client namespace scraping every second.
fn start_prometheus(f: &Fleet, agents: bool) -> Result<Daemon> {
    let dir = f.classic.dir.join("prometheus");
    fs::create_dir_all(&dir)?;
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         \x20 - job_name: ha-manager\n    honor_labels: true\n    static_configs:\n\
         \x20     - targets: [\"{MGR_ADDR}:{METRICS_PORT}\"]\n        labels: {{node: mgr}}\n"
    );
    if agents {
        cfg.push_str(&format!(
            "  - job_name: ha-agent\n    honor_labels: true\n    static_configs:\n\
             \x20     - targets: [\"192.0.2.1:{METRICS_PORT}\"]\n        labels: {{node: lb1}}\n\
             \x20     - targets: [\"192.0.2.2:{METRICS_PORT}\"]\n        labels: {{node: lb2}}\n"
        ));
    }
    let file = dir.join("prometheus.yml");
    fs::write(&file, cfg)?;
    let (cf, data, listen) = (
        format!("--config.file={}", file.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={CLIENT_ADDR}:{PROM_PORT}"),
    );
    Daemon::start(
        f.classic.lan.ns(CLIENT),
        &dir,
        "prometheus",
        Path::new(PROMETHEUS),
        &[cf.as_str(), data.as_str(), listen.as_str()],
    )
}

/// One instant query through Prometheus' HTTP API (curl in the client namespace).
fn query(f: &Fleet, expr: &str) -> Result<Vec<Value>> {
    let out = f
        .classic
        .lan
        .ns(CLIENT)
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-G",
            &format!("http://{CLIENT_ADDR}:{PROM_PORT}/api/v1/query"),
            "--data-urlencode",
            &format!("query={expr}"),
        ])
        .output()
        .context("run curl")?;
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "prometheus answer to {expr:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if v["status"] != "success" {
        bail!("query {expr:?} failed: {v}");
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every `targets[].expr` of the dashboard (rows included).
fn dashboard_exprs() -> Result<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/dashboards/ha-fleet.json");
    let v: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut out);
    if out.len() < 20 {
        bail!("only {} expressions in {}", out.len(), path.display());
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn prometheus_dashboard_and_otlp_traces() -> Result<()> {
    if !Path::new(PROMETHEUS).exists() {
        bail!("{PROMETHEUS} missing: install the Debian package prometheus");
    }
    let agent_bin = bin("ha-agent")?;
    let agent_metrics = has_flag(&agent_bin, "--metrics-listen");
    let agent_otlp = has_flag(&agent_bin, "--otlp-endpoint");
    eprintln!("ha-agent: --metrics-listen {agent_metrics}, --otlp-endpoint {agent_otlp}");

    let mut f = Fleet::new("tel", false)?;
    let otlp = format!("http://{CLIENT_ADDR}:{OTLP_PORT}");

    // The OTLP receiver, listening in the client namespace.
    let rt = tokio::runtime::Runtime::new()?;
    let received = Receiver::default();
    let _server = received.serve_in(
        &rt,
        f.classic.lan.ns(CLIENT),
        &format!("{CLIENT_ADDR}:{OTLP_PORT}"),
    )?;

    start_manager(&mut f, &otlp)?;
    for idx in 0..2 {
        if agent_metrics {
            start_agent(&mut f, idx, agent_otlp.then_some(otlp.as_str()))?;
        } else {
            f.start_agent(idx, &conf(idx), None)?;
        }
    }
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status("both agents connected", LONG, |s| {
        connected(s, "lb1") && connected(s, "lb2")
    })?;
    let _prom = start_prometheus(&f, agent_metrics)?;

    // A command that fails over: lb2 above lb1 (preempt) becomes MASTER; one trace.
    let out = f
        .hactl(&[
            "--otlp-endpoint",
            &otlp,
            "set-priority",
            "lb2",
            "VI_1",
            "200",
        ])?
        .ok()?;
    eprintln!("hactl: {}", out.stdout.trim());
    f.wait_status("lb2 MASTER after the override", LONG, |s| {
        state_of(s, "lb2", "VI_1") == "MASTER"
    })?;

    // The failover shows in the transitions metric (the agent's, or the manager's view
    // and ingest counter while the agent exports no metrics).
    let failover_exprs: Vec<&str> = if agent_metrics {
        vec![r#"ha_vrrp_transitions_total{node="lb2",to="MASTER"} > 0"#]
    } else {
        vec![
            r#"ha_manager_events_ingested_total{kind="TRANSITION"} > 0"#,
            r#"ha_manager_instance_state{node="lb2",instance="VI_1"} == 2"#,
        ]
    };
    for e in &failover_exprs {
        wait_series(&f, e, LONG)?;
    }

    // Every dashboard expression returns a series (pending families listed).
    let exprs = dashboard_exprs()?;
    let agent_families = [
        "ha_vrrp_",
        "ha_tracker_",
        "ha_notify_",
        "ha_link_",
        "ha_agent_",
        "ha_lb_",
    ];
    let mut pending = Vec::new();
    let mut required = Vec::new();
    for e in exprs {
        let is_agent = agent_families.iter().any(|p| e.contains(p));
        if is_agent && !agent_metrics {
            pending.push(e);
        } else {
            required.push(e);
        }
    }
    let start = Instant::now();
    let missing = loop {
        let mut missing = Vec::new();
        for e in &required {
            if query(&f, e)?.is_empty() {
                missing.push(e.clone());
            }
        }
        if missing.is_empty() || start.elapsed() > LONG {
            break missing;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "dashboard: {} expressions return series; pending (not exported yet): {pending:#?}",
        required.len() - missing.len()
    );
    if !missing.is_empty() {
        bail!("dashboard expressions without any series: {missing:#?}");
    }

    // OTLP: metrics from the manager (and the agents when wired), and one trace.
    let start = Instant::now();
    loop {
        let (have_mgr, have_agent) = {
            let got = received.got();
            (
                got.metrics
                    .get("ha-manager")
                    .is_some_and(|m| m.iter().any(|n| n == "ha_manager_agents_connected")),
                got.metrics
                    .get("ha-agent")
                    .is_some_and(|m| m.iter().any(|n| n == "ha_vrrp_state")),
            )
        };
        if have_mgr && (have_agent || !agent_otlp) {
            break;
        }
        if start.elapsed() > LONG {
            bail!(
                "OTLP metrics missing (manager {have_mgr}, agent {have_agent}): {:?}",
                received.got().metrics
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let start = Instant::now();
    loop {
        let spans = received.got().spans.clone();
        let root = spans
            .iter()
            .find(|s| s.service == "hactl" && s.name == "hactl set-priority");
        if let Some(root) = root {
            let same: Vec<&GotSpan> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .collect();
            let mgr = same
                .iter()
                .find(|s| s.service == "ha-manager" && s.name == "ha-manager SetPriority");
            let agent = same.iter().find(|s| s.service == "ha-agent");
            let complete = mgr.is_some() && (agent.is_some() || !agent_otlp);
            if complete {
                let mgr = mgr.context("manager span")?;
                assert_eq!(
                    hex(&mgr.parent),
                    hex(&root.span_id),
                    "the manager's span is the child of hactl's"
                );
                if let Some(a) = agent {
                    assert_eq!(
                        hex(&a.parent),
                        hex(&mgr.span_id),
                        "the agent's span is the child of the manager's"
                    );
                }
                eprintln!(
                    "trace {}: {:?}",
                    hex(&root.trace_id),
                    same.iter()
                        .map(|s| (&s.service, &s.name))
                        .collect::<Vec<_>>()
                );
                break;
            }
        }
        if start.elapsed() > LONG {
            bail!(
                "no complete trace (hactl, manager{}) in {:#?}\nmanager log:\n{}",
                if agent_otlp { ", agent" } else { "" },
                spans,
                f.manager_log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // The failover as a span of lb2's agent: BACKUP to MASTER, with its event.
    if agent_otlp {
        let start = Instant::now();
        loop {
            let spans = received.got().spans.clone();
            let takeover = spans.iter().find(|s| {
                s.service == "ha-agent"
                    && s.node == "lb2"
                    && s.name == "vrrp transition"
                    && s.attrs.get("ha.to").map(String::as_str) == Some("MASTER")
            });
            if let Some(t) = takeover {
                assert_eq!(t.attrs.get("ha.instance").map(String::as_str), Some("VI_1"));
                assert_eq!(t.attrs.get("ha.vrid").map(String::as_str), Some("51"));
                assert_eq!(t.attrs.get("ha.from").map(String::as_str), Some("BACKUP"));
                assert_eq!(t.attrs.get("ha.priority").map(String::as_str), Some("200"));
                assert_eq!(t.events, ["state change"]);
                eprintln!("transition span of lb2: {:?}", t.attrs);
                break;
            }
            if start.elapsed() > LONG {
                let names: Vec<_> = spans
                    .iter()
                    .map(|s| (&s.service, &s.node, &s.name))
                    .collect();
                bail!("no vrrp transition span of lb2 to MASTER in {names:#?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// Poll Prometheus until `expr` returns a series.
fn wait_series(f: &Fleet, expr: &str, limit: Duration) -> Result<Vec<Value>> {
    let start = Instant::now();
    loop {
        let r = query(f, expr)?;
        if !r.is_empty() {
            return Ok(r);
        }
        if start.elapsed() > limit {
            bail!("no series for {expr} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
