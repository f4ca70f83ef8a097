//! Agent telemetry: OpenTelemetry metrics read from the engine's [`Stats`] snapshots,
//! served as Prometheus text on `--metrics-listen` (`GET /metrics`) and exported over
//! OTLP/gRPC to `--otlp-endpoint`; spans exported over OTLP, joined to the operator's
//! trace through the W3C `traceparent` the manager puts in pushed overrides.
//!
//! One metrics API (OTel) feeds both outputs: every instrument is observable and reads
//! the latest snapshot from the engine's watch channel (built when a reader asks, at most
//! a second old when read), so the VRRP loop never touches telemetry beyond building
//! that snapshot: the `/metrics` server and the OTLP connections run on a thread of their
//! own (`ha-telemetry`). Names follow Prometheus conventions with units in the name; the Prometheus exporter appends `_total` to counters (the OTLP name has no
//! suffix; the Collector's Prometheus exporter appends it the same way).
//!
//! VRRP state transitions, pushed overrides and load-balancer reconciler runs are short
//! spans of their own, recorded through [`crate::instrument`] (a leaf every layer may
//! use) and exported over OTLP when it is on (no-op spans otherwise).
//!
//! The exporters, `/metrics` server and setup errors are `ha_common::export`, the
//! `process_*` families and `ha_build_info` `ha_common::process` (shared with the
//! manager). Not here: the log subscriber (`ha_common::logging`), the stats snapshot
//! (runtime/stats.rs).

use ha_common::export;
pub use ha_common::export::{
    encode_text, serve_metrics, state_value, PromPage, PromReader, TelemetryError,
};
use ha_common::process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tokio::sync::watch;

use crate::instrument::SCOPE;
use crate::link::stats::LinkStats;
use crate::runtime::stats::{InstanceStats, ObjectCounters, RsStats, Stats, VsStats, Wanted};

/// How long `/metrics` serves a page again while the engine has published no new stats
/// snapshot (it publishes when a reader asks; the checkers' duration histogram and the
/// link's gauges, recorded live, show at most this late).
pub const PAGE_REUSE: Duration = Duration::from_millis(500);
/// This binary, for `ha_build_info`.
const BUILD: process::Build = process::Build {
    binary: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
};

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
    /// Meter providers (see [`build`]); `None` when telemetry
    /// is off (neither `--metrics-listen` nor `--otlp-endpoint`): no instrument, no
    /// aggregation memory, and recordings (checker rounds) go to the no-op global meter.
    meters: Option<Vec<SdkMeterProvider>>,
    /// Tracer provider when OTLP is on (also installed as the global one).
    tracer: Option<SdkTracerProvider>,
    /// The thread the `/metrics` server and the OTLP connections run on.
    io: Option<IoThread>,
    /// Where `/metrics` is served (the bound address, port 0 resolved).
    metrics_addr: Option<SocketAddr>,
}

