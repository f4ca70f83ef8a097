//! The manager link against a real gRPC peer: an in-test `AgentLink` server on loopback
//! (in its own tokio runtime, so "killing" it drops every connection at once) and a fake
//! engine answering `FromLink`. Covers the session order (Hello, Snapshot, events), seq
//! numbering, acks, reconnect with resend of unacked events, ring overflow (GAP then
//! Snapshot), overrides (apply, persist, stale, refused), heartbeats and mutual TLS
//! (certificates made with the openssl CLI).
//!
//! Timeouts below only guard against hangs; nothing asserts on timing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ha_agent::link::bridge::{kind, FromLink, InstanceView, LocalEvent, OverrideSet, ToLink};
use ha_agent::link::{self, Backoff, InstanceInfo, LinkOptions};
use ha_agent::units::Priority;
use ha_proto::v1 as pb;
use ha_proto::v1::agent_link_server::{AgentLink, AgentLinkServer};
use pb::agent_msg::Msg as Out;
use pb::manager_msg::Msg as In;
use tokio::sync::mpsc;
use tokio_stream::Stream;

const GUARD: Duration = Duration::from_secs(30);

/// One agent stream as the test sees it.
struct Conn {
    rx: mpsc::UnboundedReceiver<pb::AgentMsg>,
    tx: mpsc::UnboundedSender<Result<pb::ManagerMsg, tonic::Status>>,
}

impl Conn {
    /// Next message, heartbeats skipped.
    async fn next(&mut self) -> Out {
        loop {
            let m = tokio::time::timeout(GUARD, self.rx.recv())
                .await
                .expect("agent message within the guard time")
                .expect("stream open");
            match m.msg.expect("message set") {
                Out::Heartbeat(h) if h.ping_id == 0 => continue,
                other => return other,
            }
        }
    }

    /// Next message including unsolicited heartbeats.
    async fn next_raw(&mut self) -> Out {
        tokio::time::timeout(GUARD, self.rx.recv())
            .await
            .expect("agent message within the guard time")
            .expect("stream open")
            .msg
            .expect("message set")
    }

    fn send(&self, m: In) {
        self.tx.send(Ok(pb::ManagerMsg { msg: Some(m) })).unwrap();
    }

    /// Ping and wait for the answer: everything sent before is processed by the agent.
    async fn sync(&mut self, id: u64) -> Vec<Out> {
        self.send(In::Ping(pb::Ping {
            ping_id: id,
            manager_ms: 1,
        }));
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Out::Heartbeat(h) if h.ping_id == id => return before,
                other => before.push(other),
            }
        }
    }

    async fn expect_hello(&mut self) -> pb::Hello {
        match self.next().await {
            Out::Hello(h) => h,
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    async fn expect_snapshot(&mut self) -> pb::Snapshot {
        match self.next().await {
            Out::Snapshot(s) => s,
            other => panic!("expected Snapshot, got {other:?}"),
        }
    }

    /// Collect events until one with seq `upto` arrived; fails on anything but events.
    async fn events_until(&mut self, upto: u64) -> Vec<pb::Event> {
        let mut out = Vec::new();
        while out.last().map(|e: &pb::Event| e.seq) != Some(upto) {
            match self.next().await {
                Out::Events(b) => out.extend(b.events),
                other => panic!("expected events, got {other:?}"),
            }
        }
        out
    }
}

struct Svc {
    conns: mpsc::UnboundedSender<Conn>,
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::ManagerMsg, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for Svc {
    type SessionStream = OutStream;

    async fn session(
        &self,
        req: tonic::Request<tonic::Streaming<pb::AgentMsg>>,
    ) -> Result<tonic::Response<OutStream>, tonic::Status> {
        let mut inbound = req.into_inner();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if in_tx.send(m).is_err() {
                    break;
                }
            }
        });
        let _ = self.conns.send(Conn {
            rx: in_rx,
            tx: out_tx,
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx),
        )))
    }
}

