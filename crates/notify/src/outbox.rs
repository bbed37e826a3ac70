//! One Notifications object's queue and its delivery task: bounded, in order, each mail
//! retried with backoff while the failure is transient (the server restarting, the
//! network), and never dropped in silence: a mail that cannot be delivered, or that finds
//! the queue full, is counted and reported through the failure sink.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_model::notifications::{NotificationEvent, Notifications};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::DeliveryError;
use crate::metrics::{NotifyMetrics, SendResult};
use crate::settings::SmtpSettings;
use crate::smtp::{Mailer, Outgoing};

/// Mails one Notifications object may have waiting.
pub const QUEUE_CAPACITY: usize = 1000;

/// How delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per mail, the first included.
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// About six minutes of trying: 1 s doubling to 60 s, ten attempts.
    fn default() -> Self {
        Self {
            attempts: 10,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        // Up to a quarter less, so many objects retrying do not hit the server at once.
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 - jitter)
    }
}

/// A mail that was not delivered: what the failure sink is told.
#[derive(Debug, Clone)]
pub struct Undelivered {
    pub notification: String,
    pub event: NotificationEvent,
    pub object: String,
    pub result: SendResult,
    pub error: DeliveryError,
}

pub type FailureSink = Arc<dyn Fn(Undelivered) + Send + Sync>;

/// What the status shows of one Notifications object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    pub last_sent: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// The bounded label of the last error (`auth`, `tcp`, ...).
    pub last_error_reason: Option<&'static str>,
    pub last_error_time: Option<OffsetDateTime>,
    pub queued: usize,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

pub(crate) struct Job {
    pub mail: Outgoing,
    pub event: NotificationEvent,
    pub object: String,
}

/// Where the delivery task gets its settings: replaced when the desired state changes.
pub(crate) type Config = Arc<(Notifications, PathBuf)>;

pub(crate) struct Outbox {
    config: watch::Sender<Config>,
    queue: mpsc::Sender<Job>,
    status: Arc<Mutex<OutboxStatus>>,
    cancel: CancellationToken,
}

struct Worker {
    name: String,
    config: watch::Receiver<Config>,
    status: Arc<Mutex<OutboxStatus>>,
    metrics: NotifyMetrics,
    retry: RetryPolicy,
    sink: FailureSink,
    cancel: CancellationToken,
}

impl Outbox {
    pub(crate) fn start(
        config: Config,
        metrics: NotifyMetrics,
        retry: RetryPolicy,
        sink: FailureSink,
        parent: &CancellationToken,
    ) -> Self {
        let (config_tx, config_rx) = watch::channel(Arc::clone(&config));
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let status = Arc::new(Mutex::new(OutboxStatus::default()));
        let cancel = parent.child_token();
        let worker = Worker {
            name: config.0.name.clone(),
            config: config_rx,
            status: Arc::clone(&status),
            metrics,
            retry,
            sink,
            cancel: cancel.clone(),
        };
        tokio::spawn(worker.run(rx));
        Self {
            config: config_tx,
            queue,
            status,
            cancel,
        }
    }

    pub(crate) fn config(&self) -> Config {
        Arc::clone(&self.config.borrow())
    }

    pub(crate) fn update(&self, config: Config) {
        self.config.send_replace(config);
    }

    /// Queue `job`; a full queue hands it back.
    pub(crate) fn enqueue(&self, job: Job, metrics: &NotifyMetrics) -> Result<(), Job> {
        // Counted before sending, so the worker's decrement never runs ahead of it.
        self.status.lock().unwrap_or_else(|e| e.into_inner()).queued += 1;
        metrics.queued_add(1);
        self.queue.try_send(job).map_err(|e| {
            self.status.lock().unwrap_or_else(|e| e.into_inner()).queued -= 1;
            metrics.queued_add(-1);
            match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            }
        })
    }

    pub(crate) fn status(&self) -> OutboxStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A mail that never reached the queue (a template that failed, a full queue).
    pub(crate) fn note_unqueued(&self, result: SendResult, error: &DeliveryError) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if result == SendResult::Dropped {
            s.dropped += 1;
        } else {
            s.failed += 1;
        }
        s.last_error = Some(error.to_string());
        s.last_error_reason = Some(error.label());
        s.last_error_time = Some(OffsetDateTime::now_utc());
    }

    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut mailer: Option<Mailer> = None;
        loop {
            let job = tokio::select! {
                () = self.cancel.cancelled() => break,
                job = rx.recv() => match job { Some(j) => j, None => break },
            };
            let delivered = self.deliver(&job, &mut mailer).await;
            self.finish(&job, delivered);
        }
        if let Some(m) = mailer.as_mut() {
            m.close().await;
        }
        // What is still queued when the object is removed (or steward stops) is dropped,
        // and said so.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            self.finish(&job, None);
        }
    }

    /// `None`: cancelled mid-way.
    async fn deliver(
        &mut self,
        job: &Job,
        mailer: &mut Option<Mailer>,
    ) -> Option<Result<(), DeliveryError>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.config.has_changed().unwrap_or(false) || mailer.is_none() {
                if let Some(m) = mailer.as_mut() {
                    m.close().await;
                }
                let config = Arc::clone(&self.config.borrow_and_update());
                *mailer = match SmtpSettings::read(&config.0, &config.1) {
                    Ok(settings) => Some(Mailer::new(settings)),
                    Err(e) => return Some(Err(e)),
                };
            }
            let m = mailer.as_mut()?;
            let result = tokio::select! {
                () = self.cancel.cancelled() => return None,
                r = m.send(&job.mail) => r,
            };
            match result {
                Ok(()) => return Some(Ok(())),
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    tracing::info!(
                        "notifications/{}: delivery attempt {attempt} failed ({e}); retrying",
                        self.name
                    );
                    self.note_error(&e);
                    let delay = self.retry.delay(attempt);
                    tokio::select! {
                        () = self.cancel.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn note_error(&self, e: &DeliveryError) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.last_error = Some(e.to_string());
        s.last_error_reason = Some(e.label());
        s.last_error_time = Some(OffsetDateTime::now_utc());
    }

    fn finish(&self, job: &Job, delivered: Option<Result<(), DeliveryError>>) {
        self.metrics.queued_add(-1);
        let result = {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.queued = s.queued.saturating_sub(1);
            match &delivered {
                Some(Ok(())) => {
                    s.sent += 1;
                    s.last_sent = Some(OffsetDateTime::now_utc());
                    SendResult::Sent
                }
                Some(Err(_)) => {
                    s.failed += 1;
                    SendResult::Failed
                }
                None => {
                    s.dropped += 1;
                    SendResult::Dropped
                }
            }
        };
        self.metrics.count(result);
        match delivered {
            Some(Ok(())) => tracing::debug!(
                "notifications/{}: mailed {} about {}",
                self.name,
                job.event,
                job.object
            ),
            Some(Err(error)) => {
                self.note_error(&error);
                tracing::warn!(
                    "notifications/{}: mail about {} ({}) undeliverable: {error}",
                    self.name,
                    job.object,
                    job.event
                );
                (self.sink)(Undelivered {
                    notification: self.name.clone(),
                    event: job.event,
                    object: job.object.clone(),
                    result,
                    error,
                });
            }
            None => {
                let error = DeliveryError::Config {
                    detail:
                        "steward stopped or the Notifications object was removed before delivery"
                            .into(),
                };
                (self.sink)(Undelivered {
                    notification: self.name.clone(),
                    event: job.event,
                    object: job.object.clone(),
                    result,
                    error,
                });
            }
        }
    }
}
