//! What is currently broken on one simulated server, set through the control API or the
//! command line and read by its driver on every call.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Faults {
    /// Every driver call takes this much longer (so does each service of a listing).
    slow_ms: AtomicU64,
    /// The share of installs (0-100) that fail as if the installer had failed.
    install_failure_percent: AtomicU8,
}

impl Faults {
    pub fn new(install_failure_percent: u8) -> Self {
        let faults = Self::default();
        faults.set_install_failure_percent(install_failure_percent);
        faults
    }

    pub fn slow(&self) -> Duration {
        Duration::from_millis(self.slow_ms.load(Ordering::Relaxed))
    }

    pub fn set_slow(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.slow_ms.store(ms, Ordering::Relaxed);
    }

    pub fn install_failure_percent(&self) -> u8 {
        self.install_failure_percent.load(Ordering::Relaxed)
    }

    /// Values above 100 mean 100.
    pub fn set_install_failure_percent(&self, percent: u8) {
        self.install_failure_percent
            .store(percent.min(100), Ordering::Relaxed);
    }

    /// Whether this install fails: drawn at random at the configured share.
    pub(crate) fn install_fails(&self) -> bool {
        let percent = self.install_failure_percent();
        percent > 0 && rand::random_range(0u8..100) < percent
    }

    pub(crate) async fn delay(&self) {
        let delay = self.slow();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_failures_follow_the_share() {
        let faults = Faults::new(0);
        assert!((0..200).all(|_| !faults.install_fails()));
        faults.set_install_failure_percent(250);
        assert_eq!(faults.install_failure_percent(), 100);
        assert!((0..200).all(|_| faults.install_fails()));
    }
}
