//! keepalived's `-p/--pid`, `-r/--vrrp_pid` and `-c/--checkers_pid` files. ha-agent is one
//! process doing what keepalived's parent, VRRP child and checker child do, so each file
//! it is given holds this process's pid. Written atomically (a 0644 temp file beside it,
//! O_NOFOLLOW, renamed), removed at exit if it still holds our pid.
//! Not here: the choice of paths (main.rs).

use std::fs;
use std::path::{Path, PathBuf};

/// The pid files written at start; dropping it removes them.
#[derive(Debug, Default)]
pub struct PidFiles {
    /// The files, each written once.
    paths: Vec<PathBuf>,
    /// The pid they hold.
    pid: u32,
}

impl PidFiles {
    /// Write `pid` to every path (duplicates once); on error, the ones written are removed.
    pub fn write(paths: &[PathBuf], pid: u32) -> std::io::Result<PidFiles> {
        let mut out = PidFiles {
            paths: Vec::new(),
            pid,
        };
        for p in paths {
            if out.paths.contains(p) {
                continue;
            }
            write_one(p, pid).map_err(|e| {
                std::io::Error::new(e.kind(), format!("pid file {}: {e}", p.display()))
            })?;
            out.paths.push(p.clone());
        }
        Ok(out)
    }

    /// The files written.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Drop for PidFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            // Another instance may have taken the path over since: leave its file.
            let ours = fs::read_to_string(p)
                .map(|t| t.trim() == self.pid.to_string())
                .unwrap_or(false);
            if ours {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn write_one(path: &Path, pid: u32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::runtime::stats::write_atomic(
        &dir,
        &name.to_string_lossy(),
        format!("{pid}\n").as_bytes(),
        0o644,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn written_once_each_and_removed_only_if_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("keepalived.pid");
        let vrrp = dir.path().join("vrrp.pid");
        let files = PidFiles::write(&[main.clone(), vrrp.clone(), main.clone()], 4242).unwrap();
        assert_eq!(files.paths().len(), 2);
        assert_eq!(fs::read_to_string(&main).unwrap(), "4242\n");
        assert_eq!(fs::read_to_string(&vrrp).unwrap(), "4242\n");
        // Taken over by another process: kept.
        fs::write(&vrrp, "77\n").unwrap();
        drop(files);
        assert!(!main.exists());
        assert_eq!(fs::read_to_string(&vrrp).unwrap(), "77\n");
        let err = PidFiles::write(&[dir.path().join("no/such/dir/x.pid")], 1).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/x.pid"), "{err}");
    }
}
