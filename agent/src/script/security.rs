//! Where a script is and whether it may run: PATH search, executable check, and
//! keepalived's `enable_script_security` path check.
//!
//! keepalived (`check_script_secure`): a script that runs with uid or gid 0 (or is
//! set-uid/gid root) must not be replaceable by a non-root user: the file and every
//! directory from `/` down must be owned by root, and neither a regular file nor a
//! directory without the sticky bit may be writable by a non-root group or by others.
//! Both the path as resolved (`realpath`) and, for a symlinked file name, the link's own
//! path are checked. With security off an unsafe path is only reported; with it on the
//! script is refused, naming the offending component.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::user::{user_name, RunAs};
use super::ScriptError;

/// The only PATH a script sees, and the one used to find a bare command name.
pub const SCRIPT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How the command is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecMode {
    /// execve of the file itself (an ELF binary or a `#!` script).
    Direct(PathBuf),
    /// A file without `#!`: run as `/bin/sh FILE ARGS...` (what execvp does on ENOEXEC,
    /// and what keepalived does through system()).
    ShellFile(PathBuf),
    /// keepalived's redirection-only test (`<` then `/...`): `/bin/sh -c LINE`.
    ShellLine,
}

/// The result of checking a script before a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// How to start it.
    pub mode: ExecMode,
    /// An unsafe path found while security is off (reported, not enforced).
    pub insecure: Option<String>,
}

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// keepalived's `is_executable` for a uid/gid (root needs any x bit).
pub fn is_executable(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    (uid == 0 && mode & 0o111 != 0)
        || (uid == owner && mode & 0o100 != 0)
        || (uid != owner
            && ((gid == group && mode & 0o010 != 0) || (gid != group && mode & 0o001 != 0)))
}

/// Why one path component is unsafe for a root script, if it is (keepalived's rule).
pub fn unsafe_reason(
    owner: u32,
    group: u32,
    mode: u32,
    is_dir: bool,
    is_file: bool,
) -> Option<String> {
    if owner != 0 {
        return Some(format!("is owned by non-root user {}", user_name(owner)));
    }
    let guarded = (is_dir && mode & S_ISVTX == 0) || is_file;
    if guarded && group != 0 && mode & 0o020 != 0 {
        return Some(format!("is writable by non-root group {group}"));
    }
    if guarded && mode & 0o002 != 0 {
        return Some("is writable by others".into());
    }
    None
}

/// Every prefix of an absolute path, `/` first, the path itself last.
fn prefixes(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => cur.push("/"),
            Component::Normal(n) => cur.push(n),
            _ => continue,
        }
        out.push(cur.clone());
    }
    out
}

/// Check one absolute path component by component (lstat, no symlink following).
fn check_chain(script: &Path, path: &Path) -> Result<(), ScriptError> {
    let all = prefixes(path);
    for (i, p) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        let md = fs::symlink_metadata(p).map_err(|e| ScriptError::NotFound {
            script: script.to_path_buf(),
            reason: format!("{}: {e}", p.display()),
        })?;
        let ft = md.file_type();
        if (!last && !ft.is_dir()) || (last && !ft.is_file() && !ft.is_symlink()) {
            return Err(ScriptError::WrongFileType {
                script: script.to_path_buf(),
                component: p.clone(),
            });
        }
        if let Some(reason) =
            unsafe_reason(md.uid(), md.gid(), md.mode(), ft.is_dir(), ft.is_file())
        {
            return Err(ScriptError::Insecure {
                script: script.to_path_buf(),
                component: p.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// Find a bare command name in [`SCRIPT_PATH`] (a regular file executable by `who`).
fn path_search(name: &str, who: &RunAs) -> Option<PathBuf> {
    SCRIPT_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                m.is_file() && is_executable(m.mode(), m.uid(), m.gid(), who.uid, who.gid)
            })
        })
}

