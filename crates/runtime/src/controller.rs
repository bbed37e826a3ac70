//! The reconcile loop: triggers in, reconciles out, outcomes fed back.
//!
//! [`run`] owns one [`Scheduler`] and one set of spawned reconcile tasks. Each
//! turn of the loop it starts every key the scheduler allows, then waits for
//! the first of: shutdown, a finished reconcile, a trigger, or the next timer.
//! Outcomes are turned into new queue entries (requeue or backoff retry), so a
//! reconciler never schedules anything itself and cannot get it wrong.
//!
//! Reconciles are spawned as tasks, not polled inline, so that a panic in one
//! is contained (it is treated as a failure and retried with backoff) and so
//! that a multi-threaded runtime can run them in parallel.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::action::{Action, ReconcileError};
use crate::backoff::{Backoff, BackoffConfig};
use crate::config::ControllerConfig;
use crate::key::{GroupKey, ObjectKey, Reason};
use crate::observer::{ControllerObserver, RESULT_OK, RESULT_PANIC};
use crate::scheduler::Scheduler;

/// Triggers taken from the stream per loop turn before new work is started,
/// so a burst of triggers is folded in the queue rather than one by one.
const TRIGGER_BATCH: usize = 128;

/// Far enough ahead to mean "never" without overflowing `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// The shutdown token was cancelled.
    Shutdown,
    /// The trigger stream ended and nothing was left queued or running, so no
    /// further work could ever arrive.
    TriggersExhausted,
}

/// What [`run`] did, returned when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Reconciles that returned `Ok`.
    pub succeeded: usize,
    /// Reconciles that returned `Err` or panicked.
    pub failed: usize,
    /// Reconciles still running when the shutdown grace ran out; they were
    /// cancelled at their next `.await`.
    pub abandoned: usize,
    /// Keys that were queued but never started because shutdown came first.
    pub not_started: usize,
    /// Why the loop stopped.
    pub stop: StopCause,
}

impl RunSummary {
    /// Reconciles that ran to completion, successfully or not.
    pub fn finished(&self) -> usize {
        self.succeeded + self.failed
    }
}

/// For the log line an operator reads at shutdown: what happened, in words.
impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reconciles succeeded, {} failed, {} abandoned at the deadline, {} queued \
             not started ({})",
            self.succeeded,
            self.failed,
            self.abandoned,
            self.not_started,
            match self.stop {
                StopCause::Shutdown => "shut down",
                StopCause::TriggersExhausted => "no work left",
            }
        )
    }
}

