//! Spans and live instruments recorded where things happen, for any layer: a VRRP
//! transition (`vrrp transition`), a pushed override applied (`ha-agent apply-overrides`,
//! child of the operator's W3C `traceparent`), a load-balancer reconciler run
//! (`lb reconcile`), a health-check round (`ha_lb_check_duration_seconds`). All go to the
//! global OpenTelemetry providers that telemetry.rs installs, so they are no-ops when
//! telemetry is off.
//!
//! A leaf: it depends on nothing of this crate but the protocol core's types, so lb/,
//! link/ and runtime/ record through it without importing telemetry.rs (which reads
//! their stats and so sits above them). Not here: the providers, the `/metrics` page and
//! the families read from the stats snapshot (telemetry.rs).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status as SpanStatus, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::vrrp::fsm::State;
use crate::vrrp::instance::Instance;

/// Instrumentation scope of every instrument and span of the agent.
pub const SCOPE: &str = "ha-agent";

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

/// One run of the load-balancer reconciler as [`reconcile_span`] records it (the
/// reconciler builds it from its outcome: `lb/dataplane/reconcile.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileRun<'a> {
    /// `in-sync`, `applied` or `failed`.
    pub outcome: &'static str,
    /// Why it applied: `change`, `drift`, `retry` (`resync` when in sync, empty on failure).
    pub reason: &'a str,
    /// Objects applied.
    pub objects: usize,
    /// Objects that failed (1 when the backend as a whole failed).
    pub errors: usize,
    /// The backend's error when it failed as a whole.
    pub failure: Option<&'a str>,
}

/// Records one run of the load-balancer reconciler that did something as a span
/// `lb reconcile` from `started` to now: attributes backend, outcome (`in-sync`,
/// `applied`, `failed`), reason of an apply (`change`, `drift`, `retry`), objects applied
/// and errors; status error when the backend failed or an object did. A no-op span when
/// OTLP is off.
pub fn reconcile_span(backend: &str, started: SystemTime, run: &ReconcileRun<'_>) {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder("lb reconcile")
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes([
            KeyValue::new("ha.lb.backend", backend.to_string()),
            KeyValue::new("ha.lb.outcome", run.outcome),
            KeyValue::new("ha.lb.reason", run.reason.to_string()),
            KeyValue::new("ha.lb.objects", count(run.objects)),
            KeyValue::new("ha.lb.errors", count(run.errors)),
        ])
        .start(&tracer);
    if let Some(e) = run.failure {
        span.set_status(SpanStatus::error(e.to_string()));
    } else if run.errors > 0 {
        span.set_status(SpanStatus::error(format!(
            "{} object(s) failed",
            run.errors
        )));
    }
    span.end();
}

/// `ha_lb_check_duration_seconds`: every check round's duration, by virtual server,
/// checker kind and result (not by real server: a thousand servers would be a thousand
/// histograms). From the global meter provider telemetry installs (a no-op without it).
fn check_duration_histogram() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        opentelemetry::global::meter(SCOPE)
            .f64_histogram("ha_lb_check_duration_seconds")
            .with_description("Duration of health-check rounds (retries included)")
            .with_unit("s")
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .build()
    })
}

/// Records one health-check round of a real server of `vs` (`ha_lb_check_duration_seconds`).
pub fn record_check_round(vs: &str, checker: &'static str, up: bool, latency: Duration) {
    check_duration_histogram().record(
        latency.as_secs_f64(),
        &[
            KeyValue::new("vs", vs.to_string()),
            KeyValue::new("checker", checker),
            KeyValue::new("result", if up { "up" } else { "down" }),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::sync::Arc;

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
            timer_expired_backup: None,
            owner_ignore_adverts: false,
        };
        let inst = Instance::new(cfg, "192.0.2.1".parse().unwrap());
        transition_span("VI_7", &inst, State::Backup, State::Master, "master down");
        let t0 = SystemTime::now();
        // What the reconciler records for `Applied { reason: "drift", failed: 1 }` over
        // 3 objects (an idle tick records nothing: `lb/dataplane/reconcile.rs` tests it).
        reconcile_span(
            "ipvs",
            t0,
            &ReconcileRun {
                outcome: "applied",
                reason: "drift",
                objects: 3,
                errors: 1,
                failure: None,
            },
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
        assert_eq!(r.len(), 1, "one run, one span");
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
