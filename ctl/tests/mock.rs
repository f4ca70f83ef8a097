//! hactl against an in-process mock of ha-manager's `Control` service: the real binary,
//! real gRPC, canned answers. Checks output, paging, streaming and exit codes.

// Test support: a poisoned mock or a failed spawn should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use ha_proto::v1::control_server::{Control, ControlServer};
use ha_proto::v1::{
    Alert, CheckerState, CommandReply, Event, EventKind, HistoryReply, HistoryRequest,
    InstanceState, NodeStatus, NodesReply, NodesRequest, RealServerRequest, RealServerState,
    RsAction, SetPriorityRequest, StatusReply, StatusRequest, SwitchoverRequest, VipChangeRequest,
    VirtualServerState, WatchRequest,
};
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

const EVENTS: u64 = 250;

#[derive(Default)]
struct Mock {
    /// lb2 VI_1 override in force (0 = none).
    lb2_override: Mutex<u32>,
    /// Request ids already run.
    seen: Mutex<HashSet<String>>,
    /// Real-server overrides of lb1's virtual server: (addr, port, action, weight).
    rs: Mutex<Vec<(String, u32, i32, u32)>>,
}

const VS: &str = "192.0.2.10:80/TCP";

fn configured_rs(addr: &str, up: bool) -> RealServerState {
    RealServerState {
        addr: addr.into(),
        port: 80,
        alive: up,
        weight_base: 1,
        weight_effective: 1,
        in_table: up,
        checkers: vec![CheckerState {
            kind: "HTTP_GET".into(),
            up,
            detail: if up { "200 OK" } else { "connection refused" }.into(),
            latency_us: 700,
        }],
        ..Default::default()
    }
}

fn inst(state: &str, base: u32, ovr: u32) -> InstanceState {
    InstanceState {
        name: "VI_1".into(),
        vrid: 51,
        interface: "eth0".into(),
        state: state.into(),
        base_priority: base,
        effective_priority: if ovr != 0 { ovr } else { base },
        override_priority: ovr,
        vips: vec!["192.0.2.10/24".into()],
        ..Default::default()
    }
}

impl Mock {
    /// lb1's virtual server: two configured real servers with the overrides applied.
    fn virtual_server(&self) -> VirtualServerState {
        let mut rs = vec![
            configured_rs("192.0.2.21", true),
            configured_rs("192.0.2.22", false),
        ];
        for (addr, port, action, weight) in self.rs.lock().unwrap().iter() {
            let at = rs.iter().position(|r| r.addr == *addr && r.port == *port);
            match (RsAction::try_from(*action), at) {
                (Ok(RsAction::RsAdd), None) => rs.push(RealServerState {
                    addr: addr.clone(),
                    port: *port,
                    alive: true,
                    weight_base: *weight,
                    weight_effective: *weight,
                    in_table: true,
                    from_override: true,
                    ..Default::default()
                }),
                (Ok(RsAction::RsDel), Some(i)) => {
                    rs.remove(i);
                }
                (Ok(RsAction::RsWeight), Some(i)) => rs[i].weight_effective = *weight,
                (Ok(RsAction::RsDrain), Some(i)) => {
                    rs[i].weight_effective = 0;
                    rs[i].drained = true;
                }
                _ => {}
            }
        }
        VirtualServerState {
            name: VS.into(),
            backend: "nftables".into(),
            scheduler: "wrr".into(),
            method: "NAT".into(),
            quorum: 1,
            live_weight: rs
                .iter()
                .filter(|r| r.alive)
                .map(|r| u64::from(r.weight_effective))
                .sum(),
            quorum_up: true,
            real_servers: rs,
            ..Default::default()
        }
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        let ovr = *self.lb2_override.lock().unwrap();
        let (s1, s2) = if ovr > 150 {
            ("BACKUP", "MASTER")
        } else {
            ("MASTER", "BACKUP")
        };
        vec![
            NodeStatus {
                name: "lb1".into(),
                connected: true,
                clock_offset_ms: 0.4,
                last_seen_ms: 1,
                instances: vec![inst(s1, 150, 0)],
                virtual_servers: vec![self.virtual_server()],
                ..Default::default()
            },
            NodeStatus {
                name: "lb2".into(),
                connected: true,
                clock_offset_ms: 5002.0,
                last_seen_ms: 1,
                instances: vec![inst(s2, 100, ovr)],
                ..Default::default()
            },
        ]
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl Control for Mock {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(StatusReply {
            nodes: self.nodes(),
            alerts: vec![Alert {
                kind: "clock-offset".into(),
                subject: "lb2".into(),
                message: "lb2 clock 5002 ms ahead".into(),
                since_ms: 1000,
            }],
            manager_version: "9.9.9-mock".into(),
        }))
    }

