//! The safe script runner shared by trackers (`vrrp_script`) and notify scripts.
//!
//! Layout:
//! - [`split`]: keepalived's splitting of a command line into argv (quotes, escapes).
//! - [`user`]: `user [group]` to uid/gid, keepalived's default script user.
//! - [`security`]: PATH search, executable check, `enable_script_security` path check.
//! - [`run`]: one run: execve without a shell, own process group, scrubbed environment,
//!   bounded output capture, SIGTERM then SIGKILL to the group at the timeout, reaping.
//! - [`vet`]: `--check`'s vetting of every configured script, at its file:line.
//!
//! Nothing here blocks a caller's task for long: [`run::run`] is async and only waits on
//! the child; the checks are a few `stat` calls.

pub mod run;
pub mod security;
pub mod split;
pub mod user;
pub mod vet;

use std::path::PathBuf;

use thiserror::Error;

pub use run::{become_subreaper, run, run_with, Captured, Exit, RunOptions, ScriptResult};
pub use security::{ExecMode, SCRIPT_PATH};
pub use split::{split_args, SplitError};
pub use user::{RunAs, ScriptDefaults, UserError};

use crate::config::model::ScriptUser;

/// Why a script cannot be set up or run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScriptError {
    /// The command line does not split.
    #[error("bad command line: {0}")]
    Split(#[from] SplitError),
    /// The user or group does not resolve.
    #[error(transparent)]
    User(#[from] UserError),
    /// The file (or a path component) is missing or unreadable.
    #[error("script {script} cannot be accessed: {reason}")]
    NotFound {
        /// The script as configured.
        script: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A directory in the path is not a directory, or the file is not a regular file.
    #[error("script {script}: wrong file type at {component}")]
    WrongFileType {
        /// The script as configured.
        script: PathBuf,
        /// The offending path component.
        component: PathBuf,
    },
    /// Not executable by the user it would run as.
    #[error("script {script} is not executable by {user}")]
    NotExecutable {
        /// The script as configured.
        script: PathBuf,
        /// The user name.
        user: String,
    },
    /// `enable_script_security`: a root script on a path a non-root user can change.
    #[error("insecure script {script}: {component} {reason}")]
    Insecure {
        /// The script as configured.
        script: PathBuf,
        /// The offending path component (the file or one of its directories).
        component: PathBuf,
        /// Owner or write permission at fault.
        reason: String,
    },
    /// fork/exec failed.
    #[error("cannot start {script}: {reason}")]
    Spawn {
        /// The program.
        script: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// A script ready to run: argv, credentials and the security setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSpec {
    /// Program and arguments (argv[0] is the configured path or command name).
    pub argv: Vec<String>,
    /// Credentials of the run.
    pub run_as: RunAs,
    /// `enable_script_security`.
    pub security: bool,
}

impl ScriptSpec {
    /// From a configured command line and optional own `user [group]`, with the global
    /// defaults (keepalived's `notify_script_init` / `vrrp_script` handling).
    pub fn from_command(
        command: &str,
        own_user: Option<&ScriptUser>,
        defaults: &ScriptDefaults,
    ) -> Result<ScriptSpec, ScriptError> {
        Ok(ScriptSpec {
            argv: split_args(command)?,
            run_as: defaults.run_as(own_user)?,
            security: defaults.security,
        })
    }

    /// The same script with arguments appended (keepalived appends the generic notify
    /// arguments and the FIFO name this way).
    pub fn with_args<I: IntoIterator<Item = String>>(&self, extra: I) -> ScriptSpec {
        let mut s = self.clone();
        s.argv.extend(extra);
        s
    }

    /// Locate and vet the program now (keepalived does this at config load; the runner
    /// repeats it before every run).
    pub fn check(&self) -> Result<security::Checked, ScriptError> {
        let argv0 = self.argv.first().ok_or(SplitError::Empty)?;
        security::check(argv0, &self.run_as, self.security)
    }

    /// The command line for logs.
    pub fn display(&self) -> String {
        split::shell_quote(&self.argv)
    }
}
