//! The fault schedule: a pure function of a seed. Episodes of one fault, or two
//! overlapping ones, each followed by a quiet window in which the invariants must hold.
//! No I/O, no clock: `generate(seed, ..)` always returns the same schedule, so a run is
//! replayed from the seed it printed.

use std::fmt;

/// Nodes of the trio.
pub const NODES: usize = 3;

/// Direction of an L2 partition between one node and the two others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Nothing passes either way.
    Both,
    /// The node's frames do not reach the others; it still hears them.
    Out,
    /// The others' frames do not reach the node; it is still heard.
    In,
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node's switch port goes down and up every `period_ms`, ending up.
    LinkFlap {
        /// Node index.
        node: usize,
        /// Time between toggles.
        period_ms: u64,
    },
    /// nftables on the bridge drops frames between the node and the two others.
    Partition {
        /// Node index.
        node: usize,
        /// Which way.
        dir: Direction,
    },
    /// tc netem on the node's eth0 (egress).
    Netem {
        /// Node index.
        node: usize,
        /// Loss, percent.
        loss_pct: u32,
        /// Delay, ms.
        delay_ms: u32,
        /// Jitter, ms.
        jitter_ms: u32,
    },
    /// kill -9 of the node's daemon (its whole process tree); restarted at the heal.
    Kill {
        /// Node index.
        node: usize,
    },
    /// SIGSTOP of the node's daemon, SIGCONT at the heal.
    Pause {
        /// Node index.
        node: usize,
    },
    /// The node's wall clock steps by `secs` (libfaketime), and back at the heal.
    ClockStep {
        /// Node index.
        node: usize,
        /// Step, seconds (never 0).
        secs: i64,
    },
    /// kill -9 of the manager, restarted (same data) at the heal; no-op without one.
    ManagerKill,
    /// `stress-ng --cpu workers` until the heal.
    CpuHog {
        /// stress-ng workers.
        workers: u32,
    },
}

impl Fault {
    /// The node the fault is about, if any.
    pub fn node(&self) -> Option<usize> {
        match *self {
            Fault::LinkFlap { node, .. }
            | Fault::Partition { node, .. }
            | Fault::Netem { node, .. }
            | Fault::Kill { node }
            | Fault::Pause { node }
            | Fault::ClockStep { node, .. } => Some(node),
            Fault::ManagerKill | Fault::CpuHog { .. } => None,
        }
    }

    /// Short name of the kind (the report counts per kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::LinkFlap { .. } => "link-flap",
            Fault::Partition {
                dir: Direction::Both,
                ..
            } => "partition",
            Fault::Partition { .. } => "partition-oneway",
            Fault::Netem { .. } => "netem",
            Fault::Kill { .. } => "kill-9",
            Fault::Pause { .. } => "sigstop",
            Fault::ClockStep { .. } => "clock-step",
            Fault::ManagerKill => "manager-kill",
            Fault::CpuHog { .. } => "cpu-hog",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |i: usize| format!("n{}", i + 1);
        match *self {
            Fault::LinkFlap { node, period_ms } => {
                write!(f, "link-flap {} every {period_ms} ms", n(node))
            }
            Fault::Partition { node, dir } => write!(f, "partition {} {dir:?}", n(node)),
            Fault::Netem {
                node,
                loss_pct,
                delay_ms,
                jitter_ms,
            } => write!(
                f,
                "netem {} loss {loss_pct}% delay {delay_ms}ms jitter {jitter_ms}ms",
                n(node)
            ),
            Fault::Kill { node } => write!(f, "kill-9 {}", n(node)),
            Fault::Pause { node } => write!(f, "sigstop {}", n(node)),
            Fault::ClockStep { node, secs } => write!(f, "clock-step {} {secs:+} s", n(node)),
            Fault::ManagerKill => write!(f, "manager-kill"),
            Fault::CpuHog { workers } => write!(f, "cpu-hog stress-ng --cpu {workers}"),
        }
    }
}

