//! Log setup: where log lines go and how they look.
//!
//! - Console (stderr) by default, human lines as before ("(VI_1) Entering MASTER STATE"
//!   followed by `key=value` fields), or one JSON object per line with `--log-format json`.
//! - `--log-file FILE` replaces stderr; the file is opened for append and can be reopened
//!   (logrotate) through [`reopen`] (the process-wide logger [`init`] installed, called on
//!   SIGHUP by the agent's engine and the manager), [`LogHandle::reopen`] or [`Reopener`].
//! - `--log-facility F` (keepalived's `-S 0-7` means local0-7) adds syslog: RFC 3164 lines
//!   sent to the local syslog socket (`/dev/log`, or `--log-socket`), so keepalived's
//!   "rsyslog routes local3 to its own file" setup keeps working.
//! - The level filter comes from `RUST_LOG` (default `info`) and applies to every output.
//!
//! Syslog datagrams are sent by a dedicated thread fed through a bounded queue: a slow or
//! missing syslog daemon never blocks the VRRP loop; lines that cannot be queued or sent
//! are counted and reported with the next line that gets through.
//!
//! Pure parts (facility parsing, PRI, the syslog line, the JSON line) are plain functions,
//! unit tested below. Used by ha-agent and ha-manager alike.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::time::{local_time, LocalTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The local syslog socket glibc's `syslog(3)` writes to.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Longest syslog datagram we send, in bytes (rsyslog's default maximum is 8 KiB).
const MAX_SYSLOG_LINE: usize = 8000;
/// Lines waiting for the syslog thread before new ones are dropped.
const SYSLOG_QUEUE: usize = 4096;
/// How long the syslog thread waits on a full socket before dropping a line.
const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long dropping the [`LogHandle`] waits for queued syslog lines to leave.
const FLUSH_ON_DROP: Duration = Duration::from_secs(1);

/// Errors setting up or reopening logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The syslog socket or its sender thread could not be created.
    #[error("cannot set up syslog: {0}")]
    Syslog(#[source] io::Error),
    /// A global logger was already installed.
    #[error("cannot install the logger: {0}")]
    Global(#[source] tracing_subscriber::util::TryInitError),
}

/// How console and file lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human lines: time, level, message, `key=value` fields.
    #[default]
    Human,
    /// One JSON object per line: `timestamp`, `level`, `message`, `fields`.
    Json,
}

/// `--log-format` was neither `human` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: use human or json")]
pub struct ParseFormatError(String);

impl FromStr for LogFormat {
    type Err = ParseFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(ParseFormatError(s.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}

/// A syslog facility we can log under (RFC 3164 §4.1.1 table of facility codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facility {
    /// `user` (1): the default of `syslog(3)`.
    User,
    /// `daemon` (3): system daemons.
    Daemon,
    /// `local0` (16).
    Local0,
    /// `local1` (17).
    Local1,
    /// `local2` (18).
    Local2,
    /// `local3` (19): the one keepalived setups usually route to their own file.
    Local3,
    /// `local4` (20).
    Local4,
    /// `local5` (21).
    Local5,
    /// `local6` (22).
    Local6,
    /// `local7` (23).
    Local7,
}

const LOCALS: [Facility; 8] = [
    Facility::Local0,
    Facility::Local1,
    Facility::Local2,
    Facility::Local3,
    Facility::Local4,
    Facility::Local5,
    Facility::Local6,
    Facility::Local7,
];

impl Facility {
    /// The numeric facility code of RFC 3164 §4.1.1.
    pub fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }

