//! Trackers against real scripts, files and processes: rise/fall hysteresis with a
//! script toggled by a file, track_file value x weight, process quorum from /proc.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::{next, put, spec, write_script, TempDir};
use ha_agent::track::file::{self, FileTracker, InitFile};
use ha_agent::track::process::{ParamMatch, ProcessTracker};
use ha_agent::track::script::{spawn_script_tracker, ScriptTracker};
use ha_agent::track::{
    effective_priority, PriorityOutcome, Status, TrackerEvent, TrackerKind, TrackerState,
};
use ha_agent::units::Priority;
use tokio::sync::mpsc;

/// The run number a counting script printed.
fn run_no(ev: &TrackerEvent) -> usize {
    ev.run
        .as_ref()
        .unwrap()
        .stdout
        .text()
        .trim()
        .parse()
        .unwrap()
}

/// Per run number, whether the flag file was present ("F") or not ("S").
fn outcomes(dir: &TempDir) -> Vec<char> {
    let log = fs::read_to_string(dir.path("log")).unwrap();
    let mut v = vec!['?'];
    for l in log.lines() {
        v.push(l.chars().last().unwrap());
    }
    v
}

#[tokio::test]
async fn rise_and_fall_follow_a_flag_file() {
    let d = TempDir::new("rise-fall");
    let s = d.path("chk.sh");
    let (n, log, flag) = (d.path("n"), d.path("log"), d.path("flag"));
    write_script(
        &s,
        &format!(
            "#!/bin/sh\nn=$(cat {n} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {n}\nif [ -e {flag} ]; then echo \"$n F\" >> {log}; echo $n; exit 1; fi\necho \"$n S\" >> {log}; echo $n\n",
            n = n.display(),
            flag = flag.display(),
            log = log.display()
        ),
    );
    let t = ScriptTracker {
        name: "chk".into(),
        spec: spec(&s.display().to_string()),
        interval: Duration::from_millis(30),
        timeout: Duration::from_secs(5),
        rise: 3,
        fall: 2,
        init_fail: false,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = spawn_script_tracker(t, tx);

    // First run decides at once (keepalived's init state).
    let up = next(&mut rx).await;
    assert_eq!((up.kind, up.status), (TrackerKind::Script, Status::Up));
    assert_eq!(run_no(&up), 1);

    fs::write(&flag, "").unwrap();
    let down = next(&mut rx).await;
    assert_eq!(down.status, Status::Down, "{down:?}");
    let k = run_no(&down);
    let o = outcomes(&d);
    assert_eq!(
        &o[k - 2..=k],
        &['S', 'F', 'F'],
        "down after exactly fall=2 failures: {o:?}"
    );

    fs::remove_file(&flag).unwrap();
    let up = next(&mut rx).await;
    assert_eq!(up.status, Status::Up);
    let k = run_no(&up);
    let o = outcomes(&d);
    assert_eq!(
        &o[k - 3..=k],
        &['F', 'S', 'S', 'S'],
        "up after exactly rise=3 successes: {o:?}"
    );

    // The instance view: weight -20 follows the script.
    let mut ts = vec![TrackerState {
        kind: TrackerKind::Script,
        name: "chk".into(),
        weight: -20,
        reverse: false,
        status: Status::Unknown,
    }];
    ts[0].apply(&down);
    assert_eq!(
        effective_priority(Priority(100), &ts),
        PriorityOutcome::Priority(Priority(80))
    );
    ts[0].apply(&up);
    assert_eq!(
        effective_priority(Priority(100), &ts),
        PriorityOutcome::Priority(Priority(100))
    );
    task.abort();
}

#[tokio::test]
async fn init_fail_needs_rise_successes_and_insecure_scripts_are_disabled() {
    let d = TempDir::new("init-fail");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t = ScriptTracker {
        name: "ok".into(),
        spec: spec("/bin/true"),
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        rise: 2,
        fall: 1,
        init_fail: true,
    };
    let task = spawn_script_tracker(t, tx.clone());
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Up);
    task.abort();

    let ww = d.path("ww");
    fs::create_dir(&ww).unwrap();
    fs::set_permissions(&ww, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let s = ww.join("chk.sh");
    write_script(&s, "#!/bin/sh\nexit 0\n");
    let t = ScriptTracker {
        name: "bad".into(),
        spec: spec(&s.display().to_string()),
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        rise: 1,
        fall: 1,
        init_fail: false,
    };
    let task = spawn_script_tracker(t, tx);
    let ev = next(&mut rx).await;
    assert_eq!((ev.name.as_str(), ev.status), ("bad", Status::Disabled));
    assert!(
        ev.detail.contains(&ww.display().to_string()),
        "{}",
        ev.detail
    );
    task.abort();
}

#[tokio::test]
async fn track_file_value_times_weight() {
    let d = TempDir::new("track-file");
    let f = d.path("prio");
    file::init_file(
        &f,
        InitFile {
            value: 2,
            overwrite: false,
        },
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&f).unwrap(), "2\n");
    file::init_file(
        &f,
        InitFile {
            value: 9,
            overwrite: false,
        },
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(&f).unwrap(),
        "2\n",
        "an existing file is kept without overwrite"
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let t = FileTracker {
        name: "tf".into(),
        path: f.clone(),
        init: None,
        poll: Duration::from_millis(20),
    };
    let task = file::spawn_file_tracker(t, tx);
    let mut ts = vec![TrackerState {
        kind: TrackerKind::File,
        name: "tf".into(),
        weight: -10,
        reverse: false,
        status: Status::Unknown,
    }];
    let prio = |ev: &TrackerEvent, ts: &mut Vec<TrackerState>| {
        assert!(ts[0].apply(ev));
        effective_priority(Priority(100), ts)
    };
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Value(2));
    assert_eq!(prio(&ev, &mut ts), PriorityOutcome::Priority(Priority(80)));
    put(&f, "-3\n");
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Value(-3));
    assert_eq!(prio(&ev, &mut ts), PriorityOutcome::Priority(Priority(130)));
    put(&f, "0x1a junk");
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Value(26));
    assert_eq!(
        prio(&ev, &mut ts),
        PriorityOutcome::Fault,
        "-260 is below -253"
    );
    put(&f, "not a number");
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Value(0));
    put(&f, "4");
    assert_eq!(next(&mut rx).await.status, Status::Value(4));
    fs::remove_file(&f).unwrap();
    let ev = next(&mut rx).await;
    assert_eq!(ev.status, Status::Value(0), "a missing file reads 0");
    assert_eq!(prio(&ev, &mut ts), PriorityOutcome::Priority(Priority(100)));
    task.abort();
}

