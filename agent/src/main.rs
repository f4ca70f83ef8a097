//! ha-agent binary: argument parsing and process edges (anyhow only here).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return check(&args);
    }
    ExitCode::SUCCESS
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
