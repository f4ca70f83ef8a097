//! Thin tonic adapters: authorization (peer certificate -> identity -> role table, or the
//! insecure lab identity), request decoding and error mapping. The logic lives in `core`
//! and `session`. Every `Control` RPC runs under a server span that continues the
//! caller's W3C `traceparent` (see `telemetry`); mutations are counted by result.
//!
//! Every mutation (SetPriority, VipChange, RealServer, Switchover) goes through one
//! skeleton, [`ControlApi::command`]: span, authorization with an audited refusal, the
//! `core` command, error mapping, count by result. A request type says what the
//! skeleton needs through [`Mutation`].

use std::future::Future;
use std::sync::Arc;

use ha_proto::auth::{allowed, identity_from_cert_der, Identity, AGENT_SESSION};
use ha_proto::v1::agent_link_server::AgentLink;
use ha_proto::v1::control_server::Control;
use ha_proto::v1::{
    AgentMsg, CommandReply, Event, EventKind, HistoryReply, HistoryRequest, NodesReply,
    NodesRequest, RealServerRequest, SetPriorityRequest, StatusReply, StatusRequest,
    SwitchoverRequest, VipChangeRequest, WatchRequest,
};
use opentelemetry::context::FutureExt as _;
use opentelemetry::Context;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::core::{rs_op, CommandError, Core};
use crate::session;
use crate::store::HistoryQuery;
use crate::telemetry;

/// Largest history page.
pub const MAX_PAGE: u32 = 1000;
/// History page when the request says 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The caller's identity: from its certificate, or the insecure lab identity.
pub fn identify<T>(core: &Core, req: &Request<T>) -> Result<Identity, Status> {
    if core.opts.insecure {
        return Ok(Identity::insecure());
    }
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    identity_from_cert_der(leaf).ok_or_else(|| {
        Status::unauthenticated("client certificate subject needs CN=name and OU=role")
    })
}

/// Authorizes a session or a read; a refusal is audited (rate-limited, see
/// [`Core::record_refusal`]).
fn authorize<T>(core: &Core, req: &Request<T>, method: &str) -> Result<Identity, Status> {
    let who = identify(core, req)?;
    // --insecure: labs, every caller may do everything (agents included).
    if core.opts.insecure || allowed(method, who.role) {
        Ok(who)
    } else {
        let st = denied(&who, method);
        let op = method.rsplit('/').next().unwrap_or(method);
        let op = if method == AGENT_SESSION {
            "agent-session".to_string()
        } else {
            op.to_lowercase()
        };
        core.record_refusal(&who, &op, "", st.message());
        Err(st)
    }
}

fn denied(who: &Identity, method: &str) -> Status {
    Status::permission_denied(format!(
        "{} with role {} may not call {method}",
        who.name, who.role
    ))
}

fn status_of(e: CommandError) -> Status {
    let msg = e.to_string();
    match e {
        CommandError::InvalidArgument(_) => Status::invalid_argument(msg),
        CommandError::NotFound(_) => Status::not_found(msg),
        CommandError::FailedPrecondition(_) => Status::failed_precondition(msg),
        CommandError::Store(_) => Status::internal(msg),
        CommandError::StoreUnavailable(_) => Status::failed_precondition(msg),
        CommandError::Unavailable => Status::unavailable(msg),
    }
}

/// `AgentLink` service.
#[derive(Clone)]
pub struct AgentLinkApi {
    /// Shared state.
    pub core: Arc<Core>,
}

#[tonic::async_trait]
impl AgentLink for AgentLinkApi {
    type SessionStream = session::Outbound;

    async fn session(
        &self,
        req: Request<Streaming<AgentMsg>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let who = authorize(&self.core, &req, AGENT_SESSION)?;
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        Ok(Response::new(session::spawn(
            self.core.clone(),
            who,
            peer,
            req.into_inner(),
        )))
    }
}

/// `Control` service.
#[derive(Clone)]
pub struct ControlApi {
    /// Shared state.
    pub core: Arc<Core>,
}

