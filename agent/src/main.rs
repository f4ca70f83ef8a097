//! ha-agent binary: argument parsing and process edges (anyhow only here).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use ha_agent::link::bridge::OverrideSet;
use ha_agent::link::{InstanceInfo, LinkOptions, TlsFiles};
use ha_agent::runtime::engine::{LinkEnds, RunOptions};
use ha_agent::runtime::logging::{Facility, LogFormat, LogOptions};
use ha_agent::runtime::plan::Plan;

/// A keepalived-compatible VRRP agent.
#[derive(Debug, Parser)]
#[command(name = "ha-agent", version)]
struct Args {
    /// keepalived.conf to run (or check).
    #[arg(long, short = 'f', default_value = "/etc/keepalived/keepalived.conf")]
    config: PathBuf,
    /// Check the config and exit, like `keepalived -t`.
    #[arg(long, short = 't')]
    check: bool,
    /// Node name (default: router_id from global_defs, then the hostname).
    #[arg(long)]
    node: Option<String>,
    /// Remove what an earlier run left (marked addresses, its vmacs, nftables tables, the
    /// config's IPVS services) and exit: for ExecStopPost after an unclean exit.
    #[arg(long, conflicts_with = "check")]
    cleanup: bool,
    /// Directory for state that must survive a reboot (persisted manager overrides).
    #[arg(long, default_value = "/var/lib/ha-agent")]
    state_dir: PathBuf,
    /// Directory for runtime files (stats.json on SIGUSR2, keepalived.data and
    /// keepalived.json on SIGUSR1).
    #[arg(long, default_value = "/run/ha-agent")]
    runtime_dir: PathBuf,
    /// Test hook: panic in a separate thread after this many milliseconds.
    #[arg(long, hide = true)]
    test_panic_after_ms: Option<u64>,
    /// Append logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log line format on stderr or --log-file: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
    /// Also log to syslog under this facility: 0-7 (local0-7, like keepalived -S), local0-local7, daemon, user.
    #[arg(long, short = 'S')]
    log_facility: Option<Facility>,
    /// The syslog socket (for tests).
    #[arg(long, hide = true, default_value = ha_agent::runtime::logging::DEFAULT_SOCKET)]
    log_socket: PathBuf,
    /// ha-manager to stream state to (https://HOST:PORT, or http:// with --insecure).
    #[arg(long)]
    manager: Option<String>,
    /// Allow a plaintext (http://) manager link, for labs.
    #[arg(long)]
    insecure: bool,
    /// CA certificate (PEM) that signed the manager's certificate.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This agent's certificate (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// OTLP/gRPC collector for metrics and traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("genhash") {
        return genhash(&argv[2..]);
    }
    if let Some(code) = ha_clidoc::maybe_generate(Args::command, "8") {
        return code;
    }
    let args = Args::parse();
    if args.check {
        return check(&args);
    }
    if args.cleanup {
        return cleanup(&args);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let loaded = match ha_agent::config::load(&args.config) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow::bail!("{}: {} error(s)", args.config.display(), errors.len());
        }
    };
    let mut log_opts = LogOptions::new("ha-agent");
    log_opts.format = args.log_format;
    log_opts.file.clone_from(&args.log_file);
    log_opts.facility = args.log_facility;
    log_opts.socket = args.log_socket.clone();
    // Kept alive until run returns: dropping it flushes the last lines to syslog.
    let _log = ha_agent::runtime::logging::init(log_opts)?;
    for n in &loaded.notes {
        tracing::info!("{n}");
    }
    // A panic in any thread: priority 0 from every master, then `--cleanup`, then exit.
    ha_agent::runtime::crash::install(vec![
        "--cleanup".into(),
        "--config".into(),
        args.config.to_string_lossy().into_owned(),
    ]);
    if let Some(ms) = args.test_panic_after_ms {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            panic!("test hook: --test-panic-after-ms {ms}");
        });
    }
    // Scripts we kill leave grandchildren; as a subreaper we collect them (PID 1 may not).
    if let Err(e) = ha_agent::script::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
    let plan = ha_agent::runtime::plan::build(&loaded.config, args.node.clone());
    // The plan holds its own copy; the parsed file is not needed any more.
    drop(loaded);
    // One thread: the engine owns every instance anyway, and a single-threaded runtime
    // saves the cross-thread wake-ups of thousands of adverts a second.
    let initial = match ha_agent::link::load_persisted(&args.state_dir) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(error = %e, "persisted overrides ignored");
            None
        }
    };
    let link_opts = match &args.manager {
        None => None,
        Some(url) => Some(link_options(&args, url, &plan, &initial)?),
    };
    // One thread: the engine owns every instance anyway, and a single-threaded runtime
    // saves the cross-thread wake-ups of thousands of adverts a second.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let link_stats = link_opts.as_ref().map(|o| o.stats.clone());
    rt.block_on(async move {
        let (stats_tx, stats_rx) =
            tokio::sync::watch::channel(std::sync::Arc::new(ha_agent::runtime::stats::Stats {
                dump_seq: 0,
                node: plan.node.clone(),
                stalls: 0,
                stall_max_us: 0,
                instances: Vec::new(),
                sockets: Vec::new(),
                lb: None,
            }));
        let stats_wanted = ha_agent::runtime::stats::Wanted::default();
        let telemetry = ha_agent::telemetry::start(
            ha_agent::telemetry::TelemetryOptions {
                metrics_listen: args.metrics_listen,
                otlp_endpoint: args.otlp_endpoint.clone().filter(|e| !e.is_empty()),
                node: plan.node.clone(),
            },
            stats_rx,
            Some(stats_wanted.clone()),
            link_stats,
        )
        .await
        .map_err(|e| anyhow::anyhow!("telemetry: {e}"))?;
        let link = link_opts.map(|opts| {
            let (to_link, from_engine) = tokio::sync::mpsc::unbounded_channel();
            let (to_engine, from_link) = tokio::sync::mpsc::channel(64);
            ha_agent::link::spawn(opts, from_engine, to_engine);
            LinkEnds { to_link, from_link }
        });
        let res = ha_agent::runtime::engine::run(RunOptions {
            plan,
            runtime_dir: args.runtime_dir,
            config_path: args.config,
            node_override: args.node,
            link,
            initial,
            stats_tx: Some(stats_tx),
            stats_wanted: Some(stats_wanted),
        })
        .await;
        telemetry.shutdown().await;
        res.map_err(anyhow::Error::from)
    })?;
    Ok(())
}

