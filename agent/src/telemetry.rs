//! Agent telemetry: OpenTelemetry metrics read from the engine's [`Stats`] snapshots,
//! served as Prometheus text on `--metrics-listen` (`GET /metrics`) and exported over
//! OTLP/gRPC to `--otlp-endpoint`; spans exported over OTLP, joined to the operator's
//! trace through the W3C `traceparent` the manager puts in pushed overrides.
//!
//! One metrics API (OTel) feeds both outputs: every instrument is observable and reads
//! the latest snapshot from the engine's watch channel (published every second), so the
//! VRRP loop never touches telemetry. Names follow Prometheus conventions with units in
//! the name; the Prometheus exporter appends `_total` to counters (the OTLP name has no
//! suffix; the Collector's Prometheus exporter appends it the same way).
//!
//! VRRP state transitions ([`transition_span`]) and load-balancer reconciler runs
//! ([`reconcile_span`]) are short spans of their own, exported over OTLP when it is on
//! (no-op spans otherwise).
//!
//! The exporters, `/metrics` server and setup errors live in `telemetry/export.rs`, which
//! the manager compiles too. Not here: the log subscriber (runtime/logging.rs), the stats
//! snapshot (runtime/stats.rs).

mod export;

pub use export::{encode_text, serve_metrics, state_value, TelemetryError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status as SpanStatus, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lb::dataplane::reconcile::TickOutcome;
use crate::link::stats::LinkStats;
use crate::runtime::stats::{InstanceStats, ObjectCounters, RsStats, Stats, VsStats};
use crate::vrrp::fsm::State;
use crate::vrrp::instance::Instance;

/// Interval of the OTLP metrics export.
pub const OTLP_METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// Instrumentation scope of every instrument and span.
const SCOPE: &str = "ha-agent";

/// What telemetry needs from the command line.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// `--metrics-listen`: serve Prometheus text at `http://ADDR/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`): OTLP/gRPC collector URL.
    pub otlp_endpoint: Option<String>,
    /// Node name (resource attribute `service.instance.id`).
    pub node: String,
}

/// Keeps telemetry running; [`TelemetryGuard::shutdown`] flushes the OTLP exporters.
pub struct TelemetryGuard {
    /// Meter provider (Prometheus reader, OTLP periodic reader).
    meters: SdkMeterProvider,
    /// Tracer provider when OTLP is on (also installed as the global one).
    tracer: Option<SdkTracerProvider>,
    /// The `/metrics` server task.
    server: Option<JoinHandle<()>>,
    /// Where `/metrics` is served (the bound address, port 0 resolved).
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

    /// The tracer provider when OTLP is on.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer.as_ref()
    }

    /// Stops the HTTP server and flushes and stops the exporters. Runs the blocking
    /// flush on a blocking thread (the agent's runtime is single-threaded).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        export::shutdown_providers(self.meters.clone(), self.tracer.take()).await;
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// Resource of the agent's signals: `service.name=ha-agent`, `service.instance.id=NODE`.
fn resource(node: &str) -> Resource {
    Resource::builder()
        .with_service_name(SCOPE)
        .with_attribute(KeyValue::new("service.instance.id", node.to_string()))
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build()
}

/// Starts telemetry: instruments over `stats` (and `link` when the manager link runs),
/// `/metrics` on `opts.metrics_listen`, OTLP metrics and traces to `opts.otlp_endpoint`
/// (the tracer provider becomes the global one, with the W3C propagator). Call inside the
/// tokio runtime.
pub async fn start(
    opts: TelemetryOptions,
    stats: watch::Receiver<Arc<Stats>>,
    link: Option<Arc<LinkStats>>,
) -> Result<TelemetryGuard, TelemetryError> {
    let (registry, prom) = export::prometheus_reader()?;
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource(&opts.node))
        .with_reader(prom);
    let mut tracer = None;
    if let Some(ep) = &opts.otlp_endpoint {
        builder = builder.with_reader(export::otlp_metrics_reader(ep, OTLP_METRICS_INTERVAL)?);
        let provider = export::otlp_tracer_provider(ep, resource(&opts.node))?;
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracer = Some(provider);
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let meters = builder.build();
    // Instruments recorded where things happen (checker rounds) use the global provider.
    opentelemetry::global::set_meter_provider(meters.clone());
    register(&meters.meter(SCOPE), stats.clone(), link);
    register_lb(&meters.meter(SCOPE), stats);
    let (server, metrics_addr) = match opts.metrics_listen {
        Some(addr) => {
            let (h, a) = serve_metrics(addr, registry).await?;
            (Some(h), Some(a))
        }
        None => (None, None),
    };
    Ok(TelemetryGuard {
        meters,
        tracer,
        server,
        metrics_addr,
    })
}

