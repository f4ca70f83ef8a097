//! ha-agent binary: argument parsing and process edges (anyhow only here).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use ha_agent::link::bridge::OverrideSet;
use ha_agent::link::{InstanceInfo, LinkOptions, TlsFiles};
use ha_agent::runtime::engine::{LinkEnds, RunOptions};
use ha_agent::runtime::plan::Plan;
use ha_common::logging::{Facility, LogFormat, LogOptions};

/// A keepalived-compatible VRRP agent.
///
/// keepalived's own options work too (`-f -t -D -l -n -S -g -p -r -c -P -C -d -x -i
/// --signum -v`), so /etc/default/keepalived's DAEMON_ARGS can be reused; the ones that
/// do not apply to ha-agent are accepted and say so in the log.
#[derive(Debug, Parser)]
#[command(name = "ha-agent", disable_version_flag = true)]
struct Args {
    /// keepalived.conf to run (or check); keepalived's -f/--use-file.
    #[arg(
        long,
        short = 'f',
        visible_alias = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    config: PathBuf,
    /// Check the config and exit, like `keepalived -t`.
    #[arg(long)]
    check: bool,
    /// keepalived's -t/--config-test[=FILE]: check the config and exit (as --check); with
    /// FILE, the messages are appended there instead of stderr.
    #[arg(
        short = 't',
        long = "config-test",
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    config_test: Option<PathBuf>,
    /// Print the version and exit (keepalived's -v).
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// keepalived's -P/--vrrp: run only VRRP (no virtual servers or checkers).
    #[arg(short = 'P', long = "vrrp", conflicts_with = "checkers_only")]
    vrrp_only: bool,
    /// keepalived's -C: run only the virtual servers and their checkers (no VRRP). The long
    /// form is not keepalived's --check, which stays ha-agent's config test.
    #[arg(short = 'C', long = "checkers-only")]
    checkers_only: bool,
    /// keepalived's -D/--log-detail: detailed logs (debug level; -DD: trace). RUST_LOG,
    /// when set, wins.
    #[arg(short = 'D', long = "log-detail", action = clap::ArgAction::Count)]
    log_detail: u8,
    /// keepalived's -l/--log-console: log to the console (stderr, ha-agent's default
    /// unless --log-file).
    #[arg(short = 'l', long = "log-console")]
    log_console: bool,
    /// keepalived's -n/--dont-fork: accepted; ha-agent never forks.
    #[arg(short = 'n', long = "dont-fork")]
    dont_fork: bool,
    /// keepalived's -d/--dump-conf: log the parsed configuration at start (with -t:
    /// print it).
    #[arg(short = 'd', long = "dump-conf")]
    dump_conf: bool,
    /// keepalived's -p/--pid: write this process's pid here (removed at exit).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pid: Option<PathBuf>,
    /// keepalived's -r/--vrrp_pid: the VRRP process's pid file (ha-agent is one process:
    /// its pid).
    #[arg(short = 'r', long = "vrrp_pid", value_name = "FILE")]
    vrrp_pid: Option<PathBuf>,
    /// keepalived's -c/--checkers_pid: the checker process's pid file (ha-agent is one
    /// process: its pid).
    #[arg(short = 'c', long = "checkers_pid", value_name = "FILE")]
    checkers_pid: Option<PathBuf>,
    /// keepalived's -x/--snmp: accepted; ha-agent has no SNMP (use --metrics-listen or
    /// --otlp-endpoint).
    #[arg(short = 'x', long = "snmp")]
    snmp: bool,
    /// keepalived's -i/--config-id: the id `@ID` lines of the config match (default: the
    /// host name up to the first dot).
    #[arg(short = 'i', long = "config-id", value_name = "ID")]
    config_id: Option<String>,
    /// keepalived's --signum=SIGFUNC: print the signal number for STOP, RELOAD, DATA,
    /// STATS or JSON and exit.
    #[arg(long = "signum", value_name = "SIGFUNC")]
    signum: Option<String>,
    /// Node name (default: router_id from global_defs, then the hostname).
    #[arg(long)]
    node: Option<String>,
    /// Remove what an earlier run left (marked addresses, its vmacs, nftables tables, the
    /// config's IPVS services) and exit: for ExecStopPost after an unclean exit.
    #[arg(long, conflicts_with_all = ["check", "config_test"])]
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
    /// Append logs to this file instead of stderr (keepalived's -g/--log-file=FILE).
    #[arg(long, short = 'g')]
    log_file: Option<PathBuf>,
    /// Log line format on stderr or --log-file: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
    /// Also log to syslog under this facility: 0-7 (local0-7, like keepalived -S), local0-local7, daemon, user.
    #[arg(long, short = 'S')]
    log_facility: Option<Facility>,
    /// The syslog socket (for tests).
    #[arg(long, hide = true, default_value = ha_common::logging::DEFAULT_SOCKET)]
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
    if args.version {
        println!("ha-agent {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(func) = &args.signum {
        return match ha_agent::runtime::signals::signum(func) {
            Ok(n) => {
                println!("{n}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ha-agent --signum: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(id) = &args.config_id {
        ha_agent::config::set_config_id(id.clone());
    }
    ha_agent::runtime::plan::set_daemons(ha_agent::runtime::plan::Daemons {
        vrrp: !args.checkers_only,
        checkers: !args.vrrp_only,
    });
    if args.check || args.config_test.is_some() {
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
            for line in ha_agent::config::report_lines(&errors) {
                eprintln!("{line}");
            }
            anyhow::bail!("{}: {} error(s)", args.config.display(), errors.len());
        }
    };
    let mut log_opts = LogOptions::new("ha-agent");
    log_opts.format = args.log_format;
    log_opts.file.clone_from(&args.log_file);
    log_opts.facility = args.log_facility;
    log_opts.socket = args.log_socket.clone();
    match args.log_detail {
        0 => {}
        1 => log_opts.default_filter = "info,ha_agent=debug".into(),
        _ => log_opts.default_filter = "info,ha_agent=trace".into(),
    }
    // Kept alive until run returns: dropping it flushes the last lines to syslog.
    let _log = ha_common::logging::init(log_opts)?;
    for n in &loaded.notes {
        // Corrections keepalived makes (strict mode, VIP excess) are warnings; other
        // notes are info.
        if n.message.starts_with("warning:") {
            tracing::warn!("{n}");
        } else {
            tracing::info!("{n}");
        }
    }
    for n in keepalived_option_notes(&args) {
        tracing::info!("{n}");
    }
    if args.dump_conf {
        for line in dump_conf(&loaded.config).lines() {
            tracing::info!(target: "dump-conf", "{line}");
        }
    }
    // Removed when run returns (kept until then).
    let pid_paths: Vec<PathBuf> = [&args.pid, &args.vrrp_pid, &args.checkers_pid]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let _pid_files = ha_agent::runtime::pidfile::PidFiles::write(&pid_paths, std::process::id())?;
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

/// `--check` / `-t[FILE]`: notes and the result on stdout, errors on stderr; with `-tFILE`
/// all of them appended to FILE instead (keepalived sends its stderr there).
fn check(args: &Args) -> ExitCode {
    use std::io::Write;
    let to_file = args.config_test.as_ref().filter(|f| f.as_os_str() != "-");
    let mut file = match to_file {
        None => None,
        Some(f) => match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(f)
        {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!(
                    "ha-agent: cannot open config-test log file {}: {e}",
                    f.display()
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut say = |err: bool, line: String| match file.as_mut() {
        Some(h) => {
            let _ = writeln!(h, "{line}");
        }
        None if err => eprintln!("{line}"),
        None => println!("{line}"),
    };
    // Scripts are vetted as the runner would before a run: what it refuses is an error.
    let (loaded, notes, errors) = match ha_agent::config::load(&args.config) {
        Ok(mut loaded) => {
            let scripts = ha_agent::script::vet::vet(&loaded.config);
            let mut notes = std::mem::take(&mut loaded.notes);
            notes.extend(scripts.warnings);
            (Some(loaded), notes, scripts.errors)
        }
        Err(errors) => (None, Vec::new(), errors),
    };
    for n in &notes {
        say(false, n.to_string());
    }
    match loaded {
        Some(loaded) if errors.is_empty() => {
            for n in keepalived_option_notes(args) {
                say(false, n);
            }
            if args.dump_conf {
                say(false, dump_conf(&loaded.config));
            }
            say(
                false,
                format!("{}: configuration ok", args.config.display()),
            );
            ExitCode::SUCCESS
        }
        _ => {
            for line in ha_agent::config::report_lines(&errors) {
                say(true, line);
            }
            say(
                true,
                format!("{}: {} error(s)", args.config.display(), errors.len()),
            );
            ExitCode::FAILURE
        }
    }
}

/// What keepalived's options that mean something else (or nothing) here do, said once.
fn keepalived_option_notes(args: &Args) -> Vec<String> {
    let mut v = Vec::new();
    if args.dont_fork {
        v.push("-n/--dont-fork: ha-agent never forks; it always runs in the foreground".into());
    }
    if args.snmp {
        v.push("-x/--snmp: ha-agent has no SNMP agent; metrics are served with --metrics-listen (Prometheus) and --otlp-endpoint".into());
    }
    if args.log_console && args.log_file.is_some() {
        v.push("-l/--log-console with --log-file: logging to the file, not the console".into());
    }
    if args.vrrp_only {
        v.push("-P/--vrrp: VRRP only; virtual servers and their checkers are not run".into());
    }
    if args.checkers_only {
        v.push("-C: checkers only; no VRRP instance runs (virtual servers and checkers do)".into());
    }
    if args.vrrp_pid.is_some() || args.checkers_pid.is_some() {
        v.push("-r/-c: ha-agent is one process; each pid file holds its pid".into());
    }
    v
}

/// keepalived's -d: the parsed configuration (secrets are never shown).
fn dump_conf(cfg: &ha_agent::config::Config) -> String {
    format!("{cfg:#?}")
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