#[tokio::test]
async fn process_quorum_from_proc() {
    let marker = format!("1000.{}", std::process::id());
    let t = ProcessTracker {
        name: "sleeper".into(),
        process: "/bin/sleep".into(),
        params: Some(vec![marker.clone()]),
        param_match: ParamMatch::Exact,
        full_command: false,
        quorum: 1,
        quorum_max: 1,
        fork_delay: Duration::ZERO,
        terminate_delay: Duration::ZERO,
        poll: Duration::from_millis(30),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = ha_agent::track::process::spawn_process_tracker(t, tx);
    assert_eq!(next(&mut rx).await.status, Status::Down);
    let mut a = std::process::Command::new("/bin/sleep")
        .arg(&marker)
        .spawn()
        .unwrap();
    assert_eq!(next(&mut rx).await.status, Status::Up);
    let mut b = std::process::Command::new("/bin/sleep")
        .arg(&marker)
        .spawn()
        .unwrap();
    let ev = next(&mut rx).await;
    assert_eq!(
        ev.status,
        Status::Down,
        "two exceed quorum_max 1: {}",
        ev.detail
    );
    b.kill().unwrap();
    b.wait().unwrap();
    assert_eq!(next(&mut rx).await.status, Status::Up);
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(next(&mut rx).await.status, Status::Down);
    task.abort();
}