/// A `tracing` layer that exports `tracing` spans through the guard's tracer provider
/// (None when OTLP is off). For the integrator's subscriber.
pub fn tracing_layer<S>(
    guard: &TelemetryGuard,
) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    let provider = guard.tracer.as_ref()?;
    Some(tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE)))
}

/// The OTel context carried by a W3C `traceparent` value (empty context if none or bad).
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let mut carrier = std::collections::HashMap::new();
    if !traceparent.is_empty() {
        carrier.insert("traceparent".to_string(), traceparent.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// A span for applying a pushed override set, child of `traceparent` (exported through
/// the global tracer provider; a no-op span when OTLP is off).
pub fn override_span(
    traceparent: &str,
    generation: u64,
    request_id: &str,
) -> opentelemetry::global::BoxedSpan {
    let cx = context_from_traceparent(traceparent);
    opentelemetry::global::tracer(SCOPE)
        .span_builder("ha-agent apply-overrides")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new(
                "ha.generation",
                i64::try_from(generation).unwrap_or(i64::MAX),
            ),
            KeyValue::new("ha.request_id", request_id.to_string()),
        ])
        .start_with_context(&opentelemetry::global::tracer(SCOPE), &cx)
}

/// Ends an override span with the result (`error` is empty on success).
pub fn end_override_span(mut span: opentelemetry::global::BoxedSpan, ok: bool, error: &str) {
    span.set_attribute(KeyValue::new("ha.ok", ok));
    if !ok {
        span.set_status(SpanStatus::error(error.to_string()));
    }
    span.end();
}

/// Records one VRRP state change of `inst` as a short span `vrrp transition` with a
/// `state change` event: attributes instance, VRID, version, from, to, reason and the
/// effective priority (the node is the resource's `service.instance.id`). A no-op span
/// when OTLP is off.
pub fn transition_span(name: &str, inst: &Instance, from: State, to: State, reason: &str) {
    let tracer = opentelemetry::global::tracer(SCOPE);
    let cfg = inst.config();
    let attrs = vec![
        KeyValue::new("ha.instance", name.to_string()),
        KeyValue::new("ha.vrid", i64::from(cfg.vrid.get())),
        KeyValue::new("ha.vrrp_version", i64::from(cfg.version.wire())),
        KeyValue::new("ha.from", from.as_str()),
        KeyValue::new("ha.to", to.as_str()),
        KeyValue::new("ha.reason", reason.to_string()),
        KeyValue::new("ha.priority", i64::from(inst.effective_priority().get())),
    ];
    let mut span = tracer
        .span_builder("vrrp transition")
        .with_kind(SpanKind::Internal)
        .with_attributes(attrs)
        .start(&tracer);
    span.add_event(
        "state change",
        vec![
            KeyValue::new("ha.from", from.as_str()),
            KeyValue::new("ha.to", to.as_str()),
        ],
    );
    span.end();
}

/// Records one run of the load-balancer reconciler that did something (not
/// [`TickOutcome::Idle`]) as a span `lb reconcile` from `started` to now: attributes
/// backend, outcome (`in-sync`, `applied`, `failed`), reason of an apply (`change`,
/// `drift`, `retry`), objects applied and errors; status error when the backend failed
/// or an object did. A no-op span when OTLP is off.
pub fn reconcile_span(backend: &str, started: SystemTime, outcome: &TickOutcome, objects: usize) {
    let (what, reason, errors, failure) = match outcome {
        TickOutcome::Idle => return,
        TickOutcome::InSync => ("in-sync", "resync", 0, None),
        TickOutcome::Applied { reason, failed } => ("applied", *reason, *failed, None),
        TickOutcome::Failed(e) => ("failed", "", 1, Some(e.as_str())),
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder("lb reconcile")
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes([
            KeyValue::new("ha.lb.backend", backend.to_string()),
            KeyValue::new("ha.lb.outcome", what),
            KeyValue::new("ha.lb.reason", reason),
            KeyValue::new("ha.lb.objects", count(objects)),
            KeyValue::new("ha.lb.errors", count(errors)),
        ])
        .start(&tracer);
    if let Some(e) = failure {
        span.set_status(SpanStatus::error(e.to_string()));
    } else if errors > 0 {
        span.set_status(SpanStatus::error(format!("{errors} object(s) failed")));
    }
    span.end();
}

/// The states `ha_vrrp_state_info` has a series for.
const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

/// Instance labels: instance, vrid, interface.
fn labels(i: &InstanceStats) -> Vec<KeyValue> {
    vec![
        KeyValue::new("instance", i.name.clone()),
        KeyValue::new("vrid", i64::from(i.vrid)),
        KeyValue::new("interface", i.interface.clone()),
    ]
}

/// Labels plus one more.
fn with(
    mut l: Vec<KeyValue>,
    k: &'static str,
    v: impl Into<opentelemetry::Value>,
) -> Vec<KeyValue> {
    l.push(KeyValue::new(k, v));
    l
}

type Rx = watch::Receiver<Arc<Stats>>;

/// A u64 gauge per instance.
fn inst_gauge(
    m: &Meter,
    rx: &Rx,
    name: &'static str,
    help: &'static str,
    f: fn(&InstanceStats) -> u64,
) {
    let rx = rx.clone();
    m.u64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |o| {
            let s = rx.borrow().clone();
            for i in &s.instances {
                o.observe(f(i), &labels(i));
            }
        })
        .build();
}

