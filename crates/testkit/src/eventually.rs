//! The one polling loop of the tests: wait for a state, never for a duration. A test fails
//! only when the state never comes within a generous deadline, not because it was slow.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a probe reports: `true`/`Some(value)` when the awaited state is there.
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// Call `probe` every `poll` until it settles (`true` or `Some`); its value, or a panic
/// naming `what` once `deadline` has passed.
pub fn eventually<S: Settled>(
    what: &str,
    deadline: Duration,
    poll: Duration,
    probe: impl FnMut() -> S,
) -> S::Value {
    within(deadline, poll, probe)
        .unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// [`eventually`] for callers that explain a timeout themselves (with a log, a status):
/// `None` once `deadline` has passed.
pub fn within<S: Settled>(
    deadline: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> S,
) -> Option<S::Value> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().settled() {
            return Some(value);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// [`eventually`] for async tests, on tokio's clock (so a paused clock makes a long
/// deadline free): `probe` returns a future, e.g. `|| std::future::ready(done())` or an
/// `async move` block.
pub async fn eventually_async<S: Settled, F: Future<Output = S>>(
    what: &str,
    deadline: Duration,
    poll: Duration,
    probe: impl FnMut() -> F,
) -> S::Value {
    within_async(deadline, poll, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// [`within`] for async tests, on tokio's clock.
pub async fn within_async<S: Settled, F: Future<Output = S>>(
    deadline: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> F,
) -> Option<S::Value> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await.settled() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const POLL: Duration = Duration::from_millis(1);

    #[test]
    fn the_value_of_the_first_settled_probe_is_returned() {
        let calls = Cell::new(0);
        let got = eventually("the third call", Duration::from_secs(60), POLL, || {
            calls.set(calls.get() + 1);
            (calls.get() == 3).then_some(calls.get() * 10)
        });
        assert_eq!(got, 30);
    }

    #[test]
    #[should_panic(expected = "waiting for a state that never comes")]
    fn a_state_that_never_comes_fails_with_its_name() {
        eventually("a state that never comes", Duration::ZERO, POLL, || false);
    }

    #[test]
    fn within_reports_a_timeout_to_the_caller() {
        assert_eq!(within(Duration::ZERO, POLL, || None::<u8>), None);
        assert_eq!(within(Duration::ZERO, POLL, || true), Some(()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_async_loop_runs_on_tokio_s_clock() {
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let timed_out = within_async(Duration::from_secs(3600), Duration::from_secs(60), || {
            calls.set(calls.get() + 1);
            std::future::ready(false)
        })
        .await;
        assert_eq!(timed_out, None);
        // An hour of polls a minute apart, on the paused clock: 61 probes, no real wait.
        assert_eq!(calls.get(), 61);
        assert!(started.elapsed() >= Duration::from_secs(3600));
    }
}