impl ControlApi {
    /// Authorizes a mutation; a refusal is audited as a COMMAND event.
    async fn authorize_mutation<T>(
        &self,
        req: &Request<T>,
        method: &str,
        op: &str,
        node: &str,
        instance: &str,
        request_id: &str,
    ) -> Result<Identity, Status> {
        let who = identify(&self.core, req)?;
        if self.core.opts.insecure || allowed(method, who.role) {
            return Ok(who);
        }
        self.core
            .record_denied(&who, op, node, instance, request_id)
            .await;
        Err(denied(&who, method))
    }
}

/// Ends the RPC span of `cx` with the outcome; passes the outcome through.
fn finish<T>(cx: &Context, r: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    telemetry::end_rpc(cx, r.as_ref().err());
    r
}

/// Counts a mutation by result, ends its span; passes the outcome through.
fn finish_command(
    cx: &Context,
    op: &str,
    r: Result<Response<CommandReply>, Status>,
) -> Result<Response<CommandReply>, Status> {
    let result = match &r {
        Ok(rep) if rep.get_ref().replayed => "replayed",
        Ok(rep) if rep.get_ref().ok => "ok",
        Ok(_) => "failed",
        Err(st) => match st.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => "denied",
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition => "refused",
            _ => "error",
        },
    };
    telemetry::record_command(op, result);
    finish(cx, r)
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// What the mutation skeleton needs to know of a request.
pub trait Mutation: Send + Sync + 'static {
    /// The `Control` method ("SetPriority").
    const METHOD: &'static str;
    /// The operation as audited and counted ("set-priority", "vip-add", "rs-drain").
    fn op(&self) -> &'static str;
    /// The node and the instance (or virtual server) it is about, for the audit trail.
    fn target(&self) -> (&str, &str);
    /// The request id.
    fn request_id(&self) -> &str;
}