/// A u64 counter per instance.
fn inst_counter(
    m: &Meter,
    rx: &Rx,
    name: &'static str,
    help: &'static str,
    f: fn(&InstanceStats) -> u64,
) {
    let rx = rx.clone();
    m.u64_observable_counter(name)
        .with_description(help)
        .with_callback(move |o| {
            let s = rx.borrow().clone();
            for i in &s.instances {
                o.observe(f(i), &labels(i));
            }
        })
        .build();
}

/// Registers every agent instrument on `m`.
fn register(m: &Meter, rx: Rx, link: Option<Arc<LinkStats>>) {
    inst_gauge(
        m,
        &rx,
        "ha_vrrp_state",
        "VRRP state of the instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT",
        |i| state_value(&i.state),
    );
    inst_gauge(
        m,
        &rx,
        "ha_vrrp_priority_base",
        "Configured VRRP priority",
        |i| u64::from(i.base_priority),
    );
    inst_gauge(
        m,
        &rx,
        "ha_vrrp_priority_effective",
        "VRRP priority in effect (trackers and overrides applied)",
        |i| u64::from(i.effective_priority),
    );
    inst_gauge(
        m,
        &rx,
        "ha_vrrp_priority_overridden",
        "1 when a manager priority override is in force",
        |i| u64::from(i.override_priority.is_some()),
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_adverts_sent",
        "VRRP advertisements sent",
        |i| i.counters.tx,
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_adverts_received",
        "VRRP advertisements accepted",
        |i| i.counters.rx,
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_became_master",
        "Transitions to MASTER",
        |i| i.counters.became_master,
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_released_master",
        "Transitions out of MASTER (keepalived's release_master)",
        |i| {
            i.counters
                .became_master
                .saturating_sub(u64::from(i.state == "MASTER"))
        },
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_priority_zero_sent",
        "Priority-0 advertisements sent (master resigning)",
        |i| i.counters.prio0_sent,
    );
    inst_counter(
        m,
        &rx,
        "ha_vrrp_priority_zero_received",
        "Priority-0 advertisements received",
        |i| i.counters.prio0_received,
    );
    inst_counter(m, &rx, "ha_notify_runs", "Notify script runs", |i| {
        i.notify_runs
    });
    inst_counter(
        m,
        &rx,
        "ha_notify_failures",
        "Notify script failures (exit status, timeout, dropped)",
        |i| i.notify_failures,
    );

    let r = rx.clone();
    m.u64_observable_gauge("ha_vrrp_state_info")
        .with_description("1 for the instance's current VRRP state, 0 for the others")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                for st in STATES {
                    o.observe(u64::from(i.state == st), &with(labels(i), "state", st));
                }
            }
        })
        .build();

    let r = rx.clone();
    m.f64_observable_gauge("ha_vrrp_master_down_interval_seconds")
        .with_description("Master_Down_Interval: 3 x advert interval + skew time")
        .with_unit("s")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                o.observe(i.master_down_interval_us as f64 / 1e6, &labels(i));
            }
        })
        .build();

    let r = rx.clone();
    m.u64_observable_counter("ha_vrrp_transitions")
        .with_description("VRRP state transitions by new state and reason")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                for (key, n) in &i.transitions {
                    let (to, reason) = key.split_once(' ').unwrap_or((key.as_str(), ""));
                    let l = with(
                        with(labels(i), "to", to.to_string()),
                        "reason",
                        reason.to_string(),
                    );
                    o.observe(*n, &l);
                }
            }
        })
        .build();

    let r = rx.clone();
    m.u64_observable_counter("ha_vrrp_drops")
        .with_description(
            "Received VRRP packets dropped by an instance, by reason (RFC 3768/5798 7.1)",
        )
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                for (reason, n) in &i.counters.drops {
                    o.observe(*n, &with(labels(i), "reason", *reason));
                }
            }
        })
        .build();

    let r = rx.clone();
    m.u64_observable_counter("ha_vrrp_socket_drops")
        .with_description("VRRP packets dropped before reaching an instance (foreign VRID, undecodable), by reason")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for sk in &s.sockets {
                for (reason, n) in &sk.drops {
                    o.observe(
                        *n,
                        &[
                            KeyValue::new("interface", sk.interface.clone()),
                            KeyValue::new("reason", *reason),
                        ],
                    );
                }
            }
        })
        .build();

    let r = rx.clone();
    m.u64_observable_gauge("ha_tracker_up")
        .with_description("1 when the tracked object passes (script, file, interface, process)")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                for t in &i.trackers {
                    o.observe(u64::from(t.ok), &tracker_labels(i, &t.kind, &t.name));
                }
            }
        })
        .build();

    let r = rx.clone();
    m.i64_observable_gauge("ha_tracker_weight")
        .with_description("Weight of the tracked object on the instance's priority")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for i in &s.instances {
                for t in &i.trackers {
                    o.observe(i64::from(t.weight), &tracker_labels(i, &t.kind, &t.name));
                }
            }
        })
        .build();

    let r = rx.clone();
    m.u64_observable_gauge("ha_agent_up")
        .with_description("1 while the agent runs (keepalived-exporter's keepalived_up)")
        .with_callback(move |o| {
            let node = r.borrow().node.clone();
            o.observe(
                1,
                &[
                    KeyValue::new("node", node),
                    KeyValue::new("version", env!("CARGO_PKG_VERSION")),
                ],
            );
        })
        .build();

    let r = rx;
    m.u64_observable_gauge("ha_agent_instances")
        .with_description("VRRP instances configured on this agent")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            o.observe(
                s.instances.len() as u64,
                &[KeyValue::new("node", s.node.clone())],
            );
        })
        .build();

    if let Some(l) = link {
        let s = l.clone();
        m.u64_observable_gauge("ha_link_connected")
            .with_description("1 while the session with ha-manager is up")
            .with_callback(move |o| o.observe(u64::from(s.connected()), &[]))
            .build();
        let s = l.clone();
        m.u64_observable_gauge("ha_link_buffered_events")
            .with_description("Events not yet acknowledged by ha-manager")
            .with_callback(move |o| o.observe(s.buffered_events(), &[]))
            .build();
        let s = l.clone();
        m.u64_observable_counter("ha_link_reconnects")
            .with_description("Sessions with ha-manager established after the first")
            .with_callback(move |o| o.observe(s.reconnects(), &[]))
            .build();
        let s = l.clone();
        m.u64_observable_counter("ha_link_disconnects")
            .with_description("Sessions with ha-manager lost and connection attempts failed")
            .with_callback(move |o| o.observe(s.disconnects(), &[]))
            .build();
        let s = l;
        m.u64_observable_counter("ha_link_overrides_received")
            .with_description("Override sets pushed by ha-manager")
            .with_callback(move |o| o.observe(s.overrides_received(), &[]))
            .build();
    }
}

