//! A small tmpfs mounted for one test (a disk that can be filled), lazily unmounted on
//! drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

/// A mounted tmpfs.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (mount's syntax: `256k`, `40m`) on `dir`, creating it.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        crate::netns::run(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &dir.to_string_lossy(),
        ]))?;
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Fill it: a file `name` that takes every free block (until ENOSPC). Returns its
    /// path; removing it frees the space.
    pub fn fill(&self, name: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        // dd stops at ENOSPC and exits non-zero: that is the point.
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path.display()))
            .arg("bs=4k")
            .output()?;
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
