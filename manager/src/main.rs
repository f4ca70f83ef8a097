//! `ha-manager`: the fleet manager binary (CLI, logging, TLS files, signals). anyhow
//! lives only here; everything else is in the library.
//!
//! Signals: SIGTERM and SIGINT stop the manager after flushing history; SIGHUP reopens
//! `--log-file` (logrotate's `postrotate`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, Parser, Subcommand};
use ha_common::logging::{self, Facility, LogFormat, LogOptions};
use ha_manager::core::{Core, CoreOptions};
use ha_manager::pki;
use ha_manager::server;
use ha_manager::store::sled::SledStore;
use ha_manager::store::Retention;
use ha_manager::telemetry;
use ha_manager::{fdlimit, listen};
use ha_proto::auth::Role;

/// Fleet manager for ha-agent: agent streams, history, overrides.
#[derive(Debug, Parser)]
#[command(name = "ha-manager", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Certificates for the fleet.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCmd {
    /// Create a CA: DIR/ca.pem and DIR/ca.key.
    Init {
        /// Directory of the CA.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue DIR/NAME.pem and DIR/NAME.key (CN = NAME, OU = ROLE).
    Issue {
        /// Directory of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// Node or user name.
        #[arg(long)]
        name: String,
        /// agent, viewer, operator, admin or manager (the manager's server certificate).
        #[arg(long)]
        role: Role,
        /// Extra subject alternative name (DNS name or IP), repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// gRPC listen address (agents and hactl connect here).
    #[arg(long, default_value = "0.0.0.0:7400")]
    listen: SocketAddr,
    /// Data directory (sled database): on persistent storage, not tmpfs.
    #[arg(long, default_value = "/var/lib/ha-manager")]
    data: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// OTLP/gRPC collector for metrics and traces (e.g. http://127.0.0.1:4317).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Directory with ca.pem, manager.pem and manager.key (as `pki` writes them).
    #[arg(long, conflicts_with_all = ["ca", "cert", "key"])]
    tls_dir: Option<PathBuf>,
    /// CA certificate that signs clients (PEM).
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// Server certificate (PEM).
    #[arg(long, requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
    /// Plaintext without client authentication: every caller is admin (labs only).
    #[arg(long, conflicts_with_all = ["tls_dir", "ca"])]
    insecure: bool,
    /// Delete history older than this many days.
    #[arg(long)]
    retention_days: Option<u32>,
    /// Delete the oldest history beyond this many MB of events.
    #[arg(long)]
    retention_max_mb: Option<u64>,
    /// Clock offset alert threshold, ms.
    #[arg(long, default_value_t = 500)]
    clock_alert_ms: u32,
    /// Seconds between pings to each agent (clock offset, liveness).
    #[arg(long, default_value_t = 5)]
    ping_interval_s: u64,
    /// A connected agent not heard from for this many seconds is shown as unreachable
    /// and never counted as a master (default: 3 x --ping-interval-s).
    #[arg(long)]
    silent_after_s: Option<u64>,
    /// Two masters must persist for Master_Down_Interval plus this many ms before the
    /// split-brain alert.
    #[arg(long, default_value_t = 1000)]
    split_margin_ms: u64,
    /// Advert interval (ms) assumed for instances whose agent does not report one: set it
    /// to the fleet's advert_int when that is not keepalived's default of 1 s.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=40950))]
    default_advert_ms: u64,
    /// Seconds a connection has to finish its TLS handshake (plaintext: send its first
    /// byte) before it is closed.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_s: u64,
}

/// Logging flags, the same as ha-agent's.
#[derive(Debug, Args)]
struct LogArgs {
    /// Append logs to this file instead of stderr (reopened on SIGHUP, for logrotate).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log line format on stderr or --log-file: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
    /// Also log to syslog under this facility: 0-7 (local0-7, like keepalived -S), local0-local7, daemon, user.
    #[arg(long, short = 'S')]
    log_facility: Option<Facility>,
    /// The syslog socket (for tests).
    #[arg(long, hide = true, default_value = logging::DEFAULT_SOCKET)]
    log_socket: PathBuf,
}

impl LogArgs {
    fn options(&self) -> LogOptions {
        let mut o = LogOptions::new("ha-manager");
        o.format = self.log_format;
        o.file.clone_from(&self.log_file);
        o.facility = self.log_facility;
        o.socket.clone_from(&self.log_socket);
        o
    }
}

/// Reopens `--log-file` on every SIGHUP until the task is aborted.
fn spawn_hangup_reopen() -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            logging::reopen_on_hangup();
            tracing::info!("SIGHUP: log file reopened");
        }
    }))
}