/// Runs a controller until `shutdown` is cancelled or `triggers` ends with
/// nothing left to do.
///
/// * `reconcile(key, reason, ctx)` converges one object. `Ok(Action::Requeue(d))`
///   runs it again after `d` ([`Reason::Requeue`]); `Ok(Action::AwaitChange)`
///   waits for a trigger; `Err` (or a panic) retries after the key's backoff
///   delay ([`Reason::RetryAfterError`]). Any success resets the key's backoff.
/// * `triggers` yields `(key, reason)` requests to run a key now.
/// * On shutdown no new reconcile starts; running ones get
///   `config.shutdown_grace` to finish and are then abandoned (dropped).
///
/// Each reconcile runs inside an `info` span named `reconcile` with fields
/// `controller`, `key` and `reason`.
pub async fn run<K, G, C, E, F, Fut, S>(
    reconcile: F,
    ctx: Arc<C>,
    triggers: S,
    shutdown: CancellationToken,
    config: ControllerConfig<K, G>,
) -> RunSummary
where
    K: ObjectKey,
    G: GroupKey,
    C: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(K, Reason, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    S: Stream<Item = (K, Reason)>,
{
    let rng = match config.jitter_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let shutdown_grace = config.shutdown_grace;
    let mut lp = Loop {
        scheduler: config.scheduler(),
        name: config.name,
        reconcile: Arc::new(reconcile),
        ctx,
        tasks: JoinSet::new(),
        in_flight: HashMap::new(),
        backoffs: HashMap::new(),
        backoff: config.backoff,
        rng,
        observer: config.observer,
        reported_depth: None,
        succeeded: 0,
        failed: 0,
    };
    let stop = lp.serve(triggers, &shutdown).await;
    let (not_started, abandoned) = match stop {
        StopCause::Shutdown => lp.drain(shutdown_grace).await,
        StopCause::TriggersExhausted => (0, 0),
    };
    let summary = RunSummary {
        succeeded: lp.succeeded,
        failed: lp.failed,
        abandoned,
        not_started,
        stop,
    };
    tracing::info!(
        controller = %lp.name,
        succeeded = summary.succeeded,
        failed = summary.failed,
        abandoned = summary.abandoned,
        not_started = summary.not_started,
        "controller stopped: {summary}"
    );
    summary
}

/// A reconcile that has been spawned and not yet collected.
struct InFlight<K> {
    key: K,
    reason: Reason,
    started: Instant,
}

/// What a reconcile task reports back.
enum Outcome {
    Done(Action),
    Failed(&'static str),
}

struct Finished {
    elapsed: Duration,
    outcome: Outcome,
}

/// State of one running controller.
struct Loop<K, G, C, F> {
    name: Arc<str>,
    reconcile: Arc<F>,
    ctx: Arc<C>,
    scheduler: Scheduler<K, G>,
    tasks: JoinSet<Finished>,
    in_flight: HashMap<Id, InFlight<K>>,
    /// Backoff state of keys whose last reconcile failed.
    backoffs: HashMap<K, Backoff>,
    backoff: BackoffConfig,
    rng: StdRng,
    observer: Arc<dyn ControllerObserver>,
    reported_depth: Option<usize>,
    succeeded: usize,
    failed: usize,
}

impl<K, G, C, E, F, Fut> Loop<K, G, C, F>
where
    K: ObjectKey,
    G: GroupKey,
    C: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(K, Reason, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    /// The main loop; returns when it should stop taking work.
    async fn serve<S>(&mut self, triggers: S, shutdown: &CancellationToken) -> StopCause
    where
        S: Stream<Item = (K, Reason)>,
    {
        let mut triggers = pin!(triggers);
        let mut triggers_open = true;
        let mut timer = pin!(tokio::time::sleep_until(Instant::now() + FAR_FUTURE));
        let mut armed: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return StopCause::Shutdown;
            }
            self.start_ready();
            self.report_depth();
            if !triggers_open && self.scheduler.is_idle() {
                return StopCause::TriggersExhausted;
            }
            let wakeup = self.scheduler.next_wakeup();
            if wakeup != armed {
                if let Some(at) = wakeup {
                    timer.as_mut().reset(at);
                }
                armed = wakeup;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return StopCause::Shutdown,
                Some(done) = self.tasks.join_next_with_id() => {
                    self.complete(done);
                    while let Some(done) = self.tasks.try_join_next_with_id() {
                        self.complete(done);
                    }
                }
                next = triggers.next(), if triggers_open => {
                    let now = Instant::now();
                    let mut next = next;
                    let mut taken = 0;
                    loop {
                        match next {
                            Some((key, reason)) => self.scheduler.schedule(key, now, reason),
                            None => {
                                triggers_open = false;
                                break;
                            }
                        }
                        taken += 1;
                        if taken == TRIGGER_BATCH {
                            break;
                        }
                        match triggers.next().now_or_never() {
                            Some(item) => next = item,
                            None => break,
                        }
                    }
                    // An always-ready trigger stream must not starve the
                    // reconcile tasks on a single-threaded runtime.
                    tokio::task::coop::consume_budget().await;
                }
                () = &mut timer, if armed.is_some() => armed = None,
            }
        }
    }

    /// Starts every key the scheduler lets go now.
    fn start_ready(&mut self) {
        let now = Instant::now();
        while let Some((key, reason)) = self.scheduler.pop_ready(now) {
            self.spawn(key, reason, now);
        }
    }

    fn spawn(&mut self, key: K, reason: Reason, now: Instant) {
        let span = tracing::info_span!(
            "reconcile",
            controller = %self.name,
            key = ?key,
            reason = %reason,
        );
        let reconcile = Arc::clone(&self.reconcile);
        let ctx = Arc::clone(&self.ctx);
        let arg = key.clone();
        self.observer.on_reconcile_start(&self.name, reason);
        let task = async move {
            let started = Instant::now();
            let outcome = match reconcile(arg, reason, ctx).await {
                Ok(action) => {
                    tracing::debug!(?action, "reconcile succeeded");
                    Outcome::Done(action)
                }
                Err(error) => {
                    let label = error.metric_label();
                    tracing::warn!(%error, label, "reconcile failed");
                    Outcome::Failed(label)
                }
            };
            Finished {
                elapsed: started.elapsed(),
                outcome,
            }
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.in_flight.insert(
            handle.id(),
            InFlight {
                key,
                reason,
                started: now,
            },
        );
    }

    /// Applies the outcome of one reconcile task.
    fn complete(&mut self, done: Result<(Id, Finished), JoinError>) {
        let (id, finished) = match done {
            Ok((id, finished)) => (id, Ok(finished)),
            Err(error) => (error.id(), Err(error)),
        };
        let Some(InFlight {
            key,
            reason,
            started,
        }) = self.in_flight.remove(&id)
        else {
            return;
        };
        let (elapsed, outcome) = match finished {
            Ok(Finished { elapsed, outcome }) => (elapsed, outcome),
            Err(error) => {
                tracing::error!(
                    controller = %self.name,
                    key = ?key,
                    reason = %reason,
                    panic = panic_message(error),
                    "reconcile panicked",
                );
                (started.elapsed(), Outcome::Failed(RESULT_PANIC))
            }
        };
        self.scheduler.finish(&key);
        let now = Instant::now();
        let label = match outcome {
            Outcome::Done(action) => {
                self.succeeded += 1;
                self.backoffs.remove(&key);
                if let Action::Requeue(after) = action {
                    self.scheduler
                        .schedule(key, later(now, after), Reason::Requeue);
                }
                RESULT_OK
            }
            Outcome::Failed(label) => {
                self.failed += 1;
                let config = self.backoff;
                let delay = self
                    .backoffs
                    .entry(key.clone())
                    .or_insert_with(|| Backoff::new(config))
                    .next_delay(&mut self.rng);
                self.scheduler
                    .schedule(key, later(now, delay), Reason::RetryAfterError);
                label
            }
        };
        self.observer
            .on_reconcile_end(&self.name, reason, elapsed, label);
    }

    /// Reports the work that is due and not running; requeues parked for later are not
    /// queue depth (a converged fleet has one per object, and a queue of them is no
    /// backlog).
    fn report_depth(&mut self) {
        let depth = self.scheduler.due();
        if self.reported_depth != Some(depth) {
            self.reported_depth = Some(depth);
            self.observer.on_queue_depth(&self.name, depth);
        }
    }

    /// After shutdown: waits up to `grace` for in-flight reconciles, then
    /// cancels the rest. Returns `(not_started, abandoned)`.
    async fn drain(&mut self, grace: Duration) -> (usize, usize) {
        let not_started = self.scheduler.depth();
        let deadline = later(Instant::now(), grace);
        let in_time = tokio::time::timeout_at(deadline, async {
            while let Some(done) = self.tasks.join_next_with_id().await {
                self.complete(done);
            }
        })
        .await;
        let mut abandoned = 0;
        if in_time.is_err() {
            tracing::warn!(
                controller = %self.name,
                in_flight = self.tasks.len(),
                "shutdown grace expired; abandoning in-flight reconciles",
            );
            self.tasks.abort_all();
            while let Some(done) = self.tasks.join_next_with_id().await {
                match done {
                    Err(error) if error.is_cancelled() => {
                        abandoned += 1;
                        if let Some(lost) = self.in_flight.remove(&error.id()) {
                            tracing::warn!(
                                controller = %self.name,
                                key = ?lost.key,
                                reason = %lost.reason,
                                "reconcile abandoned",
                            );
                        }
                    }
                    other => self.complete(other),
                }
            }
        }
        (not_started, abandoned)
    }
}

/// `now + after`, saturating far in the future instead of overflowing.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(FAR_FUTURE)).unwrap_or(now)
}

