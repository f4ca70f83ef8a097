//! Telemetry plumbing shared by ha-agent and ha-manager: the `/metrics` page (a manual
//! reader of the meter provider, our Prometheus text encoder, a page cache) and its
//! `GET /metrics` server, the OTLP/gRPC metric reader and tracer provider, the flush on
//! shutdown, and the errors of setting them up.
//!
//! The encoder writes the collected data straight into one pre-sized `String` (the
//! `opentelemetry-prometheus` exporter built a protobuf family per data point, which the
//! `prometheus` registry then merged, checked and sorted: most of a scrape's time).
//!
//! Not here: which instruments exist and what they read (each crate's telemetry.rs).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, PeriodicReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tokio::task::JoinHandle;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
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
    /// The thread (or its runtime) telemetry's I/O runs on could not start.
    #[error("telemetry thread: {0}")]
    Thread(std::io::Error),
}

fn otlp_error(endpoint: &str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Otlp {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    }
}

/// The reader to install on the meter provider for `/metrics`, and the page it serves:
/// collected on demand and encoded to Prometheus text by [`encode_text`] (units stay in
/// the metric names we choose, counters get `_total`, a `target_info` series carries the
/// resource, no `otel_scope_*` labels). Never fails; a `Result` for the callers' `?`.
pub fn prometheus_reader() -> Result<(PromPage, PromReader), TelemetryError> {
    let reader = Arc::new(ManualReader::builder().build());
    let page = PromPage {
        reader: reader.clone(),
        cache: Arc::new(Mutex::new(None)),
        version: None,
        writer: None,
        inline: false,
        labels: Arc::from(Vec::new()),
    };
    Ok((page, PromReader(reader)))
}

/// The OTLP metrics export interval when `OTEL_METRIC_EXPORT_INTERVAL` does not say:
/// Prometheus' usual scrape interval (the SDK's own default is 60 s). Every export
/// collects and encodes every series, so this is most of what OTLP costs.
pub const OTLP_METRICS_INTERVAL_DEFAULT: Duration = Duration::from_secs(15);

/// The OTLP metrics export interval: `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds, the
/// OpenTelemetry variable) when set to a positive number, else
/// [`OTLP_METRICS_INTERVAL_DEFAULT`].
pub fn otlp_metrics_interval() -> Duration {
    interval_from(std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok().as_deref())
}