/// A fault applied at `start_ms` and healed at `end_ms` (from the schedule's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// When it is applied.
    pub start_ms: u64,
    /// When it is healed.
    pub end_ms: u64,
    /// What.
    pub fault: Fault,
}

/// One or two overlapping actions, then quiet until `quiet_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// The actions (the first starts the episode).
    pub actions: Vec<Action>,
    /// When the last action is healed.
    pub healed_ms: u64,
    /// End of the quiet window (the next episode starts here or later).
    pub quiet_until_ms: u64,
}

/// Bounds of a generated schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total length.
    pub total_ms: u64,
    /// Shortest quiet window after a heal.
    pub quiet_min_ms: u64,
    /// Longest quiet window.
    pub quiet_max_ms: u64,
    /// Most stress-ng workers of a CPU hog.
    pub max_hog_workers: u32,
}

/// A whole run's faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// Its bounds.
    pub limits: Limits,
    /// Episodes in time order, never overlapping each other.
    pub episodes: Vec<Episode>,
}

/// SplitMix64: a small, well-mixed generator; good enough to pick faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.range(0, 99) < pct
    }
}

/// Fault kinds, in the order the generator draws them.
const KINDS: usize = 9;

fn draw_fault(rng: &mut Rng, kind: usize, node: usize, max_workers: u32) -> (Fault, u64) {
    match kind {
        0 => (
            Fault::LinkFlap {
                node,
                period_ms: rng.range(200, 1000),
            },
            rng.range(2000, 6000),
        ),
        1 => (
            Fault::Partition {
                node,
                dir: Direction::Both,
            },
            rng.range(3000, 8000),
        ),
        2 => (
            Fault::Partition {
                node,
                dir: if rng.chance(50) {
                    Direction::Out
                } else {
                    Direction::In
                },
            },
            rng.range(3000, 8000),
        ),
        3 => (
            Fault::Netem {
                node,
                loss_pct: rng.range(5, 60) as u32,
                delay_ms: rng.range(0, 200) as u32,
                jitter_ms: rng.range(0, 100) as u32,
            },
            rng.range(3000, 8000),
        ),
        4 => (Fault::Kill { node }, rng.range(1000, 6000)),
        5 => (Fault::Pause { node }, rng.range(500, 5000)),
        6 => {
            let secs = rng.range(30, 7200) as i64;
            let secs = if rng.chance(50) { secs } else { -secs };
            (Fault::ClockStep { node, secs }, rng.range(3000, 8000))
        }
        7 => (Fault::ManagerKill, rng.range(2000, 10000)),
        _ => (
            Fault::CpuHog {
                workers: rng.range(1, u64::from(max_workers.max(1))) as u32,
            },
            rng.range(2000, 6000),
        ),
    }
}

/// Whether two faults may overlap: never two on the same node, nor two of the same
/// node-less kind.
fn compatible(a: &Fault, b: &Fault) -> bool {
    match (a.node(), b.node()) {
        (Some(x), Some(y)) => x != y,
        (None, None) => a.kind() != b.kind(),
        _ => true,
    }
}