    /// The name syslog.conf uses (`local3`, `daemon`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Facility::User => "user",
            Facility::Daemon => "daemon",
            Facility::Local0 => "local0",
            Facility::Local1 => "local1",
            Facility::Local2 => "local2",
            Facility::Local3 => "local3",
            Facility::Local4 => "local4",
            Facility::Local5 => "local5",
            Facility::Local6 => "local6",
            Facility::Local7 => "local7",
        }
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--log-facility` value we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown syslog facility {0:?}: use 0-7 (local0-7), local0-local7, daemon or user")]
pub struct ParseFacilityError(String);

impl FromStr for Facility {
    type Err = ParseFacilityError;
    /// Accepts keepalived's `-S` digits `0`-`7` (meaning local0-7), `local0`-`local7`,
    /// `daemon` and `user`, case-insensitive, with an optional `LOG_` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFacilityError(s.to_string());
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("log_").unwrap_or(&lower);
        let digit = match name {
            "user" => return Ok(Facility::User),
            "daemon" => return Ok(Facility::Daemon),
            _ => name.strip_prefix("local").unwrap_or(name),
        };
        match digit.as_bytes() {
            [d @ b'0'..=b'7'] => Ok(LOCALS[usize::from(d - b'0')]),
            _ => Err(err()),
        }
    }
}

/// A syslog severity (RFC 3164 §4.1.1); only those tracing levels map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 3: error conditions.
    Error,
    /// 4: warning conditions.
    Warning,
    /// 6: informational messages (keepalived logs its transitions here).
    Informational,
    /// 7: debug-level messages.
    Debug,
}

impl Severity {
    /// The numeric severity code of RFC 3164 §4.1.1.
    pub fn code(self) -> u8 {
        match self {
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Informational => 6,
            Severity::Debug => 7,
        }
    }

    /// The severity a tracing level is logged at (TRACE and DEBUG are both `debug`).
    pub fn from_level(level: Level) -> Severity {
        match level {
            Level::ERROR => Severity::Error,
            Level::WARN => Severity::Warning,
            Level::INFO => Severity::Informational,
            _ => Severity::Debug,
        }
    }
}

/// PRI = facility x 8 + severity (RFC 3164 §4.1.1).
pub fn pri(facility: Facility, severity: Severity) -> u8 {
    facility.code() * 8 + severity.code()
}

/// One syslog datagram: `<PRI>Mmm dd hh:mm:ss TAG[pid]: MSG`.
///
/// This is RFC 3164 §4.1 as local senders (glibc `syslog(3)`) write it to `/dev/log`:
/// the HOSTNAME field is left out, the daemon on the socket fills it in. Control
/// characters in `msg` become spaces (one event, one line), and the datagram is cut at
/// [`MAX_SYSLOG_LINE`] bytes on a character boundary.
pub fn syslog_line(
    facility: Facility,
    severity: Severity,
    time: LocalTime,
    tag: &str,
    pid: u32,
    msg: &str,
) -> String {
    let mut line = format!("<{}>{time} {tag}[{pid}]: ", pri(facility, severity));
    line.extend(msg.chars().map(|c| if c.is_control() { ' ' } else { c }));
    if line.len() > MAX_SYSLOG_LINE {
        let mut cut = MAX_SYSLOG_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// A field value as recorded, kept typed for JSON.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// Recorded as `&str` (shown quoted in human lines, as tracing-subscriber does).
    Str(String),
    /// Recorded through Display or Debug (`%x`, `?x`): already text.
    Text(String),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    fn json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) | Value::Text(s) => serde_json::Value::from(s.as_str()),
            Value::I64(v) => serde_json::Value::from(*v),
            Value::U64(v) => serde_json::Value::from(*v),
            Value::F64(v) => serde_json::Value::from(*v),
            Value::Bool(v) => serde_json::Value::from(*v),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Text(s) => f.write_str(s),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// An event's message and its other fields, in the order they were written.
#[derive(Debug, Default, Clone, PartialEq)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }

    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            self.message = match v {
                Value::Str(s) | Value::Text(s) => s,
                other => other.to_string(),
            };
        } else {
            self.fields.push((field.name(), v));
        }
    }

    /// `message key=value ...`: the console line without time and level.
    fn text(&self) -> String {
        let mut s = self.message.clone();
        for (k, v) in &self.fields {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }

    /// `{"timestamp":..,"level":..,"message":..,"fields":{..}}`, keys in this order.
    fn json_line(&self, timestamp: &str, level: Level) -> String {
        let js = |v: serde_json::Value| v.to_string();
        let mut s = format!(
            "{{\"timestamp\":{},\"level\":{},\"message\":{},\"fields\":{{",
            js(timestamp.into()),
            js(level.as_str().into()),
            js(self.message.as_str().into()),
        );
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}:{}", js((*k).into()), js(v.json()));
        }
        s.push_str("}}");
        s
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::Text(value.to_string()));
    }
}

/// The `--log-format json` event formatter: one object per line.
struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let line = Fields::of(event).json_line(&ts, *event.metadata().level());
        writeln!(writer, "{line}")
    }
}

/// A log file opened for append that can be reopened in place (after logrotate moved it).
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open_file(path: &Path) -> Result<File, LogError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| LogError::File {
                path: path.display().to_string(),
                source,
            })
    }

    fn open(path: &Path) -> Result<LogFile, LogError> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(Self::open_file(path)?),
        })
    }

    fn reopen(&self) -> Result<(), LogError> {
        let fresh = Self::open_file(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl io::Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One lock per line, so concurrent events never interleave inside a line.
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

/// Work for the syslog thread.
enum Job {
    /// A formatted datagram.
    Line(String),
    /// Answer once every earlier line has been handled.
    Flush(SyncSender<()>),
}

/// The sending side of the syslog thread, shared by the layer and the handle.
#[derive(Debug, Clone)]
struct SyslogQueue {
    tx: SyncSender<Job>,
    dropped: Arc<AtomicU64>,
}

impl SyslogQueue {
    fn push(&self, line: String) {
        if self.tx.try_send(Job::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wait up to `limit` for the thread to handle every queued line.
    fn flush(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut job = Job::Flush(ack_tx);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(j)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    job = j;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ack_rx.recv_timeout(left).is_ok()
    }
}

/// What the syslog thread needs to send.
struct SyslogTarget {
    sock: UnixDatagram,
    path: PathBuf,
    facility: Facility,
    tag: String,
    pid: u32,
    dropped: Arc<AtomicU64>,
    /// Whether the last send failed (report a failing socket once per streak on stderr).
    failing: bool,
}

impl SyslogTarget {
    fn send(&mut self, line: &str) -> bool {
        match self.sock.send_to(line.as_bytes(), &self.path) {
            Ok(_) => {
                self.failing = false;
                true
            }
            Err(e) => {
                if !self.failing {
                    eprintln!(
                        "{}: syslog socket {}: {e} (syslog lines are dropped until it works)",
                        self.tag,
                        self.path.display()
                    );
                }
                self.failing = true;
                false
            }
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        for job in rx {
            match job {
                Job::Line(line) => {
                    let lost = self.dropped.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let note = syslog_line(
                            self.facility,
                            Severity::Warning,
                            local_time(std::time::SystemTime::now()),
                            &self.tag,
                            self.pid,
                            &format!("{lost} log message(s) dropped"),
                        );
                        if !self.send(&note) {
                            self.dropped.fetch_add(lost, Ordering::Relaxed);
                        }
                    }
                    if !self.send(&line) {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Job::Flush(ack) => {
                    let _ = ack.try_send(());
                }
            }
        }
    }
}

/// Start the syslog thread; the socket may not exist yet (sends fail until it does).
fn spawn_syslog(path: &Path, facility: Facility, tag: &str) -> Result<SyslogQueue, LogError> {
    let sock = UnixDatagram::unbound().map_err(LogError::Syslog)?;
    sock.set_write_timeout(Some(SYSLOG_SEND_TIMEOUT))
        .map_err(LogError::Syslog)?;
    let (tx, rx) = mpsc::sync_channel(SYSLOG_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let target = SyslogTarget {
        sock,
        path: path.to_path_buf(),
        facility,
        tag: tag.to_string(),
        pid: std::process::id(),
        dropped: dropped.clone(),
        failing: false,
    };
    std::thread::Builder::new()
        .name("syslog".into())
        .spawn(move || target.run(rx))
        .map_err(LogError::Syslog)?;
    Ok(SyslogQueue { tx, dropped })
}

/// The layer that turns events into syslog datagrams.
struct SyslogLayer {
    queue: SyslogQueue,
    facility: Facility,
    tag: String,
    pid: u32,
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let severity = Severity::from_level(*event.metadata().level());
        let line = syslog_line(
            self.facility,
            severity,
            local_time(std::time::SystemTime::now()),
            &self.tag,
            self.pid,
            &Fields::of(event).text(),
        );
        self.queue.push(line);
    }
}

/// Where and how to log; build with [`LogOptions::new`] and set the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Console/file line format (`--log-format`).
    pub format: LogFormat,
    /// Append here instead of stderr (`--log-file`).
    pub file: Option<PathBuf>,
    /// Also send to syslog under this facility (`--log-facility`, `-S`).
    pub facility: Option<Facility>,
    /// The syslog socket (hidden `--log-socket`, default [`DEFAULT_SOCKET`]).
    pub socket: PathBuf,
    /// The syslog tag (program name): `ha-agent` gives `ha-agent[pid]:`.
    pub tag: String,
    /// Filter when `RUST_LOG` is unset or invalid.
    pub default_filter: String,
}

impl LogOptions {
    /// Human lines on stderr, no syslog, filter `info`, syslog tag `tag`.
    pub fn new(tag: &str) -> LogOptions {
        LogOptions {
            format: LogFormat::Human,
            file: None,
            facility: None,
            socket: PathBuf::from(DEFAULT_SOCKET),
            tag: tag.to_string(),
            default_filter: "info".to_string(),
        }
    }
}

impl From<Option<&Path>> for LogOptions {
    /// The options before the logging flags existed: human lines on stderr, or appended
    /// to `file`; tag `ha-agent`. Lets `init(args.log_file.as_deref())` keep working.
    fn from(file: Option<&Path>) -> LogOptions {
        let mut opts = LogOptions::new("ha-agent");
        opts.file = file.map(Path::to_path_buf);
        opts
    }
}

/// Reopens the log file (for SIGHUP after logrotate); cheap to clone into other tasks.
#[derive(Debug, Clone, Default)]
pub struct Reopener {
    file: Option<Arc<LogFile>>,
}

impl Reopener {
    /// Reopen `--log-file` at its path; does nothing when logging to stderr.
    pub fn reopen(&self) -> Result<(), LogError> {
        self.file.as_ref().map_or(Ok(()), |f| f.reopen())
    }
}

/// What [`init`] set up: keep it alive until exit; dropping it flushes pending syslog lines.
#[derive(Debug)]
pub struct LogHandle {
    reopener: Reopener,
    syslog: Option<SyslogQueue>,
}

impl LogHandle {
    /// Reopen `--log-file` at its path; does nothing when logging to stderr.
    pub fn reopen(&self) -> Result<(), LogError> {
        self.reopener.reopen()
    }

    /// A cloneable reopen handle for the task that handles SIGHUP.
    pub fn reopener(&self) -> Reopener {
        self.reopener.clone()
    }

    /// Wait up to `limit` until queued syslog lines were handed to the socket; true if
    /// they were (or there is no syslog output).
    pub fn flush(&self, limit: Duration) -> bool {
        self.syslog.as_ref().is_none_or(|q| q.flush(limit))
    }

    /// Syslog lines dropped since they were last reported (queue full, socket failing).
    pub fn syslog_dropped(&self) -> u64 {
        self.syslog
            .as_ref()
            .map_or(0, |q| q.dropped.load(Ordering::Relaxed))
    }
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        self.flush(FLUSH_ON_DROP);
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber `opts` describe, not yet installed.
fn build(opts: &LogOptions) -> Result<(impl Subscriber + Send + Sync, LogHandle), LogError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&opts.default_filter));
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let mut reopener = Reopener::default();
    match &opts.file {
        Some(path) => {
            let file = Arc::new(LogFile::open(path)?);
            reopener.file = Some(file.clone());
            layers.push(console_layer(opts.format, file, false));
        }
        None => {
            use std::io::IsTerminal;
            let ansi = io::stderr().is_terminal();
            layers.push(console_layer(opts.format, io::stderr, ansi));
        }
    }
    let mut syslog = None;
    if let Some(facility) = opts.facility {
        let queue = spawn_syslog(&opts.socket, facility, &opts.tag)?;
        syslog = Some(queue.clone());
        layers.push(Box::new(SyslogLayer {
            queue,
            facility,
            tag: opts.tag.clone(),
            pid: std::process::id(),
        }));
    }
    let subscriber = tracing_subscriber::registry().with(layers).with(filter);
    Ok((subscriber, LogHandle { reopener, syslog }))
}

fn console_layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => Box::new(layer),
        LogFormat::Json => Box::new(layer.event_format(JsonFormat)),
    }
}

/// The reopener of the logger [`init`] installed (set once, with the global subscriber).
static GLOBAL_REOPENER: OnceLock<Reopener> = OnceLock::new();

/// Install the global subscriber `opts` describe; keep the handle until exit.
pub fn init(opts: impl Into<LogOptions>) -> Result<LogHandle, LogError> {
    let (subscriber, handle) = build(&opts.into())?;
    subscriber.try_init().map_err(LogError::Global)?;
    let _ = GLOBAL_REOPENER.set(handle.reopener());
    Ok(handle)
}

/// Reopen the `--log-file` of the logger [`init`] installed (logrotate moved it away):
/// later lines go to a new file at the original path. Does nothing when logging to stderr
/// or before [`init`].
pub fn reopen() -> Result<(), LogError> {
    GLOBAL_REOPENER.get().map_or(Ok(()), Reopener::reopen)
}

/// [`reopen`] for a SIGHUP handler: a failure is logged (to the old file, still open) and
/// written to stderr, never fatal.
pub fn reopen_on_hangup() {
    if let Err(e) = reopen() {
        eprintln!("cannot reopen the log file: {e}");
        tracing::error!(error = %e, "cannot reopen the log file; logging goes on to the old one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_parse_like_keepalived() {
        let cases = [
            ("0", Facility::Local0),
            ("3", Facility::Local3),
            ("7", Facility::Local7),
            ("local0", Facility::Local0),
            ("local3", Facility::Local3),
            ("LOCAL7", Facility::Local7),
            ("LOG_LOCAL5", Facility::Local5),
            (" local1 ", Facility::Local1),
            ("daemon", Facility::Daemon),
            ("user", Facility::User),
            ("LOG_DAEMON", Facility::Daemon),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Facility>(), Ok(want), "{s:?}");
        }
        for bad in [
            "", "8", "local8", "local", "-1", "03", "kern", "mail", "local33", "l3",
        ] {
            assert!(bad.parse::<Facility>().is_err(), "{bad:?} accepted");
        }
        let e = "local9".parse::<Facility>().unwrap_err().to_string();
        assert!(e.contains("local9") && e.contains("0-7"), "{e}");
    }

    #[test]
    fn facility_names_round_trip() {
        for f in LOCALS.into_iter().chain([Facility::User, Facility::Daemon]) {
            assert_eq!(f.to_string().parse::<Facility>(), Ok(f));
        }
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        // RFC 3164 §4.1.1: local3 (19) info (6) = 158; local0 err = 131; daemon warning = 28.
        assert_eq!(pri(Facility::Local3, Severity::Informational), 158);
        assert_eq!(pri(Facility::Local0, Severity::Error), 131);
        assert_eq!(pri(Facility::Daemon, Severity::Warning), 28);
        assert_eq!(pri(Facility::User, Severity::Debug), 15);
        assert_eq!(pri(Facility::Local7, Severity::Debug), 191);
    }

    #[test]
    fn levels_map_to_severities() {
        assert_eq!(Severity::from_level(Level::ERROR), Severity::Error);
        assert_eq!(Severity::from_level(Level::WARN), Severity::Warning);
        assert_eq!(Severity::from_level(Level::INFO), Severity::Informational);
        assert_eq!(Severity::from_level(Level::DEBUG), Severity::Debug);
        assert_eq!(Severity::from_level(Level::TRACE), Severity::Debug);
    }

    #[test]
    fn syslog_line_is_rfc3164_as_local_senders_write_it() {
        let line = syslog_line(
            Facility::Local3,
            Severity::Informational,
            LocalTime::new(10, 1, 9, 5, 7),
            "ha-agent",
            4242,
            "(VI_1) Entering MASTER STATE",
        );
        assert_eq!(
            line,
            "<158>Oct  1 09:05:07 ha-agent[4242]: (VI_1) Entering MASTER STATE"
        );
        let line = syslog_line(
            Facility::Daemon,
            Severity::Error,
            LocalTime::new(12, 31, 23, 59, 60),
            "ha-manager",
            1,
            "x",
        );
        assert_eq!(line, "<27>Dec 31 23:59:60 ha-manager[1]: x");
    }

    #[test]
    fn syslog_line_is_one_line_and_bounded() {
        let line = syslog_line(
            Facility::User,
            Severity::Debug,
            LocalTime::new(1, 2, 3, 4, 5),
            "a",
            7,
            "one\ntwo\r\tthree",
        );
        assert_eq!(line, "<15>Jan  2 03:04:05 a[7]: one two  three");
        let long = "é".repeat(MAX_SYSLOG_LINE);
        let line = syslog_line(
            Facility::User,
            Severity::Debug,
            LocalTime::new(1, 2, 3, 4, 5),
            "a",
            7,
            &long,
        );
        assert!(line.len() <= MAX_SYSLOG_LINE && line.len() > MAX_SYSLOG_LINE - 4);
        assert!(line.ends_with('é'));
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("Human".parse::<LogFormat>(), Ok(LogFormat::Human));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    fn sample() -> Fields {
        Fields {
            message: "(VI_1) Entering MASTER STATE".into(),
            fields: vec![
                ("instance", Value::Text("VI_1".into())),
                ("reason", Value::Str("master down".into())),
                ("count", Value::U64(3)),
                ("delta", Value::I64(-2)),
                ("ok", Value::Bool(true)),
            ],
        }
    }

    #[test]
    fn text_is_message_then_fields() {
        assert_eq!(
            sample().text(),
            "(VI_1) Entering MASTER STATE instance=VI_1 reason=\"master down\" count=3 delta=-2 ok=true"
        );
        let no_msg = Fields {
            message: String::new(),
            fields: vec![("a", Value::U64(1))],
        };
        assert_eq!(no_msg.text(), "a=1");
    }

    #[test]
    fn json_line_has_timestamp_level_message_fields() {
        let line = sample().json_line("2024-01-02T03:04:05.000006Z", Level::INFO);
        assert_eq!(
            line,
            "{\"timestamp\":\"2024-01-02T03:04:05.000006Z\",\"level\":\"INFO\",\
             \"message\":\"(VI_1) Entering MASTER STATE\",\"fields\":{\"instance\":\"VI_1\",\
             \"reason\":\"master down\",\"count\":3,\"delta\":-2,\"ok\":true}}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["count"], 3);
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ha-logging-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn events_reach_file_as_json_and_syslog_socket() {
        let dir = scratch("both");
        let sock_path = dir.join("log.sock");
        let rx = UnixDatagram::bind(&sock_path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut opts = LogOptions::new("ha-test");
        opts.format = LogFormat::Json;
        opts.file = Some(dir.join("agent.log"));
        opts.facility = Some(Facility::Local3);
        opts.socket = sock_path.clone();
        let (sub, handle) = build(&opts).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(instance = %"VI_1", "(VI_1) Entering MASTER STATE");
            tracing::warn!(n = 2_u64, "careful");
            tracing::trace!("filtered out at the default info level");
        });
        assert!(handle.flush(Duration::from_secs(10)));
        let mut buf = [0u8; 9000];
        let n = rx.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let pid = std::process::id();
        assert!(got.starts_with("<158>"), "{got}");
        assert!(
            got.ends_with(&format!(
                " ha-test[{pid}]: (VI_1) Entering MASTER STATE instance=VI_1"
            )),
            "{got}"
        );
        let n = rx.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            got.starts_with("<156>") && got.ends_with("careful n=2"),
            "{got}"
        );

        let text = std::fs::read_to_string(dir.join("agent.log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "(VI_1) Entering MASTER STATE");
        assert_eq!(lines[0]["fields"]["instance"], "VI_1");
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(handle.syslog_dropped(), 0);
        drop(handle);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = scratch("reopen");
        let path = dir.join("agent.log");
        let mut opts = LogOptions::new("ha-test");
        opts.file = Some(path.clone());
        let (sub, handle) = build(&opts).unwrap();
        let reopener = handle.reopener();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("before rotation");
            std::fs::rename(&path, dir.join("agent.log.1")).unwrap();
            tracing::info!("still to the old file");
            reopener.reopen().unwrap();
            tracing::info!("after reopen");
        });
        let old = std::fs::read_to_string(dir.join("agent.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("before rotation") && old.contains("still to the old file"));
        assert!(!old.contains("after reopen"), "{old}");
        assert!(
            new.contains("INFO") && new.contains("after reopen"),
            "{new}"
        );
        assert_eq!(new.lines().count(), 1, "{new}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_socket_counts_drops_and_reports_them_later() {
        let dir = scratch("drops");
        let sock_path = dir.join("log.sock");
        let mut opts = LogOptions::new("ha-test");
        opts.file = Some(dir.join("agent.log"));
        opts.facility = Some(Facility::Daemon);
        opts.socket = sock_path.clone();
        let (sub, handle) = build(&opts).unwrap();
        let dispatch = tracing::Dispatch::new(sub);
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("nobody listens"));
        assert!(handle.flush(Duration::from_secs(10)));
        assert_eq!(handle.syslog_dropped(), 1);

        let rx = UnixDatagram::bind(&sock_path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("now it works"));
        assert!(handle.flush(Duration::from_secs(10)));
        let mut buf = [0u8; 9000];
        let n = rx.recv(&mut buf).unwrap();
        let note = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            note.starts_with("<28>") && note.ends_with("1 log message(s) dropped"),
            "{note}"
        );
        let n = rx.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            line.starts_with("<30>") && line.ends_with("now it works"),
            "{line}"
        );
        assert_eq!(handle.syslog_dropped(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
