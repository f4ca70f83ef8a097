//! keepalived's VRRP process tuning, applied to the agent's VRRP thread (the engine's,
//! which is the main thread: the engine runs on a current-thread runtime):
//! `vrrp_priority` (nice), `vrrp_rt_priority` (SCHED_RR) and `vrrp_no_swap` (mlockall).
//!
//! Without real-time scheduling the VRRP thread also asks the kernel for a short time
//! slice ([`VRRP_SLICE`], EEVDF's `sched_runtime` for SCHED_OTHER, Linux 6.12 and later):
//! its virtual deadline comes sooner, so a wake-up preempts CPU hogs instead of waiting
//! out their slices. It gets no larger share of the CPU, only a shorter wait for it: the
//! master's adverts go out on time under load. Older kernels ignore or refuse it (logged
//! at debug level).
//!
//! Without `vrrp_priority` the VRRP thread runs at [`DEFAULT_VRRP_NICE`] (keepalived
//! leaves its VRRP process at 0). The thread needs about 2 % of a CPU, in bursts (one
//! wake-up sends the adverts of every instance due): EEVDF banks no credit for the time a
//! task sleeps, so at nice 0 each burst is paid back by waiting behind every CPU hog on
//! the run queue (measured on 2 cores with 16 hogs: 0.4-0.5 s of run-queue wait per
//! second, wake-ups up to 176 ms late, false takeovers by the backup). At -20 its weight
//! is 87 times a hog's and the wait shrinks to a fraction of the burst. It takes no CPU
//! it does not use; `vrrp_priority 0` restores keepalived's behaviour.
//!
//! Applied once the other threads (load balancer, telemetry) exist, so they keep the
//! default scheduling; SCHED_RESET_ON_FORK keeps scripts and threads started later out of
//! the real-time class, as keepalived resets its children. A refusal (no CAP_SYS_NICE,
//! RLIMIT_RTPRIO, RLIMIT_MEMLOCK) is logged and the agent runs on.

use tracing::{debug, info, warn};

use crate::config::model::ProcessTuning;

/// Time slice the VRRP thread asks for (see the module docs): the kernel's minimum is
/// 0.1 ms; an advert round is a few microseconds of work per instance.
pub const VRRP_SLICE: std::time::Duration = std::time::Duration::from_micros(500);

/// Nice value of the VRRP thread when the config has no `vrrp_priority` (see the module
/// docs for why it is not keepalived's 0).
pub const DEFAULT_VRRP_NICE: i32 = -20;

/// Apply `t` to the calling thread (and, for mlockall, the process).
pub fn apply(t: &ProcessTuning) {
    let nice = t.nice.unwrap_or(DEFAULT_VRRP_NICE);
    let source = if t.nice.is_some() {
        "vrrp_priority"
    } else {
        "default (vrrp_priority 0 for keepalived's)"
    };
    match set_nice(nice) {
        Ok(()) => info!(nice, source, "VRRP thread niceness set"),
        Err(e) => warn!(nice, source, error = %e, "cannot set the VRRP thread's niceness"),
    }
    if t.rt_priority.is_none() {
        match set_slice(VRRP_SLICE) {
            Ok(()) => debug!(
                slice_us = VRRP_SLICE.as_micros() as u64,
                "VRRP thread asks for a short time slice"
            ),
            Err(e) => debug!(error = %e, "kernel refused a custom time slice; default scheduling"),
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

fn empty_attr() -> libc::sched_attr {
    libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    }
}

fn set_slice(slice: std::time::Duration) -> std::io::Result<()> {
    let (_, nice) = current();
    let mut attr = empty_attr();
    attr.sched_policy = libc::SCHED_OTHER as u32;
    // SCHED_FLAG_RESET_ON_FORK: scripts and threads started later get the defaults.
    attr.sched_flags = 0x01;
    // sched_setattr sets the nice value too: keep the one in force (vrrp_priority).
    attr.sched_nice = nice;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid, initialised sched_attr whose `size` field is its size; it
    // lives across the call and the kernel only reads it. pid 0 is the calling thread.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
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
