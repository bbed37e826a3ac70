//! Real peers for tests (this crate's and the controllers'), behind the `test-support`
//! feature: a test PKI, OpenLDAP slapd instances and one
//! Samba AD DC, all on loopback, all stopped by PID when dropped. Run the tests inside a
//! private network namespace when other test runs share the machine.
//!
//! A missing peer binary fails the test under `CI=true`; otherwise the test prints
//! `SKIPPED: <reason>` and returns.

pub mod pki;
pub mod samba;
pub mod scenario;
pub mod slapd;

use std::net::TcpListener;
use std::path::Path;

pub use steward_testkit::{require_tool, skip};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
