//! What a reconcile is about ([`ObjectKey`]) and why it runs ([`Reason`]).
//!
//! The runtime never looks inside a key: it only hashes, compares and clones
//! it. Keeping the key opaque lets one runtime drive controllers for services,
//! servers or certificates alike, each with its own key type.

use std::fmt::{self, Debug, Display};
use std::hash::Hash;

/// Identifies one reconciled object.
///
/// Blanket-implemented: any `Clone + Eq + Hash + Debug + Send + 'static` type
/// is a key. `Debug` is required because the key is recorded in the
/// `reconcile` tracing span, so every log line of a run says which object it
/// concerns.
pub trait ObjectKey: Clone + Eq + Hash + Debug + Send + 'static {}

impl<T> ObjectKey for T where T: Clone + Eq + Hash + Debug + Send + 'static {}

/// Identifies a group of keys that share a concurrency budget (for example the
/// server that several services live on).
///
/// Blanket-implemented like [`ObjectKey`].
pub trait GroupKey: Clone + Eq + Hash + Debug + Send + 'static {}

impl<T> GroupKey for T where T: Clone + Eq + Hash + Debug + Send + 'static {}

/// Why a reconcile was requested.
///
/// Carried from the request through the queue to the reconciler and recorded
/// in the `reconcile` span, so an operator reading logs can tell a run caused
/// by a config change from a periodic resync or an error retry. The set is
/// closed and small on purpose: [`Reason::as_str`] is safe to use as a metric
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The desired state (what the operator asked for) changed.
    DesiredChanged,
    /// The observed state (what the agent reported) changed.
    ObservedChanged,
    /// The previous reconcile asked to run again after a delay.
    Requeue,
    /// The previous reconcile failed; this is the retry after its backoff.
    RetryAfterError,
    /// A periodic full resync, to catch drift nobody reported.
    Resync,
    /// An operator asked for a run by hand.
    Manual,
}

impl Reason {
    /// Every reason, e.g. to pre-register metric label values.
    pub const ALL: [Reason; 6] = [
        Reason::DesiredChanged,
        Reason::ObservedChanged,
        Reason::Requeue,
        Reason::RetryAfterError,
        Reason::Resync,
        Reason::Manual,
    ];

    /// A stable snake_case name, suitable as a log field or metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::DesiredChanged => "desired_changed",
            Reason::ObservedChanged => "observed_changed",
            Reason::Requeue => "requeue",
            Reason::RetryAfterError => "retry_after_error",
            Reason::Resync => "resync",
            Reason::Manual => "manual",
        }
    }
}

impl Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;
    use std::collections::HashSet;

    #[test]
    fn reason_labels_are_distinct_and_match_display() {
        let labels: HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!(Reason::RetryAfterError.to_string(), "retry_after_error");
    }
}