/// Locate and vet `argv0` for a run as `who`; `security` is `enable_script_security`.
pub fn check(argv0: &str, who: &RunAs, security: bool) -> Result<Checked, ScriptError> {
    if let Some(rest) = argv0.strip_prefix('<') {
        if rest.trim_start_matches([' ', '\t']).starts_with('/') {
            return Ok(Checked {
                mode: ExecMode::ShellLine,
                insecure: None,
            });
        }
    }
    let given = if argv0.contains('/') {
        PathBuf::from(argv0)
    } else {
        path_search(argv0, who).ok_or_else(|| ScriptError::NotFound {
            script: PathBuf::from(argv0),
            reason: format!("not found in {SCRIPT_PATH}"),
        })?
    };
    let not_found = |e: std::io::Error| ScriptError::NotFound {
        script: given.clone(),
        reason: e.to_string(),
    };
    let real = fs::canonicalize(&given).map_err(not_found)?;
    let md = fs::metadata(&real).map_err(not_found)?;
    if !md.is_file() {
        return Err(ScriptError::WrongFileType {
            script: given.clone(),
            component: real,
        });
    }
    let mode = md.permissions().mode();
    if !is_executable(mode, md.uid(), md.gid(), who.uid, who.gid) {
        return Err(ScriptError::NotExecutable {
            script: given,
            user: who.name.clone(),
        });
    }
    let privileged = who.is_root()
        || (md.uid() == 0 && mode & 0o100 != 0 && mode & S_ISUID != 0)
        || (md.gid() == 0 && mode & 0o010 != 0 && mode & S_ISGID != 0);
    let mut insecure = None;
    if privileged {
        // The link's own path (parent resolved, file name kept), then the target.
        let link = match (given.parent(), given.file_name()) {
            (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => fs::canonicalize(dir)
                .map(|d| d.join(name))
                .map_err(not_found)?,
            (_, Some(name)) => fs::canonicalize(".")
                .map(|d| d.join(name))
                .map_err(not_found)?,
            _ => real.clone(),
        };
        let mut verdict = check_chain(&given, &link);
        if verdict.is_ok() && link != real {
            verdict = check_chain(&given, &real);
        }
        match verdict {
            Ok(()) => {}
            Err(e @ ScriptError::Insecure { .. }) if !security => insecure = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let mut head = [0u8; 4];
    let n = fs::File::open(&real)
        .and_then(|mut f| f.read(&mut head))
        .map_err(not_found)?;
    let mode = if head[..n].starts_with(b"#!") || head[..n].starts_with(b"\x7fELF") {
        ExecMode::Direct(given)
    } else {
        ExecMode::ShellFile(given)
    };
    Ok(Checked { mode, insecure })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_table() {
        // mode, owner, group, uid, gid, expected
        let cases = [
            (0o700, 5, 5, 0, 0, true),
            (0o600, 0, 0, 0, 0, false),
            (0o700, 5, 5, 5, 5, true),
            (0o070, 5, 6, 7, 6, true),
            (0o070, 5, 6, 5, 6, false),
            (0o001, 5, 6, 7, 8, true),
            (0o010, 5, 6, 7, 8, false),
        ];
        for (mode, owner, group, uid, gid, want) in cases {
            assert_eq!(
                is_executable(mode, owner, group, uid, gid),
                want,
                "{mode:o} {uid}"
            );
        }
    }

    #[test]
    fn unsafe_table() {
        // owner, group, mode, dir, file, unsafe?
        let cases = [
            (0, 0, 0o755, true, false, false),
            (0, 0, 0o775, true, false, false),
            (0, 7, 0o775, true, false, true),
            (0, 0, 0o777, true, false, true),
            (0, 0, 0o1777, true, false, false),
            (0, 0, 0o757, false, true, true),
            (0, 7, 0o1775, false, true, true),
            (1000, 0, 0o755, false, true, true),
            (0, 0, 0o777, false, false, false),
        ];
        for (owner, group, mode, dir, file, want) in cases {
            assert_eq!(
                unsafe_reason(owner, group, mode, dir, file).is_some(),
                want,
                "{mode:o}"
            );
        }
    }

    #[test]
    fn prefixes_start_at_root() {
        let p = prefixes(Path::new("/a//b/c"));
        assert_eq!(
            p,
            vec![
                PathBuf::from("/"),
                "/a".into(),
                "/a/b".into(),
                "/a/b/c".into()
            ]
        );
    }

    #[test]
    fn system_binaries_pass() {
        let root = RunAs {
            uid: 0,
            gid: 0,
            name: "root".into(),
        };
        let c = check("true", &root, true).unwrap();
        assert!(matches!(c.mode, ExecMode::Direct(ref p) if p.ends_with("true")));
        assert!(check("</dev/tcp/192.0.2.1/80", &root, true).unwrap().mode == ExecMode::ShellLine);
        assert!(matches!(
            check("no-such-cmd-ha", &root, true),
            Err(ScriptError::NotFound { .. })
        ));
    }
}