/// Real-server labels: vs, rs ("addr:port").
fn rs_labels(vs: &VsStats, r: &RsStats) -> Vec<KeyValue> {
    vec![
        KeyValue::new("vs", vs.name.clone()),
        KeyValue::new("rs", format!("{}:{}", r.addr, r.port)),
    ]
}

/// A gauge per real server.
fn rs_gauge(m: &Meter, rx: &Rx, name: &'static str, help: &'static str, f: fn(&RsStats) -> f64) {
    let rx = rx.clone();
    m.f64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |o| {
            let s = rx.borrow().clone();
            for vs in s.lb.iter().flat_map(|l| &l.virtual_servers) {
                for r in &vs.real_servers {
                    o.observe(f(r), &rs_labels(vs, r));
                }
            }
        })
        .build();
}

/// A gauge per virtual server.
fn vs_gauge(m: &Meter, rx: &Rx, name: &'static str, help: &'static str, f: fn(&VsStats) -> u64) {
    let rx = rx.clone();
    m.u64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |o| {
            let s = rx.borrow().clone();
            for vs in s.lb.iter().flat_map(|l| &l.virtual_servers) {
                o.observe(f(vs), &[KeyValue::new("vs", vs.name.clone())]);
            }
        })
        .build();
}

/// A counter per data-plane object.
fn object_counter(
    m: &Meter,
    rx: &Rx,
    name: &'static str,
    help: &'static str,
    f: fn(&ObjectCounters) -> u64,
) {
    let rx = rx.clone();
    m.u64_observable_counter(name)
        .with_description(help)
        .with_callback(move |o| {
            let s = rx.borrow().clone();
            for c in s.lb.iter().flat_map(|l| &l.counters) {
                o.observe(f(c), &[KeyValue::new("object", c.object.clone())]);
            }
        })
        .build();
}

