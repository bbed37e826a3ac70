//! The error of a reconcile that cannot fail (shared by the runtime's tests and benchmarks).

use std::convert::Infallible;

use steward_runtime::ReconcileError;

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never(Infallible);

impl ReconcileError for Never {
    fn metric_label(&self) -> &'static str {
        "never"
    }
}
