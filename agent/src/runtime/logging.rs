//! Log setup: human console lines on stderr (or appended to `--log-file`), filter from
//! `RUST_LOG` (default `info`).

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Install the global subscriber.
pub fn init(log_file: Option<&Path>) -> Result<(), LogError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| LogError::File {
                    path: p.display().to_string(),
                    source,
                })?;
            builder.with_ansi(false).with_writer(Mutex::new(f)).init();
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}
