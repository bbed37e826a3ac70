//! The counts behind `steward_notifications_sent_total{result}` and
//! `steward_notifications_queued`. Plain atomics: the controllers' metrics registry reads
//! them when `/metrics` is written (this crate knows nothing of the exposition format).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What became of one mail: the `result` label, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted by the SMTP server.
    Sent,
    /// Not delivered after the retries, or refused for good (a refused recipient, AUTH).
    Failed,
    /// Never tried: the queue was full, or its Notifications object was removed.
    Dropped,
}

impl SendResult {
    pub const ALL: [SendResult; 3] = [Self::Sent, Self::Failed, Self::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Sent => 0,
            Self::Failed => 1,
            Self::Dropped => 2,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    sent: [AtomicU64; 3],
    queued: AtomicI64,
}

/// Shared by handle: the notifier counts, the metrics family reads.
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics(Arc<Counts>);

impl NotifyMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn count(&self, result: SendResult) {
        self.0.sent[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Mails with this result since start.
    pub fn sent(&self, result: SendResult) -> u64 {
        self.0.sent[result.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn queued_add(&self, n: i64) {
        self.0.queued.fetch_add(n, Ordering::Relaxed);
    }

    /// Mails waiting or being delivered, over all Notifications objects.
    pub fn queued(&self) -> i64 {
        self.0.queued.load(Ordering::Relaxed)
    }
}
