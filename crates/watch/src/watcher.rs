//! The watch loop: file-system events → debounce → load on a blocking thread → publish.
//!
//! Watches are armed before the first load, so no change made after `watch` returns can
//! be missed: either the load reads it or an event for it arrives afterwards. The
//! directory's parent is watched too (not recursively), because a watch on a deleted
//! directory dies with it; the parent sees the directory come back, and the recursive
//! watch is then set up again before the next load.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use steward_model::Diagnostic;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::debounce::Debounce;
use crate::filter::{classify, Relevance};
use crate::reload::{look, Found};
use crate::status::{DesiredState, Tracker, Trigger, WatchStatus};
use crate::{WatchConfig, WatchError};

/// The receiving side of a running watcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WatchHandle {
    desired: watch::Receiver<Option<DesiredState>>,
    status: watch::Receiver<WatchStatus>,
    manual: Arc<Notify>,
}

impl WatchHandle {
    /// The last good desired state; `None` until the directory first loads valid. Changes
    /// exactly when a new generation is published.
    pub fn desired(&self) -> watch::Receiver<Option<DesiredState>> {
        self.desired.clone()
    }

    /// The status, updated after every load. A status naming generation N is sent after
    /// generation N itself, so a reader of the status can always fetch that state.
    pub fn status(&self) -> watch::Receiver<WatchStatus> {
        self.status.clone()
    }

    pub fn current(&self) -> Option<DesiredState> {
        self.desired.borrow().clone()
    }

    pub fn current_status(&self) -> WatchStatus {
        self.status.borrow().clone()
    }

    /// Re-read the directory now, without waiting for events (SIGHUP, an API "refresh").
    pub fn reload(&self) {
        self.manual.notify_one();
    }
}

/// Start watching `dir`. Must be called inside a Tokio runtime.
///
/// The first load runs right away on the returned task; wait for it with
/// `handle.status().wait_for(|s| s.attempts > 0)`. A missing or invalid directory is not an
/// error here but a status: the watcher keeps going and picks up the fix. Errors are only
/// an unusable configuration or an OS watcher that cannot be created. The task ends when
/// `shutdown` is cancelled.
pub fn watch(
    dir: PathBuf,
    config: WatchConfig,
    shutdown: CancellationToken,
) -> Result<(WatchHandle, JoinHandle<()>), WatchError> {
    config.check()?;
    // Absolute so that event paths (built from the watched path) compare with it, but not
    // canonical: a symlinked directory that is swapped must keep being looked up by name.
    let dir = std::path::absolute(&dir).map_err(|source| WatchError::Unreadable {
        path: dir.clone(),
        source,
    })?;
    let wake = Arc::new(Wake::default());
    let watcher = {
        let wake = Arc::clone(&wake);
        let dir = dir.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            wake.on_event(event, &dir);
        })?
    };
    let mut arming = Arming {
        watcher,
        dir: dir.clone(),
        dir_armed: false,
    };
    arming.arm();

    let (desired_tx, desired) = watch::channel(None);
    let (status_tx, status) = watch::channel(WatchStatus::new(dir.clone()));
    let manual = Arc::new(Notify::new());
    let handle = WatchHandle {
        desired,
        status,
        manual: Arc::clone(&manual),
    };
    let task = Task {
        debounce: Debounce::new(config.debounce, config.max_delay),
        tracker: Tracker::new(dir.clone()),
        dir,
        arming: Arc::new(Mutex::new(arming)),
        wake,
        manual,
        desired: desired_tx,
        status: status_tx,
        rescan_interval: config.rescan_interval,
    };
    let join = tokio::spawn(task.run(shutdown));
    Ok((handle, join))
}

/// Shared with notify's callback thread. A `Notify` permit rather than a queue: the loop
/// only needs "something happened" and when it noticed, and a burst of ten thousand
/// events must not queue ten thousand messages.
#[derive(Debug, Default)]
struct Wake {
    notify: Notify,
    /// The directory itself changed identity (or events were lost): re-arm before loading.
    rearm: AtomicBool,
}

impl Wake {
    fn on_event(&self, event: notify::Result<notify::Event>, dir: &Path) {
        let relevance = match event {
            Ok(event) => {
                let relevance = classify(&event, dir);
                tracing::trace!(?event, ?relevance, "file-system event");
                relevance
            }
            Err(err) => {
                // The watcher may have lost its footing; assume the worst.
                tracing::warn!(error = %err, "file watcher error; re-reading the directory");
                Relevance::Rearm
            }
        };
        match relevance {
            Relevance::Ignore => return,
            Relevance::Rearm => self.rearm.store(true, Ordering::SeqCst),
            Relevance::Reload => {}
        }
        self.notify.notify_one();
    }
}

/// The OS watches on the directory and its parent.
struct Arming {
    watcher: RecommendedWatcher,
    dir: PathBuf,
    /// Whether the recursive watch on the directory is believed to be in place.
    dir_armed: bool,
}

