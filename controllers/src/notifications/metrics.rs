//! `steward_notifications_sent_total{result}` and `steward_notifications_queued`, read
//! from the notifier's counts when `/metrics` is written.

use std::io::Write;

use steward_notify::{NotifyMetrics, SendResult};

use crate::metrics::Family;

const SENT: &str = "steward_notifications_sent_total";
const QUEUED: &str = "steward_notifications_queued";

pub(crate) struct NotificationsFamily(pub NotifyMetrics);

impl Family for NotificationsFamily {
    fn names(&self) -> Vec<&'static str> {
        vec![SENT, QUEUED]
    }

    fn encode(&self, chunks: &mut Vec<Vec<u8>>) {
        // Every result from start-up, at 0, so rate() and alerts see the first one.
        let mut sent = Vec::new();
        let _ = write!(
            sent,
            "# HELP {SENT} Notification mails by what became of them: sent (accepted by the SMTP server), failed (undeliverable after retries, or refused), dropped (queue full, or the Notifications object was removed).\n# TYPE {SENT} counter\n"
        );
        for r in SendResult::ALL {
            let _ = writeln!(
                sent,
                "{SENT}{{result=\"{}\"}} {}",
                r.as_str(),
                self.0.sent(r)
            );
        }
        chunks.push(sent);
        let mut queued = Vec::new();
        let _ = write!(
            queued,
            "# HELP {QUEUED} Notification mails waiting for delivery or being delivered, over all Notifications objects.\n# TYPE {QUEUED} gauge\n{QUEUED} {}\n",
            self.0.queued()
        );
        chunks.push(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_is_written_from_the_start() {
        let mut chunks = Vec::new();
        NotificationsFamily(NotifyMetrics::new()).encode(&mut chunks);
        let text = String::from_utf8(chunks.concat()).unwrap();
        for line in [
            "steward_notifications_sent_total{result=\"sent\"} 0\n",
            "steward_notifications_sent_total{result=\"failed\"} 0\n",
            "steward_notifications_sent_total{result=\"dropped\"} 0\n",
            "steward_notifications_queued 0\n",
        ] {
            assert!(text.contains(line), "{text}");
        }
    }
}
