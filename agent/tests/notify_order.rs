//! Notify delivery against real scripts and a real FIFO: 20 quick events arrive
//! complete and in order per instance, FIFO lines in keepalived's format and order,
//! results reported, a hung script bounded by its timeout, a full queue accounted.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::{next, spec, write_script, TempDir};
use ha_agent::notify::{
    FifoConfig, Notifier, NotifierConfig, NotifyEvent, NotifyKind, NotifyReport, NotifyScripts,
    NotifyState, NotifyTarget, ScriptRole,
};
use ha_agent::script::Exit;
use ha_agent::units::Priority;
use tokio::sync::mpsc;

fn states(i: usize) -> NotifyState {
    [NotifyState::Master, NotifyState::Backup, NotifyState::Fault][i % 3]
}

#[tokio::test]
async fn twenty_quick_events_arrive_complete_and_in_order() {
    let d = TempDir::new("notify-order");
    let out = d.path("out");
    let generic = d.path("notify.sh");
    let master = d.path("master.sh");
    // Each run takes a little while, so events pile up behind it.
    write_script(
        &generic,
        &format!("#!/bin/sh\nsleep 0.01\necho \"$*\" >> {}\n", out.display()),
    );
    write_script(
        &master,
        &format!("#!/bin/sh\necho \"master $1\" >> {}\n", out.display()),
    );
    let scripts = |tag: &str| NotifyScripts {
        master: Some(spec(&format!("{} {tag}", master.display()))),
        generic: Some(spec(&format!("{} \"my arg\"", generic.display()))),
        ..NotifyScripts::default()
    };
    let targets = vec![
        NotifyTarget {
            kind: NotifyKind::Instance,
            name: "VI_1".into(),
            scripts: scripts("vi1"),
        },
        NotifyTarget {
            kind: NotifyKind::Group,
            name: "G1".into(),
            scripts: scripts("g1"),
        },
    ];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = Notifier::spawn(targets, vec![], NotifierConfig::default(), tx);
    let mut want = Vec::new();
    for i in 0..20 {
        let st = states(i);
        n.notify(NotifyEvent::instance("VI_1", st, Priority(100 + i as u8)));
        if st == NotifyState::Master {
            want.push("master vi1".to_string());
        }
        want.push(format!("my arg INSTANCE VI_1 {} {}", st.as_str(), 100 + i));
    }
    n.notify(NotifyEvent::group("G1", NotifyState::Backup));
    // Events for targets without scripts are accepted and ignored.
    n.notify(NotifyEvent::instance(
        "VI_9",
        NotifyState::Master,
        Priority(1),
    ));
    let mut reports = Vec::new();
    for _ in 0..want.len() + 1 {
        reports.push(next(&mut rx).await);
    }
    n.shutdown().await;

    let text = fs::read_to_string(&out).unwrap();
    let vi1: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("VI_1") || *l == "master vi1")
        .collect();
    assert_eq!(vi1, want);
    assert!(
        text.lines().any(|l| l == "my arg GROUP G1 BACKUP 0"),
        "{text}"
    );

    let ran: Vec<_> = reports
        .iter()
        .map(|r| match r {
            NotifyReport::Ran(r) => r,
            NotifyReport::Dropped(e) => panic!("dropped {e}"),
        })
        .filter(|r| r.event.name == "VI_1")
        .collect();
    assert_eq!(ran.len(), want.len());
    assert!(ran
        .iter()
        .all(|r| r.result.exit == Exit::Code(0) && !r.result.timed_out));
    assert_eq!(ran[0].role, ScriptRole::Master);
    assert_eq!(ran[1].role, ScriptRole::Generic);
    assert!(
        ran[1].command.contains("'INSTANCE' 'VI_1' 'MASTER' '100'"),
        "{}",
        ran[1].command
    );
}