fn interval_from(var: Option<&str>) -> Duration {
    var.and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(OTLP_METRICS_INTERVAL_DEFAULT, Duration::from_millis)
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
pub async fn shutdown_providers(meters: Vec<SdkMeterProvider>, tracer: Option<SdkTracerProvider>) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(t) = tracer {
            let _ = t.shutdown();
        }
        for m in meters {
            let _ = m.shutdown();
        }
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

/// The `/metrics` page: collects the meter provider through its [`PromReader`] and
/// encodes Prometheus text. Clones share the reader and the cache.
#[derive(Clone)]
pub struct PromPage {
    /// The reader installed on the meter provider (through [`PromReader`]).
    reader: Arc<ManualReader>,
    /// The last page, when [`PromPage::cache_while`] is on; also its size, to size the
    /// next page's buffer.
    cache: Arc<Mutex<Option<Cached>>>,
    /// What the observable instruments read, as a number that changes with it, and how
    /// long a page may serve one version.
    version: Option<(Arc<dyn Fn() -> u64 + Send + Sync>, Duration)>,
    /// Writes the families the page takes straight from their source, and their
    /// instrument names (which the page then never takes from the SDK's collection).
    writer: Option<(Writer, Arc<[&'static str]>)>,
    /// Build the page on the server's own thread ([`PromPage::collect_inline`]).
    inline: bool,
    /// Labels added to every series the page takes from the SDK's collection
    /// ([`PromPage::with_labels`]; not to `target_info`).
    labels: Arc<[KeyValue]>,
}

/// See [`PromPage::with_writer`].
type Writer = Arc<dyn Fn(&mut String) + Send + Sync>;

thread_local! {
    /// Set while the page's reader collects on this thread.
    static PAGE_COLLECTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True inside an observable instrument's callback when the collection is the
/// `/metrics` page's: the callbacks of families a page writer writes itself (see
/// [`PromPage::with_writer`]) observe nothing then, and everything for OTLP.
pub fn page_collecting() -> bool {
    PAGE_COLLECTING.with(std::cell::Cell::get)
}

/// Clears [`PAGE_COLLECTING`] when dropped (a panicking callback included).
struct Collecting;

impl Collecting {
    fn start() -> Collecting {
        PAGE_COLLECTING.with(|c| c.set(true));
        Collecting
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        PAGE_COLLECTING.with(|c| c.set(false));
    }
}

/// A page already encoded.
#[derive(Debug)]
struct Cached {
    /// `version()` when it was collected.
    version: u64,
    /// When it was collected.
    at: Instant,
    /// The text.
    body: Bytes,
}

impl std::fmt::Debug for PromPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromPage")
            .field("cached", &self.version.is_some())
            .finish()
    }
}

impl PromPage {
    /// Serves the last page again, without collecting, while `version()` returns what it
    /// returned then and the page is younger than `reuse`. `version` must change
    /// whenever what the observable instruments read changes (the agent: each stats
    /// snapshot); what is recorded live (histograms) shows at most `reuse` late.
    pub fn cache_while(
        mut self,
        reuse: Duration,
        version: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.version = Some((Arc::new(version), reuse));
        self
    }

    /// Writes what `writer` writes at the top of every page, before what the reader
    /// collected: the families of the instruments named in `names`, taken straight from
    /// their source (in the Prometheus text of [`write_family`] and [`write_sample`])
    /// rather than aggregated by the SDK. Their callbacks skip the page's collection
    /// ([`page_collecting`]), and what they observed for another reader (an OTLP
    /// export also records into the page's aggregators) is left out of the page.
    pub fn with_writer(
        mut self,
        names: impl IntoIterator<Item = &'static str>,
        writer: impl Fn(&mut String) + Send + Sync + 'static,
    ) -> Self {
        self.writer = Some((Arc::new(writer), names.into_iter().collect()));
        self
    }

    /// Builds the page on the thread that serves it, for a server on a thread of its
    /// own (the agent's telemetry thread); by default it is built on a blocking thread,
    /// off the runtime's workers.
    pub fn collect_inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Adds `labels` to every series of the SDK's collection that has no label of that
    /// name (the agent's `node`); what a writer writes carries its own labels.
    pub fn with_labels(mut self, labels: Vec<KeyValue>) -> Self {
        self.labels = labels.into();
        self
    }

    /// The page now: the cached one while still valid, else a fresh collection.
    pub fn body(&self) -> Bytes {
        let Some((version, reuse)) = &self.version else {
            return Bytes::from(self.text(0));
        };
        // Taken before collecting: a snapshot published meanwhile makes the next scrape
        // collect again, never the reverse.
        let v = version();
        // Held while collecting, so that concurrent scrapes collect once.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache
            .as_ref()
            .filter(|c| c.version == v && c.at.elapsed() < *reuse)
        {
            return c.body.clone();
        }
        let hint = cache.as_ref().map_or(0, |c| c.body.len());
        let body = Bytes::from(self.text(hint));
        *cache = Some(Cached {
            version: v,
            at: Instant::now(),
            body: body.clone(),
        });
        body
    }

    /// A fresh page, in a buffer of at least `hint` bytes.
    fn text(&self, hint: usize) -> String {
        let mut rm = ResourceMetrics::default();
        let collected = {
            let _page = Collecting::start();
            self.reader.collect(&mut rm)
        };
        if let Err(e) = collected {
            tracing::warn!(error = %e, "collecting metrics failed");
            return String::new();
        }
        let mut out = String::with_capacity(hint + hint / 8);
        let mut written: &[&str] = &[];
        if let Some((w, names)) = &self.writer {
            w(&mut out);
            written = names;
        }
        encode(&rm, written, &self.labels, &mut out);
        out
    }
}

/// The [`MetricReader`] behind a [`PromPage`], to give the meter provider.
#[derive(Debug, Clone)]
pub struct PromReader(Arc<ManualReader>);

impl MetricReader for PromReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    /// Prometheus counters are cumulative.
    fn temporality(&self, _kind: InstrumentKind) -> Temporality {
        Temporality::Cumulative
    }
}

/// Prometheus text (format 0.0.4) of the page now (never cached).
pub fn encode_text(page: &PromPage) -> String {
    page.text(0)
}

/// `# HELP` and `# TYPE` lines of a family named `name` (a Prometheus name: counters
/// end in `_total`).
pub fn write_family(out: &mut String, name: &str, help: &str, kind: PromKind) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    push_escaped(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// One sample line, `name{labels} value`, labels sorted by name.
pub fn write_sample(out: &mut String, name: &str, labels: &[KeyValue], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        // Sorted by name, without allocating for the usual handful of labels.
        let mut small = [0usize; 8];
        let mut big = Vec::new();
        let order: &mut [usize] = if labels.len() <= small.len() {
            &mut small[..labels.len()]
        } else {
            big.resize(labels.len(), 0);
            &mut big
        };
        for (k, o) in order.iter_mut().enumerate() {
            *o = k;
        }
        order.sort_unstable_by(|a, b| labels[*a].key.as_str().cmp(labels[*b].key.as_str()));
        out.push('{');
        for (k, &i) in order.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            push_label_name(out, labels[i].key.as_str());
            out.push_str("=\"");
            push_value(out, &labels[i].value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_f64(out, value);
    out.push('\n');
}

/// What a family is made of.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// An instrument's data.
    Metric(&'a Metric),
    /// `target_info`: the resource's attributes as labels of a gauge of 1.
    Resource(&'a Resource),
}

/// Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromKind {
    /// `counter` (the name ends in `_total`).
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram` (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl PromKind {
    fn as_str(self) -> &'static str {
        match self {
            PromKind::Counter => "counter",
            PromKind::Gauge => "gauge",
            PromKind::Histogram => "histogram",
        }
    }
}

/// Prometheus type of a metric: monotonic sums are counters, other sums and gauges are
/// gauges; exponential histograms have no text form here (None).
fn kind_of(m: &Metric) -> Option<PromKind> {
    fn of<T>(d: &MetricData<T>) -> Option<PromKind> {
        match d {
            MetricData::Gauge(_) => Some(PromKind::Gauge),
            MetricData::Sum(s) if s.is_monotonic() => Some(PromKind::Counter),
            MetricData::Sum(_) => Some(PromKind::Gauge),
            MetricData::Histogram(_) => Some(PromKind::Histogram),
            MetricData::ExponentialHistogram(_) => None,
        }
    }
    match m.data() {
        AggregatedMetrics::F64(d) => of(d),
        AggregatedMetrics::U64(d) => of(d),
        AggregatedMetrics::I64(d) => of(d),
    }
}

/// One family to write: its name, type and help come from its first source.
struct Family<'a> {
    /// Prometheus name (`_total` appended to counters).
    name: String,
    kind: PromKind,
    help: &'a str,
    source: Source<'a>,
}

/// Reused buffers: the label block of each series (its sort key) and its lines.
#[derive(Default)]
struct Scratch<'a> {
    /// Label blocks, `a="x",b="y"` (no braces).
    labels: String,
    /// Sample lines.
    text: String,
    /// Per series: its label block and its lines (ranges in the two buffers).
    series: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// Attributes of the data point at hand, to sort.
    attrs: Vec<(&'a str, &'a Value)>,
    /// Labels every data point gets (see [`PromPage::with_labels`]).
    extra: &'a [KeyValue],
}

impl<'a> Scratch<'a> {
    /// Sets `attrs` to a data point's attributes plus the extra labels it lacks.
    fn point(&mut self, attrs: impl Iterator<Item = &'a KeyValue>) {
        self.attrs.clear();
        self.attrs
            .extend(attrs.map(|kv| (kv.key.as_str(), &kv.value)));
        for kv in self.extra {
            if !self.attrs.iter().any(|(k, _)| *k == kv.key.as_str()) {
                self.attrs.push((kv.key.as_str(), &kv.value));
            }
        }
    }
}

/// Prometheus text of `rm` but the instruments named in `skip`: families sorted by
/// name, series sorted by labels, labels sorted by name (what the `prometheus` crate's
/// encoder wrote).
fn encode<'a>(rm: &'a ResourceMetrics, skip: &[&str], extra: &'a [KeyValue], out: &mut String) {
    let mut families = Vec::new();
    for sm in rm.scope_metrics() {
        for m in sm.metrics().filter(|m| !skip.contains(&m.name())) {
            if let Some(kind) = kind_of(m) {
                let mut name = String::with_capacity(m.name().len() + 6);
                push_metric_name(&mut name, m.name());
                if kind == PromKind::Counter {
                    name.push_str("_total");
                }
                families.push(Family {
                    name,
                    kind,
                    help: m.description(),
                    source: Source::Metric(m),
                });
            }
        }
    }
    if !rm.resource().is_empty() {
        families.push(Family {
            name: "target_info".into(),
            kind: PromKind::Gauge,
            help: "Target metadata",
            source: Source::Resource(rm.resource()),
        });
    }
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut s = Scratch {
        extra,
        ..Scratch::default()
    };
    let mut i = 0;
    while i < families.len() {
        // Same name from several scopes: one family, typed by the first.
        let f = &families[i];
        let n = families[i..]
            .iter()
            .take_while(|g| g.name == f.name)
            .count();
        s.labels.clear();
        s.text.clear();
        s.series.clear();
        for g in families[i..i + n].iter().filter(|g| g.kind == f.kind) {
            series_of(g, &mut s);
        }
        i += n;
        if s.series.is_empty() {
            continue;
        }
        write_family(out, &f.name, f.help, f.kind);
        let Scratch {
            labels,
            text,
            series,
            ..
        } = &mut s;
        series.sort_by(|a, b| labels[a.0.clone()].cmp(&labels[b.0.clone()]));
        for (_, t) in series.iter() {
            out.push_str(&text[t.clone()]);
        }
    }
}

/// Appends the series of `f` to the scratch buffers.
fn series_of<'a>(f: &Family<'a>, s: &mut Scratch<'a>) {
    match f.source {
        Source::Resource(r) => {
            s.attrs.clear();
            s.attrs.extend(r.iter().map(|(k, v)| (k.as_str(), v)));
            sample_series(s, &f.name, 1.0);
        }
        Source::Metric(m) => match m.data() {
            AggregatedMetrics::F64(d) => data_series(d, &f.name, s),
            AggregatedMetrics::U64(d) => data_series(d, &f.name, s),
            AggregatedMetrics::I64(d) => data_series(d, &f.name, s),
        },
    }
}

/// A number as Prometheus text writes it.
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl AsF64 for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// Appends the series of one metric's data.
fn data_series<'a, T: AsF64>(d: &'a MetricData<T>, name: &str, s: &mut Scratch<'a>) {
    match d {
        MetricData::Gauge(g) => {
            for dp in g.data_points() {
                s.point(dp.attributes());
                sample_series(s, name, dp.value().as_f64());
            }
        }
        MetricData::Sum(sum) => {
            for dp in sum.data_points() {
                s.point(dp.attributes());
                sample_series(s, name, dp.value().as_f64());
            }
        }
        MetricData::Histogram(h) => {
            for dp in h.data_points() {
                s.point(dp.attributes());
                let key = label_block(s);
                let start = s.text.len();
                let block = &s.labels[key.clone()];
                let mut cumulative = 0u64;
                let mut le = String::new();
                for (bound, n) in dp.bounds().zip(dp.bucket_counts()) {
                    cumulative += n;
                    le.clear();
                    push_f64(&mut le, bound);
                    sample(
                        &mut s.text,
                        name,
                        "_bucket",
                        block,
                        Some(&le),
                        cumulative as f64,
                    );
                }
                sample(
                    &mut s.text,
                    name,
                    "_bucket",
                    block,
                    Some("+Inf"),
                    dp.count() as f64,
                );
                sample(&mut s.text, name, "_sum", block, None, dp.sum().as_f64());
                sample(&mut s.text, name, "_count", block, None, dp.count() as f64);
                s.series.push((key, start..s.text.len()));
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// One series of one sample, labelled by `s.attrs`.
fn sample_series(s: &mut Scratch<'_>, name: &str, value: f64) {
    let key = label_block(s);
    let start = s.text.len();
    sample(&mut s.text, name, "", &s.labels[key.clone()], None, value);
    s.series.push((key, start..s.text.len()));
}

/// Writes `s.attrs`, sorted by name, as a label block into `s.labels`; returns its range.
fn label_block(s: &mut Scratch<'_>) -> std::ops::Range<usize> {
    s.attrs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let start = s.labels.len();
    for (i, (k, v)) in s.attrs.iter().enumerate() {
        if i > 0 {
            s.labels.push(',');
        }
        push_label_name(&mut s.labels, k);
        s.labels.push_str("=\"");
        push_value(&mut s.labels, v);
        s.labels.push('"');
    }
    start..s.labels.len()
}

/// `name{labels,le="x"} value` and a newline.
fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_f64(out, v);
    out.push('\n');
}

/// A float as Prometheus text: `+Inf`, `-Inf`, `NaN`, else the shortest decimal form.
fn push_f64(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// An attribute value as a label value, escaped.
fn push_value(out: &mut String, v: &Value) {
    use std::fmt::Write as _;
    match v {
        Value::String(s) => push_escaped(out, s.as_str(), true),
        Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        other => push_escaped(out, &other.as_str(), true),
    }
}

/// `v` with `\` and newlines escaped (and `"` in label values).
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A metric name with characters Prometheus refuses replaced by `_` (`_` first before a
/// leading digit).
fn push_metric_name(out: &mut String, name: &str) {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
}

/// A label name with characters Prometheus refuses replaced by `_` (`service.name`
/// becomes `service_name`).
fn push_label_name(out: &mut String, name: &str) {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// Serves `GET /metrics` on `addr`; returns the task and the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    page: PromPage,
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
            let p = page.clone();
            async move {
                // Collecting runs every instrument's callback: off the runtime's
                // workers, unless the server has a thread of its own.
                let body = if p.inline {
                    p.body()
                } else {
                    tokio::task::spawn_blocking(move || p.body())
                        .await
                        .unwrap_or_default()
                };
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
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
    fn export_interval_from_the_otel_variable() {
        assert_eq!(interval_from(None), OTLP_METRICS_INTERVAL_DEFAULT);
        assert_eq!(interval_from(Some("2500")), Duration::from_millis(2500));
        assert_eq!(interval_from(Some("0")), OTLP_METRICS_INTERVAL_DEFAULT);
        assert_eq!(interval_from(Some("5s")), OTLP_METRICS_INTERVAL_DEFAULT);
    }

    #[test]
    fn state_values_follow_keepalived_order() {
        assert_eq!(
            ["INIT", "BACKUP", "MASTER", "FAULT", "bogus"].map(state_value),
            [0, 1, 2, 3, 0]
        );
    }

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;

    fn provider() -> (PromPage, SdkMeterProvider) {
        let (page, reader) = prometheus_reader().unwrap();
        let resource = Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", "t"))
            .build();
        let p = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        (page, p)
    }

    #[test]
    fn encodes_counters_gauges_histograms_and_target_info() {
        let (page, p) = provider();
        let m = p.meter("t");
        let c = m
            .u64_counter("ha_test_things")
            .with_description("things")
            .build();
        c.add(3, &[]);
        c.add(2, &[KeyValue::new("z", "a\"b"), KeyValue::new("a.b", 7)]);
        m.f64_observable_gauge("ha_test_level")
            .with_description("level\nof it")
            .with_callback(|o| {
                o.observe(0.5, &[KeyValue::new("k", "y")]);
                o.observe(1e21, &[KeyValue::new("k", "x")]);
            })
            .build();
        let h = m
            .f64_histogram("ha_test_seconds")
            .with_description("durations")
            .with_boundaries(vec![0.001, 1.0])
            .build();
        h.record(0.5, &[KeyValue::new("vs", "v")]);
        h.record(2.0, &[KeyValue::new("vs", "v")]);
        let text = encode_text(&page);
        let want = r#"# HELP ha_test_level level\nof it
# TYPE ha_test_level gauge
ha_test_level{k="x"} 1000000000000000000000
ha_test_level{k="y"} 0.5
# HELP ha_test_seconds durations
# TYPE ha_test_seconds histogram
ha_test_seconds_bucket{vs="v",le="0.001"} 0
ha_test_seconds_bucket{vs="v",le="1"} 1
ha_test_seconds_bucket{vs="v",le="+Inf"} 2
ha_test_seconds_sum{vs="v"} 2.5
ha_test_seconds_count{vs="v"} 2
# HELP ha_test_things_total things
# TYPE ha_test_things_total counter
ha_test_things_total 3
ha_test_things_total{a_b="7",z="a\"b"} 2
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="t"} 1
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn a_cached_page_follows_its_version() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let (page, p) = provider();
        let version = Arc::new(AtomicU64::new(1));
        let v = version.clone();
        let hour = Duration::from_secs(3600);
        let cached = page
            .clone()
            .cache_while(hour, move || v.load(Ordering::SeqCst));
        let v = version.clone();
        let expiring = page.cache_while(Duration::ZERO, move || v.load(Ordering::SeqCst));
        let c = p.meter("t").u64_counter("ha_test_things").build();
        let line = |b: &Bytes| {
            String::from_utf8_lossy(b)
                .lines()
                .find(|l| l.starts_with("ha_test_things_total"))
                .map(str::to_string)
                .unwrap_or_default()
        };
        c.add(1, &[]);
        assert_eq!(line(&cached.body()), "ha_test_things_total 1");
        c.add(1, &[]);
        assert_eq!(
            line(&cached.body()),
            "ha_test_things_total 1",
            "same version"
        );
        assert_eq!(line(&expiring.body()), "ha_test_things_total 2", "expired");
        c.add(1, &[]);
        version.store(2, Ordering::SeqCst);
        assert_eq!(
            line(&cached.body()),
            "ha_test_things_total 3",
            "new version"
        );
    }
}
