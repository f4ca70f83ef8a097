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
//!
//! And the ecosystem conventions (issue 12 item 7, `metric_pages_pass_promtool_and_alert_rules_fire`):
//! `promtool check metrics` on every page, `node` / `vrrp_instance` on agent series, the
//! dashboard's variables and the labels its queries use, and the shipped alert rules
//! (deploy/prometheus/ha-alerts.yml) firing in Prometheus on real conditions.

use std::collections::{BTreeMap, BTreeSet};
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
fn start_manager(f: &mut Fleet, otlp: Option<&str>) -> Result<()> {
    let listen = format!("{MGR_ADDR}:{MGR_PORT}");
    let metrics = format!("{MGR_ADDR}:{METRICS_PORT}");
    let data = f.data.to_string_lossy().into_owned();
    let mut args = vec![
        "--listen",
        listen.as_str(),
        "--data",
        data.as_str(),
        "--insecure",
        "--metrics-listen",
        metrics.as_str(),
        "--ping-interval-s",
        "1",
    ];
    if let Some(o) = otlp {
        args.extend(["--otlp-endpoint", o]);
    }
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
fn start_agent(f: &mut Fleet, idx: usize, text: &str, otlp: Option<&str>) -> Result<()> {
    let name = format!("lb{}", idx + 1);
    let dir = f.classic.dir.join(&name);
    fs::create_dir_all(&dir)?;
    let cfg = dir.join("keepalived.conf");
    fs::write(&cfg, text)?;
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

/// A file of deploy/.
fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Prometheus in the client namespace with the shipped config (deploy/prometheus: the
/// fleet's jobs, the lab's addresses, which are the fleet's) and alert rules, scraping and
/// evaluating every second; with `fast_rules` every rule's `for:` is 1 s (the expressions
/// are the shipped ones).
fn start_prometheus(f: &Fleet, agents: bool, fast_rules: bool) -> Result<Daemon> {
    let dir = f.classic.dir.join("prometheus");
    fs::create_dir_all(&dir)?;
    let shipped = fs::read_to_string(deploy("prometheus/prometheus.yml"))?;
    // The OTel Collector's job needs a collector: left out.
    let fleet_jobs = shipped
        .split("  # Metrics that reached the OpenTelemetry Collector")
        .next()
        .unwrap_or_default();
    let mut cfg = fleet_jobs
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 5s", "evaluation_interval: 1s");
    if !agents {
        if let Some(at) = cfg.find("  - job_name: ha-agent") {
            cfg.truncate(at);
        }
    }
    let mut rules = fs::read_to_string(deploy("prometheus/ha-alerts.yml"))?;
    if fast_rules {
        rules = rules
            .lines()
            .map(|l| match l.split_once("for: ") {
                Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 1s"),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    fs::write(dir.join("ha-alerts.yml"), rules)?;
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

/// GET `url` with curl in the client namespace: the body.
fn curl(f: &Fleet, url: &str, params: &[&str]) -> Result<Vec<u8>> {
    let out = f
        .classic
        .lan
        .ns(CLIENT)
        .command("curl")
        .args(["-sS", "--max-time", "5", "-G", url])
        .args(params)
        .output()
        .context("run curl")?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// One instant query through Prometheus' HTTP API (curl in the client namespace).
fn query(f: &Fleet, expr: &str) -> Result<Vec<Value>> {
    let v = prom_api(f, "query", &["--data-urlencode", &format!("query={expr}")])?;
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// One call of Prometheus' HTTP API (`/api/v1/PATH`): its answer, which succeeded.
fn prom_api(f: &Fleet, path: &str, params: &[&str]) -> Result<Value> {
    let body = curl(
        f,
        &format!("http://{CLIENT_ADDR}:{PROM_PORT}/api/v1/{path}"),
        params,
    )?;
    let v: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "prometheus answer to {path} {params:?}: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if v["status"] != "success" {
        bail!("{path} {params:?} failed: {v}");
    }
    Ok(v)
}

/// The dashboard's JSON.
fn dashboard() -> Result<Value> {
    let path = deploy("grafana/dashboards/ha-fleet.json");
    Ok(serde_json::from_str(&fs::read_to_string(&path)?)?)
}

/// Every `expr` under `v`.
fn exprs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|x| exprs_in(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| exprs_in(x, out)),
        _ => {}
    }
}

/// A dashboard expression as Grafana sends it with every variable at "All" (`.*`) and
/// the intervals at one minute.
fn substitute(e: &str) -> String {
    e.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$vrrp_instance", ".*")
        .replace("$node", ".*")
        .replace("$vs", ".*")
}

/// Every panel `targets[].expr` of the dashboard (rows included) and, apart, the
/// annotations' expressions; variables substituted.
fn dashboard_exprs() -> Result<(Vec<String>, Vec<String>)> {
    let v = dashboard()?;
    let (mut panels, mut annotations) = (Vec::new(), Vec::new());
    exprs_in(&v["panels"], &mut panels);
    exprs_in(&v["annotations"], &mut annotations);
    if panels.len() < 20 || annotations.is_empty() {
        bail!(
            "only {} panel and {} annotation expressions in the dashboard",
            panels.len(),
            annotations.len()
        );
    }
    let sub = |v: Vec<String>| v.iter().map(|e| substitute(e)).collect();
    Ok((sub(panels), sub(annotations)))
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

    start_manager(&mut f, Some(&otlp))?;
    for idx in 0..2 {
        if agent_metrics {
            start_agent(&mut f, idx, &conf(idx), agent_otlp.then_some(otlp.as_str()))?;
        } else {
            f.start_agent(idx, &conf(idx), None)?;
        }
    }
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status("both agents connected", LONG, |s| {
        connected(s, "lb1") && connected(s, "lb2")
    })?;
    let _prom = start_prometheus(&f, agent_metrics, false)?;

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
            r#"ha_manager_instance_state{node="lb2",vrrp_instance="VI_1"} == 2"#,
        ]
    };
    for e in &failover_exprs {
        wait_series(&f, e, LONG)?;
    }

    // Every dashboard expression returns a series (pending families listed); the
    // annotations' are valid PromQL (they have series only around a transition).
    let (exprs, annotations) = dashboard_exprs()?;
    for e in &annotations {
        query(&f, e)?;
    }
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

/// The sample lines of a /metrics page: metric name -> the label names its series have.
fn families_of(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            labels.extend(label_names(&line[end + 1..]));
        }
    }
    out
}

/// Label names of `a="x",b="y"}...` (values may hold commas, braces, escaped quotes).
fn label_names(block: &str) -> Vec<String> {
    let (mut names, mut name, mut in_value, mut escaped) =
        (Vec::new(), String::new(), false, false);
    for c in block.chars() {
        if in_value {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_value = false,
                _ => {}
            }
            continue;
        }
        match c {
            '}' => break,
            '"' => {
                in_value = true;
                let n = name.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
                names.push(n.to_string());
                name.clear();
            }
            ',' | ' ' => name.clear(),
            _ => name.push(c),
        }
    }
    names
}

/// Metric names (ha_*, process_*) in a PromQL expression, with each `{...}` selector's
/// label names.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if word(b[i]) && (i == 0 || !word(b[i - 1])) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let name = &expr[start..i];
            if name.starts_with("ha_") || name.starts_with("process_") {
                let labels = if expr[i..].starts_with('{') {
                    let close = expr[i..].find('}').map_or(expr.len(), |c| i + c);
                    let l = expr[i + 1..close]
                        .split(',')
                        .filter_map(|m| m.split(['=', '!']).next())
                        .map(|n| n.trim().to_string())
                        .filter(|n| !n.is_empty())
                        .collect();
                    i = close;
                    l
                } else {
                    Vec::new()
                };
                out.push((name.to_string(), labels));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The label names of every `by (...)` of `expr`.
fn grouping(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .filter_map(|r| r.split(')').next())
        .flat_map(|l| l.split(','))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The dashboard against real pages: every metric it queries is on a page, every label
/// it selects or groups by is one that metric has, the variables it uses exist (a
/// datasource variable among them) and every panel reads the datasource variable.
fn check_dashboard(fams: &BTreeMap<String, BTreeSet<String>>) -> Result<()> {
    let d = dashboard()?;
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .context("templating.list")?
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["datasource", "node", "vrrp_instance", "vs"] {
        if !vars.contains(&v) {
            bail!("dashboard variable ${v} missing (have {vars:?})");
        }
    }
    let ds = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "datasource");
    if ds.is_none_or(|v| v["type"] != "datasource") {
        bail!("$datasource is not a datasource variable");
    }
    let mut problems = Vec::new();
    // Every datasource reference but the built-in annotation's is the variable.
    fn datasources(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(ds)) = m.get("datasource") {
                    if let Some(uid) = ds.get("uid").and_then(Value::as_str) {
                        out.push(uid.to_string());
                    }
                }
                m.values().for_each(|x| datasources(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
            _ => {}
        }
    }
    let mut uids = Vec::new();
    datasources(&d["panels"], &mut uids);
    for u in uids.iter().filter(|u| *u != "${datasource}") {
        problems.push(format!("panel datasource {u:?} is not ${{datasource}}"));
    }
    let mut exprs = Vec::new();
    exprs_in(&d, &mut exprs);
    // The variables' own queries: label_values(METRIC{...}, LABEL).
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["definition"].as_str() {
            if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (sel, label) = inner.rsplit_once(',').context("label_values args")?;
                exprs.push(format!("sum by ({}) ({sel})", label.trim()));
            }
        }
    }
    let rate_uses = exprs
        .iter()
        .filter(|e| e.contains("rate("))
        .filter(|e| !e.contains("[$__rate_interval]"))
        .count();
    if rate_uses > 0 {
        problems.push(format!(
            "{rate_uses} rate() queries without $__rate_interval"
        ));
    }
    for e in &exprs {
        for var in e.split('$').skip(1) {
            let name: String = var
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("__") && !vars.contains(&name.as_str()) {
                problems.push(format!("{e}: variable ${name} undefined"));
            }
        }
        let sels = selectors(e);
        let mut have: BTreeSet<String> = ["le".to_string()].into();
        for (metric, labels) in &sels {
            match fams.get(metric) {
                None => problems.push(format!("{e}: {metric} is on no page")),
                Some(l) => {
                    have.extend(l.iter().cloned());
                    for n in labels.iter().filter(|n| !l.contains(*n)) {
                        problems.push(format!("{e}: {metric} has no label {n} ({l:?})"));
                    }
                }
            }
        }
        for g in grouping(e).iter().filter(|g| !have.contains(*g)) {
            problems.push(format!("{e}: grouped by {g}, which its metrics lack"));
        }
    }
    if !problems.is_empty() {
        bail!("dashboard problems:\n{}", problems.join("\n"));
    }
    eprintln!(
        "dashboard: {} expressions checked against the pages",
        exprs.len()
    );
    Ok(())
}

/// `promtool ARGS` with `input` on stdin: Ok(output) when it exits 0.
fn promtool(args: &[&str], input: &[u8]) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run promtool (Debian package prometheus)")?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("promtool {args:?} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}

