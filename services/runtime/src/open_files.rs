//! The process's open-file limit.
//!
//! Every client connection, WebSocket, NATS connection and store file is a file descriptor.
//! Many systems start a process with a soft limit of 1,024 under a much higher hard limit;
//! left there, a burst of idle sockets makes `accept` fail with "Too many open files" and
//! the store cannot open a table (issue 13: 2,000 half-open sockets did it). A server
//! therefore raises its soft limit to the hard limit once, at start, and says so.

/// The soft limit before and after [`raise_to_hard_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now (the hard limit, unless the system refused).
    pub after: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Linux refuses a soft limit above `fs.nr_open` (1,048,576 by default) even when the hard
/// limit says "unlimited"; this is where an unlimited hard limit is capped.
const UNLIMITED_CAP: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard limit and logs the outcome once (at info when
/// it changed, at warn when the system refused). Returns the limits, or `None` where the
/// platform has no such limit or it cannot be read.
pub fn raise_to_hard_limit() -> Option<OpenFiles> {
    let resource = rlimit::Resource::NOFILE;
    if !resource.is_supported() {
        return None;
    }
    let (before, hard) = match resource.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let target = if hard == rlimit::INFINITY {
        UNLIMITED_CAP.max(before)
    } else {
        hard
    };
    if before >= target {
        tracing::info!(
            open_files = before,
            "open-file limit already at the hard limit"
        );
        return Some(OpenFiles {
            before,
            after: before,
            hard,
        });
    }
    match rlimit::increase_nofile_limit(target) {
        Ok(after) => {
            tracing::info!(
                before,
                after,
                "raised the open-file soft limit to the hard limit"
            );
            Some(OpenFiles {
                before,
                after,
                hard,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, open_files = before, hard, "could not raise the open-file soft limit");
            Some(OpenFiles {
                before,
                after: before,
                hard,
            })
        }
    }
}

/// The current soft open-file limit (`None` where there is none or it cannot be read).
pub fn soft_limit() -> Option<u64> {
    let resource = rlimit::Resource::NOFILE;
    resource
        .is_supported()
        .then(|| resource.get().ok().map(|(soft, _)| soft))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        // Lower the soft limit first, as a shell's `ulimit -S -n 1024` would, then raise it.
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let low = 256.min(hard);
        rlimit::Resource::NOFILE.set(low, hard).unwrap();
        assert_eq!(soft_limit(), Some(low));
        let limits = raise_to_hard_limit().unwrap();
        assert_eq!(limits.before, low);
        let expected = if hard == rlimit::INFINITY {
            UNLIMITED_CAP
        } else {
            hard
        };
        assert_eq!(limits.after, expected);
        assert_eq!(soft_limit(), Some(expected));
    }
}
