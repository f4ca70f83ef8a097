//! One agent stream (`AgentLink.Session`).
//!
//! ```text
//!  agent ──AgentMsg──▶ reader loop ──fleet updates──▶ Core (view, alerts)
//!                          │ EventBatch ──▶ submitter task ──submit──▶ committer ──durable──┐
//!                          ▼ (the reader waits only once SUBMIT_QUEUE batches are queued)   ▼
//!                     ack queue (in order) ─────────────────────▶ acker task ──Ack──▶ out channel ──▶ agent
//!         ping ticker ───────────────────────────────────────────Ping──▶     ▲
//!         commands (Core::apply_overrides) ─────────────────Overrides──────┘
//! ```
//!
//! What the agent must send: Hello first (node, boot_id required); then a full Snapshot;
//! then EventBatches with seq strictly increasing per boot id (>= 1; resending events
//! after a reconnect is fine, duplicates are dropped and acked); Heartbeats answering
//! Pings (echo `ping_id` and `ping_manager_ms`, set `wall_time_ms` to its wall clock
//! when sending); an LbStatus whenever its virtual servers change (each replaces the
//! last; the manager keeps it for Status); an OverrideResult for every Overrides push
//! (same request id, which is empty for pushes made at connect). Acks carry the highest seq made durable; they
//! arrive in order. With mTLS the certificate CN must equal `hello.node`.

use std::sync::Arc;

use ha_proto::auth::Identity;
use ha_proto::v1::{agent_msg, manager_msg, Ack, AgentMsg, Event, Hello, ManagerMsg, Ping};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::core::{Core, PendingAck, SessionHandle};
use crate::now_ms;

/// What the manager streams to an agent.
pub type Outbound = ReceiverStream<Result<ManagerMsg, Status>>;

/// Starts a session task over the agent's stream; returns the stream to the agent.
pub fn spawn(
    core: Arc<Core>,
    identity: Identity,
    peer: String,
    inbound: Streaming<AgentMsg>,
) -> Outbound {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Err(st) = run(core, identity, peer, inbound, tx.clone()).await {
            tracing::info!(code = ?st.code(), message = %st.message(), "agent session refused");
            let _ = tx.send(Err(st)).await;
        }
    });
    ReceiverStream::new(rx)
}

fn check_hello(core: &Core, identity: &Identity, h: &Hello) -> Result<(), Status> {
    if h.node.is_empty() || h.boot_id.is_empty() {
        return Err(Status::invalid_argument("hello needs node and boot_id"));
    }
    if !core.opts.insecure && identity.name != h.node {
        return Err(Status::permission_denied(format!(
            "certificate {} may not speak for node {}",
            identity.name, h.node
        )));
    }
    Ok(())
}

async fn run(
    core: Arc<Core>,
    identity: Identity,
    peer: String,
    mut inbound: Streaming<AgentMsg>,
    tx: mpsc::Sender<Result<ManagerMsg, Status>>,
) -> Result<(), Status> {
    let mut shutdown = core.shutdown_signal();
    let first = tokio::select! {
        m = inbound.message() => m?,
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
    };
    let hello = match first.and_then(|m| m.msg) {
        Some(agent_msg::Msg::Hello(h)) => h,
        Some(_) => {
            return Err(Status::failed_precondition(
                "the first message must be hello",
            ))
        }
        None => return Ok(()),
    };
    if let Err(st) = check_hello(&core, &identity, &hello) {
        core.record_refusal(&identity, "agent-session", &hello.node, st.message());
        return Err(st);
    }
    let node = hello.node.clone();
    tracing::info!(%node, boot_id = %hello.boot_id, %peer, "agent connected");
    let handle = core.register_session(&hello, &peer, tx.clone());
    let res = serve(&core, &hello, &handle, &mut inbound, &mut shutdown).await;
    core.unregister_session(&node, handle.conn);
    tracing::info!(%node, "agent disconnected");
    res
}

