//! What a reconciler hands back to the runtime.

use std::error::Error;
use std::time::Duration;

/// What to do with a key after a successful reconcile.
///
/// A reconciler that converged usually returns [`Action::await_change`]; one
/// that is waiting on something it cannot watch (a certificate nearing
/// expiry, an agent that has not reported yet) asks for a timed
/// [`Action::requeue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run again after this delay (with [`Reason::Requeue`](crate::Reason::Requeue)),
    /// unless another request for the key comes sooner.
    Requeue(Duration),
    /// Do nothing until a trigger arrives for the key.
    AwaitChange,
}

impl Action {
    /// Run the key again after `after`.
    pub const fn requeue(after: Duration) -> Self {
        Action::Requeue(after)
    }

    /// Wait for the next trigger.
    pub const fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// The error type a reconciler may return.
///
/// The runtime reports each reconcile's outcome to a
/// [`ControllerObserver`](crate::ControllerObserver) as a label. Taking the
/// label from the error type (rather than from its `Display` text) keeps the
/// set of label values bounded, which metric backends need.
pub trait ReconcileError: Error + Send + 'static {
    /// A short, fixed label for this kind of failure, e.g. `"agent_unreachable"`.
    ///
    /// Must come from a small fixed set: never format object names or
    /// messages into it.
    fn metric_label(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::Action;
    use std::time::Duration;

    #[test]
    fn constructors_build_the_matching_variant() {
        assert_eq!(
            Action::requeue(Duration::from_secs(3)),
            Action::Requeue(Duration::from_secs(3))
        );
        assert_eq!(Action::await_change(), Action::AwaitChange);
        assert_ne!(Action::requeue(Duration::ZERO), Action::await_change());
    }
}
