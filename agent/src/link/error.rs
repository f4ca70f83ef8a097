//! Errors of the manager link: persistence of overrides, options, transport.

use std::path::PathBuf;

/// What went wrong in the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The persisted overrides are not valid JSON of the expected shape.
    #[error("{path}: invalid overrides file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A file is not safe to trust (symlink, not a regular file, writable by others...).
    #[error("{path}: {reason}")]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The manager URL is unusable.
    #[error("manager url '{url}': {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Channel setup or connection failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The manager refused or ended the stream.
    #[error("manager: {0}")]
    Status(#[from] tonic::Status),
    /// The engine did not answer (stopped or too slow).
    #[error("engine: {0}")]
    Engine(String),
}
