//! Helpers shared by the track_* and notify_* tests: temp dirs and script files.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_agent::script::{self, RunAs, ScriptSpec};
use tokio::sync::mpsc::UnboundedReceiver;

/// A temp dir under /tmp (root-owned, sticky), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ha-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Write an executable script.
pub fn write_script(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A root script spec with enable_script_security on.
pub fn spec(cmd: &str) -> ScriptSpec {
    ScriptSpec {
        argv: script::split_args(cmd).unwrap(),
        run_as: RunAs {
            uid: 0,
            gid: 0,
            name: "root".into(),
        },
        security: true,
    }
}

/// Next message, failing the test after a generous bound (not a timing assert).
pub async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no message within 10 s")
        .expect("channel closed")
}

/// Replace a file's content atomically (write + rename), so a poller never sees half.
pub fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}
