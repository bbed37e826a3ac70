//! How eagerly the watcher reloads.

use std::time::Duration;

use steward_model::load::Limits;

use crate::WatchError;

/// Timing of reloads. The defaults keep "file saved → snapshot published" well under the
/// project's one-second budget while still coalescing a `git checkout` into one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Quiet period: a reload starts this long after the last event of a burst. Long
    /// enough to span an editor's write-temp-then-rename or a checkout touching many files,
    /// short enough not to be noticed. Default 150 ms.
    pub debounce: Duration,
    /// Upper bound from the first event of a burst to its reload, so a directory that never
    /// goes quiet (a script rewriting a file in a loop) still gets reloaded. Default 1 s.
    pub max_delay: Duration,
    /// A full re-read even without events: inotify drops events when its queue overflows,
    /// network shares send none, and an edit to a linked file kept under a dot-directory
    /// raises only ignored events. Default 60 s.
    pub rescan_interval: Duration,
    /// A load running longer than this is logged as a warning and shown in the status
    /// (`loadingSince`) while it runs. Default 5 s.
    pub slow_load: Duration,
    /// First wait before retrying a load that could not judge the files (the process ran
    /// out of file descriptors); doubled per failure up to 32 times this. Default 1 s.
    pub retry_after: Duration,
    /// Bounds on what one load reads.
    pub limits: Limits,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(150),
            max_delay: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(60),
            slow_load: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }
}

impl WatchConfig {
    /// Refuse settings that cannot work, rather than silently adjusting them.
    pub fn check(&self) -> Result<(), WatchError> {
        if self.rescan_interval.is_zero() {
            return Err(WatchError::InvalidConfig(
                "rescan_interval must be greater than zero",
            ));
        }
        if self.retry_after.is_zero() {
            return Err(WatchError::InvalidConfig(
                "retry_after must be greater than zero",
            ));
        }
        if self.max_delay < self.debounce {
            return Err(WatchError::InvalidConfig(
                "max_delay must be at least the debounce period",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_impossible_settings_are_refused() {
        assert!(WatchConfig::default().check().is_ok());
        let zero_rescan = WatchConfig {
            rescan_interval: Duration::ZERO,
            ..WatchConfig::default()
        };
        assert!(zero_rescan.check().is_err());
        let short_max = WatchConfig {
            max_delay: Duration::from_millis(10),
            ..WatchConfig::default()
        };
        assert_eq!(
            short_max.check().unwrap_err().metric_label(),
            "invalid_config"
        );
    }
}
