//! File descriptors: the soft limit raised to the hard one at start, as Go's runtime does.
//!
//! A default systemd unit gives a soft limit of 1 024 (and a hard one of 524 288): the soft
//! limit exists for old programs that use `select(2)`, which sluice does not. Every client
//! connection, every segment file and the write-ahead log take one, so sluice raises its soft
//! limit to the hard limit at start and sizes its connection limit from the result
//! ([`crate::http::listen::connection_budget`]), so that clients can never take the
//! descriptors the store needs.

/// What [`raise_soft_limit`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: u64,
    pub after: u64,
    pub hard: u64,
}

/// The current soft limit on open files, if the platform has one.
pub fn soft_limit() -> Option<u64> {
    limits().map(|(soft, _)| soft)
}

fn limits() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return Some((l.rlim_cur as u64, l.rlim_max as u64));
        }
        None
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft limit on open files to the hard limit. Returns both before and after, or
/// `None` where the platform has no such limit; a refusal leaves the limit as it was.
pub fn raise_soft_limit() -> Option<Raised> {
    let (soft, hard) = limits()?;
    if soft >= hard {
        return Some(Raised {
            before: soft,
            after: soft,
            hard,
        });
    }
    #[cfg(unix)]
    {
        let l = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } == 0;
        let after = if ok { hard } else { soft };
        Some(Raised {
            before: soft,
            after,
            hard,
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}
