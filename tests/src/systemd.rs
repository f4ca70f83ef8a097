//! systemd unit checks shared by tests/systemd.rs and tests/packaging.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// `systemd-analyze verify` on `units`: Ok only with exit 0 and not one complaint about
/// them (unknown keys and bad values are warnings with exit 0). Extra args go first.
pub fn verify(units: &[PathBuf], extra: &[&str], env: &[(&str, &Path)]) -> Result<()> {
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").args(extra).args(units);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .context("systemd-analyze (apt-get install systemd)")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ha-agent") || l.contains("ha-manager"))
        .collect();
    ensure!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify failed ({}):\n{err}",
        out.status
    );
    Ok(())
}
