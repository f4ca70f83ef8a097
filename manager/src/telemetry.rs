//! Manager telemetry: OpenTelemetry metrics of the fleet view and of the manager itself,
//! served as Prometheus text on `--metrics-listen` (`GET /metrics`) and exported over
//! OTLP/gRPC to `--otlp-endpoint`; one server span per `Control` RPC, child of the
//! caller's W3C `traceparent`, whose context travels on to the agent in
//! `Overrides.traceparent` ([`current_traceparent`]).
//!
//! Gauges read the fleet view and the store when collected; counters and the ack latency
//! histogram are recorded where things happen ([`record_command`],
//! [`record_ack_latency`]); events ingested are counted from the durable-event broadcast.
//! The Prometheus exporter appends `_total` to counters; units are in the names.
//!
//! The exporters, the `/metrics` server and the setup errors are `ha_common::export`,
//! shared with the agent.

use ha_common::export::{self, state_value};
pub use ha_common::export::{encode_text, serve_metrics, TelemetryError};
use ha_common::process;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ha_proto::v1::EventKind;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status as SpanStatus, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::core::Core;

/// Instrumentation scope and service name.
const SCOPE: &str = "ha-manager";
/// This binary, for `ha_build_info`.
const BUILD: process::Build = process::Build {
    binary: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
};
/// Alert kinds that always have a series (0 when none is active).
pub const ALERT_KINDS: [&str; 7] = [
    "split-brain",
    "clock-offset",
    "vrid-collision",
    "agent-disconnected",
    "agent-unreachable",
    "peer-master",
    "store-unavailable",
];
/// Buckets of the ack latency histogram, seconds.
const ACK_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What telemetry needs from the command line.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// `--metrics-listen`: serve Prometheus text at `http://ADDR/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`): OTLP/gRPC collector URL.
    pub otlp_endpoint: Option<String>,
}

/// Instruments recorded outside collection.
struct Recorders {
    /// ha_manager_commands_total{command,result}.
    commands: Counter<u64>,
    /// ha_manager_ack_latency_seconds.
    ack_latency: Histogram<f64>,
}

/// Set once by [`start`]; recording before that is a no-op.
static RECORDERS: OnceLock<Recorders> = OnceLock::new();

