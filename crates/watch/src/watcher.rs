//! The watch loop: file-system events → debounce → load on a thread of its own → publish.
//!
//! Each load runs on a dedicated OS thread, one at a time. A load that takes longer than
//! `slow_load` is logged and shown in the status while it runs; shutdown never waits for
//! one (a `spawn_blocking` task would be waited for when the runtime drops, so a load
//! stuck on a hung network share would keep the daemon from exiting). A load that could
//! not judge the files (out of file descriptors) is retried with a growing delay.
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
use steward_model::load::Limits;
use steward_model::Snapshot;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::debounce::Debounce;
use crate::filter::{classify, Relevance};
use crate::reload::{look, Found};
use crate::report::log_outcome;
use crate::status::{DesiredState, LoadOutcome, Tracker, Trigger, WatchStatus};
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
    watch_with(dir, config, shutdown, Arc::new(look))
}

/// One look at the directory; [`look`] except in tests that need a load to hang.
type Loader = Arc<dyn Fn(&Path, Option<&Snapshot>, &Limits) -> Found + Send + Sync>;

fn watch_with(
    dir: PathBuf,
    config: WatchConfig,
    shutdown: CancellationToken,
    loader: Loader,
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
        // Not following links, like the loader: a link to `/` would otherwise put a watch
        // on every directory of the machine (and a loop on the same ones over and over).
        RecommendedWatcher::new(
            move |event: notify::Result<notify::Event>| wake.on_event(event, &dir),
            notify::Config::default().with_follow_symlinks(false),
        )?
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
        slow_load: config.slow_load,
        retry: Retry::new(config.retry_after),
        limits: config.limits,
        loader,
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
    slow_load: Duration,
    retry: Retry,
    limits: Limits,
    loader: Loader,
}

/// When to retry a load that could not judge the files: doubling delays, reset by any
/// load that did.
#[derive(Debug)]
struct Retry {
    first: Duration,
    next: Duration,
    at: Option<Instant>,
}

impl Retry {
    fn new(first: Duration) -> Self {
        Self {
            first,
            next: first,
            at: None,
        }
    }

