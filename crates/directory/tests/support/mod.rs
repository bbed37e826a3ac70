//! Real peers for the integration tests: a test PKI, OpenLDAP slapd instances and one
//! Samba AD DC, all on loopback, all stopped by PID when dropped. Run the tests inside a
//! private network namespace when other test runs share the machine.
//!
//! A missing peer binary fails the test under `CI=true`; otherwise the test prints
//! `SKIPPED: <reason>` and returns.

#![allow(dead_code)] // each test binary uses its own subset

pub mod pki;
pub mod samba;
pub mod slapd;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// `CI=true` (or `1`): a missing peer fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.trim(), "true" | "TRUE" | "True" | "1"))
}

/// The first of `names` found in PATH or `/usr/sbin` (slapd and samba live there and it is
/// not on a normal user's PATH). Missing: panics under CI, else prints the skip reason.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    skip(&format!(
        "`{name}` not found (Debian package {package}; scripts/test-all.sh installs it)"
    ));
    None
}

pub fn skip(why: &str) {
    assert!(!in_ci(), "CI=true and {why}");
    eprintln!("SKIPPED: {why}");
}

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
