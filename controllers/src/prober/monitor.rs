//! The probe scheduler: every watched service is probed on its own `interval`,
//! independently of reconciles; outcomes become verdicts (rise/fall) that go to a
//! [`ProbeSink`] (the store, metrics, and a reconcile of the service when the verdict
//! changes).
//!
//! Bounded work: probes wait for a permit of one of two lanes, so that services whose last
//! probe failed (and may well time out) cannot take the slots of healthy ones; every probe
//! ends by its timeout; a service is never probed twice at once. A scheduled probe that
//! cannot get a permit waits; its next one is planned from when it ran, so a backlog never
//! piles up.
//!
//! Settling: a service just watched, reset (installed, upgraded, restarted) or asked for
//! with [`Monitor::probe_soon`] is probed at once and then every [`SETTLE_PACE`] until it
//! is up, for at most one `interval`, instead of an `interval` apart: a process started a
//! moment ago is seen healthy within a fraction of a second, not at its next scheduled
//! probe (an upgrade waits for each service in turn). Rise and fall keep their meaning:
//! every pass counts towards `rise` (from down, `rise` passes in a row at that pace), but
//! only the first failure of a settling period counts towards `fall`; the others only
//! break a run of passes, so a slow start is judged down no sooner than on the schedule.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::Health;
use super::{Phase, ProbeError, ProbeResult, ProbeTarget, Prober};
use crate::service_key::ServiceKey;

/// Past the check's own timeout, a prober that still has not answered is cut off.
const GUARD: Duration = Duration::from_millis(250);
/// The pace of probes while a service settles (see the module's comment).
pub const SETTLE_PACE: Duration = Duration::from_millis(100);
/// How often, at most, probes that steward could not make are reported in the log.
const LOCAL_FAILURE_WARNING_EVERY: Duration = Duration::from_secs(10);

/// How many probes run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorSettings {
    /// For services whose last probe passed (or that were never probed).
    pub healthy_slots: usize,
    /// For services whose last probe failed.
    pub failing_slots: usize,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            healthy_slots: 256,
            failing_slots: 64,
        }
    }
}

/// One probe and what it did to the verdict.
#[derive(Debug)]
pub struct ProbeReport<'a> {
    pub target: &'a ProbeTarget,
    pub result: &'a ProbeResult,
    /// After this probe.
    pub verdict: Option<bool>,
    pub changed: bool,
}

/// Where probe outcomes go. Called with the monitor's lock held, in completion order, so
/// an outcome never overtakes a later `reset` or `unwatch`: keep it short, and never call
/// back into the monitor.
pub trait ProbeSink: Send + Sync + 'static {
    fn observe(&self, key: &ServiceKey, report: &ProbeReport<'_>);
}

struct Entry {
    target: Arc<ProbeTarget>,
    /// Bumped by a new target or a reset: outcomes of older probes are dropped.
    version: u64,
    health: Health,
    in_flight: bool,
    last_success: Option<bool>,
    /// Settling until then; whether a failure was counted in this settling period.
    settle: Option<(Instant, bool)>,
}

impl Entry {
    fn settle(&mut self, now: Instant) {
        self.settle = Some((now + self.target.check.interval, false));
    }
}

#[derive(Default)]
struct Registry {
    entries: HashMap<ServiceKey, Entry>,
    /// (due, key, version); stale items are skipped when they come up.
    queue: BinaryHeap<Reverse<(Instant, ServiceKey, u64)>>,
    versions: u64,
    /// When the loop will look at the queue next.
    wake_at: Option<Instant>,
    /// Probes not made for lack of local resources since the last warning, and when that
    /// was.
    local_failures: (u64, Option<Instant>),
}

impl Registry {
    fn next_version(&mut self) -> u64 {
        self.versions += 1;
        self.versions
    }

    /// Plan a probe; true when the loop must wake up earlier than it meant to.
    fn schedule(&mut self, due: Instant, key: ServiceKey, version: u64) -> bool {
        self.queue.push(Reverse((due, key, version)));
        self.wake_at.is_none_or(|w| due < w)
    }
}

struct Inner {
    prober: Arc<dyn Prober>,
    registry: Mutex<Registry>,
    wake: Notify,
    healthy: Arc<Semaphore>,
    failing: Arc<Semaphore>,
}

/// A handle on the scheduler; clones share it.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("watched", &self.len())
            .finish_non_exhaustive()
    }
}

/// One probe the loop hands to a task.
struct Due {
    key: ServiceKey,
    version: u64,
    target: Arc<ProbeTarget>,
    failing: bool,
    /// Asked for by [`Monitor::probe_now`]: always counted, settling or not.
    forced: bool,
}