/// The thread telemetry's network I/O runs on: the `/metrics` server and the OTLP
/// exporters' gRPC connections (tonic spawns them on the runtime they are built in) live
/// on its own single-threaded runtime, so a scrape or an export never takes a turn of
/// the agent's single-threaded VRRP loop. Stopping it drops that runtime and its tasks.
struct IoThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl IoThread {
    /// Asks the thread to end; its handle, to join.
    fn stop(&mut self) -> Option<std::thread::JoinHandle<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join.take()
    }
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

    /// Flushes and stops the exporters (on a blocking thread: the agent's runtime is
    /// single-threaded), then the telemetry thread, which the last export still needs.
    pub async fn shutdown(mut self) {
        if let Some(m) = self.meters.take() {
            export::shutdown_providers(m, self.tracer.take()).await;
        }
        if let Some(join) = self.io.take().and_then(|mut io| io.stop()) {
            let _ = tokio::task::spawn_blocking(move || join.join()).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(io) = self.io.as_mut() {
            io.stop();
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
    wanted: Option<Wanted>,
    link: Option<Arc<LinkStats>>,
) -> Result<TelemetryGuard, TelemetryError> {
    if opts.metrics_listen.is_none() && opts.otlp_endpoint.is_none() {
        return Ok(TelemetryGuard {
            meters: None,
            tracer: None,
            io: None,
            metrics_addr: None,
        });
    }
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let join = std::thread::Builder::new()
        .name("ha-telemetry".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(TelemetryError::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match build(opts, stats, wanted, link).await {
                    // Runs (serves, exports) until stopped or the guard is gone.
                    Ok(parts) => {
                        if ready_tx.send(Ok(parts)).is_ok() {
                            let _ = stop_rx.await;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(TelemetryError::Thread)?;
    let mut io = IoThread {
        stop: Some(stop_tx),
        join: Some(join),
    };
    let built = ready_rx.await.unwrap_or_else(|_| {
        Err(TelemetryError::Thread(std::io::Error::other(
            "telemetry thread ended while starting",
        )))
    });
    match built {
        Ok((meters, tracer, metrics_addr)) => Ok(TelemetryGuard {
            meters: Some(meters),
            tracer,
            io: Some(io),
            metrics_addr,
        }),
        Err(e) => {
            io.stop();
            Err(e)
        }
    }
}

/// What [`build`] sets up: the meter providers, the tracer provider, the `/metrics`
/// address.
type Built = (
    Vec<SdkMeterProvider>,
    Option<SdkTracerProvider>,
    Option<SocketAddr>,
);

/// The providers, instruments and `/metrics` server, on the telemetry thread's runtime.
///
/// Two meter providers, so that no series is collected for nothing:
/// - the global one, read by the `/metrics` page and by OTLP: what is recorded live
///   (checker round durations) and the manager link's gauges;
/// - with OTLP only, one read by OTLP alone: the instance, real-server and data-plane
///   families observed from the stats snapshot. The page writes those itself from the
///   same snapshot ([`write_page`]); on a provider the page also read, every OTLP export
///   would record them into the page's aggregators too, to be collected and thrown away
///   at each scrape.
async fn build(
    opts: TelemetryOptions,
    stats: watch::Receiver<Arc<Stats>>,
    wanted: Option<Wanted>,
    link: Option<Arc<LinkStats>>,
) -> Result<Built, TelemetryError> {
    let res = resource(&opts.node);
    let (page, prom) = export::prometheus_reader()?;
    let mut live = SdkMeterProvider::builder()
        .with_resource(res.clone())
        .with_reader(prom);
    let mut observed = None;
    let mut tracer = None;
    if let Some(ep) = &opts.otlp_endpoint {
        let every = export::otlp_metrics_interval();
        live = live.with_reader(export::otlp_metrics_reader(ep, every)?);
        observed = Some(
            SdkMeterProvider::builder()
                .with_resource(res.clone())
                .with_reader(export::otlp_metrics_reader(ep, every)?)
                .build(),
        );
        let provider = export::otlp_tracer_provider(ep, res)?;
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracer = Some(provider);
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let live = live.build();
    // Instruments recorded where things happen (checker rounds) use the global provider.
    opentelemetry::global::set_meter_provider(live.clone());
    let labels = Labels::new(stats, wanted);
    let fams = Arc::new(families());
    if let Some(o) = &observed {
        register(&o.meter(SCOPE), &labels, &fams);
    }
    if let Some(l) = link {
        register_link(&live.meter(SCOPE), l);
    }
    let metrics_addr = match opts.metrics_listen {
        Some(addr) => {
            let version = labels.clone();
            let page = page
                .cache_while(PAGE_REUSE, move || version.get().generation)
                .with_writer(names(&fams), move |out| write_page(&labels, &fams, out))
                .with_labels(vec![KeyValue::new("node", opts.node.clone())])
                .collect_inline();
            // The server task lives as long as the thread's runtime.
            let (_server, a) = serve_metrics(addr, page).await?;
            Some(a)
        }
        None => None,
    };
    let meters = std::iter::once(live).chain(observed).collect();
    Ok((meters, tracer, metrics_addr))
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

/// The states `ha_vrrp_state_info` has a series for.
const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

type Rx = watch::Receiver<Arc<Stats>>;

/// A label whose value is shared: cloning it costs a reference count, not a `String`.
fn shared(k: &'static str, v: &str) -> KeyValue {
    KeyValue::new(k, Arc::<str>::from(v))
}

/// The label values of one stats snapshot, built once per snapshot (the engine
/// publishes one when a reader asks) and shared by every callback of every collection (a scrape,
/// an OTLP export): observing clones shared strings instead of allocating a `String`
/// per label of each of the ~1,600 series of 50 instances.
struct Snap {
    /// Counts the snapshots [`Labels`] has taken (the `/metrics` page cache's version).
    generation: u64,
    /// The snapshot.
    stats: Arc<Stats>,
    /// `node`.
    node: KeyValue,
    /// Per instance, in `stats.instances` order.
    inst: Vec<InstLabels>,
    /// `interface` per socket, in `stats.sockets` order.
    sockets: Vec<KeyValue>,
    /// Per virtual server, in `stats.lb` order.
    vs: Vec<VsLabels>,
    /// `backend` of the load balancer.
    backend: Option<KeyValue>,
    /// `object` per data-plane counter, in `stats.lb` order.
    objects: Vec<KeyValue>,
}

/// Labels of one instance.
struct InstLabels {
    /// vrrp_instance, interface, vrid (`node` is added to every series on output).
    base: [KeyValue; 3],
    /// Per transition key (`stats` order): the base plus `to` and `reason`.
    transitions: Vec<[KeyValue; 5]>,
    /// Per tracker: vrrp_instance, kind, name.
    trackers: Vec<[KeyValue; 3]>,
    /// Per VIP (`stats` order): the base plus `vip` (the address, no prefix).
    vips: Vec<[KeyValue; 4]>,
}

/// Labels of one virtual server.
struct VsLabels {
    /// `vs`.
    vs: KeyValue,
    /// Per real server: vs, rs ("addr:port"), and per checker also checker and index.
    rs: Vec<([KeyValue; 2], Vec<[KeyValue; 4]>)>,
}

impl Snap {
    fn new(stats: Arc<Stats>, generation: u64) -> Snap {
        let inst = stats
            .instances
            .iter()
            .map(|i| {
                let base = [
                    shared("vrrp_instance", &i.name),
                    shared("interface", &i.interface),
                    KeyValue::new("vrid", i64::from(i.vrid)),
                ];
                let transitions = i
                    .transitions
                    .keys()
                    .map(|key| {
                        let (to, reason) = key.split_once(' ').unwrap_or((key.as_str(), ""));
                        let [a, b, c] = base.clone();
                        [a, b, c, shared("to", to), shared("reason", reason)]
                    })
                    .collect();
                let vips = i
                    .vips
                    .iter()
                    .map(|v| {
                        let [a, b, c] = base.clone();
                        let addr = v.split('/').next().unwrap_or(v);
                        [a, b, c, shared("vip", addr)]
                    })
                    .collect();
                let trackers = i
                    .trackers
                    .iter()
                    .map(|t| {
                        [
                            base[0].clone(),
                            shared("kind", &t.kind),
                            shared("name", &t.name),
                        ]
                    })
                    .collect();
                InstLabels {
                    base,
                    transitions,
                    trackers,
                    vips,
                }
            })
            .collect();
        let sockets = stats
            .sockets
            .iter()
            .map(|k| shared("interface", &k.interface))
            .collect();
        let vs = stats
            .lb
            .iter()
            .flat_map(|l| &l.virtual_servers)
            .map(|v| {
                let vs = shared("vs", &v.name);
                let rs = v
                    .real_servers
                    .iter()
                    .map(|r| {
                        let base = [
                            vs.clone(),
                            KeyValue::new("rs", Arc::<str>::from(format!("{}:{}", r.addr, r.port))),
                        ];
                        let checkers = r
                            .checkers
                            .iter()
                            .enumerate()
                            .map(|(n, c)| {
                                let [a, b] = base.clone();
                                [
                                    a,
                                    b,
                                    shared("checker", &c.kind),
                                    KeyValue::new("index", n as i64),
                                ]
                            })
                            .collect();
                        (base, checkers)
                    })
                    .collect();
                VsLabels { vs, rs }
            })
            .collect();
        let backend = stats.lb.as_ref().map(|l| shared("backend", &l.backend));
        let objects = stats
            .lb
            .iter()
            .flat_map(|l| &l.counters)
            .map(|c| shared("object", &c.object))
            .collect();
        Snap {
            generation,
            node: shared("node", &stats.node),
            stats,
            inst,
            sockets,
            vs,
            backend,
            objects,
        }
    }

    /// Instances with their labels.
    fn instances(&self) -> impl Iterator<Item = (&InstanceStats, &InstLabels)> {
        self.stats.instances.iter().zip(&self.inst)
    }

    /// Virtual servers with their labels.
    fn virtual_servers(&self) -> impl Iterator<Item = (&VsStats, &VsLabels)> {
        self.stats
            .lb
            .iter()
            .flat_map(|l| &l.virtual_servers)
            .zip(&self.vs)
    }

    /// Real servers with their labels (vs, rs) and their checkers' labels.
    fn real_servers(&self) -> impl Iterator<Item = (&RsStats, &[KeyValue; 2], &[[KeyValue; 4]])> {
        self.virtual_servers().flat_map(|(v, l)| {
            v.real_servers
                .iter()
                .zip(&l.rs)
                .map(|(r, (base, checkers))| (r, base, checkers.as_slice()))
        })
    }

    /// Data-plane counters with their `object` label.
    fn objects(&self) -> impl Iterator<Item = (&ObjectCounters, &KeyValue)> {
        self.stats
            .lb
            .iter()
            .flat_map(|l| &l.counters)
            .zip(&self.objects)
    }
}

/// How old a snapshot may be before a reader asks the engine for a fresh one.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);
/// How long a reader waits for the fresh snapshot it asked for (then takes the latest).
const SNAPSHOT_WAIT: Duration = Duration::from_millis(100);

/// The labels of the latest snapshot on the watch channel, rebuilt when the engine
/// publishes a new one. With `wanted`, the engine publishes only when asked: a reader
/// (a scrape, an OTLP export) that finds the snapshot older than [`SNAPSHOT_MAX_AGE`]
/// asks for one and waits for it, so the engine builds none that nobody reads.
struct Labels {
    /// The engine's snapshots.
    rx: Rx,
    /// Asks the engine for a snapshot (None: it publishes on its own, as in tests).
    wanted: Option<Wanted>,
    /// What was seen and asked so far.
    cur: std::sync::Mutex<Seen>,
}

/// The state of [`Labels`].
#[derive(Default)]
struct Seen {
    /// Labels of the last snapshot seen.
    snap: Option<Arc<Snap>>,
    /// When a fresh snapshot was last asked for.
    asked: Option<std::time::Instant>,
}

type L = Arc<Labels>;

impl Labels {
    fn new(rx: Rx, wanted: Option<Wanted>) -> L {
        Arc::new(Labels {
            rx,
            wanted,
            cur: std::sync::Mutex::new(Seen::default()),
        })
    }

    /// The latest snapshot and its labels (asked for first when too old). Blocks the
    /// caller for at most [`SNAPSHOT_WAIT`]: it runs on the telemetry thread or the
    /// SDK's export thread, never on the engine's.
    fn get(&self) -> Arc<Snap> {
        let mut cur = self
            .cur
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = &self.wanted {
            if cur.asked.is_none_or(|t| t.elapsed() >= SNAPSHOT_MAX_AGE) {
                let before = self.rx.borrow().clone();
                w.notify_one();
                let until = std::time::Instant::now() + SNAPSHOT_WAIT;
                while Arc::ptr_eq(&self.rx.borrow(), &before) && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Also after a timeout (engine busy or gone): not asked again for a while.
                cur.asked = Some(std::time::Instant::now());
            }
        }
        let stats = self.rx.borrow().clone();
        match &cur.snap {
            Some(s) if Arc::ptr_eq(&s.stats, &stats) => s.clone(),
            prev => {
                let generation = prev.as_ref().map_or(0, |p| p.generation + 1);
                let s = Arc::new(Snap::new(stats, generation));
                cur.snap = Some(s.clone());
                s
            }
        }
    }
}

/// A number an instrument reports, typed as its instrument is.
#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    fn u64(self) -> u64 {
        match self {
            Num::U(v) => v,
            Num::I(v) => u64::try_from(v).unwrap_or(0),
            Num::F(v) => v as u64,
        }
    }

    fn i64(self) -> i64 {
        match self {
            Num::U(v) => i64::try_from(v).unwrap_or(i64::MAX),
            Num::I(v) => v,
            Num::F(v) => v as i64,
        }
    }

    fn f64(self) -> f64 {
        match self {
            Num::U(v) => v as f64,
            Num::I(v) => v as f64,
            Num::F(v) => v,
        }
    }
}

/// OTel instrument of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    GaugeU64,
    GaugeI64,
    GaugeF64,
    CounterU64,
}

/// Reads a family's series from a snapshot: `(value, labels)` for each.
type Read = Box<dyn Fn(&Snap, &mut dyn FnMut(Num, &[KeyValue])) + Send + Sync>;

/// One family of series read from the stats snapshot, defined once for both outputs:
/// an observable OTel instrument (OTLP; its callback skips the `/metrics` collection)
/// and lines the `/metrics` page writes straight from the snapshot, without the SDK's
/// aggregation (hashing and copying every label set of every series on every scrape).
struct Fam {
    /// Instrument name (the page appends `_total` to counters).
    name: &'static str,
    help: &'static str,
    /// UCUM unit ("" for none).
    unit: &'static str,
    inst: Inst,
    read: Read,
}

fn fam(
    name: &'static str,
    help: &'static str,
    inst: Inst,
    read: impl Fn(&Snap, &mut dyn FnMut(Num, &[KeyValue])) + Send + Sync + 'static,
) -> Fam {
    Fam {
        name,
        help,
        unit: "",
        inst,
        read: Box::new(read),
    }
}

/// A gauge per instance.
fn inst_gauge(name: &'static str, help: &'static str, f: fn(&InstanceStats) -> u64) -> Fam {
    fam(name, help, Inst::GaugeU64, move |s, o| {
        for (i, l) in s.instances() {
            o(Num::U(f(i)), &l.base);
        }
    })
}

/// A counter per instance.
fn inst_counter(name: &'static str, help: &'static str, f: fn(&InstanceStats) -> u64) -> Fam {
    Fam {
        inst: Inst::CounterU64,
        ..inst_gauge(name, help, f)
    }
}

/// A gauge per real server (labels vs, rs).
fn rs_gauge(name: &'static str, help: &'static str, f: fn(&RsStats) -> f64) -> Fam {
    fam(name, help, Inst::GaugeF64, move |s, o| {
        for (r, l, _) in s.real_servers() {
            o(Num::F(f(r)), l);
        }
    })
}

/// A gauge per virtual server (label vs).
fn vs_gauge(name: &'static str, help: &'static str, f: fn(&VsStats) -> u64) -> Fam {
    fam(name, help, Inst::GaugeU64, move |s, o| {
        for (v, l) in s.virtual_servers() {
            o(Num::U(f(v)), std::slice::from_ref(&l.vs));
        }
    })
}

/// A counter per data-plane object (label object).
fn object_counter(name: &'static str, help: &'static str, f: fn(&ObjectCounters) -> u64) -> Fam {
    fam(name, help, Inst::CounterU64, move |s, o| {
        for (c, l) in s.objects() {
            o(Num::U(f(c)), std::slice::from_ref(l));
        }
    })
}

/// Every family read from the stats snapshot, in page order.
fn families() -> Vec<Fam> {
    let mut v = vec![
        inst_gauge(
            "ha_vrrp_state",
            "VRRP state of the instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT",
            |i| state_value(&i.state),
        ),
        inst_gauge("ha_vrrp_priority_base", "Configured VRRP priority", |i| {
            u64::from(i.base_priority)
        }),
        inst_gauge(
            "ha_vrrp_priority_effective",
            "VRRP priority in effect (trackers and overrides applied)",
            |i| u64::from(i.effective_priority),
        ),
        inst_gauge(
            "ha_vrrp_priority_overridden",
            "1 when a manager priority override is in force",
            |i| u64::from(i.override_priority.is_some()),
        ),
        inst_counter("ha_vrrp_adverts_sent", "VRRP advertisements sent", |i| {
            i.counters.tx
        }),
        inst_counter(
            "ha_vrrp_adverts_received",
            "VRRP advertisements accepted",
            |i| i.counters.rx,
        ),
        inst_counter("ha_vrrp_became_master", "Transitions to MASTER", |i| {
            i.counters.became_master
        }),
        inst_counter(
            "ha_vrrp_released_master",
            "Transitions out of MASTER (keepalived's release_master)",
            |i| {
                i.counters
                    .became_master
                    .saturating_sub(u64::from(i.state == "MASTER"))
            },
        ),
        inst_counter(
            "ha_vrrp_priority_zero_sent",
            "Priority-0 advertisements sent (master resigning)",
            |i| i.counters.prio0_sent,
        ),
        inst_counter(
            "ha_vrrp_priority_zero_received",
            "Priority-0 advertisements received",
            |i| i.counters.prio0_received,
        ),
        inst_counter(
            "ha_vrrp_stalls",
            "Timers acted on much later than their deadline (this process was not scheduled)",
            |i| i.counters.stalls,
        ),
        inst_counter(
            "ha_vrrp_stall_deferrals",
            "Master_Down expiries postponed after a stall to hear the master first",
            |i| i.counters.stall_deferrals,
        ),
        inst_counter(
            "ha_vrrp_peer_master_adverts",
            "Adverts heard as MASTER from another, lower-priority master",
            |i| i.counters.peer_master_adverts,
        ),
        inst_counter(
            "ha_vrrp_garp_sent",
            "Gratuitous ARPs sent for the instance's IPv4 VIPs",
            |i| i.garp_sent,
        ),
        inst_counter(
            "ha_vrrp_na_sent",
            "Unsolicited neighbour advertisements sent for the instance's IPv6 VIPs",
            |i| i.na_sent,
        ),
        fam(
            "ha_vrrp_vip_present",
            "1 when the VIP is on its interface, added by this agent; 0 otherwise",
            Inst::GaugeU64,
            |s, o| {
                for (i, l) in s.instances() {
                    for (n, kv) in l.vips.iter().enumerate() {
                        let present = i.vips_present.get(n).copied().unwrap_or(false);
                        o(Num::U(u64::from(present)), kv);
                    }
                }
            },
        ),
        inst_counter("ha_notify_runs", "Notify script runs", |i| i.notify_runs),
        inst_counter(
            "ha_notify_failures",
            "Notify script failures (exit status, timeout, dropped)",
            |i| i.notify_failures,
        ),
        fam(
            "ha_vrrp_state_info",
            "1 for the instance's current VRRP state, 0 for the others",
            Inst::GaugeU64,
            |s, o| {
                for (i, l) in s.instances() {
                    for st in STATES {
                        let [a, b, c] = l.base.clone();
                        o(
                            Num::U(u64::from(i.state == st)),
                            &[a, b, c, KeyValue::new("state", st)],
                        );
                    }
                }
            },
        ),
        Fam {
            unit: "s",
            ..fam(
                "ha_vrrp_master_down_interval_seconds",
                "Master_Down_Interval: 3 x advert interval + skew time",
                Inst::GaugeF64,
                |s, o| {
                    for (i, l) in s.instances() {
                        o(Num::F(i.master_down_interval_us as f64 / 1e6), &l.base);
                    }
                },
            )
        },
        fam(
            "ha_vrrp_transitions",
            "VRRP state transitions by new state and reason",
            Inst::CounterU64,
            |s, o| {
                for (i, l) in s.instances() {
                    for (n, kv) in i.transitions.values().zip(&l.transitions) {
                        o(Num::U(*n), kv);
                    }
                }
            },
        ),
        fam(
            "ha_vrrp_drops",
            "Received VRRP packets dropped by an instance, by reason (RFC 3768/5798 7.1)",
            Inst::CounterU64,
            |s, o| {
                for (i, l) in s.instances() {
                    for (reason, n) in &i.counters.drops {
                        let [a, b, c] = l.base.clone();
                        o(Num::U(*n), &[a, b, c, KeyValue::new("reason", *reason)]);
                    }
                }
            },
        ),
        fam(
            "ha_agent_stalls",
            "Engine wake-ups much later than their deadline (the agent was not scheduled)",
            Inst::CounterU64,
            |s, o| o(Num::U(s.stats.stalls), &[]),
        ),
        fam(
            "ha_vrrp_socket_drops",
            "VRRP packets dropped before reaching an instance (foreign VRID, undecodable), by reason",
            Inst::CounterU64,
            |s, o| {
                for (sk, l) in s.stats.sockets.iter().zip(&s.sockets) {
                    for (reason, n) in &sk.drops {
                        o(Num::U(*n), &[l.clone(), KeyValue::new("reason", *reason)]);
                    }
                }
            },
        ),
        fam(
            "ha_tracker_up",
            "1 when the tracked object passes (script, file, interface, process)",
            Inst::GaugeU64,
            |s, o| {
                for (i, l) in s.instances() {
                    for (t, kv) in i.trackers.iter().zip(&l.trackers) {
                        o(Num::U(u64::from(t.ok)), kv);
                    }
                }
            },
        ),
        fam(
            "ha_tracker_weight",
            "Weight of the tracked object on the instance's priority",
            Inst::GaugeI64,
            |s, o| {
                for (i, l) in s.instances() {
                    for (t, kv) in i.trackers.iter().zip(&l.trackers) {
                        o(Num::I(i64::from(t.weight)), kv);
                    }
                }
            },
        ),
        fam(
            "ha_agent_up",
            "1 while the agent runs (keepalived-exporter's keepalived_up)",
            Inst::GaugeU64,
            |s, o| {
                o(
                    Num::U(1),
                    &[
                        s.node.clone(),
                        KeyValue::new("version", env!("CARGO_PKG_VERSION")),
                    ],
                );
            },
        ),
        fam(
            "ha_agent_instances",
            "VRRP instances configured on this agent",
            Inst::GaugeU64,
            |s, o| o(Num::U(s.stats.instances.len() as u64), std::slice::from_ref(&s.node)),
        ),
    ];
    v.extend(lb_families());
    v
}

/// The load balancer's families (`ha_lb_*`; no series without virtual servers).
fn lb_families() -> Vec<Fam> {
    vec![
        rs_gauge(
            "ha_lb_rs_alive",
            "1 when every checker of the real server passes",
            |r| f64::from(u8::from(r.alive)),
        ),
        rs_gauge(
            "ha_lb_rs_weight",
            "Weight of the real server in force (0 when drained or inhibited)",
            |r| f64::from(r.weight_effective),
        ),
        rs_gauge(
            "ha_lb_rs_weight_base",
            "Configured (or rs add) weight of the real server",
            |r| f64::from(r.weight_base),
        ),
        rs_gauge(
            "ha_lb_rs_drained",
            "1 when the real server is drained by an override",
            |r| f64::from(u8::from(r.drained)),
        ),
        rs_gauge(
            "ha_lb_rs_in_table",
            "1 when the real server is in the data-plane table",
            |r| f64::from(u8::from(r.in_table)),
        ),
        fam(
            "ha_lb_checker_up",
            "1 when the checker's last verdict passed",
            Inst::GaugeU64,
            |s, o| {
                for (rs, _, checkers) in s.real_servers() {
                    for (c, kv) in rs.checkers.iter().zip(checkers) {
                        o(Num::U(u64::from(c.up)), kv);
                    }
                }
            },
        ),
        Fam {
            unit: "s",
            ..fam(
                "ha_lb_check_latency_seconds",
                "Duration of the check that gave the checker's last verdict",
                Inst::GaugeF64,
                |s, o| {
                    for (rs, _, checkers) in s.real_servers() {
                        for (c, kv) in rs.checkers.iter().zip(checkers) {
                            o(Num::F(c.latency_us as f64 / 1e6), kv);
                        }
                    }
                },
            )
        },
        vs_gauge(
            "ha_lb_vs_quorum_up",
            "1 while the virtual server holds quorum",
            |v| u64::from(v.quorum_up),
        ),
        vs_gauge(
            "ha_lb_vs_sorry_active",
            "1 while the sorry server serves",
            |v| u64::from(v.sorry_active),
        ),
        vs_gauge(
            "ha_lb_vs_suspended",
            "1 while not programmed (ha_suspend, VIP not held)",
            |v| u64::from(v.suspended),
        ),
        vs_gauge(
            "ha_lb_vs_live_weight",
            "Sum of the weights of live real servers",
            |v| v.live_weight,
        ),
        fam(
            "ha_lb_dataplane_errors",
            "Data-plane objects whose last apply failed, plus 1 for a whole-backend error",
            Inst::GaugeU64,
            |s, o| {
                if let (Some(l), Some(kv)) = (&s.stats.lb, &s.backend) {
                    let n = l.object_errors.len() + usize::from(l.last_error.is_some());
                    o(Num::U(n as u64), std::slice::from_ref(kv));
                }
            },
        ),
        fam(
            "ha_lb_dataplane_applies",
            "Changes applied to the data plane",
            Inst::CounterU64,
            |s, o| {
                if let (Some(l), Some(kv)) = (&s.stats.lb, &s.backend) {
                    o(Num::U(l.applies), std::slice::from_ref(kv));
                }
            },
        ),
        object_counter(
            "ha_lb_connections",
            "Connections scheduled (IPVS; nftables counts none)",
            |c| c.connections,
        ),
        object_counter(
            "ha_lb_packets_in",
            "Packets in, per service or destination",
            |c| c.packets_in,
        ),
        object_counter(
            "ha_lb_bytes_in",
            "Bytes in, per service or destination",
            |c| c.bytes_in,
        ),
        object_counter("ha_lb_packets_out", "Packets out (IPVS NAT)", |c| {
            c.packets_out
        }),
        object_counter("ha_lb_bytes_out", "Bytes out (IPVS NAT)", |c| c.bytes_out),
    ]
}

/// Registers the families as observable instruments on `m`. Their callbacks observe
/// nothing while the `/metrics` page collects (it writes them itself, [`write_page`]).
fn register(m: &Meter, labels: &L, fams: &Arc<Vec<Fam>>) {
    for k in 0..fams.len() {
        let (l, fs) = (labels.clone(), fams.clone());
        let each = move |f: &mut dyn FnMut(Num, &[KeyValue])| {
            if export::page_collecting() {
                return;
            }
            let s = l.get();
            let mut buf = Vec::new();
            (fs[k].read)(&s, &mut |v, kv| f(v, with_node(&s.node, kv, &mut buf)));
        };
        let f = &fams[k];
        match f.inst {
            Inst::GaugeU64 => {
                let b = m.u64_observable_gauge(f.name).with_description(f.help);
                let b = if f.unit.is_empty() {
                    b
                } else {
                    b.with_unit(f.unit)
                };
                b.with_callback(move |o| each(&mut |v, kv| o.observe(v.u64(), kv)))
                    .build();
            }
            Inst::GaugeI64 => {
                let b = m.i64_observable_gauge(f.name).with_description(f.help);
                let b = if f.unit.is_empty() {
                    b
                } else {
                    b.with_unit(f.unit)
                };
                b.with_callback(move |o| each(&mut |v, kv| o.observe(v.i64(), kv)))
                    .build();
            }
            Inst::GaugeF64 => {
                let b = m.f64_observable_gauge(f.name).with_description(f.help);
                let b = if f.unit.is_empty() {
                    b
                } else {
                    b.with_unit(f.unit)
                };
                b.with_callback(move |o| each(&mut |v, kv| o.observe(v.f64(), kv)))
                    .build();
            }
            Inst::CounterU64 => {
                let b = m.u64_observable_counter(f.name).with_description(f.help);
                let b = if f.unit.is_empty() {
                    b
                } else {
                    b.with_unit(f.unit)
                };
                b.with_callback(move |o| each(&mut |v, kv| o.observe(v.u64(), kv)))
                    .build();
            }
        }
    }
}

/// The instrument names of `fams`.
fn names(fams: &[Fam]) -> Vec<&'static str> {
    fams.iter().map(|f| f.name).collect()
}

/// Writes the families' series from the latest snapshot onto the `/metrics` page, in
/// the text the SDK's collection would have given (counters get `_total`; a family
/// without series writes nothing).
fn write_page(labels: &Labels, fams: &[Fam], out: &mut String) {
    let s = labels.get();
    process::write_standard(out, BUILD, std::slice::from_ref(&s.node));
    let mut name = String::new();
    let mut buf = Vec::new();
    for f in fams {
        name.clear();
        name.push_str(f.name);
        let kind = if f.inst == Inst::CounterU64 {
            name.push_str("_total");
            export::PromKind::Counter
        } else {
            export::PromKind::Gauge
        };
        let mut first = true;
        (f.read)(&s, &mut |v, kv| {
            if first {
                export::write_family(out, &name, f.help, kind);
                first = false;
            }
            export::write_sample(out, &name, with_node(&s.node, kv, &mut buf), v.f64());
        });
    }
}

/// `kv` with the `node` label (unless it has one already): every agent series carries
/// its node, so that Prometheus keeps its own `instance` (the target) and needs no
/// `honor_labels`. `buf` is reused between series.
fn with_node<'b>(
    node: &KeyValue,
    kv: &'b [KeyValue],
    buf: &'b mut Vec<KeyValue>,
) -> &'b [KeyValue] {
    if kv.iter().any(|k| k.key == node.key) {
        return kv;
    }
    buf.clear();
    buf.push(node.clone());
    buf.extend_from_slice(kv);
    buf
}

/// The link's instruments (read live from its counters, collected by the SDK for both
/// outputs: five series without labels).
fn register_link(m: &Meter, l: Arc<LinkStats>) {
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
            stalls: 0,
            stall_max_us: 0,
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
                    stalls: 0,
                    stall_deferrals: 0,
                    peer_master_adverts: 0,
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
                garp_sent: 6,
                na_sent: 2,
                vips_present: vec![true, false],
                notify_runs: 5,
                notify_failures: 1,
                override_priority: None,
                version: 2,
                sync_group: None,
                source: "192.0.2.1".into(),
                master_adver_interval_us: 1_000_000,
                last_advert_from: None,
                vips: vec!["192.0.2.10/32".into(), "2001:db8::10/64".into()],
                preempt: true,
                alerts: Vec::new(),
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

    /// A reader asks the engine for a fresh snapshot when the one it has is too old, and
    /// takes it; within the age limit it asks nothing.
    #[test]
    fn a_reader_asks_for_a_fresh_snapshot() {
        let (tx, rx) = watch::channel(Arc::new(stats(1, "BACKUP", 10)));
        let wanted = Wanted::default();
        let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // The engine's side: publish a snapshot on each request.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (w, a) = (wanted.clone(), asked.clone());
        let engine = std::thread::spawn(move || {
            rt.block_on(async move {
                let mut n = 1;
                while tokio::time::timeout(Duration::from_millis(300), w.notified())
                    .await
                    .is_ok()
                {
                    n += 1;
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = tx.send(Arc::new(stats(n, "MASTER", n)));
                }
            })
        });
        let labels = Labels::new(rx, Some(wanted));
        let s = labels.get();
        assert_eq!(
            s.stats.dump_seq, 2,
            "the first read waits for a fresh snapshot"
        );
        assert_eq!(s.stats.instances[0].state, "MASTER");
        let again = labels.get();
        assert!(
            Arc::ptr_eq(&s, &again),
            "a fresh snapshot is not asked for again"
        );
        engine.join().unwrap();
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
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
        let g = start(opts, rx, None, Some(link)).await.unwrap();
        let addr = g.metrics_addr().unwrap();
        let text = scrape(addr).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let l = r#"interface="eth0",node="lb1",vrid="51",vrrp_instance="VI_1""#;
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
            r#"ha_vrrp_drops_total{interface="eth0",node="lb1",reason="ttl",vrid="51",vrrp_instance="VI_1"} 3"#.into(),
            r#"ha_vrrp_socket_drops_total{interface="eth0",node="lb1",reason="vrid"} 9"#.into(),
            r#"ha_vrrp_transitions_total{interface="eth0",node="lb1",reason="priority-zero-received",to="MASTER",vrid="51",vrrp_instance="VI_1"} 2"#.into(),
            r#"ha_vrrp_state_info{interface="eth0",node="lb1",state="BACKUP",vrid="51",vrrp_instance="VI_1"} 1"#.into(),
            r#"ha_vrrp_state_info{interface="eth0",node="lb1",state="MASTER",vrid="51",vrrp_instance="VI_1"} 0"#.into(),
            r#"ha_tracker_up{kind="script",name="chk_nginx",node="lb1",vrrp_instance="VI_1"} 0"#.into(),
            r#"ha_tracker_weight{kind="script",name="chk_nginx",node="lb1",vrrp_instance="VI_1"} -10"#.into(),
            r#"ha_agent_instances{node="lb1"} 1"#.into(),
            format!(r#"ha_agent_up{{node="lb1",version="{}"}} 1"#, env!("CARGO_PKG_VERSION")),
            r#"ha_link_connected{node="lb1"} 1"#.into(),
            r#"ha_vrrp_vip_present{interface="eth0",node="lb1",vip="192.0.2.10",vrid="51",vrrp_instance="VI_1"} 1"#.into(),
            r#"ha_vrrp_vip_present{interface="eth0",node="lb1",vip="2001:db8::10",vrid="51",vrrp_instance="VI_1"} 0"#.into(),
            format!("ha_vrrp_garp_sent_total{{{l}}} 6"),
            format!("ha_vrrp_na_sent_total{{{l}}} 2"),
            r#"ha_link_buffered_events{node="lb1"} 3"#.into(),
            r#"ha_link_reconnects_total{node="lb1"} 0"#.into(),
        ] {
            assert!(has(&text, &want), "missing {want:?} in\n{text}");
        }
        for prefix in [
            "process_open_fds{node=\"lb1\"} ",
            "process_resident_memory_bytes{node=\"lb1\"} ",
            "ha_build_info{binary=\"ha-agent\",node=\"lb1\",version=",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(prefix)),
                "missing {prefix} in\n{text}"
            );
        }
        assert!(
            !text.contains("{instance=") && !text.contains(",instance="),
            "{text}"
        );

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

    /// A manual reader the test keeps a handle on (as an OTLP reader would collect).
    #[derive(Debug, Clone)]
    pub(super) struct Shared(pub(super) Arc<opentelemetry_sdk::metrics::ManualReader>);

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

    /// Data points of a collected metric.
    fn points(m: &opentelemetry_sdk::metrics::data::Metric) -> usize {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics as A, MetricData as D};
        fn n<T>(d: &D<T>) -> usize {
            match d {
                D::Gauge(g) => g.data_points().count(),
                D::Sum(s) => s.data_points().count(),
                D::Histogram(h) => h.data_points().count(),
                D::ExponentialHistogram(h) => h.data_points().count(),
            }
        }
        match m.data() {
            A::F64(d) => n(d),
            A::U64(d) => n(d),
            A::I64(d) => n(d),
        }
    }

    /// The page writes the snapshot's families itself and the SDK's collection for it
    /// observes none of them (no line twice), while another reader (OTLP) still gets
    /// every one of them.
    #[test]
    fn the_page_and_otlp_both_get_every_family() {
        let (_tx, rx) = watch::channel(Arc::new(stats(1, "BACKUP", 10)));
        let (page, prom) = export::prometheus_reader().unwrap();
        let otlp = Arc::new(opentelemetry_sdk::metrics::ManualReader::builder().build());
        let meters = SdkMeterProvider::builder()
            .with_reader(prom)
            .with_reader(Shared(otlp.clone()))
            .build();
        let labels = Labels::new(rx, None);
        let fams = Arc::new(families());
        register(&meters.meter(SCOPE), &labels, &fams);
        let f = fams.clone();
        let page = page.with_writer(names(&fams), move |out| write_page(&labels, &f, out));
        // An OTLP export first: its callbacks record into the page's aggregators too.
        let mut rm = opentelemetry_sdk::metrics::data::ResourceMetrics::default();
        opentelemetry_sdk::metrics::reader::MetricReader::collect(&*otlp, &mut rm).unwrap();
        let text = encode_text(&page);
        let mut lines: Vec<&str> = text.lines().collect();
        let n = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), n, "a line twice in\n{text}");
        assert!(
            has(
                &text,
                "ha_tracker_weight{kind=\"script\",name=\"chk_nginx\",node=\"lb1\",vrrp_instance=\"VI_1\"} -10"
            ),
            "{text}"
        );
        let mut rm = opentelemetry_sdk::metrics::data::ResourceMetrics::default();
        opentelemetry_sdk::metrics::reader::MetricReader::collect(&*otlp, &mut rm).unwrap();
        let got: BTreeMap<String, usize> = rm
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .map(|m| (m.name().to_string(), points(m)))
            .collect();
        for f in fams.iter().filter(|f| !f.name.starts_with("ha_lb_")) {
            assert!(
                got.get(f.name).is_some_and(|n| *n > 0),
                "{} missing in {got:?}",
                f.name
            );
        }
        assert_eq!(got.get("ha_vrrp_state_info"), Some(&4));
        assert_eq!(got.get("ha_vrrp_drops"), Some(&1));
    }

    #[test]
    fn state_values_follow_keepalived_order() {
        assert_eq!(
            STATES.map(state_value),
            [0, 1, 2, 3],
            "INIT BACKUP MASTER FAULT"
        );
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
            stalls: 0,
            stall_max_us: 0,
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
                        stalls: 0,
                        stall_deferrals: 0,
                        peer_master_adverts: 0,
                        drops: drops(),
                    },
                    transitions: [("BACKUP startup".to_string(), 1)].into_iter().collect(),
                    trackers: Vec::new(),
                    garp_sent: 0,
                    na_sent: 0,
                    vips_present: Vec::new(),
                    notify_runs: 0,
                    notify_failures: 0,
                    override_priority: None,
                    version: 2,
                    sync_group: None,
                    source: "192.0.2.1".into(),
                    master_adver_interval_us: 1_000_000,
                    last_advert_from: None,
                    vips: Vec::new(),
                    preempt: true,
                    alerts: Vec::new(),
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
    #[ignore = "micro-benchmark: prints one scrape's cost, run by hand with --ignored; asserts nothing"]
    fn scrape_cost() {
        let (tx, rx) = watch::channel(Arc::new(big_stats(1, 50)));
        let (page, prom) = export::prometheus_reader().unwrap();
        let meters = SdkMeterProvider::builder()
            .with_resource(resource("lb1"))
            .with_reader(prom)
            .build();
        let labels = Labels::new(rx, None);
        let fams = Arc::new(families());
        register(&meters.meter(SCOPE), &labels, &fams);
        let l = labels.clone();
        let f = fams.clone();
        let page = page.with_writer(names(&fams), move |out| write_page(&l, &f, out));
        let iters = 200u32;
        let mut whole = Vec::new();
        let mut bytes = 0;
        for k in 0..iters {
            tx.send_replace(Arc::new(big_stats(u64::from(k) + 2, 50)));
            let t = Instant::now();
            let text = encode_text(&page);
            whole.push(t.elapsed());
            bytes = text.len();
        }
        std::fs::write("/tmp/tele-page.txt", encode_text(&page)).unwrap();
        whole.sort();
        eprintln!(
            "collect+encode median {:?} min {:?}, page {bytes} B",
            whole[whole.len() / 2],
            whole[0]
        );
        // The SDK alone: callbacks and aggregation into a ManualReader.
        let reader = Arc::new(opentelemetry_sdk::metrics::ManualReader::builder().build());
        let sdk = SdkMeterProvider::builder()
            .with_reader(super::tests::Shared(reader.clone()))
            .build();
        let (tx, rx) = watch::channel(Arc::new(big_stats(1, 50)));
        let labels = Labels::new(rx, None);
        register(&sdk.meter(SCOPE), &labels, &fams);
        let mut collect = Vec::new();
        for k in 0..iters {
            tx.send_replace(Arc::new(big_stats(u64::from(k) + 2, 50)));
            let mut rm = opentelemetry_sdk::metrics::data::ResourceMetrics::default();
            let t = Instant::now();
            opentelemetry_sdk::metrics::reader::MetricReader::collect(&*reader, &mut rm).unwrap();
            collect.push(t.elapsed());
        }
        collect.sort();
        eprintln!(
            "sdk collect (what an OTLP export collects) median {:?} min {:?}",
            collect[collect.len() / 2],
            collect[0]
        );
    }
}