/// `--cleanup`: remove an earlier run's leftovers. A config that does not load still lets
/// the marked addresses and the nftables tables go (its vmacs and IPVS services need it).
fn cleanup(args: &Args) -> ExitCode {
    let cfg = match ha_agent::config::load(&args.config) {
        Ok(l) => l.config,
        Err(errors) => {
            eprintln!(
                "ha-agent --cleanup: {}: {} error(s); removing marked addresses and nftables tables only",
                args.config.display(),
                errors.len()
            );
            ha_agent::config::model::Config::default()
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ha-agent --cleanup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(ha_agent::runtime::cleanup::run(&cfg));
    println!(
        "ha-agent --cleanup: removed {} address(es), {} vmac(s), {} IPVS service(s){}",
        r.addresses,
        r.vmacs,
        r.ipvs_services,
        if r.nft {
            ", nftables tables cleared"
        } else {
            ""
        }
    );
    for e in &r.errors {
        eprintln!("ha-agent --cleanup: {e}");
    }
    if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn check(args: &Args) -> ExitCode {
    match ha_agent::config::load(&args.config) {
        Ok(loaded) => {
            for n in &loaded.notes {
                println!("{n}");
            }
            println!("{}: configuration ok", args.config.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", args.config.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

/// The manager link settings; refuses a plaintext URL without `--insecure`.
fn link_options(
    args: &Args,
    url: &str,
    plan: &Plan,
    initial: &Option<OverrideSet>,
) -> anyhow::Result<LinkOptions> {
    if url.starts_with("http://") && !args.insecure {
        anyhow::bail!("--manager {url} is plaintext: use https:// with --tls-ca/--tls-cert/--tls-key, or --insecure for a lab");
    }
    let mut opts = LinkOptions::new(url, &plan.node, args.state_dir.clone());
    opts.tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    opts.config_digest = config_digest(&args.config);
    opts.instances = plan
        .instances
        .iter()
        .map(|i| InstanceInfo {
            name: i.cfg.name.clone(),
            vrid: i.cfg.vrid.get(),
            interface: i.interface.clone(),
            advert_interval: i.cfg.interval.as_duration(),
        })
        .collect();
    opts.override_generation = initial.as_ref().map_or(0, |s| s.generation);
    opts.check().context("manager link")?;
    Ok(opts)
}

/// A short fingerprint of the config file's bytes (FNV-1a 64), to tell configs apart in
/// the fleet view; not a security measure.
fn config_digest(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// `ha-agent genhash URL` (or keepalived's `-s -p -u` flags): print the MD5 digest of the
/// page as keepalived's genhash does, for HTTP_GET / SSL_GET `digest` lines.
fn genhash(args: &[String]) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ha-agent genhash: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(ha_agent::lb::genhash::genhash(args)) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ha-agent genhash: {e}");
            ExitCode::FAILURE
        }
    }
}