#[tokio::test]
async fn a_hung_script_is_cut_at_its_timeout_and_later_events_still_run() {
    let d = TempDir::new("notify-hung");
    let out = d.path("out");
    let s = d.path("n.sh");
    write_script(
        &s,
        &format!(
            "#!/bin/sh\n[ \"$3\" = FAULT ] && sleep 1000\necho \"$3\" >> {}\n",
            out.display()
        ),
    );
    let targets = vec![NotifyTarget {
        kind: NotifyKind::Instance,
        name: "VI_1".into(),
        scripts: NotifyScripts {
            generic: Some(spec(&s.display().to_string())),
            ..NotifyScripts::default()
        },
    }];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = NotifierConfig {
        timeout: Duration::from_millis(300),
        ..NotifierConfig::default()
    };
    let n = Notifier::spawn(targets, vec![], cfg, tx);
    for st in [NotifyState::Fault, NotifyState::Backup] {
        n.notify(NotifyEvent::instance("VI_1", st, Priority(100)));
    }
    let NotifyReport::Ran(first) = next(&mut rx).await else {
        panic!("dropped")
    };
    assert!(first.result.timed_out);
    let NotifyReport::Ran(second) = next(&mut rx).await else {
        panic!("dropped")
    };
    assert_eq!(second.result.exit, Exit::Code(0));
    n.shutdown().await;
    assert_eq!(fs::read_to_string(&out).unwrap(), "BACKUP\n");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let d = TempDir::new("notify-full");
    let s = d.path("n.sh");
    write_script(&s, "#!/bin/sh\nsleep 0.2\n");
    let targets = vec![NotifyTarget {
        kind: NotifyKind::Instance,
        name: "VI_1".into(),
        scripts: NotifyScripts {
            generic: Some(spec(&s.display().to_string())),
            ..NotifyScripts::default()
        },
    }];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = NotifierConfig {
        queue_limit: 2,
        ..NotifierConfig::default()
    };
    let n = Notifier::spawn(targets, vec![], cfg, tx);
    for _ in 0..5 {
        n.notify(NotifyEvent::instance(
            "VI_1",
            NotifyState::Master,
            Priority(100),
        ));
    }
    assert_eq!(n.dropped(), 3);
    let mut dropped = 0;
    let mut ran = 0;
    for _ in 0..5 {
        match next(&mut rx).await {
            NotifyReport::Dropped(_) => dropped += 1,
            NotifyReport::Ran(_) => ran += 1,
        }
    }
    assert_eq!((dropped, ran), (3, 2));
    n.shutdown().await;
}

#[tokio::test]
async fn fifo_lines_in_keepalived_format_and_order() {
    let d = TempDir::new("notify-fifo");
    let fifo = d.path("fifo");
    let out = d.path("out");
    let reader = d.path("reader.sh");
    write_script(
        &reader,
        &format!("#!/bin/sh\nexec cat \"$1\" > {}\n", out.display()),
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let fifos = vec![FifoConfig {
        path: fifo.clone(),
        script: Some(spec(&reader.display().to_string())),
    }];
    let n = Notifier::spawn(vec![], fifos, NotifierConfig::default(), tx);
    let mut want = String::new();
    for i in 0..20 {
        let ev = NotifyEvent::instance("VI_1", states(i), Priority(100 + i as u8));
        want.push_str(&ev.fifo_line());
        n.notify(ev);
    }
    let g = NotifyEvent::group("G1", NotifyState::Master);
    want.push_str(&g.fifo_line());
    n.notify(g);
    assert!(want.starts_with("INSTANCE \"VI_1\" MASTER 100\nINSTANCE \"VI_1\" BACKUP 101\n"));
    assert!(want.ends_with("GROUP \"G1\" MASTER 0\n"));
    // The reader copies as lines arrive; wait (bounded) until all are there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = fs::read_to_string(&out).unwrap_or_default();
        if got.len() >= want.len() || tokio::time::Instant::now() > deadline {
            assert_eq!(got, want);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n.fifo_dropped(), 0);
    n.shutdown().await;
    assert!(!fifo.exists(), "a fifo we created is removed at shutdown");
}
