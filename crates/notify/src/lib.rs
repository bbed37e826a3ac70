//! Mail notifications for Steward: the events of the controllers' stream that a
//! `Notifications` object subscribes to are deduplicated ([`dedup`]), rendered with its
//! templates ([`render`]) and queued on its outbox ([`outbox`]), whose task delivers them
//! over SMTP ([`smtp`]: lettre on rustls; STARTTLS, implicit TLS or none; AUTH PLAIN/LOGIN)
//! with retries, reconnecting when the server closed the connection.
//!
//! ```text
//! store events ──> Notice::from_event ──> Notifier::offer ──> per object: subscribed?
//!                                                              ──> Dedup::admit (persisted)
//!                                                              ──> render ──> Outbox (bounded)
//!                                                                              └─> Mailer ──> SMTP
//! ```

pub mod dedup;
pub mod error;
pub mod metrics;
pub mod notice;
pub mod outbox;
pub mod render;
pub mod settings;
pub mod smtp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use steward_model::notifications::Notifications;
use tokio_util::sync::CancellationToken;

pub use dedup::{Dedup, Verdict};
pub use error::DeliveryError;
pub use metrics::{NotifyMetrics, SendResult};
pub use notice::{event_for, Notice};
pub use outbox::{FailureSink, OutboxStatus, RetryPolicy, Undelivered, QUEUE_CAPACITY};
pub use settings::SmtpSettings;
pub use smtp::{Mailer, Outgoing};

use outbox::{Job, Outbox};

/// Every Notifications object's outbox, and the one deduplication state they share.
pub struct Notifier {
    inner: Mutex<Inner>,
    metrics: NotifyMetrics,
    retry: RetryPolicy,
    sink: FailureSink,
    shutdown: CancellationToken,
}

struct Inner {
    outboxes: BTreeMap<String, Outbox>,
    dedup: Dedup,
    installation: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// `state_dir` holds the dedup state (`None`: memory only); `sink` hears of every mail
    /// not delivered; outboxes stop with `shutdown`.
    pub fn new(
        metrics: NotifyMetrics,
        state_dir: Option<&Path>,
        retry: RetryPolicy,
        sink: FailureSink,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                outboxes: BTreeMap::new(),
                dedup: Dedup::load(state_dir),
                installation: String::new(),
            }),
            metrics,
            retry,
            sink,
            shutdown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put `desired` in force for the object `name` (`None`: it was removed). `dir` is the
    /// desired-state directory references resolve against. Needs a tokio runtime.
    pub fn apply(
        &self,
        name: &str,
        desired: Option<&Notifications>,
        dir: &Path,
        installation: &str,
    ) {
        let mut inner = self.lock();
        inner.installation = installation.to_owned();
        match desired {
            None => {
                if let Some(outbox) = inner.outboxes.remove(name) {
                    outbox.stop();
                    inner.dedup.forget(name);
                }
            }
            Some(n) => {
                let config = Arc::new((n.clone(), PathBuf::from(dir)));
                match inner.outboxes.get(name) {
                    Some(outbox) if *outbox.config() == *config => {}
                    Some(outbox) => outbox.update(config),
                    None => {
                        let outbox = Outbox::start(
                            config,
                            self.metrics.clone(),
                            self.retry,
                            Arc::clone(&self.sink),
                            &self.shutdown,
                        );
                        inner.outboxes.insert(name.to_owned(), outbox);
                    }
                }
            }
        }
    }

    /// Names of the objects with an outbox.
    pub fn names(&self) -> Vec<String> {
        self.lock().outboxes.keys().cloned().collect()
    }

    pub fn status(&self, name: &str) -> Option<OutboxStatus> {
        self.lock().outboxes.get(name).map(Outbox::status)
    }

    pub fn metrics(&self) -> &NotifyMetrics {
        &self.metrics
    }

    /// Queue `notice` for every object subscribed to its event, unless deduplicated.
    /// Returns how many mails were queued.
    pub fn offer(&self, notice: &Notice) -> usize {
        self.offer_at(notice, SystemTime::now())
    }

    /// [`Notifier::offer`] at a given time (dedup windows), for tests and benchmarks.
    pub fn offer_at(&self, notice: &Notice, now: SystemTime) -> usize {
        let mut inner = self.lock();
        let Inner {
            outboxes,
            dedup,
            installation,
        } = &mut *inner;
        let mut queued = 0;
        for (name, outbox) in outboxes.iter() {
            let config = outbox.config();
            let n = &config.0;
            if !n.events.contains(&notice.event) {
                continue;
            }
            if dedup.admit(name, n.rate_limit, notice, now) != Verdict::Send {
                continue;
            }
            let mail = match render::render(n, notice, installation) {
                Ok(m) => m,
                Err(error) => {
                    self.undeliverable(outbox, name, notice, SendResult::Failed, error);
                    continue;
                }
            };
            let job = Job {
                mail,
                event: notice.event,
                object: notice.object.clone(),
            };
            match outbox.enqueue(job, &self.metrics) {
                Ok(()) => queued += 1,
                Err(_) => self.undeliverable(
                    outbox,
                    name,
                    notice,
                    SendResult::Dropped,
                    DeliveryError::Config {
                        detail: format!("the queue is full ({QUEUE_CAPACITY} mails waiting)"),
                    },
                ),
            }
        }
        queued
    }

    fn undeliverable(
        &self,
        outbox: &Outbox,
        name: &str,
        notice: &Notice,
        result: SendResult,
        error: DeliveryError,
    ) {
        self.metrics.count(result);
        outbox.note_unqueued(result, &error);
        tracing::warn!(
            "notifications/{name}: mail about {} not queued: {error}",
            notice.object
        );
        (self.sink)(Undelivered {
            notification: name.to_owned(),
            event: notice.event,
            object: notice.object.clone(),
            result,
            error,
        });
    }
}