/// Keeps telemetry running; [`TelemetryGuard::shutdown`] flushes the OTLP exporters.
pub struct TelemetryGuard {
    /// Meter provider (Prometheus reader, OTLP periodic reader).
    meters: SdkMeterProvider,
    /// Tracer provider when OTLP is on (also the global one).
    tracer: Option<SdkTracerProvider>,
    /// `/metrics` server and the events counter.
    tasks: Vec<JoinHandle<()>>,
    /// Where `/metrics` is served.
    metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("metrics_addr", &self.metrics_addr)
            .field("otlp_traces", &self.tracer.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Address `/metrics` is served on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops the tasks, flushes and stops the exporters (on a blocking thread).
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        export::shutdown_providers(vec![self.meters.clone()], self.tracer.take()).await;
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// Starts telemetry over `core`: instruments, `/metrics`, OTLP metrics and traces (the
/// tracer provider becomes the global one, with the W3C propagator).
pub async fn start(
    core: Arc<Core>,
    opts: TelemetryOptions,
) -> Result<TelemetryGuard, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(SCOPE)
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build();
    let (registry, prom) = export::prometheus_reader()?;
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(prom);
    let mut tracer = None;
    if let Some(ep) = &opts.otlp_endpoint {
        builder = builder.with_reader(export::otlp_metrics_reader(
            ep,
            export::otlp_metrics_interval(),
        )?);
        let provider = export::otlp_tracer_provider(ep, resource)?;
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracer = Some(provider);
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let meters = builder.build();
    let meter = meters.meter(SCOPE);
    let _ = RECORDERS.set(Recorders {
        commands: meter
            .u64_counter("ha_manager_commands")
            .with_description("Operator commands by command and result (ok, failed, replayed, refused, denied, error)")
            .build(),
        ack_latency: meter
            .f64_histogram("ha_manager_ack_latency_seconds")
            .with_description("From receiving an event batch to acknowledging it durable")
            .with_unit("s")
            .with_boundaries(ACK_BUCKETS.to_vec())
            .build(),
    });
    register(&meter, core.clone());
    let mut tasks = vec![count_events(&meter, core.subscribe())];
    let mut metrics_addr = None;
    if let Some(addr) = opts.metrics_listen {
        // ha_build_info and process_* on top of the page (no labels: the target's).
        let page = registry.with_writer([], |out| process::write_standard(out, BUILD, &[]));
        let (t, a) = serve_metrics(addr, page).await?;
        tasks.push(t);
        metrics_addr = Some(a);
    }
    Ok(TelemetryGuard {
        meters,
        tracer,
        tasks,
        metrics_addr,
    })
}

/// Counts durable events by kind from the broadcast (lagged receptions are counted too).
fn count_events(meter: &Meter, mut rx: broadcast::Receiver<ha_proto::v1::Event>) -> JoinHandle<()> {
    let c = meter
        .u64_counter("ha_manager_events_ingested")
        .with_description("Events made durable in history, by kind")
        .build();
    for k in ["TRANSITION", "COMMAND"] {
        c.add(0, &[KeyValue::new("kind", k)]);
    }
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let kind = EventKind::try_from(ev.kind)
                        .map(|k| k.as_str_name())
                        .unwrap_or("UNKNOWN");
                    c.add(1, &[KeyValue::new("kind", kind)]);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    c.add(n, &[KeyValue::new("kind", "UNKNOWN")]);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// Registers the gauges that read the fleet view and the store.
fn register(m: &Meter, core: Arc<Core>) {
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_agents_connected")
        .with_description("Agents with a live session")
        .with_callback(move |o| {
            let n = c.with_fleet(|f| {
                f.nodes(crate::now_ms())
                    .iter()
                    .filter(|n| n.connected)
                    .count()
            });
            o.observe(n as u64, &[]);
        })
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_agents_known")
        .with_description("Agents the manager knows (connected or not)")
        .with_callback(move |o| {
            o.observe(c.with_fleet(|f| f.nodes(crate::now_ms()).len()) as u64, &[])
        })
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_store_bytes")
        .with_description("Bytes of events kept in history")
        .with_unit("By")
        .with_callback(move |o| o.observe(c.store().event_bytes(), &[]))
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_store_writable")
        .with_description(
            "1 while history writes succeed; 0 while they fail (e.g. disk full): nothing is acked then",
        )
        .with_callback(move |o| o.observe(u64::from(!c.committer().health().failing()), &[]))
        .build();
    let c = core.clone();
    m.u64_observable_counter("ha_manager_store_write_failures")
        .with_description("History write attempts that failed (each retry counts)")
        .with_callback(move |o| o.observe(c.committer().health().failures, &[]))
        .build();
    let c = core.clone();
    m.u64_observable_counter("ha_manager_history_events")
        .with_description("Events appended to history since it was created (last history id)")
        .with_callback(move |o| o.observe(c.store().last_history_id(), &[]))
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_alerts_active")
        .with_description("Alerts active, by kind")
        .with_callback(move |o| {
            let mut by: BTreeMap<String, u64> =
                ALERT_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
            for a in c.status().alerts {
                *by.entry(a.kind).or_default() += 1;
            }
            for (k, n) in by {
                o.observe(n, &[KeyValue::new("kind", k)]);
            }
        })
        .build();
    let c = core.clone();
    m.f64_observable_gauge("ha_manager_clock_offset_seconds")
        .with_description("Estimated agent wall clock minus manager wall clock")
        .with_unit("s")
        .with_callback(move |o| {
            for n in c.nodes() {
                o.observe(n.clock_offset_ms / 1000.0, &[KeyValue::new("node", n.name)]);
            }
        })
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_node_connected")
        .with_description("1 while the node's agent has a live session")
        .with_callback(move |o| {
            for n in c.nodes() {
                o.observe(u64::from(n.connected), &[KeyValue::new("node", n.name)]);
            }
        })
        .build();
    m.u64_observable_counter("ha_manager_connections_refused")
        .with_description(
            "Connections closed at accept: reason source_busy (too many handshakes from one address), full (connection limit), evicted (oldest pending, to make room), handshake_timeout, handshake_failed, fd_exhausted (accept failed: no descriptors)",
        )
        .with_callback(|o| {
            let s = &crate::listen::STATS;
            for (reason, c) in [
                ("source_busy", &s.refused_source),
                ("full", &s.refused_full),
                ("evicted", &s.evicted),
                ("handshake_timeout", &s.handshake_timeouts),
                ("handshake_failed", &s.handshake_failures),
                ("fd_exhausted", &s.fd_exhausted),
            ] {
                o.observe(c.load(Ordering::Relaxed), &[KeyValue::new("reason", reason)]);
            }
        })
        .build();
    m.u64_observable_gauge("ha_manager_connections")
        .with_description("Connections open, by phase: pending (handshake) or open (all)")
        .with_callback(|o| {
            let s = &crate::listen::STATS;
            o.observe(
                s.pending.load(Ordering::Relaxed),
                &[KeyValue::new("phase", "pending")],
            );
            o.observe(
                s.open.load(Ordering::Relaxed),
                &[KeyValue::new("phase", "open")],
            );
        })
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_node_reachable")
        .with_description(
            "1 while the node's agent is connected and heard from within the silence limit",
        )
        .with_callback(move |o| {
            for n in c.nodes() {
                o.observe(u64::from(n.reachable), &[KeyValue::new("node", n.name)]);
            }
        })
        .build();
    let c = core.clone();
    m.u64_observable_gauge("ha_manager_instance_state")
        .with_description(
            "VRRP state as the manager last heard it: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT",
        )
        .with_callback(move |o| {
            for n in c.nodes() {
                for i in &n.instances {
                    o.observe(state_value(&i.state), &fleet_labels(&n.name, i));
                }
            }
        })
        .build();
    let c = core;
    m.u64_observable_gauge("ha_manager_instance_priority_effective")
        .with_description("Effective VRRP priority as the manager last heard it")
        .with_callback(move |o| {
            for n in c.nodes() {
                for i in &n.instances {
                    o.observe(u64::from(i.effective_priority), &fleet_labels(&n.name, i));
                }
            }
        })
        .build();
}

fn fleet_labels(node: &str, i: &ha_proto::v1::InstanceState) -> [KeyValue; 3] {
    [
        KeyValue::new("node", node.to_string()),
        KeyValue::new("vrrp_instance", i.name.clone()),
        KeyValue::new("vrid", i64::from(i.vrid)),
    ]
}

/// Counts one operator command with its result.
pub fn record_command(command: &str, result: &'static str) {
    if let Some(r) = RECORDERS.get() {
        r.commands.add(
            1,
            &[
                KeyValue::new("command", command.to_string()),
                KeyValue::new("result", result),
            ],
        );
    }
}

/// Records the time from receiving an event batch to acknowledging it.
pub fn record_ack_latency(d: Duration) {
    if let Some(r) = RECORDERS.get() {
        r.ack_latency.record(d.as_secs_f64(), &[]);
    }
}

/// gRPC metadata as a propagation carrier.
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Starts the server span of one `Control` RPC, child of the caller's `traceparent`;
/// returns the context holding it (run the handler under it, then [`end_rpc`]).
pub fn rpc_context(method: &str, md: &tonic::metadata::MetadataMap) -> Context {
    let parent = TraceContextPropagator::new().extract(&Metadata(md));
    let tracer = opentelemetry::global::tracer(SCOPE);
    let span = tracer
        .span_builder(format!("ha-manager {method}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", "ha.v1.Control"),
            KeyValue::new("rpc.method", method.to_string()),
        ])
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

/// Ends the RPC span of `cx` with the call's outcome.
pub fn end_rpc(cx: &Context, err: Option<&tonic::Status>) {
    let span = cx.span();
    if let Some(st) = err {
        span.set_attribute(KeyValue::new("rpc.grpc.status_code", st.code() as i64));
        span.set_status(SpanStatus::error(st.message().to_string()));
    }
    span.end();
}

/// W3C `traceparent` of the current context ("" when there is no sampled span): goes
/// into pushed `Overrides`, so the agent's span joins the command's trace.
pub fn current_traceparent() -> String {
    let cx = Context::current();
    if !cx.span().span_context().is_valid() {
        return String::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn traceparent_follows_the_current_context() {
        assert_eq!(current_traceparent(), "");
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _g = Context::current().with_remote_span_context(sc).attach();
        assert_eq!(
            current_traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn rpc_span_joins_the_callers_trace() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = rpc_context("SetPriority", &md);
        // Without a tracer provider the span is non-recording, but the parent's trace id
        // is carried on.
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        end_rpc(&cx, None);
    }
}