fn panic_message(error: JoinError) -> String {
    if error.is_cancelled() {
        return "cancelled".to_owned();
    }
    let payload = error.into_panic();
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Jitter;
    use futures::channel::mpsc::{unbounded, UnboundedSender};
    use std::num::NonZeroUsize;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::task::JoinHandle;
    use tokio::time::sleep_until;

    #[derive(Debug, thiserror::Error)]
    #[error("scripted failure of key {0}")]
    struct Scripted(u32);

    impl ReconcileError for Scripted {
        fn metric_label(&self) -> &'static str {
            "scripted"
        }
    }

    /// What the test reconciler does on a key's n-th run (n from 0).
    enum Step {
        Ok(Action),
        Fail,
        Panic,
    }

    type Script = Box<dyn Fn(u32, usize) -> Step + Send + Sync>;
    type Hold = Box<dyn Fn(u32) -> Duration + Send + Sync>;

    #[derive(Default)]
    struct ProbeState {
        /// (key, reason, start in ms since t0)
        runs: Vec<(u32, Reason, u128)>,
        active: usize,
        active_key: HashMap<u32, usize>,
        active_group: HashMap<u32, usize>,
        max_active: usize,
        max_per_key: usize,
        max_per_group: usize,
    }

    /// Test context: records every run and how many overlap.
    struct Probe {
        t0: Instant,
        hold: Hold,
        script: Script,
        state: Mutex<ProbeState>,
        dropped_unfinished: AtomicUsize,
    }

    fn group(key: u32) -> u32 {
        key / 100
    }

    impl Probe {
        fn new(
            hold: impl Fn(u32) -> Duration + Send + Sync + 'static,
            script: impl Fn(u32, usize) -> Step + Send + Sync + 'static,
        ) -> Arc<Self> {
            Arc::new(Probe {
                t0: Instant::now(),
                hold: Box::new(hold),
                script: Box::new(script),
                state: Mutex::new(ProbeState::default()),
                dropped_unfinished: AtomicUsize::new(0),
            })
        }

        /// Holds each reconcile for `hold`, then converges.
        fn holding(hold: Duration) -> Arc<Self> {
            Probe::new(move |_| hold, |_, _| Step::Ok(Action::AwaitChange))
        }

        /// Records a start; returns which run of this key it is.
        fn enter(&self, key: u32, reason: Reason) -> usize {
            let mut s = self.state.lock().unwrap();
            let attempt = s.runs.iter().filter(|r| r.0 == key).count();
            let at = (Instant::now() - self.t0).as_millis();
            s.runs.push((key, reason, at));
            s.active += 1;
            s.max_active = s.max_active.max(s.active);
            let per_key = s.active_key.entry(key).or_insert(0);
            *per_key += 1;
            let per_key = *per_key;
            s.max_per_key = s.max_per_key.max(per_key);
            let per_group = s.active_group.entry(group(key)).or_insert(0);
            *per_group += 1;
            let per_group = *per_group;
            s.max_per_group = s.max_per_group.max(per_group);
            attempt
        }

        fn exit(&self, key: u32) {
            let mut s = self.state.lock().unwrap();
            s.active -= 1;
            *s.active_key.get_mut(&key).unwrap() -= 1;
            *s.active_group.get_mut(&group(key)).unwrap() -= 1;
        }

        fn runs_of(&self, key: u32) -> Vec<(Reason, u128)> {
            let s = self.state.lock().unwrap();
            s.runs
                .iter()
                .filter(|r| r.0 == key)
                .map(|r| (r.1, r.2))
                .collect()
        }

        fn starts(&self) -> Vec<u128> {
            let s = self.state.lock().unwrap();
            s.runs.iter().map(|r| r.2).collect()
        }

        fn stats(&self) -> (usize, usize, usize) {
            let s = self.state.lock().unwrap();
            (s.max_active, s.max_per_key, s.max_per_group)
        }
    }

    /// Decrements the probe's counters even if the reconcile is dropped.
    struct Running {
        probe: Arc<Probe>,
        key: u32,
        finished: bool,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.probe.exit(self.key);
            if !self.finished {
                self.probe.dropped_unfinished.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    async fn probe_reconcile(
        key: u32,
        reason: Reason,
        probe: Arc<Probe>,
    ) -> Result<Action, Scripted> {
        let attempt = probe.enter(key, reason);
        let mut running = Running {
            probe: Arc::clone(&probe),
            key,
            finished: false,
        };
        tokio::time::sleep((probe.hold)(key)).await;
        running.finished = true;
        drop(running);
        match (probe.script)(key, attempt) {
            Step::Ok(action) => Ok(action),
            Step::Fail => Err(Scripted(key)),
            Step::Panic => panic!("scripted panic of key {key}"),
        }
    }

    #[derive(Default)]
    struct Recorder {
        starts: AtomicUsize,
        ends: Mutex<Vec<(Reason, String)>>,
        max_depth: AtomicUsize,
        last_depth: AtomicUsize,
    }

    impl ControllerObserver for Recorder {
        fn on_reconcile_start(&self, controller: &str, _reason: Reason) {
            assert_eq!(controller, "test");
            self.starts.fetch_add(1, Ordering::SeqCst);
        }

        fn on_reconcile_end(&self, _: &str, reason: Reason, _: Duration, result: &str) {
            self.ends.lock().unwrap().push((reason, result.to_owned()));
        }

        fn on_queue_depth(&self, _: &str, depth: usize) {
            self.max_depth.fetch_max(depth, Ordering::SeqCst);
            self.last_depth.store(depth, Ordering::SeqCst);
        }
    }

    struct Harness {
        probe: Arc<Probe>,
        tx: UnboundedSender<(u32, Reason)>,
        shutdown: CancellationToken,
        handle: JoinHandle<RunSummary>,
    }

    impl Harness {
        fn start<G: GroupKey>(probe: Arc<Probe>, config: ControllerConfig<u32, G>) -> Self {
            let (tx, rx) = unbounded();
            let shutdown = CancellationToken::new();
            let handle = tokio::spawn(run(
                probe_reconcile,
                Arc::clone(&probe),
                rx,
                shutdown.clone(),
                config,
            ));
            Harness {
                probe,
                tx,
                shutdown,
                handle,
            }
        }

        fn trigger(&self, key: u32, reason: Reason) {
            self.tx.unbounded_send((key, reason)).unwrap();
        }

        async fn at_ms(&self, ms: u64) {
            sleep_until(self.probe.t0 + Duration::from_millis(ms)).await;
        }

        async fn stop(self) -> RunSummary {
            self.shutdown.cancel();
            self.handle.await.unwrap()
        }
    }

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn config() -> ControllerConfig<u32> {
        ControllerConfig::new("test")
            .backoff(BackoffConfig::default().with_jitter(Jitter::None))
            .jitter_seed(1)
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_runs_key_with_its_reason() {
        let h = Harness::start(Probe::holding(Duration::ZERO), config());
        h.at_ms(500).await;
        h.trigger(7, Reason::DesiredChanged);
        h.at_ms(600).await;
        assert_eq!(h.probe.runs_of(7), [(Reason::DesiredChanged, 500)]);
        let summary = h.stop().await;
        assert_eq!(summary.succeeded, 1);
        assert_eq!(summary.stop, StopCause::Shutdown);
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_request_wins_over_pending_requeue() {
        let probe = Probe::new(
            |_| Duration::ZERO,
            |_, _| Step::Ok(Action::requeue(Duration::from_secs(10))),
        );
        let h = Harness::start(probe, config());
        h.trigger(1, Reason::Manual);
        h.at_ms(3_000).await;
        // The requeue is due at 10 s; this trigger is earlier and replaces it.
        h.trigger(1, Reason::DesiredChanged);
        h.at_ms(14_000).await;
        assert_eq!(
            h.probe.runs_of(1),
            [
                (Reason::Manual, 0),
                (Reason::DesiredChanged, 3_000),
                (Reason::Requeue, 13_000)
            ]
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn requests_while_running_coalesce_into_one_run_after_it() {
        let h = Harness::start(Probe::holding(Duration::from_secs(1)), config());
        h.trigger(1, Reason::Manual);
        for (ms, reason) in [
            (200, Reason::ObservedChanged),
            (400, Reason::DesiredChanged),
            (600, Reason::Resync),
        ] {
            h.at_ms(ms).await;
            h.trigger(1, reason);
        }
        h.at_ms(5_000).await;
        // One extra run, started when the first ended, with the reason of
        // the earliest held request.
        assert_eq!(
            h.probe.runs_of(1),
            [(Reason::Manual, 0), (Reason::ObservedChanged, 1_000)]
        );
        let summary = h.stop().await;
        assert_eq!(summary.succeeded, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn never_runs_one_key_twice_at_once() {
        let h = Harness::start(
            Probe::holding(Duration::from_secs(1)),
            config().max_concurrent(nz(8)),
        );
        // 20 keys, each triggered every 300 ms for 3 s while runs take 1 s.
        for tick in 0..10u64 {
            h.at_ms(tick * 300).await;
            for key in 0..20 {
                h.trigger(key, Reason::ObservedChanged);
            }
        }
        h.at_ms(20_000).await;
        let (max_active, max_per_key, _) = h.probe.stats();
        assert_eq!(max_per_key, 1, "a key ran concurrently with itself");
        assert_eq!(max_active, 8, "keys did run concurrently with each other");
        for key in 0..20 {
            assert!(h.probe.runs_of(key).len() >= 2, "key {key} not re-run");
        }
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn global_limit_is_honoured() {
        let h = Harness::start(
            Probe::holding(Duration::from_secs(1)),
            config().max_concurrent(nz(3)),
        );
        for key in 0..10 {
            h.trigger(key, Reason::Manual);
        }
        h.at_ms(10_000).await;
        let (max_active, _, _) = h.probe.stats();
        assert_eq!(max_active, 3);
        let mut starts = h.probe.starts();
        starts.sort_unstable();
        assert_eq!(
            starts,
            [0, 0, 0, 1_000, 1_000, 1_000, 2_000, 2_000, 2_000, 3_000]
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn group_limit_is_honoured() {
        let config = config()
            .max_concurrent(nz(10))
            .group_limit(nz(2), |key: &u32| Some(group(*key)));
        let h = Harness::start(Probe::holding(Duration::from_secs(1)), config);
        // Three groups (servers 1, 2, 3) of five keys each.
        for server in 1..=3 {
            for service in 0..5 {
                h.trigger(server * 100 + service, Reason::Manual);
            }
        }
        h.at_ms(10_000).await;
        let (max_active, _, max_per_group) = h.probe.stats();
        assert_eq!(max_per_group, 2);
        assert_eq!(max_active, 6, "groups must not block each other");
        let mut starts = h.probe.starts();
        starts.sort_unstable();
        assert_eq!(starts.len(), 15);
        assert_eq!(starts.iter().filter(|&&t| t == 0).count(), 6);
        assert_eq!(*starts.last().unwrap(), 2_000);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_on_errors_and_resets_after_success() {
        let probe = Probe::new(
            |_| Duration::ZERO,
            |_, attempt| match attempt {
                0..=2 | 4 => Step::Fail,
                3 => Step::Ok(Action::requeue(Duration::from_secs(10))),
                _ => Step::Ok(Action::AwaitChange),
            },
        );
        let recorder = Arc::new(Recorder::default());
        let h = Harness::start(probe, config().observer(recorder.clone()));
        h.trigger(1, Reason::Manual);
        h.at_ms(60_000).await;
        use Reason::{Manual, Requeue, RetryAfterError as Retry};
        assert_eq!(
            h.probe.runs_of(1),
            [
                (Manual, 0),
                (Retry, 1_000), // +1 s
                (Retry, 3_000), // +2 s
                (Retry, 7_000), // +4 s, then success
                (Requeue, 17_000),
                (Retry, 18_000), // backoff was reset: +1 s again
            ]
        );
        let summary = h.stop().await;
        assert_eq!((summary.succeeded, summary.failed), (2, 4));
        assert_eq!(recorder.starts.load(Ordering::SeqCst), 6);
        let ends = recorder.ends.lock().unwrap();
        let labels: Vec<&str> = ends.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(
            labels,
            ["scripted", "scripted", "scripted", "ok", "scripted", "ok"]
        );
        assert_eq!(ends[4].0, Requeue);
    }

    #[tokio::test(start_paused = true)]
    async fn panic_is_contained_and_retried_with_backoff() {
        let probe = Probe::new(
            |_| Duration::ZERO,
            |_, attempt| {
                if attempt == 0 {
                    Step::Panic
                } else {
                    Step::Ok(Action::AwaitChange)
                }
            },
        );
        let recorder = Arc::new(Recorder::default());
        let h = Harness::start(probe, config().observer(recorder.clone()));
        h.trigger(1, Reason::Manual);
        h.trigger(2, Reason::Manual);
        h.at_ms(5_000).await;
        assert_eq!(
            h.probe.runs_of(1),
            [(Reason::Manual, 0), (Reason::RetryAfterError, 1_000)]
        );
        let summary = h.stop().await;
        assert_eq!((summary.succeeded, summary.failed), (2, 2));
        let ends = recorder.ends.lock().unwrap();
        assert_eq!(ends.iter().filter(|e| e.1 == RESULT_PANIC).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_in_flight_then_abandons_after_grace() {
        // Key 1 takes 1 s, key 2 takes 100 s; key 3 waits for a free slot.
        let probe = Probe::new(
            |key| Duration::from_secs(if key == 2 { 100 } else { 1 }),
            |_, _| Step::Ok(Action::AwaitChange),
        );
        let config = config()
            .max_concurrent(nz(2))
            .shutdown_grace(Duration::from_secs(5));
        let h = Harness::start(probe, config);
        for key in 1..=3 {
            h.trigger(key, Reason::Manual);
        }
        h.at_ms(500).await;
        let probe = Arc::clone(&h.probe);
        let tx = h.tx.clone();
        let summary = h.stop().await;
        let stopped_at = (Instant::now() - probe.t0).as_millis();
        assert_eq!(
            summary,
            RunSummary {
                succeeded: 1,
                failed: 0,
                abandoned: 1,
                not_started: 1,
                stop: StopCause::Shutdown,
            }
        );
        assert_eq!(stopped_at, 5_500, "returns when the grace expires");
        assert_eq!(probe.dropped_unfinished.load(Ordering::SeqCst), 1);
        // Key 3 never started, even though key 1 freed a slot during the grace.
        assert!(probe.runs_of(3).is_empty());
        assert!(tx.unbounded_send((4, Reason::Manual)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_returns_early_when_in_flight_work_finishes() {
        let h = Harness::start(
            Probe::holding(Duration::from_secs(2)),
            config().shutdown_grace(Duration::from_secs(30)),
        );
        h.trigger(1, Reason::Manual);
        h.at_ms(1_000).await;
        let t0 = h.probe.t0;
        let summary = h.stop().await;
        assert_eq!((summary.succeeded, summary.abandoned), (1, 0));
        assert_eq!((Instant::now() - t0).as_millis(), 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_triggers_end_and_work_is_done() {
        let probe = Probe::new(
            |_| Duration::from_secs(1),
            |_, attempt| {
                if attempt == 0 {
                    Step::Ok(Action::requeue(Duration::from_secs(5)))
                } else {
                    Step::Ok(Action::AwaitChange)
                }
            },
        );
        let triggers = futures::stream::iter((0..4).map(|key| (key, Reason::Resync)));
        let summary = run(
            probe_reconcile,
            Arc::clone(&probe),
            triggers,
            CancellationToken::new(),
            config(),
        )
        .await;
        assert_eq!(summary.stop, StopCause::TriggersExhausted);
        assert_eq!(summary.succeeded, 8, "pending requeues still ran");
        // 1 s run + 5 s requeue + 1 s run.
        assert_eq!((Instant::now() - probe.t0).as_millis(), 7_000);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_depth_is_reported() {
        let recorder = Arc::new(Recorder::default());
        let h = Harness::start(
            Probe::holding(Duration::from_secs(1)),
            config().max_concurrent(nz(1)).observer(recorder.clone()),
        );
        for key in 0..5 {
            h.trigger(key, Reason::Manual);
        }
        h.at_ms(10_000).await;
        h.stop().await;
        assert_eq!(recorder.max_depth.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_summary_reads_as_words_not_debug() {
        let summary = RunSummary {
            succeeded: 74,
            failed: 1,
            abandoned: 0,
            not_started: 11,
            stop: StopCause::Shutdown,
        };
        assert_eq!(
            summary.to_string(),
            "74 reconciles succeeded, 1 failed, 0 abandoned at the deadline, 11 queued not \
             started (shut down)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn parked_requeues_are_no_queue_depth() {
        let recorder = Arc::new(Recorder::default());
        let h = Harness::start(
            Probe::new(
                |_| Duration::from_millis(10),
                |_, _| Step::Ok(Action::requeue(Duration::from_secs(60))),
            ),
            config().max_concurrent(nz(1)).observer(recorder.clone()),
        );
        for key in 0..3 {
            h.trigger(key, Reason::Manual);
        }
        h.at_ms(1_000).await;
        assert_eq!(recorder.max_depth.load(Ordering::SeqCst), 2);
        assert_eq!(
            recorder.last_depth.load(Ordering::SeqCst),
            0,
            "three keys wait a minute for their requeue: nothing is due"
        );
        h.stop().await;
    }
}
