//! hactl: the operator CLI of ha-manager.
//!
//! Layout:
//! - `cli`: clap definitions and the pure value parsers (priority, VIP, URL + TLS rules).
//! - `client`: connecting to the manager's `Control` service (plaintext or mTLS).
//! - `commands`: one async function per subcommand.
//! - `format`: pure renderers (status table, JSON shapes, event lines, command results).
//! - `timespec`: RFC 3339 and relative times, durations.
//! - `error`: errors and exit codes (0 ok, 1 failed or refused, 2 usage, 3 unreachable).
//! - `reqid`: random request ids.
//! - `trace`: one OTLP trace per command; W3C traceparent on every call.

mod cli;
mod client;
mod commands;
mod error;
mod format;
mod reqid;
mod timespec;
mod trace;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    if let Some(code) = ha_clidoc::maybe_generate(cli::Cli::command, "1") {
        return code;
    }
    // clap exits 2 on usage errors and 0 on --help/--version by itself.
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hactl: error: cannot start the runtime: {e}");
            return ExitCode::from(error::EXIT_FAILED);
        }
    };
    let otlp = cli.conn.otlp_endpoint.clone();
    let name = trace::command_name(&cli.command);
    match rt.block_on(trace::traced(otlp.as_deref(), name, commands::run(cli))) {
        Ok(()) | Err(error::CtlError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            let label = if e.exit_code() == error::EXIT_USAGE {
                "usage error"
            } else {
                "error"
            };
            eprintln!("hactl: {label}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
