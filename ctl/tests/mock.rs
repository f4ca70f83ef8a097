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
    Alert, CommandReply, Event, EventKind, HistoryReply, HistoryRequest, InstanceState, NodeStatus,
    NodesReply, NodesRequest, SetPriorityRequest, StatusReply, StatusRequest, SwitchoverRequest,
    VipChangeRequest, WatchRequest,
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
        _req: Request<ha_proto::v1::RealServerRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        Err(Status::unimplemented("not in the mock"))
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
