//! Metric hooks, kept free of any metrics library.
//!
//! The binary that owns the Prometheus registry implements
//! [`ControllerObserver`]; the runtime only calls it. This keeps the runtime
//! usable in tests and tools that have no metrics at all.

use std::time::Duration;

use crate::key::Reason;

/// Result label the runtime reports for a successful reconcile.
pub const RESULT_OK: &str = "ok";
/// Result label the runtime reports for a reconcile that panicked.
pub const RESULT_PANIC: &str = "panic";

/// Receives controller events, e.g. to feed metrics.
///
/// Every method has an empty default body, so an implementation overrides
/// only what it records. Calls are made from the controller loop, so they
/// should be cheap and must not block.
pub trait ControllerObserver: Send + Sync {
    /// A reconcile is about to start.
    fn on_reconcile_start(&self, controller: &str, reason: Reason) {
        let _ = (controller, reason);
    }

    /// A reconcile ended. `result` is [`RESULT_OK`], [`RESULT_PANIC`] or the
    /// error's [`metric_label`](crate::ReconcileError::metric_label).
    fn on_reconcile_end(&self, controller: &str, reason: Reason, duration: Duration, result: &str) {
        let _ = (controller, reason, duration, result);
    }

    /// The number of keys due to run and not running (waiting for capacity,
    /// or held behind a running reconcile of the same key) changed. Keys
    /// parked until a later time (requeues, backoff retries) are not counted.
    fn on_queue_depth(&self, controller: &str, depth: usize) {
        let _ = (controller, depth);
    }
}

/// An observer that records nothing; the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl ControllerObserver for NoopObserver {}
