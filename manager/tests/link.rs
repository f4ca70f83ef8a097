//! End to end over loopback: a real ha-manager server (insecure and mTLS) and test agents
//! built on the generated `AgentLinkClient` (a legitimate client, not a mock of the
//! manager), plus `ControlClient` calls as hactl makes them.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ha_manager::core::{Core, CoreOptions};
use ha_manager::pki::{self, Pem};
use ha_manager::server;
use ha_manager::store::sled::SledStore;
use ha_proto::auth::Role;
use ha_proto::v1::agent_link_client::AgentLinkClient;
use ha_proto::v1::control_client::ControlClient;
use ha_proto::v1::{
    agent_msg, manager_msg, AgentMsg, CheckerState, Event, EventBatch, EventKind, Heartbeat, Hello,
    HistoryRequest, InstanceState, InstanceSummary, LbStatus, ManagerMsg, OverrideResult,
    Overrides, RealServerOverride, RealServerRequest, RealServerState, RsAction,
    SetPriorityRequest, Snapshot, StatusRequest, SwitchoverRequest, VipChangeRequest,
    VirtualServerState, WatchRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Streaming};

/// Safety net against hangs; never an assertion on timing.
const PATIENCE: Duration = Duration::from_secs(20);

struct Manager {
    addr: SocketAddr,
    core: Arc<Core>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Manager {
    async fn start(tls: Option<(&Pem, &Pem)>, opts: CoreOptions) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let core = Core::open(Arc::new(store), opts).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tls.map(|(ca, m)| {
            server::tls_config(ca.cert.as_bytes(), m.cert.as_bytes(), m.key.as_bytes()).unwrap()
        });
        let (stop, rx) = oneshot::channel::<()>();
        let c2 = core.clone();
        let task = tokio::spawn(async move {
            server::serve(listener, c2, tls, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Manager {
            addr,
            core,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn insecure() -> Manager {
        Manager::start(
            None,
            CoreOptions {
                insecure: true,
                ping_interval: Duration::from_secs(3600),
                override_timeout: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .await
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .unwrap()
            .unwrap();
        self.core.close().await;
    }
}

async fn tls_channel(
    addr: SocketAddr,
    ca: &Pem,
    me: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .domain_name("localhost");
    if let Some(me) = me {
        tls = tls.identity(Identity::from_pem(&me.cert, &me.key));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

struct Agent {
    tx: mpsc::Sender<AgentMsg>,
    rx: Streaming<ManagerMsg>,
}

fn msg(m: agent_msg::Msg) -> AgentMsg {
    AgentMsg { msg: Some(m) }
}

fn hello(node: &str, boot: &str, generation: u64) -> Hello {
    Hello {
        node: node.into(),
        boot_id: boot.into(),
        version: "test".into(),
        config_digest: "d".into(),
        instances: vec![InstanceSummary {
            name: "VI_1".into(),
            vrid: 51,
            interface: "eth0".into(),
            advert_interval_ms: 0,
        }],
        override_generation: generation,
    }
}

fn instance(state: &str, prio: u32, ovr: u32) -> InstanceState {
    InstanceState {
        name: "VI_1".into(),
        vrid: 51,
        interface: "eth0".into(),
        state: state.into(),
        base_priority: 100,
        effective_priority: if ovr != 0 { ovr } else { prio },
        vips: vec!["192.0.2.10/24".into()],
        override_priority: ovr,
        ..Default::default()
    }
}

fn transition(seq: u64, from: &str, to: &str, reason: &str) -> Event {
    Event {
        seq,
        wall_time_ms: 1_000 + seq as i64,
        kind: EventKind::Transition as i32,
        instance: "VI_1".into(),
        from_state: from.into(),
        to_state: to.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

impl Agent {
    async fn connect(ch: Channel, hello: Hello) -> Result<Agent, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(msg(agent_msg::Msg::Hello(hello))).await.unwrap();
        let mut client = AgentLinkClient::new(ch);
        let rx = client.session(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Agent { tx, rx })
    }

    async fn send(&self, m: agent_msg::Msg) {
        self.tx.send(msg(m)).await.unwrap();
    }

    async fn snapshot(&self, seq: u64, st: InstanceState) {
        self.send(agent_msg::Msg::Snapshot(Snapshot {
            seq,
            instances: vec![st],
            wall_time_ms: 0,
            virtual_servers: Default::default(),
        }))
        .await;
    }

    async fn events(&self, evs: Vec<Event>) {
        self.send(agent_msg::Msg::Events(EventBatch { events: evs }))
            .await;
    }

    /// Next message (pings included); Err on a stream error.
    async fn next(&mut self) -> Result<manager_msg::Msg, tonic::Status> {
        let m = tokio::time::timeout(PATIENCE, self.rx.message())
            .await
            .expect("manager answered in time")?;
        Ok(m.expect("stream open").msg.expect("message set"))
    }

    async fn next_ack(&mut self) -> u64 {
        loop {
            if let manager_msg::Msg::Ack(a) = self.next().await.unwrap() {
                return a.seq;
            }
        }
    }

    async fn next_overrides(&mut self) -> Overrides {
        loop {
            if let manager_msg::Msg::Overrides(o) = self.next().await.unwrap() {
                return o;
            }
        }
    }
}

async fn history(ch: &Channel, req: HistoryRequest) -> Vec<Event> {
    ControlClient::new(ch.clone())
        .history(req)
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The audited COMMAND events of one request id.
async fn commands_of(ch: &Channel, request_id: &str) -> Vec<Event> {
    let tag = format!("\"request_id\":\"{request_id}\"");
    history(
        ch,
        HistoryRequest {
            kind: EventKind::Command as i32,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .filter(|e| e.detail.contains(&tag))
    .collect()
}

/// Waits until `f(status)` holds (polling; a safety-net timeout only).
async fn until_status(ch: &Channel, f: impl Fn(&ha_proto::v1::StatusReply) -> bool) {
    let mut c = ControlClient::new(ch.clone());
    tokio::time::timeout(PATIENCE, async {
        loop {
            let st = c.status(StatusRequest {}).await.unwrap().into_inner();
            if f(&st) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("status reached the expected state");
}

#[tokio::test]
async fn events_are_acked_after_durable_write_and_deduplicated() {
    let m = Manager::insecure().await;
    let ch = m.channel().await;
    let mut watch = ControlClient::new(ch.clone())
        .watch(WatchRequest {
            node: "lb1".into(),
            instance: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut a = Agent::connect(ch.clone(), hello("lb1", "boot-1", 0))
        .await
        .unwrap();
    a.snapshot(0, instance("BACKUP", 100, 0)).await;
    a.events(vec![
        transition(1, "INIT", "BACKUP", "start"),
        transition(2, "BACKUP", "MASTER", "master down timer expired"),
    ])
    .await;
    assert_eq!(a.next_ack().await, 2);
    // Acked means stored: both are in the store right now.
    let stored = m.core.store().last_history_id();
    assert!(stored >= 2);
    let evs = history(
        &ch,
        HistoryRequest {
            node: "lb1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(evs
        .iter()
        .all(|e| e.boot_id == "boot-1" && e.history_id > 0 && e.stored_ms > 0));

    // Watch sees them live.
    for seq in [1, 2] {
        let ev = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ev.seq, seq);
    }

    // Reconnect (same boot): resend 2 with a new 3. 2 is dropped, 3 stored, ack 3.
    drop(a);
    until_status(&ch, |s| {
        s.nodes.iter().any(|n| n.name == "lb1" && !n.connected)
    })
    .await;
    let mut a = Agent::connect(ch.clone(), hello("lb1", "boot-1", 0))
        .await
        .unwrap();
    a.snapshot(2, instance("MASTER", 100, 0)).await;
    a.events(vec![
        transition(2, "BACKUP", "MASTER", "master down timer expired"),
        transition(3, "MASTER", "BACKUP", "higher priority advert"),
    ])
    .await;
    assert_eq!(a.next_ack().await, 3);
    let evs = history(
        &ch,
        HistoryRequest {
            node: "lb1".into(),
            kind: EventKind::Transition as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);

    // A new boot restarts seq at 1: not a duplicate.
    drop(a);
    let mut a = Agent::connect(ch.clone(), hello("lb1", "boot-2", 0))
        .await
        .unwrap();
    a.snapshot(0, instance("BACKUP", 100, 0)).await;
    a.events(vec![transition(1, "INIT", "BACKUP", "start")])
        .await;
    assert_eq!(a.next_ack().await, 1);

    // Filters and paging.
    let all = history(
        &ch,
        HistoryRequest {
            node: "lb1".into(),
            kind: EventKind::Transition as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 4);
    let mut c = ControlClient::new(ch.clone());
    let p1 = c
        .history(HistoryRequest {
            node: "lb1".into(),
            kind: EventKind::Transition as i32,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.events.len(), 3);
    assert_ne!(p1.next_after_id, 0);
    let p2 = c
        .history(HistoryRequest {
            node: "lb1".into(),
            kind: EventKind::Transition as i32,
            limit: 3,
            after_id: p1.next_after_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.events.len(), 1);
    assert_eq!(p2.next_after_id, 0);
    assert_eq!(p2.events[0].boot_id, "boot-2");
    let none = history(
        &ch,
        HistoryRequest {
            node: "lb9".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let timed = history(
        &ch,
        HistoryRequest {
            since_ms: 1_002,
            until_ms: 1_003,
            node: "lb1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(timed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    m.stop().await;
}

#[tokio::test]
async fn first_message_must_be_hello() {
    let m = Manager::insecure().await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(msg(agent_msg::Msg::Snapshot(Snapshot::default())))
        .await
        .unwrap();
    let mut s = AgentLinkClient::new(m.channel().await)
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(PATIENCE, s.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    m.stop().await;
}

/// Answers overrides like an agent: applies the priority and reports the state.
async fn answer(a: &mut Agent, ok: bool) -> Overrides {
    let o = a.next_overrides().await;
    let p = o
        .priorities
        .iter()
        .find(|p| p.instance == "VI_1")
        .map_or(0, |p| p.priority);
    let st = if ok {
        instance("MASTER", 100, p)
    } else {
        instance("BACKUP", 100, 0)
    };
    a.send(agent_msg::Msg::OverrideResult(OverrideResult {
        request_id: o.request_id.clone(),
        generation: o.generation,
        ok,
        error: if ok {
            String::new()
        } else {
            "VI_1: priority 7 refused by test".into()
        },
        instance: Some(st),
        virtual_server: Default::default(),
    }))
    .await;
    o
}

#[tokio::test]
async fn set_priority_round_trip_replay_and_offline_agent() {
    let m = Manager::insecure().await;
    let ch = m.channel().await;
    let mut ctl = ControlClient::new(ch.clone());
    let mut a = Agent::connect(ch.clone(), hello("lb1", "b", 0))
        .await
        .unwrap();
    a.snapshot(0, instance("BACKUP", 100, 0)).await;
    until_status(&ch, |s| {
        s.nodes
            .iter()
            .any(|n| n.name == "lb1" && n.instances.iter().any(|i| i.state == "BACKUP"))
    })
    .await;

    // Validation: range, unknown node (lists what exists), unknown instance.
    let req = |rid: &str, node: &str, inst: &str, p: u32| SetPriorityRequest {
        request_id: rid.into(),
        node: node.into(),
        instance: inst.into(),
        priority: p,
    };
    let e = ctl
        .set_priority(req("v1", "lb1", "VI_1", 300))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = ctl
        .set_priority(req("v2", "lb9", "VI_1", 90))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("lb1"), "{}", e.message());
    let e = ctl
        .set_priority(req("v3", "lb1", "VI_9", 90))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("VI_1"), "{}", e.message());
    let e = ctl
        .set_priority(req("", "lb1", "VI_1", 90))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Round trip: the agent answers, the reply carries its state.
    let call = tokio::spawn({
        let mut ctl = ctl.clone();
        async move { ctl.set_priority(req("r1", "lb1", "VI_1", 150)).await }
    });
    let pushed = answer(&mut a, true).await;
    assert_eq!(pushed.request_id, "r1");
    assert_eq!(pushed.instance, "VI_1");
    a.events(vec![transition(1, "BACKUP", "MASTER", "priority override")])
        .await;
    let reply = call.await.unwrap().unwrap().into_inner();
    assert!(reply.ok, "{reply:?}");
    assert!(!reply.replayed);
    assert_eq!(reply.generation, pushed.generation);
    assert_eq!(reply.instance.as_ref().unwrap().effective_priority, 150);
    assert_eq!(a.next_ack().await, 1);

    // Retried request id: runs once, same answer, replayed.
    let again = ctl
        .set_priority(req("r1", "lb1", "VI_1", 150))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.generation, reply.generation);
    assert!(again.ok);

    // An agent that refuses: ok=false with its error, generation moves on.
    let call = tokio::spawn({
        let mut ctl = ctl.clone();
        async move { ctl.set_priority(req("r2", "lb1", "VI_1", 7)).await }
    });
    answer(&mut a, false).await;
    let refused = call.await.unwrap().unwrap().into_inner();
    assert!(!refused.ok);
    assert!(refused.error.contains("refused by test"));
    assert!(refused.generation > reply.generation);

    // History: the transition with its reason, and the audited commands.
    let tr = history(
        &ch,
        HistoryRequest {
            kind: EventKind::Transition as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].reason, "priority override");
    let r1 = commands_of(&ch, "r1").await;
    assert_eq!(r1.len(), 1, "a replay is not a second run");
    assert!(r1[0].detail.contains("\"who\":\"insecure\""));
    assert_eq!(r1[0].reason, "set-priority");

    // The agent goes away: the override is stored and pushed on reconnect.
    drop(a);
    until_status(&ch, |s| {
        s.nodes.iter().any(|n| n.name == "lb1" && !n.connected)
    })
    .await;
    let off = ctl
        .set_priority(req("r3", "lb1", "VI_1", 120))
        .await
        .unwrap()
        .into_inner();
    assert!(!off.ok);
    assert!(off.error.contains("not connected"), "{}", off.error);
    let mut a = Agent::connect(ch.clone(), hello("lb1", "b", reply.generation))
        .await
        .unwrap();
    let o = a.next_overrides().await;
    assert_eq!(o.generation, off.generation);
    assert_eq!(o.priorities[0].priority, 120);
    // An agent that already has the latest generation gets no push; its status shows.
    a.snapshot(1, instance("MASTER", 100, 120)).await;
    until_status(&ch, |s| {
        s.nodes.iter().any(|n| {
            n.name == "lb1"
                && n.connected
                && n.instances.iter().any(|i| i.effective_priority == 120)
        })
    })
    .await;

    // VIP change goes the same path.
    let call = tokio::spawn({
        let mut ctl = ctl.clone();
        async move {
            ctl.vip_change(VipChangeRequest {
                request_id: "v-1".into(),
                node: "lb1".into(),
                instance: "VI_1".into(),
                addr: "192.0.2.20/24".into(),
                add: true,
            })
            .await
        }
    });
    let o = answer(&mut a, true).await;
    assert_eq!(o.vips.len(), 1);
    assert_eq!(o.vips[0].addr, "192.0.2.20/24");
    assert!(call.await.unwrap().unwrap().into_inner().ok);
    let e = ctl
        .vip_change(VipChangeRequest {
            request_id: "v-2".into(),
            node: "lb1".into(),
            instance: "VI_1".into(),
            addr: "192.0.2.20".into(),
            add: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    m.stop().await;
}

#[tokio::test]
async fn switchover_split_brain_and_clock_offset() {
    let m = Manager::start(
        None,
        CoreOptions {
            insecure: true,
            ping_interval: Duration::from_millis(50),
            split_margin: Duration::ZERO,
            default_advert: Duration::from_millis(10),
            tick_interval: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    let ch = m.channel().await;
    let lb1 = Agent::connect(ch.clone(), hello("lb1", "b1", 0))
        .await
        .unwrap();
    let mut lb2 = Agent::connect(ch.clone(), hello("lb2", "b2", 0))
        .await
        .unwrap();
    lb1.snapshot(0, instance("MASTER", 100, 0)).await;
    lb2.snapshot(0, instance("BACKUP", 100, 0)).await;

    // lb2's clock is 2 s ahead: it answers pings with its own wall clock.
    let skewed = loop {
        if let manager_msg::Msg::Ping(p) = lb2.next().await.unwrap() {
            break p;
        }
    };
    lb2.send(agent_msg::Msg::Heartbeat(Heartbeat {
        wall_time_ms: skewed.manager_ms + 2_000,
        ping_id: skewed.ping_id,
        ping_manager_ms: skewed.manager_ms,
    }))
    .await;
    until_status(&ch, |s| {
        s.alerts
            .iter()
            .any(|a| a.kind == "clock-offset" && a.subject == "lb2")
    })
    .await;
    let st = ControlClient::new(ch.clone())
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let off = st
        .nodes
        .iter()
        .find(|n| n.name == "lb2")
        .unwrap()
        .clock_offset_ms;
    assert!(off > 1_000.0 && off < 3_000.0, "{off}");

    // Split brain: both MASTER with the same VIP, and both keep talking past the hold
    // (Master_Down_Interval at the assumed 10 ms adverts, no margin).
    lb2.events(vec![transition(
        1,
        "BACKUP",
        "MASTER",
        "master down timer expired",
    )])
    .await;
    let mut ctl = ControlClient::new(ch.clone());
    tokio::time::timeout(PATIENCE, async {
        loop {
            for a in [&lb1, &lb2] {
                a.send(agent_msg::Msg::Heartbeat(Heartbeat::default()))
                    .await;
            }
            let st = ctl.status(StatusRequest {}).await.unwrap().into_inner();
            if st.alerts.iter().any(|a| a.kind == "split-brain") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("split brain raised once both masters were heard after the hold");
    lb2.events(vec![transition(
        2,
        "MASTER",
        "BACKUP",
        "higher priority advert",
    )])
    .await;
    until_status(&ch, |s| !s.alerts.iter().any(|a| a.kind == "split-brain")).await;
    // Manager events are recorded asynchronously: wait until both are in history.
    for kind in [EventKind::AlertRaised, EventKind::AlertCleared] {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let evs = history(
                    &ch,
                    HistoryRequest {
                        kind: kind as i32,
                        ..Default::default()
                    },
                )
                .await;
                if evs.iter().filter(|e| e.reason == "split-brain").count() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("split-brain raised and cleared in history, once per node");
    }

    // Switchover VI_1 to lb2: raise above lb1 (100) to 101, lb2 becomes master; the
    // raise stays in force (no second push).
    let call = tokio::spawn({
        let mut ctl = ControlClient::new(ch.clone());
        async move {
            ctl.switchover(SwitchoverRequest {
                request_id: "s1".into(),
                instance: "VI_1".into(),
                to_node: "lb2".into(),
            })
            .await
        }
    });
    let raise = lb2.next_overrides().await;
    assert_eq!(raise.priorities[0].priority, 101);
    lb2.send(agent_msg::Msg::OverrideResult(OverrideResult {
        request_id: raise.request_id.clone(),
        generation: raise.generation,
        ok: true,
        error: String::new(),
        instance: Some(instance("BACKUP", 100, 101)),
        virtual_server: Default::default(),
    }))
    .await;
    lb1.events(vec![transition(
        1,
        "MASTER",
        "BACKUP",
        "higher priority advert",
    )])
    .await;
    lb2.events(vec![transition(3, "BACKUP", "MASTER", "priority override")])
        .await;
    let reply = call.await.unwrap().unwrap().into_inner();
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.node, "lb2");
    assert_eq!(
        reply.generation, raise.generation,
        "the raise stays in force"
    );
    m.stop().await;
}

const VS: &str = "192.0.2.10:80/TCP";

fn real_server(addr: &str, weight: u32, drained: bool) -> RealServerState {
    RealServerState {
        addr: addr.into(),
        port: 80,
        alive: true,
        weight_base: 1,
        weight_effective: weight,
        in_table: true,
        drained,
        from_override: false,
        checkers: vec![CheckerState {
            kind: "HTTP_GET".into(),
            up: true,
            detail: "200 OK".into(),
            latency_us: 900,
        }],
    }
}

fn virtual_server(rs: Vec<RealServerState>) -> VirtualServerState {
    VirtualServerState {
        name: VS.into(),
        backend: "nftables".into(),
        scheduler: "rr".into(),
        method: "NAT".into(),
        quorum: 1,
        live_weight: rs.iter().map(|r| u64::from(r.weight_effective)).sum(),
        quorum_up: true,
        real_servers: rs,
        ..Default::default()
    }
}

fn rs_request(
    rid: &str,
    node: &str,
    action: RsAction,
    addr: &str,
    weight: u32,
) -> RealServerRequest {
    RealServerRequest {
        request_id: rid.into(),
        node: node.into(),
        virtual_server: VS.into(),
        addr: addr.into(),
        port: 80,
        action: action as i32,
        weight,
    }
}

/// Answers one real-server push like an agent: ok, with `vs` as the state after it.
async fn answer_rs(a: &mut Agent, vs: VirtualServerState) -> Overrides {
    let o = a.next_overrides().await;
    a.send(agent_msg::Msg::OverrideResult(OverrideResult {
        request_id: o.request_id.clone(),
        generation: o.generation,
        ok: true,
        error: String::new(),
        instance: None,
        virtual_server: Some(vs),
    }))
    .await;
    o
}

/// Runs one RealServer command while the agent answers its push with `vs`; returns the
/// push and the reply.
async fn rs_round_trip(
    ctl: &ControlClient<Channel>,
    a: &mut Agent,
    req: RealServerRequest,
    vs: VirtualServerState,
) -> (Overrides, ha_proto::v1::CommandReply) {
    let call = tokio::spawn({
        let mut ctl = ctl.clone();
        async move { ctl.real_server(req).await }
    });
    let pushed = answer_rs(a, vs).await;
    (pushed, call.await.unwrap().unwrap().into_inner())
}

fn node_vs(s: &ha_proto::v1::StatusReply, node: &str) -> Vec<VirtualServerState> {
    s.nodes
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.virtual_servers.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn real_server_overrides_status_and_checker_history() {
    let m = Manager::insecure().await;
    let ch = m.channel().await;
    let mut ctl = ControlClient::new(ch.clone());
    let mut a = Agent::connect(ch.clone(), hello("lb1", "b", 0))
        .await
        .unwrap();
    let start = virtual_server(vec![
        real_server("192.0.2.21", 1, false),
        real_server("192.0.2.22", 1, false),
    ]);
    a.send(agent_msg::Msg::Snapshot(Snapshot {
        seq: 0,
        instances: vec![instance("MASTER", 100, 0)],
        wall_time_ms: 0,
        virtual_servers: vec![start.clone()],
    }))
    .await;
    until_status(&ch, |s| node_vs(s, "lb1") == vec![start.clone()]).await;

    // Validation, before anything is stored or pushed.
    let refused = |r: RealServerRequest| {
        let mut ctl = ctl.clone();
        async move { ctl.real_server(r).await.unwrap_err() }
    };
    let e = refused(rs_request("v1", "lb1", RsAction::RsDrain, "lb-web", 0)).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"lb-web\""), "{}", e.message());
    let e = refused(rs_request("v2", "lb9", RsAction::RsDrain, "192.0.2.21", 0)).await;
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("lb1"), "{}", e.message());
    let mut r = rs_request("v3", "lb1", RsAction::RsDrain, "192.0.2.21", 0);
    r.virtual_server = "192.0.2.10:80/tcp".into();
    let e = refused(r).await;
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(VS), "{}", e.message());
    let e = refused(rs_request(
        "v4",
        "lb1",
        RsAction::Unspecified,
        "192.0.2.21",
        0,
    ))
    .await;
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = refused(rs_request(
        "v5",
        "lb1",
        RsAction::RsWeight,
        "192.0.2.21",
        65_536,
    ))
    .await;
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut r = rs_request("v6", "lb1", RsAction::RsAdd, "192.0.2.23", 1);
    r.virtual_server.clear();
    assert_eq!(refused(r).await.code(), Code::InvalidArgument);

    // Drain: the push names the virtual server and carries the entry; the reply carries
    // the agent's state of the virtual server.
    let drained = virtual_server(vec![
        real_server("192.0.2.21", 0, true),
        real_server("192.0.2.22", 1, false),
    ]);
    let drain = rs_request("d1", "lb1", RsAction::RsDrain, "192.0.2.21", 7);
    let (pushed, reply) = rs_round_trip(&ctl, &mut a, drain.clone(), drained.clone()).await;
    assert_eq!(pushed.request_id, "d1");
    assert_eq!(pushed.virtual_server, VS);
    assert_eq!(pushed.instance, "");
    assert_eq!(
        pushed.real_servers,
        vec![RealServerOverride {
            virtual_server: VS.into(),
            addr: "192.0.2.21".into(),
            port: 80,
            action: RsAction::RsDrain as i32,
            weight: 0,
        }]
    );
    assert!(reply.ok, "{reply:?}");
    assert!(!reply.replayed);
    assert_eq!(reply.node, "lb1");
    assert_eq!(reply.generation, pushed.generation);
    assert_eq!(reply.virtual_server.as_ref(), Some(&drained));
    assert_eq!(reply.instance, None);
    // The fleet view took the agent's answer.
    until_status(&ch, |s| node_vs(s, "lb1") == vec![drained.clone()]).await;

    // The same request id again: the stored answer, nothing pushed, audited once.
    let again = ctl.real_server(drain).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.generation, reply.generation);
    assert_eq!(again.virtual_server.as_ref(), Some(&drained));

    // A weight on the other server: a second entry; the next push is the next generation
    // (the replay made none).
    let weight = rs_request("w1", "lb1", RsAction::RsWeight, "2001:db8::0:22", 5);
    let (o, r) = rs_round_trip(&ctl, &mut a, weight, drained.clone()).await;
    assert!(r.ok);
    assert_eq!(o.generation, pushed.generation + 1);
    let entries: Vec<(String, i32, u32)> = o
        .real_servers
        .iter()
        .map(|r| (r.addr.clone(), r.action, r.weight))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("192.0.2.21".into(), RsAction::RsDrain as i32, 0),
            ("2001:db8::22".into(), RsAction::RsWeight as i32, 5),
        ]
    );

    // Reset removes the drain entry, keeps the other.
    let reset = rs_request("x1", "lb1", RsAction::RsReset, "192.0.2.21", 0);
    let (o, reset) = rs_round_trip(&ctl, &mut a, reset, start.clone()).await;
    assert_eq!(o.real_servers.len(), 1);
    assert_eq!(o.real_servers[0].addr, "2001:db8::22");
    assert!(reset.ok);
    assert_eq!(reset.virtual_server.as_ref(), Some(&start));
    assert_eq!(
        m.core
            .store()
            .overrides("lb1")
            .unwrap()
            .unwrap()
            .real_servers,
        o.real_servers
    );

    // A server added by override: del takes the add back (the agent only deletes
    // configured servers).
    let added = virtual_server(vec![
        real_server("192.0.2.21", 1, false),
        real_server("192.0.2.22", 1, false),
        RealServerState {
            from_override: true,
            ..real_server("192.0.2.23", 2, false)
        },
    ]);
    let add = rs_request("a1", "lb1", RsAction::RsAdd, "192.0.2.23", 2);
    let (o, r) = rs_round_trip(&ctl, &mut a, add, added).await;
    assert_eq!(o.real_servers.len(), 2);
    assert!(r.ok);
    let del = rs_request("a2", "lb1", RsAction::RsDel, "192.0.2.23", 0);
    let (o, r) = rs_round_trip(&ctl, &mut a, del, start.clone()).await;
    assert_eq!(o.real_servers.len(), 1);
    assert_eq!(o.real_servers[0].addr, "2001:db8::22");
    assert!(r.ok);

    // Audit: one COMMAND per run, named by action, about the virtual server.
    let d1 = commands_of(&ch, "d1").await;
    assert_eq!(d1.len(), 1, "a replay is not a second run");
    assert_eq!(d1[0].reason, "rs-drain");
    assert_eq!(d1[0].instance, VS);

    // LbStatus replaces the list Status shows.
    let down = VirtualServerState {
        quorum_up: false,
        live_weight: 0,
        ..virtual_server(vec![])
    };
    let other = VirtualServerState {
        name: "fwmark 1".into(),
        ..virtual_server(vec![real_server("198.51.100.21", 1, false)])
    };
    a.send(agent_msg::Msg::LbStatus(LbStatus {
        virtual_servers: vec![down.clone(), other.clone()],
    }))
    .await;
    until_status(&ch, |s| {
        node_vs(s, "lb1") == vec![down.clone(), other.clone()]
    })
    .await;
    let nodes = ControlClient::new(ch.clone())
        .nodes(ha_proto::v1::NodesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nodes.nodes[0].virtual_servers.len(), 2);

    // Checker, real-server and quorum events are history like any other, by kind.
    let ev = |seq: u64, kind: EventKind, to: &str, detail: &str| Event {
        seq,
        wall_time_ms: 2_000 + seq as i64,
        kind: kind as i32,
        instance: VS.into(),
        to_state: to.into(),
        detail: detail.into(),
        ..Default::default()
    };
    a.events(vec![
        ev(
            1,
            EventKind::Checker,
            "",
            "192.0.2.21:80 HTTP_GET down: connection refused",
        ),
        ev(2, EventKind::RealServer, "DOWN", "192.0.2.21:80"),
        ev(3, EventKind::Quorum, "DOWN", "live weight 0 < quorum 1"),
        transition(4, "MASTER", "BACKUP", "higher priority advert"),
    ])
    .await;
    assert_eq!(a.next_ack().await, 4);
    for (kind, seq) in [
        (EventKind::Checker, 1),
        (EventKind::RealServer, 2),
        (EventKind::Quorum, 3),
    ] {
        let evs = history(
            &ch,
            HistoryRequest {
                node: "lb1".into(),
                kind: kind as i32,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![seq]);
        assert_eq!(evs[0].instance, VS);
    }
    let checker = history(
        &ch,
        HistoryRequest {
            instance: VS.into(),
            kind: EventKind::Checker as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(checker[0].detail.contains("connection refused"));
    // The view is untouched by events about virtual servers.
    assert_eq!(
        node_vs(
            &ctl.status(StatusRequest {}).await.unwrap().into_inner(),
            "lb1"
        )
        .len(),
        2
    );

    // Saved with the node state when the agent goes: a restarted manager shows them.
    drop(a);
    until_status(&ch, |s| {
        s.nodes.iter().any(|n| n.name == "lb1" && !n.connected)
    })
    .await;
    let saved = m.core.store().nodes().unwrap();
    assert_eq!(saved[0].virtual_servers, vec![down, other]);

    // Offline: stored, not ok, the reply shows the last known state.
    let off = ctl
        .real_server(rs_request("o1", "lb1", RsAction::RsAdd, "192.0.2.23", 1))
        .await
        .unwrap()
        .into_inner();
    assert!(!off.ok);
    assert!(off.error.contains("not connected"), "{}", off.error);
    assert_eq!(off.virtual_server.map(|v| v.name), Some(VS.to_string()));
    m.stop().await;
}

struct Certs {
    ca: Pem,
    manager: Pem,
}

fn certs() -> Certs {
    let ca = pki::new_ca().unwrap();
    let manager = pki::issue_with(&ca, "manager", Role::Manager, &[]).unwrap();
    Certs { ca, manager }
}

#[tokio::test]
async fn mtls_roles_and_foreign_ca() {
    let c = certs();
    let m = Manager::start(
        Some((&c.ca, &c.manager)),
        CoreOptions {
            ping_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let cert = |name: &str, role: Role| pki::issue_with(&c.ca, name, role, &[]).unwrap();
    let viewer = cert("vera", Role::Viewer);
    let operator = cert("otto", Role::Operator);
    let agent = cert("lb1", Role::Agent);

    // An agent with its own name works; acks flow over TLS.
    let ach = tls_channel(m.addr, &c.ca, Some(&agent)).await.unwrap();
    let mut a = Agent::connect(ach.clone(), hello("lb1", "b", 0))
        .await
        .unwrap();
    a.snapshot(0, instance("BACKUP", 100, 0)).await;
    a.events(vec![transition(1, "INIT", "BACKUP", "start")])
        .await;
    assert_eq!(a.next_ack().await, 1);
    // It may not speak for another node, nor call Control.
    let mut other = Agent::connect(ach.clone(), hello("lb2", "b", 0))
        .await
        .unwrap();
    assert_eq!(
        other.next().await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let e = ControlClient::new(ach.clone())
        .status(StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A viewer reads but can't set priority; the refusal is audited.
    let vch = tls_channel(m.addr, &c.ca, Some(&viewer)).await.unwrap();
    let mut vc = ControlClient::new(vch.clone());
    let st = vc.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.nodes.len(), 1);
    let e = vc
        .set_priority(SetPriorityRequest {
            request_id: "x1".into(),
            node: "lb1".into(),
            instance: "VI_1".into(),
            priority: 150,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let denied = history(
        &vch,
        HistoryRequest {
            kind: EventKind::Command as i32,
            ..Default::default()
        },
    )
    .await;
    // The agent's two refusals above (speaking for lb2, calling Status) are audited too.
    let (denied, refused): (Vec<_>, Vec<_>) =
        denied.into_iter().partition(|e| e.reason == "set-priority");
    let ops: Vec<(&str, &str)> = refused
        .iter()
        .map(|e| (e.reason.as_str(), e.node.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![("agent-session", "lb2"), ("status", "")],
        "{refused:?}"
    );
    assert!(refused
        .iter()
        .all(|e| e.detail.contains("\"who\":\"lb1\"") && e.detail.contains("denied")));
    assert_eq!(denied.len(), 1);
    assert!(
        denied[0].detail.contains("\"who\":\"vera\""),
        "{}",
        denied[0].detail
    );
    assert!(denied[0].detail.contains("denied"));
    // Nor a real-server override; audited as that action on the virtual server.
    let e = vc
        .real_server(rs_request("x3", "lb1", RsAction::RsDrain, "192.0.2.21", 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("RealServer"), "{}", e.message());
    let denied = history(
        &vch,
        HistoryRequest {
            kind: EventKind::Command as i32,
            instance: VS.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].reason, "rs-drain");
    assert!(denied[0].detail.contains("\"who\":\"vera\""));
    // A viewer is not an agent either.
    let e = Agent::connect(vch.clone(), hello("vera", "b", 0)).await;
    match e {
        Err(st) => assert_eq!(st.code(), Code::PermissionDenied),
        Ok(mut s) => assert_eq!(s.next().await.unwrap_err().code(), Code::PermissionDenied),
    }

    // An operator may (the request then fails on the unknown node, past authorization).
    let och = tls_channel(m.addr, &c.ca, Some(&operator)).await.unwrap();
    let e = ControlClient::new(och.clone())
        .set_priority(SetPriorityRequest {
            request_id: "x2".into(),
            node: "lb7".into(),
            instance: "VI_1".into(),
            priority: 150,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = ControlClient::new(och)
        .real_server(rs_request("x4", "lb7", RsAction::RsDrain, "192.0.2.21", 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A certificate from another CA is refused, and so is no certificate.
    let foreign_ca = pki::new_ca().unwrap();
    let foreign = pki::issue_with(&foreign_ca, "mallory", Role::Admin, &[]).unwrap();
    for who in [Some(&foreign), None] {
        let refused = match tls_channel(m.addr, &c.ca, who).await {
            Err(_) => true,
            Ok(ch) => ControlClient::new(ch)
                .status(StatusRequest {})
                .await
                .is_err(),
        };
        assert!(refused);
    }
    drop(a);
    m.stop().await;
}
