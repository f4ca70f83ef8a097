//! Tracing of hactl commands: with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`)
//! each command is one trace, rooted at a client span "hactl COMMAND"; every gRPC call
//! carries the W3C `traceparent` of the current context in its metadata, so the
//! manager's and the agent's spans join the same trace. Without an endpoint nothing is
//! recorded and no header is sent.

use std::future::Future;

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::cli::{Command, RsOp, VipOp};
use crate::error::CtlError;

/// The subcommand's name, as the root span calls it.
pub fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Status { .. } => "status",
        Command::Nodes { .. } => "nodes",
        Command::SetPriority { .. } => "set-priority",
        Command::Vip { op: VipOp::Add(_) } => "vip-add",
        Command::Vip { op: VipOp::Del(_) } => "vip-del",
        Command::Rs { op } => match op {
            RsOp::Add(_) => "rs-add",
            RsOp::Del(_) => "rs-del",
            RsOp::Weight(_) => "rs-weight",
            RsOp::Drain(_) => "rs-drain",
            RsOp::Reset(_) => "rs-reset",
        },
        Command::History(_) => "history",
        Command::Watch { .. } => "watch",
        Command::Switchover { .. } => "switchover",
        Command::Completion { .. } => "completion",
        Command::Version => "version",
    }
}

/// Runs `fut` inside the command's root span (exported to `endpoint` when given), then
/// flushes the spans. An exporter that cannot be built only costs the trace (warning).
pub async fn traced<F>(endpoint: Option<&str>, name: &str, fut: F) -> Result<(), CtlError>
where
    F: Future<Output = Result<(), CtlError>>,
{
    let Some(ep) = endpoint.filter(|e| !e.is_empty()) else {
        return fut.await;
    };
    let provider = match provider(ep) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hactl: warning: no tracing: OTLP exporter for {ep}: {e}");
            return fut.await;
        }
    };
    let mut span = provider
        .tracer("hactl")
        .span_builder(format!("hactl {name}"))
        .with_kind(SpanKind::Client)
        .with_attributes([KeyValue::new("ha.command", name.to_string())])
        .start(&provider.tracer("hactl"));
    let cx = Context::current().with_remote_span_context(span.span_context().clone());
    let res = fut.with_context(cx).await;
    if let Err(e) = &res {
        span.set_status(Status::error(e.to_string()));
    }
    span.end();
    // The batch exporter blocks while flushing; the runtime must keep driving the gRPC
    // connection meanwhile (it is single-threaded), hence a blocking thread.
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    res
}

fn provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("hactl").build())
        .with_batch_exporter(exporter)
        .build())
}

/// Interceptor that puts the current context's `traceparent` into the call's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Inject;

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(k, v);
        }
    }
}

impl tonic::service::Interceptor for Inject {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = Context::current();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut Metadata(req.metadata_mut()));
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use tonic::service::Interceptor as _;

    #[test]
    fn traceparent_goes_into_metadata_only_with_a_span() {
        let req = Inject.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("traceparent").is_none());

        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _g = Context::current().with_remote_span_context(sc).attach();
        let req = Inject.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get("traceparent").unwrap().to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
