//! The chaos schedule for two minutes on an ha-agent trio with the manager: every
//! invariant of `ha_tests::chaos::invariants` must hold (zero violations). The seed is
//! printed; `CHAOS_SEED=S` replays one (chaos-bench runs longer schedules and keepalived).

use std::time::Duration;

use ha_tests::chaos::run;
use ha_tests::chaos::schedule::generate;
use ha_tests::scenario::Impl;

/// CPU hogs stay small: the test shares 2 cores with the trio.
const MAX_HOG_WORKERS: u32 = 2;

// A fresh seed every run (printed): a failure names the seed that replays it. Seeds that
// failed before and were fixed: 3276226161260657645 (observer used a longer hold than the
// manager), 10975902622239536593 (peer-master evidence outliving a healed split),
// 16464468550444882879 (clock-offset kept open by a stale clock sample).
#[test]
fn two_minutes_of_faults_break_no_invariant() -> anyhow::Result<()> {
    let seed = match std::env::var("CHAOS_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => run::fresh_seed(),
    };
    let schedule = generate(seed, run::limits(Duration::from_secs(120), MAX_HOG_WORKERS));
    println!("chaos seed {seed} (replay: CHAOS_SEED={seed})");
    print!("{}", run::describe(&schedule));
    assert!(
        !schedule.episodes.is_empty(),
        "a 2-minute schedule has episodes"
    );
    let r = run::run(&schedule, Impl::HaAgent, "ci", &|l| println!("{l}"))?;
    println!("{}", run::details(&r, &schedule));
    print!("{}", run::table(&[&r]));
    assert!(
        r.violations.is_empty(),
        "seed {seed}: {} invariant violation(s); logs kept in {}",
        r.violations.len(),
        r.dir.display()
    );
    let _ = std::fs::remove_dir_all(&r.dir);
    Ok(())
}