impl Monitor {
    pub fn new(prober: Arc<dyn Prober>, settings: MonitorSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                prober,
                registry: Mutex::new(Registry::default()),
                wake: Notify::new(),
                healthy: Arc::new(Semaphore::new(settings.healthy_slots.max(1))),
                failing: Arc::new(Semaphore::new(settings.failing_slots.max(1))),
            }),
        }
    }

    /// The prober the probes go through.
    pub fn prober(&self) -> &Arc<dyn Prober> {
        &self.inner.prober
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Probe `key` at `target`. A new key, or a changed target (port, path, interval ...),
    /// is probed at once; the verdict is kept across a target change.
    pub fn watch(&self, key: &ServiceKey, target: ProbeTarget) {
        let mut registry = self.lock();
        let version = match registry.entries.get(key) {
            Some(entry) if *entry.target == target => return,
            _ => registry.next_version(),
        };
        let new = !registry.entries.contains_key(key);
        let entry = registry
            .entries
            .entry(key.clone())
            .or_insert_with(|| Entry {
                target: Arc::new(target.clone()),
                version,
                health: Health::default(),
                in_flight: false,
                last_success: None,
                settle: None,
            });
        entry.target = Arc::new(target);
        entry.version = version;
        if new {
            entry.settle(Instant::now());
        }
        let in_flight = entry.in_flight;
        // An in-flight probe reschedules the new version when it ends.
        if !in_flight && registry.schedule(Instant::now(), key.clone(), version) {
            self.inner.wake.notify_one();
        }
    }

    /// Forget the verdict of `key` (reinstalled, restarted) and probe it again at once.
    pub fn reset(&self, key: &ServiceKey) {
        self.reset_with(key, || {});
    }

    /// [`Monitor::reset`], running `forgotten` under the monitor's lock: whoever mirrors
    /// verdicts forgets this one before any later outcome can be reported.
    pub fn reset_with(&self, key: &ServiceKey, forgotten: impl FnOnce()) {
        let mut registry = self.lock();
        forgotten();
        let version = registry.next_version();
        let Some(entry) = registry.entries.get_mut(key) else {
            return;
        };
        entry.version = version;
        entry.health.reset();
        entry.last_success = None;
        entry.settle(Instant::now());
        let in_flight = entry.in_flight;
        if !in_flight && registry.schedule(Instant::now(), key.clone(), version) {
            self.inner.wake.notify_one();
        }
    }

    /// Probe `key` as soon as a slot is free, then at [`SETTLE_PACE`] until it is up (for
    /// at most one `interval`), keeping its verdict: for whoever just changed something
    /// and waits for its health (rise and fall still apply, see the module's comment).
    /// Nothing if `key` is not watched.
    pub fn probe_soon(&self, key: &ServiceKey) {
        let mut registry = self.lock();
        let version = registry.next_version();
        let Some(entry) = registry.entries.get_mut(key) else {
            return;
        };
        // A new version: a probe already queued is dropped when it comes up, one in
        // flight reschedules this one when it ends.
        entry.version = version;
        entry.settle(Instant::now());
        let in_flight = entry.in_flight;
        if !in_flight && registry.schedule(Instant::now(), key.clone(), version) {
            self.inner.wake.notify_one();
        }
    }

    /// Stop probing `key`.
    pub fn unwatch(&self, key: &ServiceKey) {
        self.unwatch_with(key, || {});
    }

    /// [`Monitor::unwatch`], running `forgotten` under the monitor's lock.
    pub fn unwatch_with(&self, key: &ServiceKey, forgotten: impl FnOnce()) {
        let mut registry = self.lock();
        forgotten();
        registry.entries.remove(key);
    }

    /// Stop probing every service of `server`.
    pub fn unwatch_server(&self, server: &str) {
        self.lock().entries.retain(|k, _| k.server != server);
    }

    pub fn target(&self, key: &ServiceKey) -> Option<ProbeTarget> {
        self.lock().entries.get(key).map(|e| (*e.target).clone())
    }

    pub fn verdict(&self, key: &ServiceKey) -> Option<bool> {
        self.lock().entries.get(key).and_then(|e| e.health.verdict)
    }

    /// Services watched.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run the probes until `shutdown`; outcomes go to `sink`. In-flight probes are
    /// abandoned at shutdown.
    pub async fn run(&self, sink: Arc<dyn ProbeSink>, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        loop {
            let (due, next) = self.take_due();
            for probe in due {
                let (monitor, sink, stop) = (self.clone(), sink.clone(), shutdown.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = monitor.probe(probe, sink.as_ref()) => {}
                    }
                });
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = sleep => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Probe `key` now, outside the schedule (tests, and whoever cannot wait); `None` if
    /// it is not watched or a probe of it is already running. Its outcome counts towards
    /// rise and fall like a scheduled probe's, settling or not.
    pub async fn probe_now(&self, key: &ServiceKey, sink: &dyn ProbeSink) -> Option<ProbeResult> {
        let due = {
            let mut registry = self.lock();
            let entry = registry.entries.get_mut(key)?;
            if entry.in_flight {
                return None;
            }
            entry.in_flight = true;
            Due {
                key: key.clone(),
                version: entry.version,
                target: entry.target.clone(),
                failing: entry.last_success == Some(false),
                forced: true,
            }
        };
        Some(self.probe(due, sink).await)
    }

    /// Pop what is due; the instant of the next item.
    fn take_due(&self) -> (Vec<Due>, Option<Instant>) {
        let now = Instant::now();
        let mut registry = self.lock();
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = registry.queue.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key, version))) = registry.queue.pop() else {
                break;
            };
            let Some(entry) = registry.entries.get_mut(&key) else {
                continue;
            };
            if entry.version != version || entry.in_flight {
                continue;
            }
            entry.in_flight = true;
            due.push(Due {
                target: entry.target.clone(),
                failing: entry.last_success == Some(false),
                forced: false,
                key,
                version,
            });
        }
        let next = registry.queue.peek().map(|Reverse((at, _, _))| *at);
        registry.wake_at = next;
        (due, next)
    }

    async fn probe(&self, due: Due, sink: &dyn ProbeSink) -> ProbeResult {
        let lane = if due.failing {
            &self.inner.failing
        } else {
            &self.inner.healthy
        };
        // Closed only if the semaphore is dropped, which it never is while `self` lives.
        let permit = lane.clone().acquire_owned().await.ok();
        let started = Instant::now();
        let limit = due.target.check.timeout + GUARD;
        let result = match tokio::time::timeout(limit, self.inner.prober.probe(&due.target)).await {
            Ok(result) => result,
            Err(_) => ProbeResult::failed(
                started.elapsed(),
                ProbeError::Timeout {
                    phase: Phase::Response.into(),
                    after: due.target.check.timeout,
                },
            ),
        };
        drop(permit);
        self.complete(due, started, &result, sink);
        result
    }

    /// `started`: when the probe got its permit and went out; the next one is planned an
    /// `interval` after it, never earlier, however late this one started.
    fn complete(&self, due: Due, started: Instant, result: &ProbeResult, sink: &dyn ProbeSink) {
        let now = Instant::now();
        let mut registry = self.lock();
        let Registry {
            entries,
            local_failures,
            ..
        } = &mut *registry;
        let Some(entry) = entries.get_mut(&due.key) else {
            return;
        };
        entry.in_flight = false;
        if entry.version != due.version {
            // Reset or retargeted meanwhile: this outcome is stale; probe the new one now.
            let version = entry.version;
            if registry.schedule(now, due.key, version) {
                self.inner.wake.notify_one();
            }
            return;
        }
        let check = entry.target.check.clone();
        // From when it ran, not from when it was due: a probe that started late (a busy
        // loop, a wait for a permit) is not followed by a catch-up probe right after it.
        let mut next = (started + check.interval).max(now);
        if let Some(e) = result.outcome.as_ref().err().filter(|e| e.is_local()) {
            // Steward could not even try: no verdict on the service, nothing to report.
            warn_local_failure(local_failures, &due.key, e, now);
            if registry.schedule(next, due.key, due.version) {
                self.inner.wake.notify_one();
            }
            return;
        }
        let settling = entry.settle.filter(|(until, _)| now < *until);
        let changed = match settling {
            // A settling period's later failures are extra probes: not counted for `fall`.
            Some((_, true)) if !result.success() && !due.forced => {
                entry.health.interrupt();
                false
            }
            _ => entry
                .health
                .record(result.success(), check.rise, check.fall),
        };
        entry.settle = match settling {
            Some(_) if entry.health.verdict == Some(true) => None,
            Some((until, counted)) => {
                next = now + SETTLE_PACE;
                Some((until, counted || !result.success()))
            }
            None => None,
        };
        entry.last_success = Some(result.success());
        let verdict = entry.health.verdict;
        let target = entry.target.clone();
        sink.observe(
            &due.key,
            &ProbeReport {
                target: &target,
                result,
                verdict,
                changed,
            },
        );
        if registry.schedule(next, due.key, due.version) {
            self.inner.wake.notify_one();
        }
    }
}

/// Say (at most every [`LOCAL_FAILURE_WARNING_EVERY`]) that probes could not be made, so the
/// cause is seen where the operator looks, without a line per probe.
fn warn_local_failure(
    (count, last): &mut (u64, Option<Instant>),
    key: &ServiceKey,
    error: &ProbeError,
    now: Instant,
) {
    *count += 1;
    if last.is_some_and(|at| now.duration_since(at) < LOCAL_FAILURE_WARNING_EVERY) {
        return;
    }
    tracing::warn!(
        service = %key,
        failure = error.metric_label(),
        probes = *count,
        "probes not made, verdicts kept: {error}"
    );
    *count = 0;
    *last = Some(now);
}