/// The schedule of `seed` within `limits`: episodes until the total is used up, each
/// followed by a quiet window of `quiet_min_ms..=quiet_max_ms`; 40 % of episodes overlap
/// a second fault with the first.
pub fn generate(seed: u64, limits: Limits) -> Schedule {
    let mut rng = Rng::new(seed);
    let mut episodes = Vec::new();
    let mut t = 0u64;
    // Bounded: every episode takes at least quiet_min_ms (>= 1 ms).
    let max_episodes = limits.total_ms / limits.quiet_min_ms.max(1) + 1;
    while (episodes.len() as u64) < max_episodes {
        let kind = rng.range(0, KINDS as u64 - 1) as usize;
        let node = rng.range(0, NODES as u64 - 1) as usize;
        let (first, dur) = draw_fault(&mut rng, kind, node, limits.max_hog_workers);
        let mut actions = vec![Action {
            start_ms: t,
            end_ms: t + dur,
            fault: first,
        }];
        if rng.chance(40) {
            // Bounded retries for a compatible second fault.
            for _ in 0..8 {
                let kind = rng.range(0, KINDS as u64 - 1) as usize;
                let node = rng.range(0, NODES as u64 - 1) as usize;
                let (second, dur2) = draw_fault(&mut rng, kind, node, limits.max_hog_workers);
                if compatible(&first, &second) {
                    let start = t + rng.range(0, dur);
                    actions.push(Action {
                        start_ms: start,
                        end_ms: start + dur2,
                        fault: second,
                    });
                    break;
                }
            }
        }
        let healed_ms = actions.iter().map(|a| a.end_ms).max().unwrap_or(t);
        let quiet = rng.range(limits.quiet_min_ms, limits.quiet_max_ms);
        let quiet_until_ms = healed_ms + quiet;
        if quiet_until_ms > limits.total_ms {
            break;
        }
        episodes.push(Episode {
            actions,
            healed_ms,
            quiet_until_ms,
        });
        t = quiet_until_ms;
    }
    Schedule {
        seed,
        limits,
        episodes,
    }
}

impl Schedule {
    /// Every action, in start order.
    pub fn actions(&self) -> Vec<Action> {
        let mut v: Vec<Action> = self
            .episodes
            .iter()
            .flat_map(|e| e.actions.iter().copied())
            .collect();
        v.sort_by_key(|a| a.start_ms);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(minutes: u64) -> Limits {
        Limits {
            total_ms: minutes * 60_000,
            quiet_min_ms: 12_000,
            quiet_max_ms: 15_000,
            max_hog_workers: 4,
        }
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other() {
        let a = generate(42, limits(10));
        assert_eq!(a, generate(42, limits(10)));
        assert_ne!(a, generate(43, limits(10)));
        assert!(!a.episodes.is_empty());
    }

    #[test]
    fn episodes_are_bounded_ordered_and_quiet_after() {
        for seed in 0..200 {
            let l = limits(5);
            let s = generate(seed, l);
            let mut prev_end = 0;
            for e in &s.episodes {
                let start = e.actions[0].start_ms;
                assert!(start >= prev_end, "seed {seed}: episodes overlap");
                assert!(e.actions.len() <= 2);
                assert!(e.actions.iter().all(|a| a.start_ms >= start
                    && a.end_ms > a.start_ms
                    && a.end_ms <= e.healed_ms));
                let quiet = e.quiet_until_ms - e.healed_ms;
                assert!((l.quiet_min_ms..=l.quiet_max_ms).contains(&quiet));
                assert!(e.quiet_until_ms <= l.total_ms);
                if let [a, b] = e.actions.as_slice() {
                    assert!(compatible(&a.fault, &b.fault), "seed {seed}: {a:?} {b:?}");
                    assert!(b.start_ms <= a.end_ms, "the second overlaps the first");
                }
                for a in &e.actions {
                    if let Fault::CpuHog { workers } = a.fault {
                        assert!((1..=l.max_hog_workers).contains(&workers));
                    }
                    if let Fault::ClockStep { secs, .. } = a.fault {
                        assert_ne!(secs, 0);
                    }
                    assert!(a.fault.node().is_none_or(|n| n < NODES));
                }
                prev_end = e.quiet_until_ms;
            }
        }
    }

    #[test]
    fn long_schedules_use_every_kind_and_overlap() {
        let s = generate(7, limits(60));
        let kinds: std::collections::BTreeSet<&str> =
            s.actions().iter().map(|a| a.fault.kind()).collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
        assert!(s.episodes.iter().any(|e| e.actions.len() == 2));
        assert!(s.episodes.iter().any(|e| e.actions.len() == 1));
    }

    #[test]
    fn too_short_a_total_gives_no_episode() {
        let mut l = limits(1);
        l.total_ms = 5_000;
        assert!(generate(1, l).episodes.is_empty());
    }

    #[test]
    fn rng_ranges_stay_inside() {
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
        }
        assert_eq!(r.range(4, 4), 4);
        assert_eq!(r.range(9, 4), 9);
    }
}
