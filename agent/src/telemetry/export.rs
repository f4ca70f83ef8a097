//! Telemetry plumbing shared by ha-agent and ha-manager: the Prometheus exporter and its
//! `GET /metrics` server (Prometheus text), the OTLP/gRPC metric reader and tracer
//! provider, the flush on shutdown, and the errors of setting them up.
//!
//! The manager compiles this same source through `#[path]` (as it does with
//! runtime/logging.rs), so it depends only on crates both have: opentelemetry,
//! opentelemetry_sdk, opentelemetry-otlp, opentelemetry-prometheus, prometheus, axum,
//! tokio, tracing and thiserror; never on the rest of either crate.
//!
//! Not here: which instruments exist and what they read (each crate's telemetry.rs).

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tokio::task::JoinHandle;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus exporter refused its setup.
    #[error("prometheus exporter: {0}")]
    Prometheus(String),
    /// The OTLP exporter refused its setup (bad endpoint).
    #[error("otlp exporter for {endpoint}: {message}")]
    Otlp {
        /// Endpoint given.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The metrics address could not be bound.
    #[error("metrics listener on {addr}: {source}")]
    Listen {
        /// Address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

fn otlp_error(endpoint: &str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Otlp {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    }
}

/// A Prometheus registry and the OTel reader that fills it: units stay in the metric
/// names we choose, no `otel_scope_info` series.
pub fn prometheus_reader() -> Result<
    (
        prometheus::Registry,
        opentelemetry_prometheus::PrometheusExporter,
    ),
    TelemetryError,
> {
    let registry = prometheus::Registry::new();
    let reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_units()
        .scope_info_enabled(false)
        .build()
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
    Ok((registry, reader))
}

/// A reader that exports every metric over OTLP/gRPC to `endpoint` each `interval`.
pub fn otlp_metrics_reader(
    endpoint: &str,
    interval: Duration,
) -> Result<PeriodicReader<opentelemetry_otlp::MetricExporter>, TelemetryError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| otlp_error(endpoint, e))?;
    Ok(PeriodicReader::builder(exporter)
        .with_interval(interval)
        .build())
}

/// An OTLP/gRPC tracer provider (batch export) to `endpoint`.
pub fn otlp_tracer_provider(
    endpoint: &str,
    resource: Resource,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| otlp_error(endpoint, e))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// Flushes and stops the providers on a blocking thread (their shutdown blocks, and the
/// agent's runtime has a single thread).
pub async fn shutdown_providers(meters: SdkMeterProvider, tracer: Option<SdkTracerProvider>) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(t) = tracer {
            let _ = t.shutdown();
        }
        let _ = meters.shutdown();
    })
    .await;
}

/// keepalived's state order, as the value of the state gauges: INIT 0, BACKUP 1,
/// MASTER 2, FAULT 3 (unknown spellings read as INIT).
pub fn state_value(state: &str) -> u64 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// Prometheus text of everything in `registry`.
pub fn encode_text(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` on `addr`; returns the task and the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: prometheus::Registry,
) -> Result<(JoinHandle<()>, SocketAddr), TelemetryError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let r = registry.clone();
            async move {
                // Collecting runs every instrument's callback and encoding a page of
                // thousands of series takes milliseconds: off the runtime's threads, so
                // that the agent's single-threaded VRRP loop never waits on a scrape.
                let text = tokio::task::spawn_blocking(move || encode_text(&r))
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %bound, "metrics endpoint at /metrics");
    Ok((task, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_values_follow_keepalived_order() {
        assert_eq!(
            ["INIT", "BACKUP", "MASTER", "FAULT", "bogus"].map(state_value),
            [0, 1, 2, 3, 0]
        );
    }

    #[test]
    fn encodes_a_registered_counter() {
        let (registry, _reader) = prometheus_reader().unwrap();
        let c = prometheus::IntCounter::new("ha_test_things_total", "things").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(3);
        let text = encode_text(&registry);
        assert!(
            text.lines().any(|l| l == "ha_test_things_total 3"),
            "{text}"
        );
    }
}