    fn schedule(&mut self) -> Duration {
        let delay = self.next;
        self.at = Some(Instant::now() + delay);
        self.next = (self.next * 2).min(self.first * 32);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
        self.at = None;
    }
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
            let retry_at = self.retry.at;
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
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.reload(Trigger::Retry, &shutdown).await;
                }
                _ = rescan.tick() => self.reload(Trigger::Rescan, &shutdown).await,
            }
        }
        tracing::info!(dir = %self.dir.display(), "stopped watching desired state");
    }

    async fn reload(&mut self, trigger: Trigger, shutdown: &CancellationToken) {
        // Whatever was pending is read by this load; events from here on start a new burst.
        self.debounce.clear();
        self.retry.at = None;
        // A rescan re-arms unconditionally: it is the safety net for watches lost silently.
        let rearm = self.wake.rearm.swap(false, Ordering::SeqCst) || trigger == Trigger::Rescan;
        let started = Instant::now();
        let started_at = OffsetDateTime::now_utc();
        let mut result = self.spawn_load(rearm);
        let mut slow = std::pin::pin!(tokio::time::sleep(self.slow_load));
        let mut was_slow = false;
        let found = loop {
            tokio::select! {
                biased;
                // A load stuck on a hung network share must not hold up shutdown: its
                // thread is left behind and ends with the process.
                () = shutdown.cancelled() => return,
                joined = &mut result => break joined.unwrap_or_else(|_| {
                    Found::Failed(WatchError::Loader(
                        "the load ended without a result (it panicked)".to_owned(),
                    ))
                }),
                () = &mut slow, if !was_slow => {
                    was_slow = true;
                    tracing::warn!(
                        dir = %self.dir.display(),
                        trigger = trigger.as_str(),
                        after_s = self.slow_load.as_secs_f64(),
                        "desired-state load is still running; the live generation stays as it is meanwhile"
                    );
                    self.tracker.loading(started_at);
                    self.status.send_replace(self.tracker.status().clone());
                }
            }
        };
        let took = started.elapsed();
        let before = self.tracker.status().clone();
        let published = self
            .tracker
            .record(found, trigger, OffsetDateTime::now_utc(), took);
        let status = self.tracker.status().clone();
        log_outcome(&before, &status, published.as_ref(), was_slow);
        if status.last_outcome == Some(LoadOutcome::Deferred) {
            let delay = self.retry.schedule();
            tracing::debug!(
                retry_in_ms = delay.as_millis(),
                "desired-state load deferred"
            );
        } else {
            self.retry.reset();
        }
        if let Some(state) = published {
            self.desired.send_replace(Some(state));
        }
        self.status.send_replace(status);
    }

    /// Start one load on a thread of its own; its result arrives on the receiver.
    fn spawn_load(&self, rearm: bool) -> oneshot::Receiver<Found> {
        let (tx, rx) = oneshot::channel();
        let arming = Arc::clone(&self.arming);
        let dir = self.dir.clone();
        let last_good = self.tracker.last_good();
        let limits = self.limits.clone();
        let loader = Arc::clone(&self.loader);
        let spawned = std::thread::Builder::new()
            .name("desired-state-load".to_owned())
            .spawn(move || {
                {
                    let mut arming = arming.lock().unwrap_or_else(|e| e.into_inner());
                    if rearm || !arming.dir_armed {
                        arming.arm();
                    }
                }
                let _ = tx.send(loader(&dir, last_good.as_deref(), &limits));
            });
        match spawned {
            Ok(_) => rx,
            Err(e) => {
                // The process's thread limit: like running out of file descriptors, this
                // says nothing about the files.
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Found::Deferred(WatchError::Exhausted(format!(
                    "cannot start a thread to load the files: {e}"
                ))));
                rx
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(30);
    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../desired-state");

    async fn wait_status(handle: &WatchHandle, what: &str, pred: impl Fn(&WatchStatus) -> bool) {
        let mut rx = handle.status();
        tokio::time::timeout(PATIENCE, rx.wait_for(|s| pred(s)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {what}: {:#?}",
                    handle.current_status()
                )
            })
            .unwrap();
    }

    #[test]
    fn a_hung_load_shows_in_the_status_and_shutdown_does_not_wait_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (release, hang) = mpsc::channel::<()>();
        let hang = Mutex::new(hang);
        // A load that blocks like a read from a hung network share, until released.
        let loader: Loader = Arc::new(move |_: &Path, _: Option<&Snapshot>, _: &Limits| {
            let _ = hang.lock().unwrap().recv();
            Found::Failed(WatchError::Loader("released".to_owned()))
        });
        let config = WatchConfig {
            slow_load: Duration::from_millis(50),
            ..WatchConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        runtime.block_on(async {
            let (handle, task) =
                watch_with(tmp.path().to_owned(), config, shutdown.clone(), loader).unwrap();
            wait_status(&handle, "the slow load in the status", |s| {
                s.loading_since.is_some()
            })
            .await;
            assert_eq!(handle.current_status().attempts, 0, "still running");
            shutdown.cancel();
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the watch task ends on shutdown with the load still hung")
                .unwrap();
        });
        // The daemon's runtime is dropped when `main` returns; it waits for its blocking
        // tasks, so the load must not be one of them.
        let (dropped_tx, dropped) = mpsc::channel();
        std::thread::spawn(move || {
            drop(runtime);
            let _ = dropped_tx.send(());
        });
        dropped
            .recv_timeout(PATIENCE)
            .expect("the runtime shuts down while the load is still hung");
        drop(release);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_that_could_not_judge_the_files_is_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        // The second load runs out of file descriptors; the others read the bundled state.
        let loader: Loader = Arc::new(
            move |dir: &Path, last: Option<&Snapshot>, limits: &Limits| {
                if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                    Found::Deferred(WatchError::Exhausted(
                        "Too many open files (os error 24)".to_owned(),
                    ))
                } else {
                    look(dir, last, limits)
                }
            },
        );
        let config = WatchConfig {
            retry_after: Duration::from_millis(20),
            ..WatchConfig::default()
        };
        let shutdown = CancellationToken::new();
        let (handle, task) =
            watch_with(PathBuf::from(FIXTURE), config, shutdown.clone(), loader).unwrap();
        wait_status(&handle, "generation 1", |s| s.last_applied_generation == 1).await;
        handle.reload();
        wait_status(&handle, "the retry", |s| {
            s.last_trigger == Some(Trigger::Retry)
        })
        .await;
        let s = handle.current_status();
        assert!(s.valid, "never judged invalid: {s:#?}");
        assert_eq!(s.last_outcome, Some(LoadOutcome::Unchanged));
        assert_eq!(
            (s.last_applied_generation, s.last_attempted_generation),
            (1, 1)
        );
        assert_eq!(s.last_load_error, None);
        assert_eq!(handle.current().unwrap().generation, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        shutdown.cancel();
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }
}
