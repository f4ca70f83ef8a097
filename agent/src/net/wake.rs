//! The engine's wake-up edge: a one-shot `timerfd` on CLOCK_MONOTONIC, registered with the
//! tokio reactor, so protocol deadlines fire within microseconds of their time.
//!
//! tokio's timer wheel counts whole milliseconds and rounds every deadline up, so its
//! `sleep_until` wakes on average about a millisecond late, up to two. Measured at
//! `advert_int 0.01`: the Master_Down_Timer fired 1.2 ms after its deadline (keepalived,
//! which waits on a timerfd: 0.2 ms), and a master's adverts went out every 11.15 ms instead
//! of 10. At a 10 ms interval that is a fifth of the skew budget (REFERENCE.md: timers keep
//! sub-millisecond precision, DESIGN.md promise 4). A timerfd is an hrtimer and has none of
//! that rounding. If the kernel refuses a timerfd, tokio's timer is used instead.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// Sleeps until a deadline on the monotonic clock, with hrtimer precision.
#[derive(Debug)]
pub struct Wakeup {
    /// The timerfd, or `None` when the kernel refused one (tokio's timer then).
    fd: Option<AsyncFd<File>>,
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup::new()
    }
}

impl Wakeup {
    /// A wake-up on a new timerfd; falls back to tokio's timer if none can be made.
    /// Must be called inside a tokio runtime with I/O enabled.
    pub fn new() -> Wakeup {
        let fd = match timerfd().and_then(register) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(error = %e, "no timerfd: protocol timers use tokio's millisecond timer");
                None
            }
        };
        Wakeup { fd }
    }

    /// Whether the precise timerfd is in use.
    pub fn is_precise(&self) -> bool {
        self.fd.is_some()
    }

    /// Return at or after `deadline` (never, for `None`). Cancel-safe: each call re-arms the
    /// timer, and a wake-up left over from a dropped call only makes the loop look at the
    /// clock again.
    pub async fn sleep_until(&self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return std::future::pending().await;
        };
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(deadline).await;
        };
        loop {
            let now = Instant::now();
            if deadline <= now {
                return;
            }
            if arm(fd.get_ref(), deadline - now).is_err() {
                return tokio::time::sleep_until(deadline).await;
            }
            let Ok(mut guard) = fd.readable().await else {
                return tokio::time::sleep_until(deadline).await;
            };
            let mut count = [0u8; 8];
            match guard.try_io(|f| {
                let mut file: &File = f.get_ref();
                file.read(&mut count)
            }) {
                // Expired (or a stale expiry, or not yet: readiness is cleared), and the
                // clock decides at the top of the loop.
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(Err(_)) => return tokio::time::sleep_until(deadline).await,
            }
        }
    }
}

/// A non-blocking, close-on-exec timerfd on CLOCK_MONOTONIC (the clock of tokio's Instant).
#[allow(unsafe_code)]
fn timerfd() -> io::Result<File> {
    // SAFETY: timerfd_create takes two integers and touches no memory of ours.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor timerfd_create just opened and nothing else owns; the
    // OwnedFd (then the File) becomes its only owner and closes it once.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(File::from(fd))
}

/// Register the timerfd with the tokio reactor (the non-deprecated `AsyncFd` API).
#[allow(unsafe_code)]
fn register(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: `File` owns its descriptor: it is open, it is closed only when the `File`
    // drops (which the `AsyncFd` owns and drops last), and `as_raw_fd` always returns that
    // same descriptor. That is exactly `register`'s contract.
    let fd = unsafe { AsyncFd::register(file) }?;
    Ok(fd)
}

/// Arm the timer to expire once, `after` from now (at least 1 ns: zero would disarm it).
#[allow(unsafe_code)]
fn arm(file: &File, after: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let after = after.max(Duration::from_nanos(1));
    let value = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(after.subsec_nanos()),
        },
    };
    // SAFETY: the descriptor is an open timerfd owned by `file`; `value` is a valid
    // itimerspec that lives across the call, and a null old_value is allowed.
    let rc = unsafe { libc::timerfd_settime(file.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn never_wakes_before_the_deadline() {
        rt().block_on(async {
            let w = Wakeup::new();
            assert!(w.is_precise());
            for us in [0u64, 1, 150, 2_500] {
                let deadline = Instant::now() + Duration::from_micros(us);
                w.sleep_until(Some(deadline)).await;
                assert!(Instant::now() >= deadline, "woke early for {us} us");
            }
        });
    }

    #[test]
    fn a_cancelled_wait_does_not_end_the_next_one_early() {
        rt().block_on(async {
            let w = Wakeup::new();
            // Arm for 1 ms, cancel it by a sooner branch, let the stale expiry happen.
            let first = Instant::now() + Duration::from_millis(1);
            tokio::select! {
                _ = w.sleep_until(Some(first)) => panic!("the sooner branch must win"),
                _ = std::future::ready(()) => {}
            }
            std::thread::sleep(Duration::from_millis(2));
            let deadline = Instant::now() + Duration::from_millis(3);
            w.sleep_until(Some(deadline)).await;
            assert!(Instant::now() >= deadline);
        });
    }

    #[test]
    fn none_never_wakes() {
        rt().block_on(async {
            let w = Wakeup::new();
            tokio::select! {
                _ = w.sleep_until(None) => panic!("no deadline must never wake"),
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        });
    }
}
