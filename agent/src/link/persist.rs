//! The override set in force, persisted in `--state-dir/overrides.json` so that a
//! restarted agent re-applies it before its instances start, also with no manager.
//!
//! keepalived's CVE-2018-19044 lesson: never follow a symlink, never write in place.
//! Writes go to a fresh temp file in the same directory (O_CREAT|O_EXCL|O_NOFOLLOW, 0600),
//! fsync, rename over the final name, fsync the directory. Reads refuse symlinks,
//! non-regular files, files writable by group or others, and oversized files.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bridge::OverrideSet;
use super::error::LinkError;

/// File name inside the state directory.
pub const FILE_NAME: &str = "overrides.json";

/// Larger files are refused (a set of overrides is a few KiB).
const MAX_SIZE: u64 = 4 << 20;

/// On-disk envelope, versioned.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    format: u32,
    set: OverrideSet,
}

/// Path of the persisted set in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The persisted override set, or `None` if there is none. Call at start, before the
/// engine starts instances, and hand the set to the engine.
pub fn load_persisted(state_dir: &Path) -> Result<Option<OverrideSet>, LinkError> {
    let p = path(state_dir);
    let io = |source| LinkError::Io {
        path: p.clone(),
        source,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(LinkError::Insecure {
                path: p,
                reason: "is a symlink, refusing to follow it".into(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    let insecure = |reason: &str| LinkError::Insecure {
        path: p.clone(),
        reason: reason.to_string(),
    };
    if !meta.is_file() {
        return Err(insecure("not a regular file"));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(insecure("writable by group or others"));
    }
    if meta.len() > MAX_SIZE {
        return Err(insecure("larger than 4 MiB"));
    }
    let mut text = String::new();
    file.take(MAX_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    let env: Envelope = serde_json::from_str(&text).map_err(|source| LinkError::Corrupt {
        path: p.clone(),
        source,
    })?;
    if env.format != 1 {
        return Err(insecure(&format!("unknown format {}", env.format)));
    }
    Ok(Some(env.set))
}

/// Persist `set` atomically as the override set in force.
pub fn store(state_dir: &Path, set: &OverrideSet) -> Result<(), LinkError> {
    let dir_err = |source| LinkError::Io {
        path: state_dir.to_path_buf(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(dir_err)?;
    let text = serde_json::to_string_pretty(&Envelope {
        format: 1,
        set: set.clone(),
    })
    .map_err(|source| LinkError::Corrupt {
        path: path(state_dir),
        source,
    })?;
    let tmp = state_dir.join(format!(".{FILE_NAME}.{}.tmp", super::random::new_boot_id()));
    let result = write_new(&tmp, text.as_bytes()).and_then(|()| {
        std::fs::rename(&tmp, path(state_dir)).map_err(|source| LinkError::Io {
            path: path(state_dir),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(dir_err)
}

/// Write a brand-new 0600 file, refusing anything already there (symlinks included).
fn write_new(p: &Path, bytes: &[u8]) -> Result<(), LinkError> {
    let io = |source| LinkError::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(io)?;
    // The umask can only remove bits; make it exactly 0600 anyway.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::bridge::VipChange;
    use crate::units::Priority;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ha-link-persist-{tag}-{}",
            crate::link::random::new_boot_id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn set() -> OverrideSet {
        let mut s = OverrideSet {
            generation: 7,
            request_id: "req-7".into(),
            ..OverrideSet::default()
        };
        s.priorities.insert("VI_1".into(), Priority(150));
        s.vips.push(VipChange {
            instance: "VI_1".into(),
            addr: "2001:db8::10".parse().unwrap(),
            prefix_len: 64,
            add: true,
        });
        s
    }

    #[test]
    fn round_trip_0600_and_replace() {
        let d = tmpdir("rt");
        assert_eq!(load_persisted(&d).unwrap(), None);
        store(&d, &set()).unwrap();
        let mode = std::fs::metadata(path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_persisted(&d).unwrap(), Some(set()));
        let mut s2 = set();
        s2.generation = 8;
        store(&d, &s2).unwrap();
        assert_eq!(load_persisted(&d).unwrap().unwrap().generation, 8);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn creates_missing_state_dir() {
        let d = tmpdir("mk").join("sub");
        store(&d, &set()).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        std::fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_symlinks_loose_modes_and_garbage() {
        let d = tmpdir("bad");
        let target = d.join("elsewhere");
        std::fs::write(&target, "{}").unwrap();
        std::os::unix::fs::symlink(&target, path(&d)).unwrap();
        let e = load_persisted(&d).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        // Storing replaces the link itself, never writes through it.
        store(&d, &set()).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        assert_eq!(load_persisted(&d).unwrap(), Some(set()));

        std::fs::set_permissions(path(&d), std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load_persisted(&d).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");

        std::fs::remove_file(path(&d)).unwrap();
        write_new(&path(&d), b"{not json").unwrap();
        let e = load_persisted(&d).unwrap_err();
        assert!(matches!(e, LinkError::Corrupt { .. }), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
