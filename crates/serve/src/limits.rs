//! What a server grants any one client, and how many clients it holds at once.
//!
//! Every phase of a connection has a deadline, so that a client can hold a connection only
//! by making progress; and the number of connections is a fraction of the process's
//! open-file limit, so that clients can never take the descriptors the rest of the process
//! (probes, agent calls, the desired-state loader) needs.

use std::time::Duration;

use rustix::process::{getrlimit, Resource};

/// The bounds of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once. A new connection beyond it replaces one without a request
    /// in progress (connections that never completed a request go before kept-alive ones,
    /// longest-waiting first); when every one is in the middle of a request, the new one is
    /// closed at once.
    pub max_connections: usize,
    /// TLS only: from accept to the end of the handshake (a client that never sends its
    /// ClientHello is closed after this).
    pub handshake_timeout: Duration,
    /// From the connection's start, or the first byte of a later request, to the end of the
    /// request head (slowloris).
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// The handler's time for one request (then `503`). A client that does not read its
    /// response is closed when the exchange has taken twice this (or, when what is left of
    /// the response is already queued for sending, after `idle_timeout`).
    pub request_timeout: Duration,
    /// Larger request bodies are refused with `413`.
    pub max_body_bytes: usize,
    /// The request head (request line and headers) must fit in this; hyper's minimum is
    /// 8 KiB.
    pub max_head_bytes: usize,
    /// After shutdown is requested, requests in progress get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            max_head_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Below this many connections a server is not usable; a process with so few files
/// available has other problems, which its own errors report.
const MIN_CONNECTIONS: usize = 8;

impl Limits {
    /// A quarter of `open_files` (the process's soft limit), at most `cap`: three quarters
    /// stay for everything else the process does.
    pub fn connection_budget(open_files: Option<u64>, cap: usize) -> usize {
        let quarter = open_files.map_or(cap, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
        quarter.min(cap).max(MIN_CONNECTIONS)
    }
}

/// The process's soft limit of open files; `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_quarter_of_the_open_files_within_bounds() {
        assert_eq!(Limits::connection_budget(Some(512), 1024), 128);
        assert_eq!(Limits::connection_budget(Some(20_000), 1024), 1024);
        assert_eq!(Limits::connection_budget(Some(1_048_576), 256), 256);
        assert_eq!(Limits::connection_budget(None, 256), 256);
        assert_eq!(Limits::connection_budget(Some(16), 1024), MIN_CONNECTIONS);
    }
}
