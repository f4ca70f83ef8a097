//! keepalived's rise/fall counter for `vrrp_script`, pure.
//!
//! keepalived keeps `result` in `0..=rise+fall-1`; the script is good when
//! `result >= rise`. A success below `rise-1` counts up; reaching `rise-1` and succeeding
//! jumps to the top (good). A failure above `rise` counts down; at or below `rise` it drops
//! to 0 (bad). So `rise` consecutive successes make a bad script good and `fall`
//! consecutive failures make a good one bad.
//!
//! Start: without `init_fail` the state is unknown and `result = rise-1`, so the first
//! run decides either way (keepalived's `SCRIPT_INIT_STATE_INIT`: its first failure is
//! reported even though `result` never was `rise`). With `init_fail` the script starts
//! failed (`result = 0`) and needs `rise` successes.

/// Rise/fall state of one tracked script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    result: u32,
    /// No run has finished yet and `init_fail` was not set.
    init: bool,
}

impl Hysteresis {
    /// A new counter (`rise` and `fall` below 1 are taken as 1).
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> Hysteresis {
        let rise = rise.max(1);
        let fall = fall.max(1);
        Hysteresis {
            rise,
            fall,
            result: if init_fail { 0 } else { rise - 1 },
            init: !init_fail,
        }
    }

    /// `None` before the first result (unless `init_fail`), else whether it is good.
    pub fn state(&self) -> Option<bool> {
        (!self.init).then_some(self.result >= self.rise)
    }

    /// Record one run; `Some(new state)` when the reported state changes.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        let top = self.rise + self.fall - 1;
        let was_init = std::mem::replace(&mut self.init, false);
        if ok {
            if self.result + 1 < self.rise {
                self.result += 1;
                // Still below rise: a first run that succeeds with rise > 1 cannot happen
                // (init starts at rise-1), so nothing to report here.
                None
            } else if self.result != top {
                let changed = self.result < self.rise || was_init;
                self.result = top;
                changed.then_some(true)
            } else {
                was_init.then_some(true)
            }
        } else if self.result > self.rise {
            self.result -= 1;
            None
        } else {
            let changed = self.result == self.rise || was_init;
            self.result = 0;
            changed.then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &mut Hysteresis, seq: &str) -> String {
        seq.chars()
            .map(|c| match h.record(c == '+') {
                Some(true) => 'U',
                Some(false) => 'D',
                None => '.',
            })
            .collect()
    }

    #[test]
    fn first_run_decides_without_init_fail() {
        let mut h = Hysteresis::new(3, 2, false);
        assert_eq!(h.state(), None);
        assert_eq!(run(&mut h, "+"), "U");
        let mut h = Hysteresis::new(3, 2, false);
        assert_eq!(run(&mut h, "-"), "D");
        assert_eq!(h.state(), Some(false));
    }

    #[test]
    fn rise_and_fall_table() {
        // (rise, fall, init_fail, runs, reported transitions)
        let cases = [
            (1, 1, false, "+-+-", "UDUD"),
            (2, 3, false, "+--+-", "U...."),
            (2, 3, false, "+---++", "U..D.U"),
            (2, 3, false, "+--+---", "U.....D"),
            (3, 1, true, "++-+++", ".....U"),
            (1, 1, true, "+", "U"),
            (2, 2, true, "-+-++", "....U"),
            (3, 2, false, "-++-+++", "D.....U"),
        ];
        for (rise, fall, init_fail, runs, want) in cases {
            let mut h = Hysteresis::new(rise, fall, init_fail);
            let got = run(&mut h, runs);
            assert_eq!(got, want, "{rise}/{fall}/{init_fail} {runs}");
        }
    }

    #[test]
    fn init_fail_starts_failed() {
        let h = Hysteresis::new(2, 2, true);
        assert_eq!(h.state(), Some(false));
    }
}