fn read(p: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let (listen, data) = (a.listen, a.data.clone());
    let hangup = spawn_hangup_reopen()?;
    match fdlimit::raise_nofile() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit to the hard limit"
            )
        }
        Ok((_, after)) => tracing::info!(limit = after, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let tls = if let Some(dir) = &a.tls_dir {
        Some(
            server::tls_config(
                &read(&dir.join("ca.pem"))?,
                &read(&dir.join("manager.pem"))?,
                &read(&dir.join("manager.key"))?,
            )
            .with_context(|| format!("TLS files in {}", dir.display()))?,
        )
    } else if let (Some(ca), Some(cert), Some(key)) = (&a.ca, &a.cert, &a.key) {
        Some(server::tls_config(&read(ca)?, &read(cert)?, &read(key)?).context("TLS files")?)
    } else if a.insecure {
        tracing::warn!("running without TLS (--insecure): every caller is admin");
        None
    } else {
        bail!("TLS is required: give --tls-dir DIR or --ca/--cert/--key, or --insecure for labs");
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store = SledStore::open(&data).with_context(|| format!("opening {}", data.display()))?;
    let opts = CoreOptions {
        insecure: a.insecure,
        clock_alert_ms: f64::from(a.clock_alert_ms),
        ping_interval: Duration::from_secs(a.ping_interval_s.max(1)),
        silent_after: Duration::from_secs(
            a.silent_after_s
                .unwrap_or(3 * a.ping_interval_s.max(1))
                .max(1),
        ),
        split_margin: Duration::from_millis(a.split_margin_ms),
        default_advert: Duration::from_millis(a.default_advert_ms),
        ..CoreOptions::default()
    };
    let core = Core::open(Arc::new(store), opts).context("starting the manager")?;
    let policy = Retention {
        max_age_ms: a.retention_days.map(|d| i64::from(d) * 86_400_000),
        max_bytes: a.retention_max_mb.map(|m| m.saturating_mul(1 << 20)),
    };
    let telemetry = telemetry::start(
        core.clone(),
        telemetry::TelemetryOptions {
            metrics_listen: a.metrics_listen,
            otlp_endpoint: a.otlp_endpoint.clone().filter(|e| !e.is_empty()),
        },
    )
    .await
    .context("starting telemetry")?;
    let retention = server::spawn_retention(core.clone(), policy, Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, tls = !a.insecure, "listening");
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "no SIGTERM handler");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let admission = listen::AdmissionOptions::for_fd_limit(
        fdlimit::nofile_soft().unwrap_or(1024),
        Duration::from_secs(a.handshake_timeout_s.max(1)),
    );
    tracing::info!(
        max_connections = admission.max_connections,
        max_pending = admission.max_pending,
        max_pending_per_source = admission.max_pending_per_source,
        handshake_timeout_s = admission.handshake_timeout.as_secs(),
        "connection admission"
    );
    let served = server::serve_with(listener, core.clone(), tls, admission, shutdown).await;
    retention.abort();
    hangup.abort();
    core.close().await;
    telemetry.shutdown().await;
    tracing::info!("history flushed");
    served.context("serving")
}

/// Usage errors clap cannot express: exit 2 with clap's format.
fn check_usage(a: &RunArgs) {
    let mut cmd = Cli::command();
    if a.tls_dir.is_none() && a.ca.is_none() && !a.insecure {
        cmd.error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "TLS is required: give --tls-dir DIR or --ca/--cert/--key, or --insecure for labs",
        )
        .exit();
    }
}

fn main() -> ExitCode {
    if let Some(code) = ha_clidoc::maybe_generate(Cli::command, "8") {
        return code;
    }
    let cli = Cli::parse();
    if cli.cmd.is_none() {
        check_usage(&cli.run);
    }
    // Kept alive until main returns: dropping it flushes the last lines to syslog.
    let _log = match logging::init(cli.log.options()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ha-manager: {e}");
            return ExitCode::from(1);
        }
    };
    let res = match cli.cmd {
        Some(Cmd::Pki {
            cmd: PkiCmd::Init { dir },
        }) => pki::init(&dir)
            .map(|(c, k)| println!("wrote {} and {}", c.display(), k.display()))
            .map_err(anyhow::Error::from),
        Some(Cmd::Pki {
            cmd:
                PkiCmd::Issue {
                    dir,
                    name,
                    role,
                    sans,
                },
        }) => pki::issue(&dir, &name, role, &sans)
            .map(|(c, k)| println!("wrote {} and {}", c.display(), k.display()))
            .map_err(anyhow::Error::from),
        None => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(cli.run)),
            Err(e) => Err(anyhow::Error::from(e).context("starting the runtime")),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-manager: {e:#}");
            ExitCode::from(1)
        }
    }
}
