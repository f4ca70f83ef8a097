//! The safe script runner against real processes: argv passing without a shell, a
//! scrubbed environment, a hung script killed with its whole process group, and
//! `enable_script_security` refusing a root script on a world-writable path.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_agent::script::{self, Exit, RunAs, RunOptions, ScriptError, ScriptSpec};

/// A temp dir under /tmp (root-owned, sticky), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ha-track-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_script(path: &Path, body: &str, mode: u32) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn root() -> RunAs {
    RunAs {
        uid: 0,
        gid: 0,
        name: "root".into(),
    }
}

fn spec(cmd: &str, security: bool) -> ScriptSpec {
    ScriptSpec {
        argv: script::split_args(cmd).unwrap(),
        run_as: root(),
        security,
    }
}

#[tokio::test]
async fn arguments_reach_the_script_verbatim_and_env_is_scrubbed() {
    let d = TempDir::new("args");
    let out = d.0.join("out");
    let s = d.0.join("args.sh");
    write_script(
        &s,
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done > {o}\nenv | sort >> {o}\nread x || echo stdin-empty >> {o}\necho to-stdout\necho to-stderr >&2\nexit 3\n",
            o = out.display()
        ),
        0o755,
    );
    std::env::set_var("HA_TRACK_SECRET", "leak");
    let cmd = format!("{} 'a b' \"c;d\" $HOME '' \\x41", s.display());
    let r = script::run(&spec(&cmd, true), Duration::from_secs(5)).await;
    assert_eq!(r.exit, Exit::Code(3), "{r:?}");
    assert!(!r.timed_out);
    assert!(!r.success());
    assert_eq!(r.stdout.text(), "to-stdout\n");
    assert_eq!(r.stderr.text(), "to-stderr\n");
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        "[a b]\n[c;d]\n[$HOME]\n[]\n[A]\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nPWD=/\nstdin-empty\n"
    );
}

#[tokio::test]
async fn a_script_without_shebang_runs_under_sh_and_output_is_bounded() {
    let d = TempDir::new("nosheb");
    let s = d.0.join("plain");
    write_script(
        &s,
        "i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done\n",
        0o755,
    );
    let r = script::run(
        &spec(&s.display().to_string(), true),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.exit, Exit::Code(0), "{r:?}");
    assert_eq!(r.stdout.bytes.len(), 4096);
    assert!(r.stdout.truncated);
}

/// Processes (not zombies) whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<(i32, char)> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            v.push((pid, f[0].chars().next().unwrap_or('?')));
        }
    }
    v
}

#[tokio::test]
async fn a_hung_script_is_killed_with_its_whole_group() {
    script::become_subreaper().unwrap();
    let d = TempDir::new("hung");
    let pidfile = d.0.join("pid");
    let s = d.0.join("hang.sh");
    write_script(
        &s,
        &format!(
            "#!/bin/sh\necho $$ > {p}.tmp && mv {p}.tmp {p}\nsh -c 'trap \"\" TERM; sleep 1000' &\nsleep 1000 &\nsleep 1000\n",
            p = pidfile.display()
        ),
        0o755,
    );
    let opts = RunOptions {
        timeout: Some(Duration::from_millis(500)),
        grace: Duration::from_millis(300),
        output_limit: 4096,
    };
    let r = script::run_with(
        &spec(&s.display().to_string(), true),
        opts,
        std::future::pending(),
    )
    .await;
    assert!(r.timed_out, "{r:?}");
    assert!(!r.success());
    assert_eq!(
        r.exit,
        Exit::Signal(libc::SIGTERM),
        "the leader dies of the SIGTERM sent to the group"
    );
    let pgid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let left = group_members(pgid);
    assert!(left.is_empty(), "processes left in group {pgid}: {left:?}");
}

#[tokio::test]
async fn cancel_ends_a_run_like_a_timeout() {
    let r = script::run_with(
        &spec("/bin/sleep 1000", true),
        RunOptions {
            timeout: None,
            grace: Duration::from_millis(200),
            output_limit: 16,
        },
        tokio::time::sleep(Duration::from_millis(100)),
    )
    .await;
    assert!(r.timed_out);
    assert_eq!(r.exit, Exit::Signal(libc::SIGTERM));
}

