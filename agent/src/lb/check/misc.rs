//! MISC_CHECK: run `misc_path` through the safe script runner ([`crate::script`]), killed
//! with its process group at `misc_timeout`.
//!
//! Exit status (keepalived): 0 up, anything else down; with `misc_dynamic`, 0 up,
//! 1 down, 2..=255 up with the real server's weight set to `status - 2`.

use crate::script::{self, Exit};

use super::runner::Outcome;
use super::spec::MiscProbe;

/// Map an exit to a verdict (pure).
pub fn verdict(exit: &Exit, timed_out: bool, dynamic: bool) -> Outcome {
    if timed_out {
        return Outcome::down("script timed out");
    }
    match *exit {
        Exit::Code(0) => Outcome::up("exit 0"),
        Exit::Code(c) if dynamic && (2..=255).contains(&c) => Outcome {
            up: true,
            detail: format!("exit {c}"),
            weight: u32::try_from(c - 2).ok(),
        },
        Exit::Code(c) => Outcome::down(format!("exit {c}")),
        Exit::Signal(s) => Outcome::down(format!("killed by signal {s}")),
        Exit::NotRun(ref e) => Outcome::down(format!("not run: {e}")),
    }
}

/// Run the script once.
pub async fn probe(m: &MiscProbe) -> Outcome {
    let r = script::run(&m.script, m.timeout).await;
    verdict(&r.exit, r.timed_out, m.dynamic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits() {
        assert!(verdict(&Exit::Code(0), false, false).up);
        assert!(!verdict(&Exit::Code(0), true, false).up);
        assert!(!verdict(&Exit::Code(3), false, false).up);
        assert!(!verdict(&Exit::Code(1), false, true).up);
        let o = verdict(&Exit::Code(7), false, true);
        assert_eq!((o.up, o.weight), (true, Some(5)));
        assert_eq!(verdict(&Exit::Code(2), false, true).weight, Some(0));
        assert!(!verdict(&Exit::Signal(9), false, true).up);
    }
}