/// The load balancer's instruments (`ha_lb_*`; no series without virtual servers).
fn register_lb(m: &Meter, rx: Rx) {
    rs_gauge(
        m,
        &rx,
        "ha_lb_rs_alive",
        "1 when every checker of the real server passes",
        |r| f64::from(u8::from(r.alive)),
    );
    rs_gauge(
        m,
        &rx,
        "ha_lb_rs_weight",
        "Weight of the real server in force (0 when drained or inhibited)",
        |r| f64::from(r.weight_effective),
    );
    rs_gauge(
        m,
        &rx,
        "ha_lb_rs_weight_base",
        "Configured (or rs add) weight of the real server",
        |r| f64::from(r.weight_base),
    );
    rs_gauge(
        m,
        &rx,
        "ha_lb_rs_drained",
        "1 when the real server is drained by an override",
        |r| f64::from(u8::from(r.drained)),
    );
    rs_gauge(
        m,
        &rx,
        "ha_lb_rs_in_table",
        "1 when the real server is in the data-plane table",
        |r| f64::from(u8::from(r.in_table)),
    );
    let r = rx.clone();
    m.u64_observable_gauge("ha_lb_checker_up")
        .with_description("1 when the checker's last verdict passed")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for vs in s.lb.iter().flat_map(|l| &l.virtual_servers) {
                for rs in &vs.real_servers {
                    for (i, c) in rs.checkers.iter().enumerate() {
                        let mut l = rs_labels(vs, rs);
                        l.push(KeyValue::new("checker", c.kind.clone()));
                        l.push(KeyValue::new("index", i as i64));
                        o.observe(u64::from(c.up), &l);
                    }
                }
            }
        })
        .build();
    let r = rx.clone();
    m.f64_observable_gauge("ha_lb_check_latency_seconds")
        .with_description("Duration of the check that gave the checker's last verdict")
        .with_unit("s")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            for vs in s.lb.iter().flat_map(|l| &l.virtual_servers) {
                for rs in &vs.real_servers {
                    for (i, c) in rs.checkers.iter().enumerate() {
                        let mut l = rs_labels(vs, rs);
                        l.push(KeyValue::new("checker", c.kind.clone()));
                        l.push(KeyValue::new("index", i as i64));
                        o.observe(c.latency_us as f64 / 1e6, &l);
                    }
                }
            }
        })
        .build();
    vs_gauge(
        m,
        &rx,
        "ha_lb_vs_quorum_up",
        "1 while the virtual server holds quorum",
        |v| u64::from(v.quorum_up),
    );
    vs_gauge(
        m,
        &rx,
        "ha_lb_vs_sorry_active",
        "1 while the sorry server serves",
        |v| u64::from(v.sorry_active),
    );
    vs_gauge(
        m,
        &rx,
        "ha_lb_vs_suspended",
        "1 while not programmed (ha_suspend, VIP not held)",
        |v| u64::from(v.suspended),
    );
    vs_gauge(
        m,
        &rx,
        "ha_lb_vs_live_weight",
        "Sum of the weights of live real servers",
        |v| v.live_weight,
    );
    let r = rx.clone();
    m.u64_observable_gauge("ha_lb_dataplane_errors")
        .with_description(
            "Data-plane objects whose last apply failed, plus 1 for a whole-backend error",
        )
        .with_callback(move |o| {
            let s = r.borrow().clone();
            if let Some(l) = &s.lb {
                let n = l.object_errors.len() + usize::from(l.last_error.is_some());
                o.observe(n as u64, &[KeyValue::new("backend", l.backend.clone())]);
            }
        })
        .build();
    let r = rx.clone();
    m.u64_observable_counter("ha_lb_dataplane_applies")
        .with_description("Changes applied to the data plane")
        .with_callback(move |o| {
            let s = r.borrow().clone();
            if let Some(l) = &s.lb {
                o.observe(l.applies, &[KeyValue::new("backend", l.backend.clone())]);
            }
        })
        .build();
    object_counter(
        m,
        &rx,
        "ha_lb_connections",
        "Connections scheduled (IPVS; nftables counts none)",
        |c| c.connections,
    );
    object_counter(
        m,
        &rx,
        "ha_lb_packets_in",
        "Packets in, per service or destination",
        |c| c.packets_in,
    );
    object_counter(
        m,
        &rx,
        "ha_lb_bytes_in",
        "Bytes in, per service or destination",
        |c| c.bytes_in,
    );
    object_counter(m, &rx, "ha_lb_packets_out", "Packets out (IPVS NAT)", |c| {
        c.packets_out
    });
    object_counter(m, &rx, "ha_lb_bytes_out", "Bytes out (IPVS NAT)", |c| {
        c.bytes_out
    });
}

