//! The process's file-descriptor limit: read it, and raise the soft limit to the hard one
//! at start (a service manager's default soft limit, 1024, is far below what a fleet of
//! agents, operators and a flood of half-open connections need).

use std::io;

/// Current (soft, hard) RLIMIT_NOFILE.
#[allow(unsafe_code)]
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own; no other memory.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// The soft limit, if it can be read.
pub fn nofile_soft() -> Option<u64> {
    nofile().ok().map(|(s, _)| s)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (before, after).
#[allow(unsafe_code)]
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    let (soft, hard) = nofile()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let r = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_reads_and_raising_is_idempotent() {
        let (soft, hard) = nofile().unwrap();
        assert!(soft <= hard);
        let (_, after) = raise_nofile().unwrap();
        assert_eq!(after, hard);
        assert_eq!(raise_nofile().unwrap(), (hard, hard));
    }
}
