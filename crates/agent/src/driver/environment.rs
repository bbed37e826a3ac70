//! The environment a child process gets: only what it needs to run and to log, never the
//! parent's whole environment. The daemon's environment holds secrets (database and
//! directory passwords referenced as `env:NAME`, the reconcile token), and anything
//! inherited is readable in `/proc/PID/environ` of every lab process.

use std::ffi::OsString;

/// Passed through when set; everything else is dropped.
const PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "NO_COLOR",
    // `steward --log-format`, which the daemon hands down to the lab's agents and services.
    "STEWARD_LOG_FORMAT",
];

/// The variables of this process a child may inherit; use with `env_clear()`.
pub fn minimal_environment() -> Vec<(&'static str, OsString)> {
    PASSED
        .iter()
        .filter_map(|name| Some((*name, std::env::var_os(name)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_listed_variables() {
        let env = minimal_environment();
        assert!(env.iter().all(|(name, _)| PASSED.contains(name)));
        // PATH is set wherever cargo runs tests.
        assert!(env.iter().any(|(name, _)| *name == "PATH"));
        assert!(!PASSED
            .iter()
            .any(|n| n.contains("TOKEN") || n.contains("PASSWORD")));
    }
}