impl Mutation for SetPriorityRequest {
    const METHOD: &'static str = "SetPriority";
    fn op(&self) -> &'static str {
        "set-priority"
    }
    fn target(&self) -> (&str, &str) {
        (&self.node, &self.instance)
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Mutation for VipChangeRequest {
    const METHOD: &'static str = "VipChange";
    fn op(&self) -> &'static str {
        if self.add {
            "vip-add"
        } else {
            "vip-del"
        }
    }
    fn target(&self) -> (&str, &str) {
        (&self.node, &self.instance)
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Mutation for RealServerRequest {
    const METHOD: &'static str = "RealServer";
    fn op(&self) -> &'static str {
        rs_op(self.action)
    }
    fn target(&self) -> (&str, &str) {
        (&self.node, &self.virtual_server)
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Mutation for SwitchoverRequest {
    const METHOD: &'static str = "Switchover";
    fn op(&self) -> &'static str {
        "switchover"
    }
    fn target(&self) -> (&str, &str) {
        (&self.to_node, &self.instance)
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[tonic::async_trait]
impl Control for ControlApi {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let cx = telemetry::rpc_context("Status", req.metadata());
        let r = authorize(&self.core, &req, "/ha.v1.Control/Status")
            .map(|_| Response::new(self.core.status()));
        finish(&cx, r)
    }

    async fn nodes(&self, req: Request<NodesRequest>) -> Result<Response<NodesReply>, Status> {
        let cx = telemetry::rpc_context("Nodes", req.metadata());
        let r = authorize(&self.core, &req, "/ha.v1.Control/Nodes").map(|_| {
            Response::new(NodesReply {
                nodes: self.core.nodes(),
            })
        });
        finish(&cx, r)
    }

    async fn history(
        &self,
        req: Request<HistoryRequest>,
    ) -> Result<Response<HistoryReply>, Status> {
        let cx = telemetry::rpc_context("History", req.metadata());
        let r = self.history_inner(req).with_context(cx.clone()).await;
        finish(&cx, r)
    }

    type WatchStream = ReceiverStream<Result<Event, Status>>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let cx = telemetry::rpc_context("Watch", req.metadata());
        let r = self.watch_inner(req);
        finish(&cx, r)
    }

    async fn set_priority(
        &self,
        req: Request<SetPriorityRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        self.command(req, |core, who, r| async move {
            core.set_priority(&who, r).await
        })
        .await
    }

    async fn vip_change(
        &self,
        req: Request<VipChangeRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        self.command(
            req,
            |core, who, r| async move { core.vip_change(&who, r).await },
        )
        .await
    }

    async fn real_server(
        &self,
        req: Request<RealServerRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        self.command(req, |core, who, r| async move {
            core.real_server(&who, r).await
        })
        .await
    }

    async fn switchover(
        &self,
        req: Request<SwitchoverRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        self.command(
            req,
            |core, who, r| async move { core.switchover(&who, r).await },
        )
        .await
    }
}

/// The handlers behind `Control`, run under their RPC span.
impl ControlApi {
    async fn history_inner(
        &self,
        req: Request<HistoryRequest>,
    ) -> Result<Response<HistoryReply>, Status> {
        authorize(&self.core, &req, "/ha.v1.Control/History")?;
        let r = req.into_inner();
        let q = HistoryQuery {
            node: opt(r.node),
            instance: opt(r.instance),
            kind: (r.kind != EventKind::Unspecified as i32).then_some(r.kind),
            since_ms: (r.since_ms != 0).then_some(r.since_ms),
            until_ms: (r.until_ms != 0).then_some(r.until_ms),
            after_id: r.after_id,
            limit: match r.limit {
                0 => DEFAULT_PAGE,
                n => n.min(MAX_PAGE),
            } as usize,
        };
        let page = self.core.history(q).await.map_err(status_of)?;
        Ok(Response::new(HistoryReply {
            events: page.events,
            next_after_id: page.next_after_id,
        }))
    }

    fn watch_inner(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<ReceiverStream<Result<Event, Status>>>, Status> {
        authorize(&self.core, &req, "/ha.v1.Control/Watch")?;
        let filter = req.into_inner();
        let mut sub = self.core.subscribe();
        let mut shutdown = self.core.shutdown_signal();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    r = sub.recv() => r,
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tx.closed() => return,
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(n)) => Event {
                        kind: EventKind::Gap as i32,
                        wall_time_ms: crate::now_ms(),
                        reason: "watch lagged".into(),
                        detail: format!("{n} events skipped; see history"),
                        ..Default::default()
                    },
                };
                let lag_marker = ev.kind == EventKind::Gap as i32 && ev.node.is_empty();
                let keep = lag_marker
                    || ((filter.node.is_empty() || ev.node == filter.node)
                        && (filter.instance.is_empty() || ev.instance == filter.instance));
                if !keep {
                    continue;
                }
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// The mutation skeleton: runs `run` (the `core` command) under the RPC span, after
    /// authorization (a refusal is audited), and counts the outcome.
    async fn command<R, F, Fut>(
        &self,
        req: Request<R>,
        run: F,
    ) -> Result<Response<CommandReply>, Status>
    where
        R: Mutation,
        F: FnOnce(Arc<Core>, Identity, R) -> Fut + Send,
        Fut: Future<Output = Result<CommandReply, CommandError>> + Send,
    {
        let cx = telemetry::rpc_context(R::METHOD, req.metadata());
        let op = req.get_ref().op();
        let r = async {
            let m = req.get_ref();
            let (node, subject) = m.target();
            let method = format!("/ha.v1.Control/{}", R::METHOD);
            let who = self
                .authorize_mutation(&req, &method, op, node, subject, m.request_id())
                .await?;
            let reply = run(self.core.clone(), who, req.into_inner())
                .await
                .map_err(status_of)?;
            Ok(Response::new(reply))
        }
        .with_context(cx.clone())
        .await;
        finish_command(&cx, op, r)
    }
}
