//! An OTLP/gRPC receiver for tests and benchmarks: the trace and metrics services
//! generated from the opentelemetry-proto definitions, collecting spans (with their
//! attributes and events) and metric names by service, served on a listener bound inside
//! a test namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::netns::Netns;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
pub struct GotSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// The resource's `service.instance.id` (the agent's node name).
    pub node: String,
    /// Span name.
    pub name: String,
    /// String forms of the span's attributes.
    pub attrs: HashMap<String, String>,
    /// Names of the span's events.
    pub events: Vec<String>,
    /// Trace id bytes.
    pub trace_id: Vec<u8>,
    /// Span id bytes.
    pub span_id: Vec<u8>,
    /// Parent span id bytes (empty for a root).
    pub parent: Vec<u8>,
}

/// What the OTLP receiver collected.
#[derive(Debug, Default)]
pub struct Received {
    /// Every span, in arrival order.
    pub spans: Vec<GotSpan>,
    /// Metric names by service.
    pub metrics: HashMap<String, Vec<String>>,
    /// Export requests answered (metrics and traces).
    pub exports: u64,
}

/// The OTLP/gRPC receiver's services; clones share what was received.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<Received>>);

impl Receiver {
    /// What was received so far (locked).
    pub fn got(&self) -> std::sync::MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn service_of(r: Option<&Resource>) -> String {
    resource_attr(r, "service.name")
}

fn resource_attr(r: Option<&Resource>, key: &str) -> String {
    r.and_then(|r| {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| text(kv.value.as_ref()))
    })
    .unwrap_or_default()
}

/// A string, integer or boolean attribute value as text.
fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        Some(AnyValue::IntValue(i)) => Some(i.to_string()),
        Some(AnyValue::BoolValue(b)) => Some(b.to_string()),
        _ => None,
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.got();
        got.exports += 1;
        for rs in req.into_inner().resource_spans {
            let service = service_of(rs.resource.as_ref());
            let node = resource_attr(rs.resource.as_ref(), "service.instance.id");
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.spans.push(GotSpan {
                        service: service.clone(),
                        node: node.clone(),
                        attrs: s
                            .attributes
                            .iter()
                            .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?)))
                            .collect(),
                        events: s.events.iter().map(|e| e.name.clone()).collect(),
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent: s.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut got = self.got();
        got.exports += 1;
        for rm in req.into_inner().resource_metrics {
            let service = service_of(rm.resource.as_ref());
            let names = got.metrics.entry(service).or_default();
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    if !names.contains(&m.name) {
                        names.push(m.name);
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A TCP listener bound inside `ns` (a socket keeps the namespace it was made in).
pub fn listen_in(ns: &Netns, addr: &str) -> Result<std::net::TcpListener> {
    let addr = addr.to_string();
    ns.run_inside(move || {
        let l = std::net::TcpListener::bind(&addr).with_context(|| format!("bind {addr}"))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

impl Receiver {
    /// Serve both services on `addr` inside `ns`, on `rt`; the task ends with the runtime.
    pub fn serve_in(
        &self,
        rt: &tokio::runtime::Runtime,
        ns: &Netns,
        addr: &str,
    ) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let listener = listen_in(ns, addr)?;
        let svc = self.clone();
        Ok(rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener)?;
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(svc.clone()))
                .add_service(MetricsServiceServer::new(svc))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
                .await?;
            Ok(())
        }))
    }
}
