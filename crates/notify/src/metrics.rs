//! `steward_notifications_sent_total{result}` and `steward_notifications_queued`.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

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
}

#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    sent: IntCounterVec,
    queued: IntGauge,
}

impl NotifyMetrics {
    /// Register into `registry` (`None`: counted but not exported, for tools and tests).
    pub fn register(registry: Option<&Registry>) -> Result<Self, prometheus::Error> {
        let sent = IntCounterVec::new(
            Opts::new(
                "steward_notifications_sent_total",
                "Mails by what became of them: sent (accepted by the SMTP server), failed (undeliverable after retries, or refused), dropped (queue full or Notifications removed).",
            ),
            &["result"],
        )?;
        let queued = IntGauge::new(
            "steward_notifications_queued",
            "Mails waiting for delivery or being delivered, over all Notifications objects.",
        )?;
        for r in SendResult::ALL {
            sent.with_label_values(&[r.as_str()]);
        }
        if let Some(registry) = registry {
            registry.register(Box::new(sent.clone()))?;
            registry.register(Box::new(queued.clone()))?;
        }
        Ok(Self { sent, queued })
    }

    pub(crate) fn count(&self, result: SendResult) {
        self.sent.with_label_values(&[result.as_str()]).inc();
    }

    pub fn sent(&self, result: SendResult) -> u64 {
        self.sent.with_label_values(&[result.as_str()]).get()
    }

    pub(crate) fn queued_add(&self, n: i64) {
        self.queued.add(n);
    }

    pub fn queued(&self) -> i64 {
        self.queued.get()
    }
}