    async fn nodes(&self, _: Request<NodesRequest>) -> Result<Response<NodesReply>, Status> {
        Ok(Response::new(NodesReply {
            nodes: self.nodes(),
        }))
    }

    async fn history(
        &self,
        req: Request<HistoryRequest>,
    ) -> Result<Response<HistoryReply>, Status> {
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            100
        } else {
            u64::from(r.limit.min(100))
        };
        let events: Vec<Event> = (r.after_id + 1..=EVENTS)
            .take(limit as usize)
            .map(|id| Event {
                node: "lb1".into(),
                boot_id: "b1".into(),
                seq: id,
                wall_time_ms: 1_000 * id as i64,
                kind: EventKind::Transition as i32,
                instance: "VI_1".into(),
                from_state: "BACKUP".into(),
                to_state: "MASTER".into(),
                reason: format!("kind filter {}", r.kind),
                history_id: id,
                ..Default::default()
            })
            .collect();
        let last = events.last().map_or(0, |e| e.history_id);
        Ok(Response::new(HistoryReply {
            events,
            next_after_id: if last < EVENTS { last } else { 0 },
        }))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let node = req.into_inner().node;
        let evs = (1..=2).map(move |seq| {
            Ok(Event {
                node: node.clone(),
                seq,
                kind: EventKind::AlertRaised as i32,
                detail: format!("live {seq}"),
                ..Default::default()
            })
        });
        let s = tokio_stream::iter(evs).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(s)))
    }

    async fn set_priority(
        &self,
        req: Request<SetPriorityRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        let r = req.into_inner();
        if r.request_id == "viewer" {
            return Err(Status::permission_denied(
                "role viewer may not call SetPriority",
            ));
        }
        if r.node != "lb1" && r.node != "lb2" {
            return Err(Status::not_found(format!(
                "unknown node {}; nodes: lb1, lb2",
                r.node
            )));
        }
        if r.instance == "VI_2" {
            return Ok(Response::new(CommandReply {
                request_id: r.request_id,
                ok: false,
                error: "agent rejected the override: VI_2 is not running".into(),
                ..Default::default()
            }));
        }
        let replayed = !self.seen.lock().unwrap().insert(r.request_id.clone());
        if !replayed && r.node == "lb2" {
            *self.lb2_override.lock().unwrap() = r.priority;
        }
        let ovr = *self.lb2_override.lock().unwrap();
        Ok(Response::new(CommandReply {
            request_id: r.request_id,
            ok: true,
            generation: 0,
            instance: Some(inst(if ovr > 150 { "MASTER" } else { "BACKUP" }, 100, ovr)),
            replayed,
            node: r.node,
            ..Default::default()
        }))
    }

    async fn vip_change(
        &self,
        _: Request<VipChangeRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        Err(Status::invalid_argument(
            "192.0.2.10/24 is already configured",
        ))
    }

    async fn real_server(
        &self,
        req: Request<RealServerRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        let r = req.into_inner();
        if r.request_id == "viewer" {
            return Err(Status::permission_denied(
                "vera with role viewer may not call /ha.v1.Control/RealServer",
            ));
        }
        if r.node != "lb1" {
            return Err(Status::not_found(format!(
                "unknown node {:?}; known nodes: lb1, lb2",
                r.node
            )));
        }
        if r.virtual_server != VS {
            return Err(Status::not_found(format!(
                "unknown virtual server {:?} on node lb1; virtual servers: {VS}",
                r.virtual_server
            )));
        }
        let replayed = !self.seen.lock().unwrap().insert(r.request_id.clone());
        if !replayed {
            let mut rs = self.rs.lock().unwrap();
            rs.retain(|(a, p, _, _)| !(*a == r.addr && *p == r.port));
            if r.action != RsAction::RsReset as i32 {
                rs.push((r.addr, r.port, r.action, r.weight));
            }
        }
        Ok(Response::new(CommandReply {
            request_id: r.request_id,
            ok: true,
            generation: 3,
            replayed,
            node: r.node,
            virtual_server: Some(self.virtual_server()),
            ..Default::default()
        }))
    }

    async fn switchover(
        &self,
        _: Request<SwitchoverRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        Err(Status::unavailable("agent lb2 not connected"))
    }
}

