//! A scratch directory for one test, removed on drop.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// `<tmp>/ha-<name>-<pid>`, fresh (an earlier run's is removed first), removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Create it.
    pub fn new(name: &str) -> Result<Scratch> {
        let d = std::env::temp_dir().join(format!("ha-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d)?;
        Ok(Scratch(d))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