impl Arming {
    /// (Re)install both watches. Removing first makes this correct after the directory
    /// was deleted or replaced, when the backend may still hold a watch on the old inode.
    fn arm(&mut self) {
        if let Some(parent) = self.dir.parent() {
            let _ = self.watcher.unwatch(parent);
            if let Err(err) = self.watcher.watch(parent, RecursiveMode::NonRecursive) {
                tracing::debug!(error = %err, parent = %parent.display(), "cannot watch the parent directory");
            }
        }
        let _ = self.watcher.unwatch(&self.dir);
        self.dir_armed = match self.watcher.watch(&self.dir, RecursiveMode::Recursive) {
            Ok(()) => true,
            Err(err) => {
                // Usually "not found": the load reports that; the parent watch or the next
                // rescan brings us back here.
                tracing::debug!(error = %err, dir = %self.dir.display(), "cannot watch the directory");
                false
            }
        };
    }
}

struct Task {
    dir: PathBuf,
    debounce: Debounce,
    tracker: Tracker,
    arming: Arc<Mutex<Arming>>,
    wake: Arc<Wake>,
    manual: Arc<Notify>,
    desired: watch::Sender<Option<DesiredState>>,
    status: watch::Sender<WatchStatus>,
    rescan_interval: Duration,
}

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(dir = %self.dir.display(), "watching desired state");
        self.reload(Trigger::Initial, &shutdown).await;
        let period = self.rescan_interval;
        let mut rescan = interval_at(Instant::now() + period, period);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !shutdown.is_cancelled() {
            let deadline = self.debounce.deadline();
            // Biased, with the deadline ahead of new events: under a constant stream of
            // events a wake-up is always ready, and it must not starve the reload.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.reload(Trigger::Change, &shutdown).await;
                }
                () = self.wake.notify.notified() => self.debounce.event(Instant::now()),
                () = self.manual.notified() => self.reload(Trigger::Manual, &shutdown).await,
                _ = rescan.tick() => self.reload(Trigger::Rescan, &shutdown).await,
            }
        }
        tracing::info!(dir = %self.dir.display(), "stopped watching desired state");
    }

    async fn reload(&mut self, trigger: Trigger, shutdown: &CancellationToken) {
        // Whatever was pending is read by this load; events from here on start a new burst.
        self.debounce.clear();
        // A rescan re-arms unconditionally: it is the safety net for watches lost silently.
        let rearm = self.wake.rearm.swap(false, Ordering::SeqCst) || trigger == Trigger::Rescan;
        let arming = Arc::clone(&self.arming);
        let dir = self.dir.clone();
        let last_good = self.tracker.last_good();
        let started = Instant::now();
        let job = tokio::task::spawn_blocking(move || {
            {
                let mut arming = arming.lock().unwrap_or_else(|e| e.into_inner());
                if rearm || !arming.dir_armed {
                    arming.arm();
                }
            }
            look(&dir, last_good.as_deref())
        });
        let found = tokio::select! {
            joined = job => joined.unwrap_or_else(|e| Found::Failed(WatchError::Loader(e.to_string()))),
            // A load stuck on a hung network share must not hold up shutdown.
            () = shutdown.cancelled() => return,
        };
        let took = started.elapsed();
        let previous_errors = self.tracker.status().errors.clone();
        let published = self
            .tracker
            .record(found, trigger, OffsetDateTime::now_utc(), took);
        let status = self.tracker.status().clone();
        log_outcome(&status, published.as_ref(), &previous_errors);
        if let Some(state) = published {
            self.desired.send_replace(Some(state));
        }
        self.status.send_replace(status);
    }
}

/// One line per new generation at info; errors at warn when they differ from last time;
/// an unchanged reload (every rescan) only at debug.
fn log_outcome(
    status: &WatchStatus,
    published: Option<&DesiredState>,
    previous_errors: &[Diagnostic],
) {
    let trigger = status.last_trigger.map_or("", |t| t.as_str());
    let took_ms = status.last_load_duration.as_secs_f64() * 1000.0;
    if let Some(state) = published {
        tracing::info!(
            generation = state.generation,
            changes = %state.diff,
            files = status.files,
            warnings = status.warnings.len(),
            trigger,
            took_ms,
            "desired state loaded"
        );
    } else if !status.valid {
        if status.errors != previous_errors {
            for error in &status.errors {
                tracing::warn!(%error, "desired state rejected");
            }
            tracing::warn!(
                errors = status.errors.len(),
                live_generation = status.last_applied_generation,
                trigger,
                "desired state is invalid; keeping the last good snapshot"
            );
        }
    } else {
        tracing::debug!(
            generation = status.last_applied_generation,
            trigger,
            took_ms,
            "desired state unchanged"
        );
    }
}
