//! `--check`'s look at every configured script: the same vetting the runner does before
//! each run ([`ScriptSpec::check`]), reported at the script's file:line.
//!
//! What the runtime refuses (an insecure path under `enable_script_security`) is an
//! error, as keepalived's "Disabling track script ... due to insecure" makes `-t` fail;
//! what it only warns about (a missing or non-executable script, an insecure path with
//! security off) is a warning. Nothing here runs a script.

use super::{ScriptDefaults, ScriptError, ScriptSpec};
use crate::config::model::{Config, Notify, NotifyScript, Origin, ScriptUser};
use crate::config::Diagnostic;

/// What vetting the scripts of a config found.
#[derive(Debug, Default)]
pub struct Vetted {
    /// Scripts the runtime would refuse to run.
    pub errors: Vec<Diagnostic>,
    /// Scripts that run with a warning, or not at all without being a security matter.
    pub warnings: Vec<Diagnostic>,
}

/// Vet every `vrrp_script` and every notify script of instances and sync groups.
pub fn vet(cfg: &Config) -> Vetted {
    let d = ScriptDefaults::from_global(&cfg.global);
    let mut out = Vetted::default();
    for s in &cfg.vrrp_scripts {
        if let Some(cmd) = &s.script {
            let what = format!("track script {}", s.name);
            one(&mut out, &d, &what, cmd, s.user.as_ref(), &s.origin);
        }
    }
    for i in &cfg.vrrp_instances {
        notify(&mut out, &d, &format!("({})", i.name), &i.notify);
    }
    for g in &cfg.sync_groups {
        notify(&mut out, &d, &format!("sync group {}", g.name), &g.notify);
    }
    out
}

fn notify(out: &mut Vetted, d: &ScriptDefaults, owner: &str, n: &Notify) {
    let all: [(&str, &Option<NotifyScript>); 6] = [
        ("notify_master", &n.master),
        ("notify_backup", &n.backup),
        ("notify_fault", &n.fault),
        ("notify_stop", &n.stop),
        ("notify", &n.any),
        ("notify_master_rx_lower_pri", &n.master_rx_lower_pri),
    ];
    for (kw, s) in all {
        if let Some(s) = s {
            let what = format!("{owner} {kw} script");
            one(out, d, &what, &s.command, s.user.as_ref(), &s.origin);
        }
    }
}

fn one(
    out: &mut Vetted,
    d: &ScriptDefaults,
    what: &str,
    cmd: &str,
    user: Option<&ScriptUser>,
    at: &Origin,
) {
    let diag = |message: String| Diagnostic {
        file: at.file.to_path_buf(),
        line: at.line,
        message,
    };
    match ScriptSpec::from_command(cmd, user, d).and_then(|spec| spec.check()) {
        Ok(checked) => {
            if let Some(why) = checked.insecure {
                out.warnings.push(diag(format!(
                    "warning: {what}: {why} (runs anyway: enable_script_security is off)"
                )));
            }
        }
        Err(e @ ScriptError::Insecure { .. }) => out.errors.push(diag(format!(
            "{what} disabled due to insecure path (enable_script_security): {e}"
        ))),
        Err(e) => out
            .warnings
            .push(diag(format!("warning: {what} will not run: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config_with_script(dir: &std::path::Path, security: bool) -> Config {
        let script = dir.join("chk.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod script");
        let text = format!(
            "global_defs {{\n{}script_user root\n}}\nvrrp_script chk {{\nscript {}\n}}\n",
            if security {
                "enable_script_security\n"
            } else {
                ""
            },
            script.display()
        );
        crate::config::parse_str(&dir.join("k.conf"), &text)
            .expect("config parses")
            .config
    }

    #[test]
    fn world_writable_directory_is_an_error_with_security_on() {
        // Only root-owned paths count as secure: as another user every path is insecure
        // for a root script, which still exercises the same verdict.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod dir");
        let v = vet(&config_with_script(dir.path(), true));
        assert_eq!(v.errors.len(), 1, "{v:?}");
        let e = v.errors[0].to_string();
        assert!(
            e.starts_with(&format!("{}:5: ", dir.path().join("k.conf").display())),
            "{e}"
        );
        assert!(
            e.contains("track script chk disabled due to insecure path"),
            "{e}"
        );
        assert!(e.contains("writable by others"), "{e}");
        let off = vet(&config_with_script(dir.path(), false));
        assert!(off.errors.is_empty(), "{off:?}");
        assert_eq!(off.warnings.len(), 1, "{off:?}");
    }

    #[test]
    fn missing_script_is_a_warning() {
        let cfg = crate::config::parse_str(
            std::path::Path::new("k.conf"),
            "vrrp_script chk {\nscript /nonexistent/ha-check\n}\n",
        )
        .expect("config parses")
        .config;
        let v = vet(&cfg);
        assert!(v.errors.is_empty(), "{v:?}");
        assert_eq!(v.warnings.len(), 1, "{v:?}");
        assert!(v.warnings[0]
            .to_string()
            .starts_with("k.conf:1: warning: track script chk will not run"));
    }
}