/// A manager stand-in; dropping it kills every connection.
struct Server {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Conn>,
}

impl Server {
    fn start(addr: SocketAddr) -> Server {
        Server::start_with(addr, None)
    }

    fn start_with(addr: SocketAddr, tls: Option<tonic::transport::ServerTlsConfig>) -> Server {
        // A killed server's runtime closes its sockets in the background: retry a while.
        let mut tries = 0;
        let std_listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 500 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let mut b = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                b = b.tls_config(tls).unwrap();
            }
            b.add_service(AgentLinkServer::new(Svc { conns: tx }))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
                .await
                .unwrap();
        });
        Server {
            rt: Some(rt),
            addr,
            conns,
        }
    }

    async fn accept(&mut self) -> Conn {
        tokio::time::timeout(GUARD, self.conns.recv())
            .await
            .expect("agent connects within the guard time")
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The engine stand-in: answers snapshots, applies sets unless a priority is 0.
#[derive(Clone, Default)]
struct Engine {
    applied: Arc<Mutex<Vec<OverrideSet>>>,
}

impl Engine {
    fn spawn(&self, mut rx: mpsc::Receiver<FromLink>) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                match req {
                    FromLink::Snapshot { reply } => {
                        let _ = reply.send(vec![me.view()]);
                    }
                    FromLink::ApplyOverrides { set, reply } => {
                        let r = if set.priorities.values().any(|p| p.get() == 0) {
                            Err("VI_1: priority 0 is reserved (1-255)".to_string())
                        } else {
                            me.applied.lock().unwrap().push(set);
                            Ok(())
                        };
                        let _ = reply.send(r);
                    }
                }
            }
        });
    }

    fn view(&self) -> InstanceView {
        let last = self.applied.lock().unwrap().last().cloned();
        let prio = last.and_then(|s| s.priorities.get("VI_1").copied());
        InstanceView {
            name: "VI_1".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: "BACKUP".into(),
            base_priority: 100,
            effective_priority: prio.map_or(100, |p| p.get()),
            override_priority: prio.map(|p| p.get()),
            vips: vec!["192.0.2.10/24".into()],
            ..InstanceView::default()
        }
    }

    fn applied(&self) -> Vec<OverrideSet> {
        self.applied.lock().unwrap().clone()
    }
}

fn state_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ha-link-test-{tag}-{}",
        ha_agent::link::random::new_boot_id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(addr: SocketAddr, dir: &std::path::Path) -> LinkOptions {
    let mut o = LinkOptions::new(&format!("http://{addr}"), "lb1", dir.to_path_buf());
    o.backoff = Backoff {
        initial: Duration::from_millis(20),
        factor: 1.6,
        jitter: 0.2,
        max: Duration::from_millis(200),
    };
    o.heartbeat = Duration::from_secs(3600);
    o.instances = vec![InstanceInfo {
        name: "VI_1".into(),
        vrid: 51,
        interface: "eth0".into(),
        advert_interval: Duration::from_millis(100),
    }];
    o.config_digest = "sha256:test".into();
    o
}

/// Link and engine running against `opts`; returns the event sender and the engine.
fn start_link(opts: LinkOptions) -> (mpsc::UnboundedSender<ToLink>, Engine) {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (req_tx, req_rx) = mpsc::channel(16);
    let engine = Engine::default();
    engine.spawn(req_rx);
    link::spawn(opts, ev_rx, req_tx);
    (ev_tx, engine)
}

