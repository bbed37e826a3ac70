//! Shared harness of the end-to-end tests (and the lab benchmarks): the test kit's
//! [`LabDaemon`] running this crate's `steward` binary, as [`Lab`].
//!
//! Test `n` uses `127.0.n.1:9464` for the daemon's API and `127.0.n.11`, `.12`, ... for
//! the lab servers (see `steward_testkit::lab`).

#![allow(dead_code)]

use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod haproxy;

#[allow(unused_imports)] // each test binary uses a part
pub use steward_testkit::copy_dir;
pub use steward_testkit::lab::*;

/// The binary under test (release build for benchmarks, debug for tests).
pub const BIN: &str = env!("CARGO_BIN_EXE_steward");

/// The binary the labs run: a hard link to [`BIN`] taken once per test process, so that
/// a concurrent `cargo build` replacing `target/*/steward` cannot change (or briefly
/// remove) the binary under a running test. Links of finished test processes are removed.
pub fn binary() -> &'static Path {
    static LINK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let _ = fs::create_dir_all(base);
        for entry in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("steward-e2e-"))
                .and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| !alive(p)) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("steward-e2e-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let link = dir.join("steward");
        let _ = fs::remove_file(&link);
        for _ in 0..50 {
            if fs::hard_link(BIN, &link).is_ok() || fs::copy(BIN, &link).is_ok() {
                return link;
            }
            std::thread::sleep(Duration::from_millis(200)); // being rebuilt right now
        }
        PathBuf::from(BIN)
    })
}

/// The repository's example deployment, which every lab starts from.
pub fn example_desired_state() -> PathBuf {
    steward_testkit::bundled_desired_state()
}

/// A [`LabDaemon`] of this crate's `steward` (every method and field through `Deref`).
pub struct Lab(LabDaemon);

impl Lab {
    /// A lab with its desired state committed to git, daemon not started yet.
    pub fn new(n: u8, options: Options) -> Self {
        Self(LabDaemon::new(binary(), n, options))
    }

    /// A lab with its daemon running.
    pub fn start(n: u8) -> Self {
        Self(LabDaemon::start(binary(), n))
    }
}

impl Deref for Lab {
    type Target = LabDaemon;
    fn deref(&self) -> &LabDaemon {
        &self.0
    }
}

impl DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut LabDaemon {
        &mut self.0
    }
}

/// p-th percentile (0..=100) of samples, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}