async fn serve(
    core: &Arc<Core>,
    hello: &Hello,
    h: &SessionHandle,
    inbound: &mut Streaming<AgentMsg>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Status> {
    let node = hello.node.as_str();
    // Overrides decided while the agent was away (or lost by it).
    match core.stored_overrides(node).await {
        Ok(Some(set)) if set.generation > hello.override_generation => {
            let msg = ManagerMsg {
                msg: Some(manager_msg::Msg::Overrides(set)),
            };
            let _ = h.tx.send(Ok(msg)).await;
        }
        Ok(Some(set)) if set.generation < hello.override_generation => {
            tracing::warn!(%node, agent = hello.override_generation, manager = set.generation,
                "agent holds a newer override generation than the manager");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(%node, error = %e, "loading overrides failed"),
    }

    // Batches go to the committer from their own task, so that the reader keeps
    // reading (heartbeats, override results) while the store is slow or failing; it
    // only waits once SUBMIT_QUEUE batches are queued (then HTTP/2 flow control holds
    // the agent, whose ring keeps the events).
    let (sub_tx, mut sub_rx) = mpsc::channel::<(Vec<Event>, u64, std::time::Instant)>(SUBMIT_QUEUE);
    // Acks in order, each after its batch is durable.
    let (ack_tx, mut ack_rx) = mpsc::channel::<(PendingAck, std::time::Instant)>(1024);
    let c2 = core.clone();
    let submitter = tokio::spawn(async move {
        while let Some((evs, max_seq, received)) = sub_rx.recv().await {
            let done = c2.committer().submit(evs).await;
            if ack_tx.send(((max_seq, done), received)).await.is_err() {
                return;
            }
        }
    });
    let out = h.tx.clone();
    let boot_id = hello.boot_id.clone();
    let acker = tokio::spawn(async move {
        let mut acked = 0u64;
        while let Some(((seq, done), received)) = ack_rx.recv().await {
            let err = match done.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("history committer stopped".to_string()),
            };
            if let Some(e) = err {
                let _ = out.send(Err(Status::unavailable(e))).await;
                return;
            }
            crate::telemetry::record_ack_latency(received.elapsed());
            acked = acked.max(seq);
            let ack = ManagerMsg {
                msg: Some(manager_msg::Msg::Ack(Ack {
                    boot_id: boot_id.clone(),
                    seq: acked,
                })),
            };
            if out.send(Ok(ack)).await.is_err() {
                return;
            }
        }
    });

    let mut ticker = tokio::time::interval(core.opts.ping_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_id = 0u64;
    let res = loop {
        let msg = tokio::select! {
            _ = ticker.tick() => {
                ping_id += 1;
                let ping = ManagerMsg {
                    msg: Some(manager_msg::Msg::Ping(Ping { ping_id, manager_ms: now_ms() })),
                };
                // A full queue skips this ping (the next one measures).
                let _ = h.tx.try_send(Ok(ping));
                continue;
            }
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
            m = inbound.message() => m,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(st) => {
                tracing::debug!(%node, error = %st, "agent stream ended");
                break Ok(());
            }
        };
        match msg.msg {
            Some(agent_msg::Msg::Hello(_)) => {
                break Err(Status::failed_precondition("hello sent twice"))
            }
            Some(agent_msg::Msg::Snapshot(s)) => core.on_snapshot(node, &s),
            Some(agent_msg::Msg::LbStatus(lb)) => core.on_lb_status(node, &lb),
            Some(agent_msg::Msg::Events(batch)) => {
                let mut evs = batch.events;
                if evs.is_empty() {
                    continue;
                }
                let mut max_seq = 0;
                for e in &mut evs {
                    if e.seq == 0 {
                        break;
                    }
                    e.node = node.to_string();
                    e.boot_id = hello.boot_id.clone();
                    e.history_id = 0;
                    e.stored_ms = 0;
                    max_seq = max_seq.max(e.seq);
                }
                if evs.iter().any(|e| e.seq == 0) {
                    break Err(Status::invalid_argument("event seq must be at least 1"));
                }
                let received = std::time::Instant::now();
                core.on_events(node, &evs);
                if sub_tx.send((evs, max_seq, received)).await.is_err() {
                    break Ok(());
                }
            }
            Some(agent_msg::Msg::Heartbeat(hb)) => core.on_heartbeat(node, &hb),
            Some(agent_msg::Msg::OverrideResult(r)) => core.on_override_result(node, h, r),
            None => {}
        }
    };
    // Last acks for what is durable; a store that is failing does not hold the
    // session open (unacked events come again with the agent's next session).
    drop(sub_tx);
    let finish = async {
        let _ = submitter.await;
        let _ = acker.await;
    };
    if tokio::time::timeout(FINAL_ACKS, finish).await.is_err() {
        tracing::debug!(%node, "session ended with batches not yet durable");
    }
    res
}

/// Batches a session queues for the committer before it stops reading its agent.
const SUBMIT_QUEUE: usize = 1024;
/// How long an ending session waits to send its last acks.
const FINAL_ACKS: std::time::Duration = std::time::Duration::from_secs(2);
