//! chaos-bench: the seeded fault schedule of `ha_tests::chaos` on an ha-agent trio (with
//! the manager) and on a keepalived trio, one after the other; prints the seed, the
//! schedule, every violation and a table of violations per invariant. Asserts nothing.
//!
//! ```text
//! cargo build --workspace --bins
//! target/debug/chaos-bench [--minutes M] [--seed S] [--only ha-agent|keepalived]
//!     [--max-hog N] [--keep] [--dry-run]
//! ```
//! `--dry-run` prints the schedule and stops.
//! A run is replayed with the seed it printed (same --minutes and --max-hog).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ha_tests::bench::install_signal_flag;
use ha_tests::chaos::run::{self, Report};
use ha_tests::chaos::schedule::generate;
use ha_tests::scenario::Impl;

fn main() -> Result<()> {
    install_signal_flag();
    let mut minutes: u64 = 10;
    let mut seed = None;
    let mut max_hog = 4;
    let mut keep = false;
    let mut dry_run = false;
    let mut impls = vec![Impl::HaAgent, Impl::Keepalived];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = args.next().context("--minutes needs M")?.parse()?;
                minutes = minutes.clamp(1, 24 * 60);
            }
            "--seed" => seed = Some(args.next().context("--seed needs S")?.parse()?),
            "--max-hog" => {
                max_hog = args
                    .next()
                    .context("--max-hog needs N")?
                    .parse::<u32>()?
                    .clamp(1, 16)
            }
            "--keep" => keep = true,
            "--dry-run" => dry_run = true,
            "--only" => impls = vec![ha_tests::bench::parse_only(args.next().as_deref())?],
            "-h" | "--help" => {
                println!("chaos-bench [--minutes M] [--seed S] [--only ha-agent|keepalived] [--max-hog N] [--keep] [--dry-run]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    ha_tests::bench::use_own_bin_dir()?;
    let seed = seed.unwrap_or_else(run::fresh_seed);
    let schedule = generate(
        seed,
        run::limits(Duration::from_secs(minutes * 60), max_hog),
    );
    println!("chaos-bench seed {seed} ({minutes} min, max hog {max_hog}); replay: chaos-bench --minutes {minutes} --max-hog {max_hog} --seed {seed}");
    print!("{}", run::describe(&schedule));
    if dry_run {
        return Ok(());
    }
    let started = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for which in impls {
        let name = run::impl_name(which);
        let log = |l: &str| eprintln!("[{:>6.0}s] {l}", started.elapsed().as_secs_f64());
        match run::run(&schedule, which, name, &log) {
            Ok(r) => {
                println!("{}", run::details(&r, &schedule));
                reports.push(r);
            }
            Err(e) => {
                println!("{name}: run failed: {e:#}");
                ha_tests::bench::check_interrupted()?;
            }
        }
    }
    println!("Violations per invariant, seed {seed}, {minutes} min:");
    let refs: Vec<&Report> = reports.iter().collect();
    print!("{}", run::table(&refs));
    println!(
        "margins: {} ms beyond Master_Down_Interval for VRRP; alerts cleared {} ms after a heal",
        ha_tests::chaos::invariants::MARGIN_MS,
        ha_tests::chaos::invariants::ALERT_CLEAR_MS
    );
    println!(
        "seed {seed}; total time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !keep {
        for r in &reports {
            let _ = std::fs::remove_dir_all(&r.dir);
        }
    }
    Ok(())
}