fn event(n: i64) -> ToLink {
    ToLink::Event(LocalEvent {
        kind: kind::TRANSITION,
        instance: "VI_1".into(),
        from_state: "BACKUP".into(),
        to_state: "MASTER".into(),
        reason: format!("event {n}"),
        detail: String::new(),
        wall_time_ms: n,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_then_snapshot_then_events_numbered_from_one() {
    let dir = state_dir("order");
    let mut server = Server::start("127.0.0.1:0".parse().unwrap());
    let mut opts = options(server.addr, &dir);
    opts.override_generation = 3;
    let (events, _engine) = start_link(opts);
    for n in 1..=3 {
        events.send(event(n)).unwrap();
    }
    let mut c = server.accept().await;
    let hello = c.expect_hello().await;
    assert_eq!(hello.node, "lb1");
    assert_eq!(hello.boot_id.len(), 32, "boot id made by the link");
    assert_eq!(hello.override_generation, 3);
    assert_eq!(hello.config_digest, "sha256:test");
    assert_eq!(hello.instances.len(), 1);
    assert_eq!(hello.instances[0].vrid, 51);
    assert_eq!(
        hello.instances[0].advert_interval_ms, 100,
        "advert interval sent"
    );
    let snap = c.expect_snapshot().await;
    assert_eq!(snap.instances.len(), 1);
    assert_eq!(snap.instances[0].name, "VI_1");
    assert_eq!(snap.instances[0].state, "BACKUP");
    for n in 4..=5 {
        events.send(event(n)).unwrap();
    }
    let got = c.events_until(5).await;
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.wall_time_ms, i as i64 + 1, "events in the engine's order");
        assert_eq!(e.node, "lb1");
        assert_eq!(e.boot_id, hello.boot_id);
        assert_eq!(e.kind, pb::EventKind::Transition as i32);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_are_dropped_and_unacked_ones_resent_after_reconnect() {
    let dir = state_dir("reconnect");
    let mut server = Server::start("127.0.0.1:0".parse().unwrap());
    let addr = server.addr;
    let (events, _engine) = start_link(options(addr, &dir));
    let mut c = server.accept().await;
    let hello = c.expect_hello().await;
    c.expect_snapshot().await;
    for n in 1..=5 {
        events.send(event(n)).unwrap();
    }
    assert_eq!(c.events_until(5).await.len(), 5);
    c.send(In::Ack(pb::Ack {
        boot_id: "someone-else".into(),
        seq: 5,
    }));
    c.send(In::Ack(pb::Ack {
        boot_id: hello.boot_id.clone(),
        seq: 3,
    }));
    assert!(c.sync(77).await.is_empty());

    // The manager dies mid-stream; an event happens while it is away.
    drop(c);
    drop(server);
    events.send(event(6)).unwrap();
    let mut server = Server::start(addr);
    let mut c = server.accept().await;
    let hello2 = c.expect_hello().await;
    assert_eq!(hello2.boot_id, hello.boot_id, "same process, same boot id");
    let snap = c.expect_snapshot().await;
    assert!(snap.seq <= 6);
    let got = c.events_until(6).await;
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    // 1..3 were acked: never again. 4, 5 unacked: resent. 6: not lost.
    assert_eq!(seqs, vec![4, 5, 6]);
    // Acking everything leaves nothing to resend on the next connection.
    c.send(In::Ack(pb::Ack {
        boot_id: hello.boot_id.clone(),
        seq: 6,
    }));
    assert!(c.sync(78).await.is_empty());
    drop(c);
    drop(server);
    let mut server = Server::start(addr);
    let mut c = server.accept().await;
    c.expect_hello().await;
    c.expect_snapshot().await;
    events.send(event(7)).unwrap();
    let seqs: Vec<u64> = c.events_until(7).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![7]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_overflow_sends_gap_then_snapshot_and_loses_nothing_silently() {
    let dir = state_dir("gap");
    let mut server = Server::start("127.0.0.1:0".parse().unwrap());
    let mut opts = options(server.addr, &dir);
    opts.ring_capacity = 4;
    let (events, _engine) = start_link(opts);
    let mut c = server.accept().await;
    c.expect_hello().await;
    c.expect_snapshot().await;
    // Never acked: the ring (4) must overflow.
    for n in 1..=10 {
        events.send(event(n)).unwrap();
    }
    let mut received = BTreeSet::new();
    let mut reported = BTreeSet::new();
    let mut gap_then_snapshot = false;
    let mut last_engine_event = false;
    let mut max_seq = 0;
    while !(gap_then_snapshot && last_engine_event) {
        match c.next().await {
            Out::Events(b) => {
                let had_gap = b.events.iter().any(|e| e.kind == pb::EventKind::Gap as i32);
                for e in b.events {
                    received.insert(e.seq);
                    max_seq = max_seq.max(e.seq);
                    last_engine_event |= e.wall_time_ms == 10 && e.kind == kind::TRANSITION;
                    if e.kind == pb::EventKind::Gap as i32 {
                        // "N events lost (seq a..b): ..."
                        let range = e.detail.split("seq ").nth(1).unwrap();
                        let range = range.split(')').next().unwrap();
                        let (a, b) = range.split_once("..").unwrap();
                        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                        assert!(b < e.seq, "a gap reports earlier seqs only");
                        reported.extend(a..=b);
                    }
                }
                if had_gap {
                    match c.next().await {
                        Out::Snapshot(s) => {
                            assert!(s.seq >= max_seq);
                            gap_then_snapshot = true;
                        }
                        other => panic!("expected a Snapshot after a GAP, got {other:?}"),
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for s in 1..=max_seq {
        assert!(
            received.contains(&s) || reported.contains(&s),
            "seq {s} neither delivered nor reported lost"
        );
    }
    assert!(!reported.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

fn overrides(generation: u64, request: &str, prio: u32, vip: &str) -> In {
    In::Overrides(pb::Overrides {
        generation,
        request_id: request.into(),
        instance: "VI_1".into(),
        priorities: vec![pb::PriorityOverride {
            instance: "VI_1".into(),
            priority: prio,
        }],
        vips: vec![pb::VipOverride {
            instance: "VI_1".into(),
            addr: vip.into(),
            add: true,
        }],
        traceparent: String::new(),
        ..Default::default()
    })
}

async fn result(c: &mut Conn) -> pb::OverrideResult {
    match c.next().await {
        Out::OverrideResult(r) => r,
        other => panic!("expected OverrideResult, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_applied_persisted_and_idempotent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir("overrides");
    let mut server = Server::start("127.0.0.1:0".parse().unwrap());
    let addr = server.addr;
    let (_events, engine) = start_link(options(addr, &dir));
    let mut c = server.accept().await;
    assert_eq!(c.expect_hello().await.override_generation, 0);
    c.expect_snapshot().await;
    assert_eq!(link::load_persisted(&dir).unwrap(), None);

    c.send(overrides(5, "r5", 150, "203.0.113.7/24"));
    let r = result(&mut c).await;
    assert_eq!((r.request_id.as_str(), r.generation, r.ok), ("r5", 5, true));
    assert_eq!(r.error, "");
    let inst = r.instance.expect("state of VI_1");
    assert_eq!(
        (inst.override_priority, inst.effective_priority),
        (150, 150)
    );
    // A newly applied set is followed by a snapshot of what runs now.
    let snap = c.expect_snapshot().await;
    assert_eq!(snap.instances[0].effective_priority, 150);
    let applied = engine.applied();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].priorities["VI_1"], Priority(150));
    assert_eq!(
        applied[0].vips[0].addr,
        "203.0.113.7".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(applied[0].vips[0].prefix_len, 24);
    let file = dir.join("overrides.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        link::load_persisted(&dir).unwrap(),
        Some(applied[0].clone())
    );

    // A retry of the same generation, and an older one: ok, not applied again.
    c.send(overrides(5, "r5", 150, "203.0.113.7/24"));
    let r = result(&mut c).await;
    assert!(r.ok && r.generation == 5 && r.request_id == "r5");
    c.send(overrides(4, "r4", 120, "203.0.113.8/24"));
    assert!(result(&mut c).await.ok);
    assert_eq!(engine.applied().len(), 1);

    // Refused by the engine: the error comes back, nothing persisted.
    c.send(overrides(6, "r6", 0, "203.0.113.9/24"));
    let r = result(&mut c).await;
    assert!(!r.ok);
    assert!(r.error.contains("priority 0 is reserved"), "{}", r.error);
    // Syntax error: refused by the link, the engine never sees it.
    c.send(overrides(7, "r7", 140, "bogus/24"));
    let r = result(&mut c).await;
    assert!(!r.ok);
    assert!(r.error.contains("'bogus/24'"), "{}", r.error);
    assert_eq!(engine.applied().len(), 1);
    assert_eq!(link::load_persisted(&dir).unwrap().unwrap().generation, 5);

    // The generation in force survives a reconnect.
    drop(c);
    drop(server);
    let mut server = Server::start(addr);
    let mut c = server.accept().await;
    assert_eq!(c.expect_hello().await.override_generation, 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_answer_pings_and_tick() {
    let dir = state_dir("heartbeat");
    let mut server = Server::start("127.0.0.1:0".parse().unwrap());
    let mut opts = options(server.addr, &dir);
    opts.heartbeat = Duration::from_millis(50);
    let (_events, _engine) = start_link(opts);
    let mut c = server.accept().await;
    c.expect_hello().await;
    c.expect_snapshot().await;
    c.send(In::Ping(pb::Ping {
        ping_id: 42,
        manager_ms: 1234,
    }));
    let mut answered = false;
    let mut unsolicited = false;
    while !(answered && unsolicited) {
        match c.next_raw().await {
            Out::Heartbeat(h) if h.ping_id == 42 => {
                assert_eq!(h.ping_manager_ms, 1234);
                assert!(h.wall_time_ms > 1_600_000_000_000, "agent wall clock in ms");
                answered = true;
            }
            Out::Heartbeat(h) => {
                assert_eq!((h.ping_id, h.ping_manager_ms), (0, 0));
                assert!(h.wall_time_ms > 1_600_000_000_000);
                unsolicited = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_a_manager_and_connects_when_it_appears() {
    let dir = state_dir("late");
    // Reserve a port, then free it: nothing listens there at first.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (events, _engine) = start_link(options(addr, &dir));
    for n in 1..=3 {
        events.send(event(n)).unwrap();
    }
    let mut server = Server::start(addr);
    let mut c = server.accept().await;
    c.expect_hello().await;
    let snap = c.expect_snapshot().await;
    assert!(snap.seq <= 3);
    let seqs: Vec<u64> = c.events_until(3).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let _ = std::fs::remove_dir_all(dir);
}

/// Run `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

/// A CA named `ca` in `dir` and a certificate `name` signed by it with `ext` extensions.
fn make_ca(dir: &std::path::Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
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
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_cert(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
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
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_url_host_as_server_name() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let dir = state_dir("tls");
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    make_cert(
        &dir,
        "ca",
        "manager",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    );
    make_cert(
        &dir,
        "ca",
        "agent",
        "subjectAltName=DNS:lb1\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    );
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("manager.pem"), read("manager.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let mut server = Server::start_with("127.0.0.1:0".parse().unwrap(), Some(tls));
    let url = format!("https://{}", server.addr);
    let files = link::TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("agent.pem"),
        key: dir.join("agent.key"),
    };

    // A server certificate from a CA the agent does not trust is refused.
    let wrong = link::TlsFiles {
        ca: dir.join("other-ca.pem"),
        ..files.clone()
    };
    assert!(link::endpoint::connect(&url, Some(&wrong)).await.is_err());

    let mut opts = options(server.addr, &dir);
    opts.manager = url;
    opts.tls = Some(files);
    opts.check().unwrap();
    let (_events, _engine) = start_link(opts);
    let mut c = server.accept().await;
    assert_eq!(c.expect_hello().await.node, "lb1");
    c.expect_snapshot().await;
    let _ = std::fs::remove_dir_all(dir);
}
