//! No-op reconciles per second through the full controller loop, on one core.
//!
//! 10,000 keys are triggered round after round; the next round is sent once
//! every reconcile of the previous one has run, so no trigger is folded into
//! another and each one costs a full reconcile. Every trigger goes through
//! the scheduler (dedup, limits), every run is a spawned task in a tracing
//! span, and every outcome is fed back. The reconcile itself only counts, so
//! this measures the runtime's own overhead.
//!
//! Prints `noop reconciles/s: N` first, then runs the criterion benchmark.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::{stream, Stream, StreamExt};
use steward_runtime::{run, Action, CancellationToken, ControllerConfig, Reason, StopCause};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Notify;

const KEYS: u32 = 10_000;
const ROUNDS: u32 = 20;

#[path = "../tests/support/never.rs"]
mod never;
use never::Never;

/// Counts reconciles and wakes the trigger source when a round is done.
#[derive(Default)]
struct Rounds {
    done: AtomicUsize,
    round_done: Notify,
}

async fn noop(_key: u32, _reason: Reason, rounds: Arc<Rounds>) -> Result<Action, Never> {
    let done = rounds.done.fetch_add(1, Ordering::Relaxed) + 1;
    if done % KEYS as usize == 0 {
        rounds.round_done.notify_one();
    }
    Ok(Action::await_change())
}

/// `rounds` rounds of one trigger per key, each sent after the previous
/// round's reconciles have all run.
fn triggers(rounds: u32, state: Arc<Rounds>) -> impl Stream<Item = (u32, Reason)> {
    stream::iter(0..rounds)
        .then(move |round| {
            let state = Arc::clone(&state);
            async move {
                if round > 0 {
                    state.round_done.notified().await;
                }
                stream::iter((0..KEYS).map(|key| (key, Reason::Manual)))
            }
        })
        .flatten()
}

fn one_core() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build current_thread runtime")
}

/// Runs `rounds` rounds of triggers over all keys; returns reconciles run and
/// the wall time taken.
fn pass(rt: &Runtime, rounds: u32) -> (usize, Duration) {
    let state = Arc::new(Rounds::default());
    let started = Instant::now();
    let summary = rt.block_on(run(
        noop,
        Arc::clone(&state),
        triggers(rounds, Arc::clone(&state)),
        CancellationToken::new(),
        ControllerConfig::new("bench"),
    ));
    let elapsed = started.elapsed();
    assert_eq!(summary.stop, StopCause::TriggersExhausted);
    assert_eq!(summary.failed, 0);
    assert_eq!(
        summary.succeeded,
        (KEYS * rounds) as usize,
        "one run per trigger"
    );
    (summary.succeeded, elapsed)
}

fn headline(rt: &Runtime, passes: usize) {
    pass(rt, 1); // warm up allocations
    let mut rates: Vec<f64> = (0..passes)
        .map(|_| {
            let (reconciles, elapsed) = pass(rt, ROUNDS);
            reconciles as f64 / elapsed.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{KEYS} keys x {ROUNDS} rounds = {} reconciles per pass, current_thread runtime",
        KEYS * ROUNDS
    );
    println!(
        "noop reconciles/s: {:.0} (median of {passes} passes)",
        rates[passes / 2]
    );
}

fn main() {
    let rt = one_core();
    let test_mode = std::env::args().any(|a| a == "--test");
    headline(&rt, if test_mode { 1 } else { 7 });

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let (per_pass, _) = pass(&rt, 1);
    let mut group = c.benchmark_group("controller");
    group.throughput(Throughput::Elements(per_pass as u64));
    group.bench_function("noop_reconcile_10k_keys", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pass(&rt, 1).1).sum())
    });
    group.finish();
    c.final_summary();
}
