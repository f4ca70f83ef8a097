//! Who a script runs as: `user [group]` names resolved to ids (getpwnam_r/getgrnam_r),
//! and keepalived's default script user.
//!
//! keepalived: a script's own `user`, else global `script_user`, else `keepalived_script`
//! if that user exists, else the daemon's own uid/gid. With `enable_script_security` a
//! missing `keepalived_script` (and no `script_user`) disables scripts without a user.

use std::ffi::{CStr, CString};

use thiserror::Error;

use crate::config::model::{GlobalDefs, ScriptUser};

/// The user keepalived runs scripts as by default, if it exists.
pub const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

/// Resolved credentials of a script run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id (the only group the script keeps).
    pub gid: u32,
    /// Name, for logs.
    pub name: String,
}

impl RunAs {
    /// The daemon's own effective uid/gid.
    pub fn current() -> RunAs {
        let (uid, gid) = effective_ids();
        RunAs {
            uid,
            gid,
            name: if uid == 0 {
                "root".into()
            } else {
                format!("uid {uid}")
            },
        }
    }
    /// Whether keepalived would consider this run privileged (uid or gid 0).
    pub fn is_root(&self) -> bool {
        self.uid == 0 || self.gid == 0
    }
}

/// A user or group name that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserError {
    /// No such user.
    #[error("script user '{0}' does not exist")]
    NoUser(String),
    /// No such group.
    #[error("script group '{0}' does not exist")]
    NoGroup(String),
    /// The lookup itself failed (errno).
    #[error("cannot resolve '{0}': errno {1}")]
    Lookup(String, i32),
    /// With `enable_script_security`, no `script_user` and no `keepalived_script` user.
    #[error("unable to set default user {DEFAULT_SCRIPT_USER} for script")]
    NoDefault,
}

#[allow(unsafe_code)]
fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid take no arguments, cannot fail and touch no memory of ours.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Look a user up: `Ok(None)` if it does not exist.
#[allow(unsafe_code)]
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>, UserError> {
    let cname = CString::new(name).map_err(|_| UserError::NoUser(name.to_owned()))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: `pwd` is plain old data written by getpwnam_r; `buf` outlives the call
        // and its real length is passed; `result` is a valid out pointer. The strings in
        // `pwd` point into `buf` and are not used after it is dropped.
        let (rc, found, uid, gid) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), pwd.pw_uid, pwd.pw_gid)
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(UserError::Lookup(name.to_owned(), rc));
        }
        return Ok(found.then_some((uid, gid)));
    }
}

/// Look a group up: `Ok(None)` if it does not exist.
#[allow(unsafe_code)]
fn lookup_group(name: &str) -> Result<Option<u32>, UserError> {
    let cname = CString::new(name).map_err(|_| UserError::NoGroup(name.to_owned()))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: as in `lookup_user`: `grp` is written by getgrnam_r into our buffer,
        // which outlives the call; only the numeric gid is read afterwards.
        let (rc, found, gid) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), grp.gr_gid)
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(UserError::Lookup(name.to_owned(), rc));
        }
        return Ok(found.then_some(gid));
    }
}

/// Resolve `user [group]` (the group defaults to the user's primary group).
pub fn resolve(u: &ScriptUser) -> Result<RunAs, UserError> {
    let (uid, mut gid) = lookup_user(&u.user)?.ok_or_else(|| UserError::NoUser(u.user.clone()))?;
    if let Some(g) = &u.group {
        gid = lookup_group(g)?.ok_or_else(|| UserError::NoGroup(g.clone()))?;
    }
    Ok(RunAs {
        uid,
        gid,
        name: match &u.group {
            Some(g) => format!("{}:{g}", u.user),
            None => u.user.clone(),
        },
    })
}

/// Script settings from `global_defs` shared by every script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptDefaults {
    /// Default credentials; `Err` when scripts without their own user cannot run.
    pub default_user: Result<RunAs, UserError>,
    /// `enable_script_security`: refuse root scripts on a non-root-writable path.
    pub security: bool,
}

impl ScriptDefaults {
    /// keepalived's rules: `script_user`, else `keepalived_script`, else ourselves
    /// (but not with `enable_script_security`).
    pub fn from_global(g: &GlobalDefs) -> ScriptDefaults {
        let default_user = match &g.script_user {
            Some(u) => resolve(u),
            None => match lookup_user(DEFAULT_SCRIPT_USER) {
                Ok(Some((uid, gid))) => Ok(RunAs {
                    uid,
                    gid,
                    name: DEFAULT_SCRIPT_USER.into(),
                }),
                _ if g.enable_script_security => Err(UserError::NoDefault),
                _ => Ok(RunAs::current()),
            },
        };
        ScriptDefaults {
            default_user,
            security: g.enable_script_security,
        }
    }

    /// Credentials for a script with an optional own `user [group]`.
    pub fn run_as(&self, own: Option<&ScriptUser>) -> Result<RunAs, UserError> {
        match own {
            Some(u) => resolve(u),
            None => self.default_user.clone(),
        }
    }
}

/// Name of a uid, for messages (the number if unknown).
#[allow(unsafe_code)]
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes into `pwd` and `buf` (length passed); `pw_name` points
    // into `buf`, which is alive while we copy the name out.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        }
    }
    uid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_resolve() {
        let root = resolve(&ScriptUser {
            user: "root".into(),
            group: None,
        })
        .unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.is_root());
        let nobody = resolve(&ScriptUser {
            user: "nobody".into(),
            group: Some("root".into()),
        })
        .unwrap();
        assert_ne!(nobody.uid, 0);
        assert_eq!(nobody.gid, 0);
        assert!(
            nobody.is_root(),
            "gid 0 counts as privileged, as in keepalived"
        );
        assert_eq!(user_name(0), "root");
    }

    #[test]
    fn unknown_names_fail() {
        let e = resolve(&ScriptUser {
            user: "no-such-user-ha".into(),
            group: None,
        });
        assert_eq!(e, Err(UserError::NoUser("no-such-user-ha".into())));
        let e = resolve(&ScriptUser {
            user: "root".into(),
            group: Some("no-such-group-ha".into()),
        });
        assert_eq!(e, Err(UserError::NoGroup("no-such-group-ha".into())));
    }

    #[test]
    fn defaults_follow_keepalived() {
        let mut g = GlobalDefs::default();
        let d = ScriptDefaults::from_global(&g);
        assert!(d.default_user.is_ok());
        g.enable_script_security = true;
        if lookup_user(DEFAULT_SCRIPT_USER).unwrap().is_none() {
            assert_eq!(
                ScriptDefaults::from_global(&g).default_user,
                Err(UserError::NoDefault)
            );
        }
        g.script_user = Some(ScriptUser {
            user: "root".into(),
            group: None,
        });
        assert_eq!(ScriptDefaults::from_global(&g).default_user.unwrap().uid, 0);
    }
}
