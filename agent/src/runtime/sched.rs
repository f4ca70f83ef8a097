//! keepalived's VRRP process tuning, applied to the agent's VRRP thread (the engine's,
//! which is the main thread: the engine runs on a current-thread runtime):
//! `vrrp_priority` (nice), `vrrp_rt_priority` (SCHED_RR) and `vrrp_no_swap` (mlockall).
//!
//! Applied once the other threads (load balancer, telemetry) exist, so they keep the
//! default scheduling; SCHED_RESET_ON_FORK keeps scripts and threads started later out of
//! the real-time class, as keepalived resets its children. A refusal (no CAP_SYS_NICE,
//! RLIMIT_RTPRIO, RLIMIT_MEMLOCK) is logged and the agent runs on.

use tracing::{info, warn};

use crate::config::model::ProcessTuning;

/// Apply `t` to the calling thread (and, for mlockall, the process).
pub fn apply(t: &ProcessTuning) {
    if let Some(nice) = t.nice {
        match set_nice(nice) {
            Ok(()) => info!(nice, "vrrp_priority: VRRP thread niceness set"),
            Err(e) => warn!(nice, error = %e, "vrrp_priority: cannot set niceness"),
        }
    }
    if let Some(prio) = t.rt_priority {
        match set_rr(prio) {
            Ok(()) => info!(
                priority = prio,
                "vrrp_rt_priority: VRRP thread runs SCHED_RR"
            ),
            Err(e) => {
                warn!(priority = prio, error = %e, "vrrp_rt_priority: cannot set real-time scheduling")
            }
        }
    }
    if t.no_swap {
        match lock_memory() {
            Ok(()) => info!("vrrp_no_swap: memory locked"),
            Err(e) => warn!(error = %e, "vrrp_no_swap: cannot lock memory"),
        }
    }
}

/// The calling thread's scheduling policy and nice value, for tests and the data dump.
pub fn current() -> (i32, i32) {
    // SAFETY: sched_getscheduler(0) reads the calling thread's policy; no pointers.
    #[allow(unsafe_code)]
    let policy = unsafe { libc::sched_getscheduler(0) };
    // SAFETY: getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value on Linux;
    // no pointers. (-1 is also a valid value; errno is not needed for a display.)
    #[allow(unsafe_code)]
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    (policy & !libc::SCHED_RESET_ON_FORK, nice)
}

fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority(PRIO_PROCESS, 0, n) changes the calling thread's nice value
    // (Linux: per thread); no pointers, no memory effects.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_rr(prio: u32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::try_from(prio).unwrap_or(1),
    };
    // SAFETY: `param` is a valid, initialised sched_param that lives across the call; the
    // kernel only reads it. pid 0 is the calling thread.
    #[allow(unsafe_code)]
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn lock_memory() -> std::io::Result<()> {
    // SAFETY: mlockall takes flags only; it pins pages and has no memory-safety effect.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