/// Tracker labels: instance, kind, name.
fn tracker_labels(i: &InstanceStats, kind: &str, name: &str) -> [KeyValue; 3] {
    [
        KeyValue::new("instance", i.name.clone()),
        KeyValue::new("kind", kind.to_string()),
        KeyValue::new("name", name.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::stats::{CounterStats, SocketStats, TrackerStats};
    use std::collections::BTreeMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn stats(seq: u64, state: &str, rx: u64) -> Stats {
        let mut drops = BTreeMap::new();
        drops.insert("ttl", 3);
        let mut transitions = BTreeMap::new();
        transitions.insert("MASTER priority-zero-received".to_string(), 2);
        Stats {
            dump_seq: seq,
            node: "lb1".into(),
            instances: vec![InstanceStats {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: state.into(),
                base_priority: 100,
                effective_priority: 90,
                master_down_interval_us: 3_609_375,
                counters: CounterStats {
                    rx,
                    tx: 7,
                    became_master: 2,
                    prio0_sent: 1,
                    prio0_received: 4,
                    drops,
                },
                transitions,
                trackers: vec![TrackerStats {
                    kind: "script".into(),
                    name: "chk_nginx".into(),
                    status: "down".into(),
                    ok: false,
                    weight: -10,
                }],
                notify_runs: 5,
                notify_failures: 1,
                override_priority: None,
            }],
            sockets: vec![SocketStats {
                interface: "eth0".into(),
                drops: [("vrid", 9u64)].into_iter().collect(),
            }],
            lb: None,
        }
    }

    async fn scrape(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[tokio::test]
    async fn metrics_follow_the_latest_stats() {
        let (tx, rx) = watch::channel(Arc::new(stats(1, "BACKUP", 10)));
        let link = Arc::new(LinkStats::default());
        link.on_connected();
        link.set_buffered(3);
        let opts = TelemetryOptions {
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            otlp_endpoint: None,
            node: "lb1".into(),
        };
        let g = start(opts, rx, Some(link)).await.unwrap();
        let addr = g.metrics_addr().unwrap();
        let text = scrape(addr).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let l = r#"instance="VI_1",interface="eth0",vrid="51""#;
        for want in [
            format!("ha_vrrp_state{{{l}}} 1"),
            format!("ha_vrrp_priority_base{{{l}}} 100"),
            format!("ha_vrrp_priority_effective{{{l}}} 90"),
            format!("ha_vrrp_adverts_received_total{{{l}}} 10"),
            format!("ha_vrrp_adverts_sent_total{{{l}}} 7"),
            format!("ha_vrrp_became_master_total{{{l}}} 2"),
            format!("ha_vrrp_released_master_total{{{l}}} 2"),
            format!("ha_vrrp_priority_zero_sent_total{{{l}}} 1"),
            format!("ha_vrrp_priority_zero_received_total{{{l}}} 4"),
            format!("ha_vrrp_master_down_interval_seconds{{{l}}} 3.609375"),
            format!("ha_notify_runs_total{{{l}}} 5"),
            format!("ha_notify_failures_total{{{l}}} 1"),
            r#"ha_vrrp_drops_total{instance="VI_1",interface="eth0",reason="ttl",vrid="51"} 3"#.into(),
            r#"ha_vrrp_socket_drops_total{interface="eth0",reason="vrid"} 9"#.into(),
            r#"ha_vrrp_transitions_total{instance="VI_1",interface="eth0",reason="priority-zero-received",to="MASTER",vrid="51"} 2"#.into(),
            r#"ha_vrrp_state_info{instance="VI_1",interface="eth0",state="BACKUP",vrid="51"} 1"#.into(),
            r#"ha_vrrp_state_info{instance="VI_1",interface="eth0",state="MASTER",vrid="51"} 0"#.into(),
            r#"ha_tracker_up{instance="VI_1",kind="script",name="chk_nginx"} 0"#.into(),
            r#"ha_tracker_weight{instance="VI_1",kind="script",name="chk_nginx"} -10"#.into(),
            r#"ha_agent_instances{node="lb1"} 1"#.into(),
            format!(r#"ha_agent_up{{node="lb1",version="{}"}} 1"#, env!("CARGO_PKG_VERSION")),
            "ha_link_connected 1".into(),
            "ha_link_buffered_events 3".into(),
            "ha_link_reconnects_total 0".into(),
        ] {
            assert!(has(&text, &want), "missing {want:?} in\n{text}");
        }

        // A new snapshot shows on the next scrape.
        tx.send_replace(Arc::new(stats(2, "MASTER", 12)));
        let text = scrape(addr).await;
        assert!(has(&text, &format!("ha_vrrp_state{{{l}}} 2")), "{text}");
        assert!(
            has(&text, &format!("ha_vrrp_adverts_received_total{{{l}}} 12")),
            "{text}"
        );
        assert!(
            has(&text, &format!("ha_vrrp_released_master_total{{{l}}} 1")),
            "{text}"
        );
        g.shutdown().await;
    }

    #[test]
    fn traceparent_round_trip() {
        use opentelemetry::trace::TraceContextExt as _;
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from_traceparent(tp);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!context_from_traceparent("")
            .span()
            .span_context()
            .is_valid());
        assert!(!context_from_traceparent("junk")
            .span()
            .span_context()
            .is_valid());
    }

    #[test]
    fn state_values_follow_keepalived_order() {
        assert_eq!(
            STATES.map(state_value),
            [0, 1, 2, 3],
            "INIT BACKUP MASTER FAULT"
        );
    }

    /// Collects exported spans.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Collect {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn attr(s: &opentelemetry_sdk::trace::SpanData, key: &str) -> String {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
            .unwrap_or_default()
    }

    /// Both span kinds reach the global tracer provider with their attributes (one test:
    /// the provider is process-wide).
    #[test]
    fn transitions_and_reconciler_runs_are_spans() {
        use crate::units::{Centiseconds, Priority, Version, Vrid};
        use crate::vrrp::instance::{GarpConfig, InstanceConfig};
        let got = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(got.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        let cfg = InstanceConfig {
            name: "VI_7".into(),
            vrid: Vrid::new(57).unwrap(),
            version: Version::V3,
            priority: Priority(120),
            interval: Centiseconds(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            start: crate::vrrp::instance::StartState::Backup,
            vips: vec!["192.0.2.57".parse().unwrap()],
            auth: None,
            unicast_peers: Vec::new(),
            garp: GarpConfig::default(),
        };
        let inst = Instance::new(cfg, "192.0.2.1".parse().unwrap());
        transition_span("VI_7", &inst, State::Backup, State::Master, "master down");
        let t0 = SystemTime::now();
        reconcile_span("ipvs", t0, &TickOutcome::Idle, 3);
        reconcile_span(
            "ipvs",
            t0,
            &TickOutcome::Applied {
                reason: "drift",
                failed: 1,
            },
            3,
        );
        provider.force_flush().unwrap();
        let spans = got.0.lock().unwrap().clone();
        let t = spans
            .iter()
            .find(|s| s.name == "vrrp transition")
            .expect("transition span");
        assert_eq!(attr(t, "ha.instance"), "VI_7");
        assert_eq!(attr(t, "ha.vrid"), "57");
        assert_eq!(attr(t, "ha.vrrp_version"), "3");
        assert_eq!(attr(t, "ha.from"), "BACKUP");
        assert_eq!(attr(t, "ha.to"), "MASTER");
        assert_eq!(attr(t, "ha.reason"), "master down");
        assert_eq!(attr(t, "ha.priority"), "120");
        let ev: Vec<&str> = t.events.iter().map(|e| e.name.as_ref()).collect();
        assert_eq!(ev, ["state change"]);
        let r: Vec<_> = spans.iter().filter(|s| s.name == "lb reconcile").collect();
        assert_eq!(r.len(), 1, "an idle tick makes no span");
        assert_eq!(attr(r[0], "ha.lb.backend"), "ipvs");
        assert_eq!(attr(r[0], "ha.lb.outcome"), "applied");
        assert_eq!(attr(r[0], "ha.lb.reason"), "drift");
        assert_eq!(attr(r[0], "ha.lb.objects"), "3");
        assert_eq!(attr(r[0], "ha.lb.errors"), "1");
        assert_eq!(r[0].start_time, t0);
        assert!(matches!(r[0].status, SpanStatus::Error { .. }));
        let _ = provider.shutdown();
    }
}

#[cfg(test)]
mod bench {
    //! `cargo test --release -p ha-agent --lib telemetry::bench -- --ignored --nocapture`
    use super::*;
    use crate::runtime::stats::{CounterStats, SocketStats};
    use crate::vrrp::packet::DropReason;
    use std::time::Instant;

    fn big_stats(seq: u64, n: u8) -> Stats {
        let drops = || {
            DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), 0u64))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        Stats {
            dump_seq: seq,
            node: "lb1".into(),
            instances: (1..=n)
                .map(|v| InstanceStats {
                    name: format!("VI_{v}"),
                    vrid: v,
                    interface: "eth0".into(),
                    state: "BACKUP".into(),
                    base_priority: 100,
                    effective_priority: 100,
                    master_down_interval_us: 30_000 + u128::from(v),
                    counters: CounterStats {
                        rx: 1000 * seq,
                        tx: 0,
                        became_master: 0,
                        prio0_sent: 0,
                        prio0_received: 0,
                        drops: drops(),
                    },
                    transitions: [("BACKUP startup".to_string(), 1)].into_iter().collect(),
                    trackers: Vec::new(),
                    notify_runs: 0,
                    notify_failures: 0,
                    override_priority: None,
                })
                .collect(),
            sockets: vec![SocketStats {
                interface: "eth0".into(),
                drops: drops(),
            }],
            lb: None,
        }
    }

    #[test]
    #[ignore = "micro-benchmark"]
    fn scrape_cost() {
        use prometheus::Encoder as _;
        let (tx, rx) = watch::channel(Arc::new(big_stats(1, 50)));
        let (registry, prom) = export::prometheus_reader().unwrap();
        let meters = SdkMeterProvider::builder()
            .with_resource(resource("lb1"))
            .with_reader(prom)
            .build();
        register(&meters.meter(SCOPE), rx.clone(), None);
        register_lb(&meters.meter(SCOPE), rx);
        let iters = 200u32;
        let (mut gather, mut encode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0);
        for k in 0..iters {
            tx.send_replace(Arc::new(big_stats(u64::from(k) + 2, 50)));
            let t = Instant::now();
            let fams = registry.gather();
            gather += t.elapsed();
            let t = Instant::now();
            let mut out = Vec::new();
            prometheus::TextEncoder::new().encode(&fams, &mut out).unwrap();
            encode += t.elapsed();
            bytes = out.len();
        }
        std::fs::write("/tmp/tele-page.txt", encode_text(&registry)).unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(encode_text(&registry));
        }
        let whole = t.elapsed();
        eprintln!(
            "gather {:?}/scrape, encode {:?}/scrape, encode_text {:?}/scrape, page {bytes} B",
            gather / iters,
            encode / iters,
            whole / iters
        );
        // The SDK alone: callbacks and aggregation into a ManualReader.
        let reader = Arc::new(opentelemetry_sdk::metrics::ManualReader::builder().build());
        let sdk = SdkMeterProvider::builder()
            .with_reader(Shared(reader.clone()))
            .build();
        let (tx, rx) = watch::channel(Arc::new(big_stats(1, 50)));
        register(&sdk.meter(SCOPE), rx.clone(), None);
        register_lb(&sdk.meter(SCOPE), rx);
        let mut collect = Duration::ZERO;
        for k in 0..iters {
            tx.send_replace(Arc::new(big_stats(u64::from(k) + 2, 50)));
            let mut rm = opentelemetry_sdk::metrics::data::ResourceMetrics::default();
            let t = Instant::now();
            opentelemetry_sdk::metrics::reader::MetricReader::collect(&*reader, &mut rm).unwrap();
            collect += t.elapsed();
        }
        eprintln!("sdk collect {:?}/scrape", collect / iters);
    }

    #[derive(Debug, Clone)]
    struct Shared(Arc<opentelemetry_sdk::metrics::ManualReader>);

    impl opentelemetry_sdk::metrics::reader::MetricReader for Shared {
        fn register_pipeline(&self, p: std::sync::Weak<opentelemetry_sdk::metrics::Pipeline>) {
            self.0.register_pipeline(p)
        }
        fn collect(
            &self,
            rm: &mut opentelemetry_sdk::metrics::data::ResourceMetrics,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.collect(rm)
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.force_flush()
        }
        fn shutdown_with_timeout(&self, t: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.shutdown_with_timeout(t)
        }
        fn temporality(
            &self,
            _: opentelemetry_sdk::metrics::InstrumentKind,
        ) -> opentelemetry_sdk::metrics::Temporality {
            opentelemetry_sdk::metrics::Temporality::Cumulative
        }
    }
}
