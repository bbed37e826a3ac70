//! File saved → new snapshot published, through the real watcher.
//!
//! `cargo bench -p steward-watch --bench save_to_snapshot` (optionally `SAVES=200`).
//! Copies the bundled desired-state into a temporary directory, starts the watcher, then
//! saves `servers/app1.yaml` with a different PSWS port each time and measures from the
//! moment the write returned until the new generation is on the channel. The project
//! budget for "file saved → first agent call" is p99 ≤ 1 s; this is the watcher's share.
//! It runs once with the default 150 ms debounce and once with a 1 ms one, to separate
//! the deliberate wait from what the watcher itself costs (notify, load, validate, diff).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use steward_testkit::copy_dir;

use steward_model::ServiceKind;
use steward_watch::{watch, WatchConfig};
use tokio_util::sync::CancellationToken;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../desired-state");

fn main() {
    let saves: usize = std::env::var("SAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let d =
        steward_watch::load_once(Path::new(FIXTURE)).expect("the bundled desired state is valid");
    println!(
        "load_once of the bundled desired-state: {:.2} ms ({} servers)",
        ms(started.elapsed()),
        d.snapshot.servers.len()
    );
    for debounce in [Duration::from_millis(150), Duration::from_millis(1)] {
        let config = WatchConfig {
            debounce,
            ..WatchConfig::default()
        };
        runtime.block_on(measure(saves, config));
    }
}

async fn measure(saves: usize, config: WatchConfig) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("desired-state");
    copy_dir(Path::new(FIXTURE), &dir);
    let app1 = dir.join("servers/app1.yaml");
    let original = fs::read_to_string(&app1).expect("app1.yaml");

    let shutdown = CancellationToken::new();
    let debounce = config.debounce;
    let (handle, task) = watch(dir, config, shutdown.clone()).expect("watch");
    let mut desired = handle.desired();
    desired
        .wait_for(|d| d.is_some())
        .await
        .expect("first generation");

    let mut latencies = Vec::with_capacity(saves);
    let mut loads = Vec::with_capacity(saves);
    for i in 0..saves {
        let port = 7100 + u16::try_from(i % 800).expect("small");
        let text = original.replace("- kind: PSWS", &format!("- kind: PSWS\n      port: {port}"));
        fs::write(&app1, text).expect("save");
        let saved = Instant::now();
        desired
            .wait_for(|d| {
                d.as_ref().is_some_and(|d| {
                    d.snapshot.servers["app1"]
                        .service(ServiceKind::Psws)
                        .is_some_and(|s| s.ports[0] == port)
                })
            })
            .await
            .expect("published");
        latencies.push(saved.elapsed());
        let mut status = handle.status();
        let status = status
            .wait_for(|s| s.valid && s.last_applied_generation == (i + 2) as u64)
            .await
            .expect("status")
            .clone();
        loads.push(status.last_load_duration);
        // Let the write's trailing events settle so the next save starts a fresh burst.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = task.await;

    println!(
        "debounce {:>3} ms, {saves} saves: save->published {}; load+validate+diff {}",
        debounce.as_millis(),
        summary(&mut latencies),
        summary(&mut loads),
    );
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[i])
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
