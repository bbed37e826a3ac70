//! Coalescing bursts of events into one reload.
//!
//! Pure bookkeeping over instants, so the policy is tested without a file system or a
//! clock: the watcher loop feeds it event times and sleeps until [`Debounce::deadline`].

use std::time::Duration;

use tokio::time::Instant;

/// Trailing-edge debounce with a cap: fire `quiet` after the last event, but never later
/// than `max_delay` after the first event of the burst.
#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    /// First and latest event of the pending burst; `None` when nothing is pending.
    burst: Option<(Instant, Instant)>,
}

impl Debounce {
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay,
            burst: None,
        }
    }

    pub fn event(&mut self, now: Instant) {
        self.burst = Some(match self.burst {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// When the pending burst should be reloaded; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.burst
            .map(|(first, last)| (last + self.quiet).min(first + self.max_delay))
    }

    /// Forget the pending burst: a reload is about to read everything it touched.
    pub fn clear(&mut self) {
        self.burst = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_pending_has_no_deadline() {
        let d = Debounce::new(150 * MS, 1000 * MS);
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn each_event_pushes_the_deadline_back() {
        let t0 = Instant::now();
        let mut d = Debounce::new(150 * MS, 1000 * MS);
        d.event(t0);
        assert_eq!(d.deadline(), Some(t0 + 150 * MS));
        d.event(t0 + 100 * MS);
        assert_eq!(d.deadline(), Some(t0 + 250 * MS));
        d.clear();
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn a_constant_stream_is_cut_at_the_maximum_delay() {
        let t0 = Instant::now();
        let mut d = Debounce::new(150 * MS, 1000 * MS);
        for i in 0..100 {
            d.event(t0 + i * 20 * MS);
        }
        assert_eq!(d.deadline(), Some(t0 + 1000 * MS));
        // The next burst starts its own clock.
        d.clear();
        d.event(t0 + 2000 * MS);
        assert_eq!(d.deadline(), Some(t0 + 2150 * MS));
    }
}