#[tokio::test]
async fn an_insecure_root_script_is_refused_naming_the_path() {
    let d = TempDir::new("insecure");
    let ww = d.0.join("ww");
    fs::create_dir(&ww).unwrap();
    fs::set_permissions(&ww, fs::Permissions::from_mode(0o777)).unwrap();
    let s = ww.join("check.sh");
    write_script(&s, "#!/bin/sh\nexit 0\n", 0o755);
    let r = script::run(
        &spec(&s.display().to_string(), true),
        Duration::from_secs(5),
    )
    .await;
    match &r.exit {
        Exit::NotRun(ScriptError::Insecure { component, .. }) => assert_eq!(component, &ww),
        other => panic!("not refused: {other:?}"),
    }
    let msg = match &r.exit {
        Exit::NotRun(e) => e.to_string(),
        _ => unreachable!(),
    };
    assert!(
        msg.contains(&ww.display().to_string()) && msg.contains("writable by others"),
        "{msg}"
    );

    // Without enable_script_security it runs, and the finding is reported.
    let r = script::run(
        &spec(&s.display().to_string(), false),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.exit, Exit::Code(0));
    assert!(r.insecure.as_deref().is_some_and(|m| m.contains("ww")));

    // A sticky world-writable directory is fine, but a group/world-writable file is not.
    fs::set_permissions(&ww, fs::Permissions::from_mode(0o1777)).unwrap();
    let r = script::run(
        &spec(&s.display().to_string(), true),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.exit, Exit::Code(0), "{r:?}");
    fs::set_permissions(&s, fs::Permissions::from_mode(0o757)).unwrap();
    let r = script::run(
        &spec(&s.display().to_string(), true),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(&r.exit, Exit::NotRun(ScriptError::Insecure { component, .. }) if component == &s),
        "{r:?}"
    );

    // A non-root script user is not checked (keepalived only protects root scripts).
    fs::set_permissions(&ww, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = script::user::resolve(&ha_agent::config::model::ScriptUser {
        user: "nobody".into(),
        group: Some("nogroup".into()),
    });
    if let Ok(nobody) = nobody {
        let sp = ScriptSpec {
            argv: vec![s.display().to_string()],
            run_as: nobody,
            security: true,
        };
        let r = script::run(&sp, Duration::from_secs(5)).await;
        assert_eq!(r.exit, Exit::Code(0), "{r:?}");
    }
}

#[tokio::test]
async fn missing_and_unexecutable_scripts_are_not_run() {
    let d = TempDir::new("missing");
    let r = script::run(
        &spec(&d.0.join("nope").display().to_string(), true),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(r.exit, Exit::NotRun(ScriptError::NotFound { .. })),
        "{r:?}"
    );
    let s = d.0.join("noexec.sh");
    write_script(&s, "#!/bin/sh\n", 0o644);
    let r = script::run(
        &spec(&s.display().to_string(), true),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(r.exit, Exit::NotRun(ScriptError::NotExecutable { .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn aborting_a_run_kills_its_group() {
    let d = TempDir::new("abort");
    let pidfile = d.0.join("pid");
    let s = d.0.join("hang.sh");
    write_script(
        &s,
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $$ > {p}.tmp && mv {p}.tmp {p}\nsleep 1000\n",
            p = pidfile.display()
        ),
        0o755,
    );
    let sp = spec(&s.display().to_string(), true);
    let task = tokio::spawn(async move { script::run(&sp, Duration::from_secs(100)).await });
    let mut waited = 0;
    while !pidfile.exists() {
        assert!(waited < 1000, "script did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let pgid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    task.abort();
    let _ = task.await;
    // SIGKILL is asynchronous: wait (bounded) until no live member is left.
    for _ in 0..500 {
        if group_members(pgid).iter().all(|(_, state)| *state == 'Z') {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "live processes left in group {pgid}: {:?}",
        group_members(pgid)
    );
}