/// Start the mock on 127.0.0.1:<free port> in a background runtime.
fn mock() -> SocketAddr {
    mock_with(None)
}

/// Start the mock, with mTLS when `tls` is given.
fn mock_with(tls: Option<ServerTlsConfig>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send(incoming.local_addr().unwrap()).unwrap();
            let mut b = tonic::transport::Server::builder();
            if let Some(t) = tls {
                b = b.tls_config(t).unwrap();
            }
            b.add_service(ControlServer::new(Mock::default()))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn hactl(addr: SocketAddr, args: &[&str]) -> Output {
    let url = format!("http://{addr}");
    Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["--manager", &url, "--insecure", "--timeout", "5s"])
        .args(args)
        .env_remove("HACTL_MANAGER")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn status_json_and_table() {
    let addr = mock();
    let out = hactl(addr, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["name"], "lb1");
    assert_eq!(v["nodes"][1]["clock_offset_ms"], 5002.0);
    assert_eq!(v["nodes"][0]["instances"][0]["state"], "MASTER");
    assert_eq!(v["nodes"][1]["instances"][0]["effective_priority"], 100);
    assert_eq!(v["alerts"][0]["kind"], "clock-offset");

    let out = hactl(addr, &["status"]);
    let t = text(&out.stdout);
    assert!(t.starts_with("NODE"), "{t}");
    assert!(
        t.contains("+5002.0 ms") && t.contains("clock-offset"),
        "{t}"
    );

    let out = hactl(addr, &["nodes"]);
    assert!(text(&out.stdout).contains("lb2"));
}

#[test]
fn set_priority_prints_the_change_and_replays() {
    let addr = mock();
    let out = hactl(
        addr,
        &[
            "-v",
            "set-priority",
            "lb2",
            "VI_1",
            "200",
            "--request-id",
            "r-1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "lb2 VI_1: BACKUP -> MASTER, priority 100 -> 200 (override)\n"
    );
    assert!(
        text(&out.stderr).contains("request id r-1"),
        "{}",
        text(&out.stderr)
    );

    let out = hactl(
        addr,
        &["set-priority", "lb2", "VI_1", "200", "--request-id", "r-1"],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("replayed"),
        "{}",
        text(&out.stdout)
    );

    // Without --request-id a fresh random one is used each time (not replayed).
    let out = hactl(addr, &["set-priority", "lb2", "VI_1", "200"]);
    assert!(
        !text(&out.stdout).contains("replayed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn refusals_and_usage_errors_exit_codes() {
    let addr = mock();
    let out = hactl(addr, &["set-priority", "lb9", "VI_1", "200"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nodes: lb1, lb2"),
        "{}",
        text(&out.stderr)
    );

    let out = hactl(addr, &["set-priority", "lb2", "VI_2", "200"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("VI_2 is not running"),
        "{}",
        text(&out.stderr)
    );

    let out = hactl(
        addr,
        &[
            "set-priority",
            "lb2",
            "VI_1",
            "200",
            "--request-id",
            "viewer",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );

    let out = hactl(addr, &["set-priority", "lb2", "VI_1", "256"]);
    assert_eq!(out.status.code(), Some(2));

    let out = hactl(addr, &["vip", "add", "lb2", "VI_1", "192.0.2.10/24"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = hactl(addr, &["switchover", "VI_1", "--to", "lb2"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn status_shows_virtual_servers() {
    let addr = mock();
    let out = hactl(addr, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let section = t
        .split("VIRTUAL SERVERS\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("no virtual-server section: {t}"));
    let lines: Vec<&str> = section.lines().collect();
    assert_eq!(lines.len(), 4, "{section}");
    assert!(
        lines[0].starts_with("lb1 192.0.2.10:80/TCP: backend nftables, method NAT, scheduler wrr, quorum up (live weight 1, quorum 1)"),
        "{section}"
    );
    assert!(
        lines[1].trim_start().starts_with("REAL SERVER"),
        "{section}"
    );
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(lines[2]),
        words("192.0.2.21:80 alive 1/1 no yes HTTP_GET up (200 OK)")
    );
    assert_eq!(
        words(lines[3]),
        words("192.0.2.22:80 DEAD 1/1 no no HTTP_GET DOWN (connection refused)")
    );
    // lb2 runs no virtual servers: nothing for it.
    assert!(!section.contains("lb2"), "{section}");

    let out = hactl(addr, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vs = &v["nodes"][0]["virtual_servers"][0];
    assert_eq!(vs["name"], VS);
    assert_eq!(vs["real_servers"][1]["alive"], false);
    assert_eq!(
        vs["real_servers"][1]["checkers"][0]["detail"],
        "connection refused"
    );
    assert_eq!(v["nodes"][1]["virtual_servers"], serde_json::json!([]));
}

#[test]
fn rs_commands_print_the_virtual_server() {
    let addr = mock();
    let drain = [
        "rs",
        "drain",
        "lb1",
        VS,
        "192.0.2.21:80",
        "--request-id",
        "d-1",
    ];
    let out = hactl(addr, &drain);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "lb1 192.0.2.10:80/TCP: rs drain 192.0.2.21:80 done [generation 3]"
    );
    assert!(
        lines[1].starts_with("lb1 192.0.2.10:80/TCP: backend nftables"),
        "{t}"
    );
    assert!(
        lines[3].split_whitespace().collect::<Vec<_>>()[..5]
            == ["192.0.2.21:80", "alive", "0/1", "yes", "yes"],
        "{t}"
    );
    // Replayed: said so, same state.
    let out = hactl(addr, &drain);
    assert!(
        text(&out.stdout).contains("replayed"),
        "{}",
        text(&out.stdout)
    );

    // IPv6 in brackets, default weight 1, JSON answer.
    let out = hactl(
        addr,
        &["rs", "add", "lb1", VS, "[2001:db8::23]:8080", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node"], "lb1");
    let added = &v["virtual_server"]["real_servers"][2];
    assert_eq!(added["addr"], "2001:db8::23");
    assert_eq!(added["port"], 8080);
    assert_eq!(added["weight_base"], 1);
    assert_eq!(added["from_override"], true);

    let out = hactl(addr, &["rs", "weight", "lb1", VS, "192.0.2.22:80", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("5/1"), "{}", text(&out.stdout));
    let out = hactl(addr, &["rs", "reset", "lb1", VS, "192.0.2.21:80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("192.0.2.21:80 "))
        .unwrap();
    assert!(line.contains("1/1"), "{t}");
    let out = hactl(addr, &["rs", "del", "lb1", VS, "192.0.2.22:80", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["virtual_server"]["real_servers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn rs_usage_errors_and_refusals() {
    let addr = mock();
    let drain =
        |node: &'static str, vs: &'static str| vec!["rs", "drain", node, vs, "192.0.2.21:80"];
    let mut viewer = drain("lb1", VS);
    viewer.extend(["--request-id", "viewer"]);
    for (args, exit, says) in [
        (vec!["rs", "drain", "lb1", VS, "192.0.2.21"], 2, "ADDR:PORT"),
        (
            vec!["rs", "drain", "lb1", VS, "2001:db8::21:80"],
            2,
            "brackets",
        ),
        (
            vec!["rs", "drain", "lb1", VS, "192.0.2.21:99999"],
            2,
            "0..=65535",
        ),
        (
            vec!["rs", "weight", "lb1", VS, "192.0.2.21:80", "70000"],
            2,
            "0..=65535",
        ),
        (
            vec!["rs", "add", "lb1", VS, "192.0.2.21:80", "--weight", "x"],
            2,
            "weight",
        ),
        (drain("lb1", " "), 2, "virtual server is empty"),
        (vec!["rs", "pause", "lb1", VS, "192.0.2.21:80"], 2, "pause"),
        // The manager says no: exit 1 with its reason.
        (drain("lb9", VS), 1, "known nodes: lb1"),
        (
            drain("lb1", "192.0.2.10:80/tcp"),
            1,
            "virtual servers: 192.0.2.10:80/TCP",
        ),
        (viewer, 1, "permission denied"),
    ] {
        let out = hactl(addr, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn history_follows_pages_and_limits() {
    let addr = mock();
    let out = hactl(addr, &["history", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ev = v["events"].as_array().unwrap();
    assert_eq!(ev.len() as u64, EVENTS);
    let ids: Vec<u64> = ev
        .iter()
        .map(|e| e["history_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=EVENTS).collect::<Vec<_>>());

    let out = hactl(addr, &["history", "--limit", "120", "--kind", "transition"]);
    let t = text(&out.stdout);
    assert_eq!(t.lines().count(), 120, "{t}");
    assert!(
        t.lines()
            .all(|l| l.contains("TRANSITION BACKUP -> MASTER (kind filter 1)")),
        "{t}"
    );

    let out = hactl(addr, &["history", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));

    // The load-balancer kinds are filters like any other.
    for (kind, n) in [("checker", 13), ("real-server", 14), ("quorum", 15)] {
        let out = hactl(addr, &["history", "--limit", "1", "--kind", kind]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let t = text(&out.stdout);
        assert!(t.contains(&format!("(kind filter {n})")), "{kind}: {t}");
    }
}

#[test]
fn watch_prints_live_lines() {
    let addr = mock();
    let url = format!("http://{addr}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["--manager", &url, "--insecure", "watch", "--node", "lb2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.contains("lb2") && first.contains("ALERT_RAISED") && first.ends_with("live 1"),
        "{first}"
    );
    assert!(second.ends_with("live 2"), "{second}");
}

#[test]
fn unreachable_manager_exits_3_with_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is gone: connections are refused.
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["--manager", &url, "--insecure", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains(&url), "{}", text(&out.stderr));
}

/// Run openssl in `dir`; panics with its stderr on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// A CA (`<ca>.pem`) and a leaf `<name>.pem`/`<name>.key` signed by it.
fn ca(dir: &std::path::Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

fn leaf(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[test]
fn mtls_client_certificate_is_presented_and_required() {
    let dir = std::env::temp_dir().join(format!("hactl-mtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ca(&dir, "ca");
    ca(&dir, "otherca");
    leaf(
        &dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:ha-manager\nextendedKeyUsage=serverAuth\n",
    );
    leaf(&dir, "ca", "operator", "extendedKeyUsage=clientAuth\n");
    leaf(&dir, "otherca", "intruder", "extendedKeyUsage=clientAuth\n");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem"), read("server.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let addr = mock_with(Some(tls));
    let url = format!("https://{addr}");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hactl"))
            .args(["--manager", &url, "--timeout", "5s"])
            .args(extra)
            .args(["status", "--json"])
            .env_remove("HACTL_MANAGER")
            .output()
            .unwrap()
    };

    let ok = run(&[
        "--ca",
        &p("ca.pem"),
        "--cert",
        &p("operator.pem"),
        "--key",
        &p("operator.key"),
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    // The server name can differ from the URL host.
    let named = run(&[
        "--ca",
        &p("ca.pem"),
        "--cert",
        &p("operator.pem"),
        "--key",
        &p("operator.key"),
        "--tls-server-name",
        "ha-manager",
    ]);
    assert!(named.status.success(), "{}", text(&named.stderr));

    for extra in [
        vec!["--ca", &p("ca.pem")],
        vec![
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("intruder.pem"),
            "--key",
            &p("intruder.key"),
        ],
        vec![
            "--ca",
            &p("otherca.pem"),
            "--cert",
            &p("operator.pem"),
            "--key",
            &p("operator.key"),
        ],
    ] {
        let out = run(&extra);
        eprintln!(
            "{extra:?}: exit {:?}: {}",
            out.status.code(),
            text(&out.stderr).trim()
        );
        assert_ne!(out.status.code(), Some(0), "accepted with {extra:?}");
        assert!(!text(&out.stderr).trim().is_empty());
    }
    // A missing key file is a usage error naming the file.
    let out = run(&[
        "--ca",
        &p("ca.pem"),
        "--cert",
        &p("operator.pem"),
        "--key",
        &p("nope.key"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope.key"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
