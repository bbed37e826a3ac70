//! The process's open-file limit, raised at start from the soft limit to the hard one.
//!
//! The daemon holds a descriptor per probe connection, agent connection, watched directory
//! and API client, and the agent one per client and service log; a soft limit of 1024 (a
//! leftover of `select(2)`, which neither uses) is reached long before the hard limit. The
//! HTTP servers then take only a fraction of what is available (`steward_serve::Limits::
//! connection_budget`), so the rest stays for the controllers.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where the kernel caps a hard limit given as unlimited (`/proc/sys/fs/nr_open`'s default).
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Raise the soft limit to the hard limit; the soft limit in force afterwards.
pub fn raise() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let Some(target) = target(limit, nr_open()) else {
        return limit.current;
    };
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = target, "raised the open-file limit");
            Some(target)
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = ?limit.current, "cannot raise the open-file limit");
            limit.current
        }
    }
}

/// The soft limit to set, if it is to change.
fn target(limit: Rlimit, nr_open: u64) -> Option<u64> {
    let current = limit.current?; // already unlimited
    let target = limit.maximum.unwrap_or(nr_open);
    (target > current).then_some(target)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NR_OPEN_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(current: Option<u64>, maximum: Option<u64>) -> Rlimit {
        Rlimit { current, maximum }
    }

    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        assert_eq!(
            target(limit(Some(1024), Some(524_288)), 1 << 20),
            Some(524_288)
        );
        assert_eq!(target(limit(Some(256), Some(512)), 1 << 20), Some(512));
        assert_eq!(target(limit(Some(512), Some(512)), 1 << 20), None);
        // An unlimited hard limit means the kernel's cap.
        assert_eq!(target(limit(Some(1024), None), 1 << 20), Some(1 << 20));
        assert_eq!(target(limit(None, None), 1 << 20), None);
    }
}
