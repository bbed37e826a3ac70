//! How soon the agent starts a service again after it exited with an error: at once
//! (0.2 s), then ever more slowly up to 10 s, so a crash loop costs little and a fixed
//! cause (a port freed) is noticed within seconds. A run that lasted a while starts the
//! schedule over; so does a start the daemon asks for (a new supervisor, a new schedule).
//! The lab uses the same schedule for its agents.

use std::time::Duration;

pub(crate) const RESTART_INITIAL: Duration = Duration::from_millis(200);
pub(crate) const RESTART_MAX: Duration = Duration::from_secs(10);
/// A run at least this long was not a crash loop.
pub(crate) const STAYED_UP: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RestartBackoff {
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self {
            next: RESTART_INITIAL,
        }
    }
}

impl RestartBackoff {
    /// The pause before the next start, given how long the last run lasted (`None`: it
    /// never ran, the start itself failed).
    pub fn delay(&mut self, ran_for: Option<Duration>) -> Duration {
        if ran_for.is_some_and(|d| d >= STAYED_UP) {
            self.next = RESTART_INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(RESTART_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_and_starts_over_after_a_long_run() {
        let mut b = RestartBackoff::default();
        let quick = Some(Duration::from_millis(50));
        let delays: Vec<u128> = (0..9).map(|_| b.delay(quick).as_millis()).collect();
        assert_eq!(
            delays,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.delay(None), RESTART_MAX);
        assert_eq!(b.delay(Some(STAYED_UP)), RESTART_INITIAL);
        assert_eq!(b.delay(quick), RESTART_INITIAL * 2);
    }
}
