//! keepalived.conf: lexer, parser, typed model, validation.
//!
//! CONTRACT (used by main.rs, the runtime and the fuzz target; keep these signatures):
//! - `load(path) -> Result<Loaded, Vec<Diagnostic>>`: read, include, parse, validate.
//! - `parse_str(name, text) -> Result<Loaded, Vec<Diagnostic>>`: the same from memory
//!   (includes resolved relative to `name`'s directory, the current directory for a bare
//!   name, as keepalived does for the including file).
//! - `Diagnostic` displays as `file:line: message`.
//!
//! Pipeline: `lexer` (comments, quotes, braces, includes; file:line per token) ->
//! `tree` (generic statements and blocks) -> `keywords` (every keyword known in its
//! block; notes for features not active yet or without effect) -> `build` (typed
//! [`model`]) with `validate` (cross-field rules), collecting every error.

pub mod auth_hmac;
pub mod build;
pub mod keywords;
pub mod lexer;
pub mod model;
pub mod strict;
pub mod tree;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::Config;

/// An error or note tied to a place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Most diagnostics printed for one load; the rest are counted in one line.
pub const MAX_REPORTED: usize = 50;

/// The lines to print for `diags`: at most [`MAX_REPORTED`], then "... and N more".
pub fn report_lines(diags: &[Diagnostic]) -> Vec<String> {
    let mut lines: Vec<String> = diags
        .iter()
        .take(MAX_REPORTED)
        .map(ToString::to_string)
        .collect();
    if diags.len() > MAX_REPORTED {
        lines.push(format!(
            "... and {} more",
            diags.len().saturating_sub(MAX_REPORTED)
        ));
    }
    lines
}

/// A config that parsed and validated, with notes for `--check`.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Notes: keywords with no effect, features parsed but not active yet.
    pub notes: Vec<Diagnostic>,
    /// The typed configuration.
    pub config: Config,
}

/// Read, parse and validate a keepalived.conf.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let text = lexer::read_bounded(path, u64::MAX).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse_str(path, &text)
}

/// Parse and validate config text; `name` is used in diagnostics and as the base for
/// relative includes.
pub fn parse_str(name: &Path, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    parse_with(name, text, &Options::default())
}

/// Options of [`parse_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// keepalived's config-id for `@id` lines (default: the host name up to the first dot).
    pub config_id: Option<String>,
    /// Follow `include` lines (default true; a fuzzer may turn it off).
    pub follow_includes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_id: host_config_id(),
            follow_includes: true,
        }
    }
}

/// keepalived's `-i/--config-id`: set once from the command line, it replaces the host
/// name's default for every load of the process (start, reload, `--cleanup`).
static CONFIG_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Set the config-id for `@id` lines (once); false if already set.
pub fn set_config_id(id: String) -> bool {
    CONFIG_ID.set(id).is_ok()
}

/// keepalived's default config-id: `-i` if given, else the node name up to the first dot.
fn host_config_id() -> Option<String> {
    if let Some(id) = CONFIG_ID.get() {
        return Some(id.clone());
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let first = h.trim().split('.').next()?.to_owned();
    (!first.is_empty()).then_some(first)
}

/// [`parse_str`] with explicit options.
pub fn parse_with(name: &Path, text: &str, opts: &Options) -> Result<Loaded, Vec<Diagnostic>> {
    let lexed = lexer::lex(
        name,
        text,
        lexer::LexOptions {
            config_id: opts.config_id.clone(),
            follow_includes: opts.follow_includes,
        },
    );
    let mut errors = lexed.errors;
    let mut notes = lexed.notes;
    let nodes = tree::parse(lexed.toks, &mut errors);
    keywords::check(&nodes, &keywords::ROOT, false, &mut errors, &mut notes);
    let config = if errors.is_empty() {
        build::build(&nodes, &mut errors, &mut notes)
    } else {
        // Still run the typed checks on the statements that are known, so one run
        // reports as many errors as possible.
        let mut more = Vec::new();
        let known: Vec<tree::Node> = nodes
            .into_iter()
            .filter(|n| keywords::ROOT.lookup(&n.name).is_some())
            .collect();
        let _ = build::build(&known, &mut more, &mut Vec::new());
        errors.extend(more);
        Config::default()
    };
    if errors.is_empty() {
        Ok(Loaded { notes, config })
    } else {
        // File order (stable: same-line errors keep the order they were found in).
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_bounded_with_a_count() {
        let d = |line| Diagnostic {
            file: PathBuf::from("k.conf"),
            line,
            message: "x".into(),
        };
        let few: Vec<Diagnostic> = (1..=3).map(d).collect();
        assert_eq!(report_lines(&few).len(), 3);
        let many: Vec<Diagnostic> = (1..=10_000).map(d).collect();
        let lines = report_lines(&many);
        assert_eq!(lines.len(), MAX_REPORTED + 1);
        assert_eq!(lines[0], "k.conf:1: x");
        assert_eq!(lines.last().map(String::as_str), Some("... and 9950 more"));
    }
}
