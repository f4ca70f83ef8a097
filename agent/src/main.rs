//! ha-agent binary: argument parsing and process edges (anyhow only here).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ha_agent::runtime::engine::RunOptions;

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
    /// Directory for runtime state (stats.json on SIGUSR2).
    #[arg(long, default_value = "/run/ha-agent")]
    state_dir: PathBuf,
    /// Append logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return check(&args);
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
    ha_agent::runtime::logging::init(args.log_file.as_deref())?;
    for n in &loaded.notes {
        tracing::info!("{n}");
    }
    // Scripts we kill leave grandchildren; as a subreaper we collect them (PID 1 may not).
    if let Err(e) = ha_agent::script::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
    let plan = ha_agent::runtime::plan::build(&loaded.config, args.node.clone());
    // One thread: the engine owns every instance anyway, and a single-threaded runtime
    // saves the cross-thread wake-ups of thousands of adverts a second.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(ha_agent::runtime::engine::run(RunOptions {
        plan,
        state_dir: args.state_dir,
        config_path: args.config,
        node_override: args.node,
        link: None,
        initial: None,
    }))?;
    Ok(())
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