/// The alerts Prometheus has firing: (alertname, labels).
fn firing(f: &Fleet) -> Result<Vec<(String, Value)>> {
    let v = prom_api(f, "alerts", &[])?;
    Ok(v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"].clone(),
            )
        })
        .collect())
}

/// Whether alert `name` is firing with `labels` (a subset).
fn is_firing(alerts: &[(String, Value)], name: &str, labels: &[(&str, &str)]) -> bool {
    alerts
        .iter()
        .any(|(n, l)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
}

/// Polls Prometheus' alerts until `name` fires with `labels`.
fn wait_firing(f: &Fleet, name: &str, labels: &[(&str, &str)]) -> Result<()> {
    let start = Instant::now();
    loop {
        let alerts = firing(f)?;
        if is_firing(&alerts, name, labels) {
            eprintln!("firing after {:?}: {name} {labels:?}", start.elapsed());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{name} {labels:?} not firing; firing: {alerts:#?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Ecosystem conventions (issue 12 item 7): every /metrics page of the agents and the
/// manager passes `promtool check metrics`; agent series name their node and VRRP
/// instance themselves (no `instance` label); the dashboard's queries use labels the pages
/// have; the shipped alert rules pass `promtool check rules` and fire in a real Prometheus
/// scraping the fleet: real server down and quorum lost (the real server serves nothing),
/// FAULT (lb2 tracks an interface this test sets down), no split brain until lb2 hears
/// no adverts (then it does), agent disconnected (lb2's agent stopped), clock offset (lb2
/// restarted with its wall clock 5 s ahead).
#[test]
fn metric_pages_pass_promtool_and_alert_rules_fire() -> Result<()> {
    if !Path::new(PROMETHEUS).exists() {
        bail!("{PROMETHEUS} missing: install the Debian package prometheus");
    }
    let rules = deploy("prometheus/ha-alerts.yml");
    let checked = promtool(&["check", "rules", &rules.to_string_lossy()], b"")?;
    let config = deploy("prometheus/prometheus.yml");
    promtool(&["check", "config", &config.to_string_lossy()], b"")?;
    eprintln!("{}", checked.trim());

    let mut f = Fleet::new("metc", false)?;
    start_manager(&mut f, None)?;
    // lb2 also tracks trk0, one end of a veth pair inside its own namespace (this
    // kernel has no dummy interfaces).
    let ns2 = f.classic.lan.ns(1);
    ns2.ip(&[
        "link", "add", "trk0", "type", "veth", "peer", "name", "trk0p",
    ])?;
    ns2.ip(&["link", "set", "trk0p", "up"])?;
    ns2.ip(&["link", "set", "trk0", "up"])?;
    let lb2 = conf(1).replacen(
        "        eth0\n    }\n",
        "        eth0\n        trk0\n    }\n",
        1,
    );
    if !lb2.contains("trk0") {
        bail!("no track_interface block in\n{lb2}");
    }
    start_agent(&mut f, 0, &conf(0), None)?;
    start_agent(&mut f, 1, &lb2, None)?;
    f.classic.wait_state(0, "VI_1", "MASTER", LONG)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    f.wait_status("both agents connected", LONG, |s| {
        connected(s, "lb1") && connected(s, "lb2")
    })?;

    // A command, so that the manager's command counter has series (lb1's own priority:
    // nothing changes).
    f.hactl(&["set-priority", "lb1", "VI_1", "150"])?.ok()?;

    // Every page passes promtool; agent series carry node and vrrp_instance.
    let mut fams: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let pages = [
        ("mgr", MGR_ADDR.to_string()),
        ("lb1", "192.0.2.1".to_string()),
        ("lb2", "192.0.2.2".to_string()),
    ];
    // A check round has run on both agents (the duration histogram has series then).
    let start = Instant::now();
    for (node, addr) in &pages {
        let url = format!("http://{addr}:{METRICS_PORT}/metrics");
        let page = loop {
            let page = String::from_utf8(curl(&f, &url, &[])?)?;
            if *node == "mgr" || page.contains("ha_lb_check_duration_seconds_bucket") {
                break page;
            }
            if start.elapsed() > LONG {
                bail!("no check round on {node}:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let out = promtool(&["check", "metrics"], page.as_bytes())
            .with_context(|| format!("the page of {node}:\n{page}"))?;
        eprintln!("promtool check metrics, {node}: ok {}", out.trim());
        for must in [
            "ha_build_info",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            if !page.contains(must) {
                bail!("{must} missing on {node}'s page");
            }
        }
        let mine = families_of(&page);
        if *node != "mgr" {
            for (name, labels) in &mine {
                if name.starts_with("ha_") && !labels.contains("node") {
                    bail!("{node}: {name} has no node label ({labels:?})");
                }
                if labels.contains("instance") {
                    bail!("{node}: {name} has an instance label");
                }
            }
            for name in [
                "ha_vrrp_state",
                "ha_vrrp_garp_sent_total",
                "ha_vrrp_vip_present",
            ] {
                if !mine.get(name).is_some_and(|l| l.contains("vrrp_instance")) {
                    bail!("{node}: {name} without vrrp_instance");
                }
            }
            if !page.contains(&format!("node=\"{node}\"")) {
                bail!("{node}'s page does not name its node");
            }
        }
        for (name, labels) in mine {
            fams.entry(name).or_default().extend(labels);
        }
    }
    // The master announced its VIP and holds it; the backup does not.
    let lb1 = String::from_utf8(curl(
        &f,
        &format!("http://192.0.2.1:{METRICS_PORT}/metrics"),
        &[],
    )?)?;
    let present = lb1
        .lines()
        .find(|l| l.starts_with("ha_vrrp_vip_present{"))
        .context("ha_vrrp_vip_present on lb1")?;
    assert!(present.ends_with(" 1"), "master's VIP: {present}");
    let garp = lb1
        .lines()
        .find(|l| l.starts_with("ha_vrrp_garp_sent_total{"))
        .context("GARP counter on lb1")?;
    assert!(!garp.ends_with(" 0"), "the master sent no GARP: {garp}");
    check_dashboard(&fams)?;

    // The rules in a real Prometheus.
    let _prom = start_prometheus(&f, true, true)?;
    let start = Instant::now();
    let groups = loop {
        let v = prom_api(&f, "rules", &[]).unwrap_or_default();
        let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
        if !groups.is_empty() || start.elapsed() > LONG {
            break groups;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let loaded: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let in_file = fs::read_to_string(&rules)?.matches("- alert:").count();
    assert_eq!(loaded.len(), in_file, "rules loaded: {groups:#?}");

    wait_firing(&f, "HaRealServerDown", &[("rs", "192.0.2.100:80")])?;
    wait_firing(&f, "HaVirtualServerQuorumLost", &[])?;
    let now = firing(&f)?;
    assert!(
        !is_firing(&now, "HaVrrpInstanceFault", &[]),
        "FAULT before any fault: {now:#?}"
    );

    f.classic.lan.ns(1).ip(&["link", "set", "trk0", "down"])?;
    f.classic.wait_state(1, "VI_1", "FAULT", LONG)?;
    wait_firing(
        &f,
        "HaVrrpInstanceFault",
        &[("node", "lb2"), ("vrrp_instance", "VI_1")],
    )?;

    // No split brain so far (a FAULT is no second master); then lb2 hears no adverts:
    // two masters, the manager's split-brain alert, HaSplitBrain.
    f.classic.lan.ns(1).ip(&["link", "set", "trk0", "up"])?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;
    let ever = query(&f, "max_over_time(ALERTS{alertname=\"HaSplitBrain\"}[10m])")?;
    assert!(
        ever.is_empty(),
        "split brain alert without a split brain: {ever:?}"
    );
    f.block_vrrp(1, true)?;
    f.classic.wait_state(1, "VI_1", "MASTER", LONG)?;
    wait_firing(&f, "HaSplitBrain", &[])?;
    f.block_vrrp(1, false)?;
    f.classic.wait_state(1, "VI_1", "BACKUP", LONG)?;

    f.classic.nodes[1] = None;
    wait_firing(&f, "HaAgentDisconnected", &[("node", "lb2")])?;

    // lb2 again, its wall clock 5 s ahead (libfaketime): HaClockOffset.
    f.agent_args = vec![
        "--metrics-listen".into(),
        format!("192.0.2.2:{METRICS_PORT}"),
    ];
    f.start_agent(1, &conf(1), Some("+5s"))?;
    wait_firing(&f, "HaClockOffset", &[("node", "lb2")])?;

    // lb2 again, unable to run nft (not on its PATH, as on a machine without nftables):
    // its data plane cannot program the virtual server: HaDataPlaneError.
    f.classic.nodes[1] = None;
    f.agent_env = vec!["PATH=/nonexistent".into()];
    f.start_agent(1, &conf(1), None)?;
    f.agent_env.clear();
    wait_firing(&f, "HaDataPlaneError", &[("node", "lb2")])?;

    // Every rule evaluated without error.
    let v = prom_api(&f, "rules", &[])?;
    for r in v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
    {
        assert_eq!(r["health"], "ok", "rule {}", r["name"]);
    }
    Ok(())
}
