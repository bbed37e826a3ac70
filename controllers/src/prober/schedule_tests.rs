//! The monitor's schedule on tokio's paused clock, with a prober that takes a set time:
//! the spacing of probes is exact here, whatever the load of the machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use steward_model::ServiceKind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peers::target;
use super::*;
use crate::service_key::ServiceKey;

/// Each port's probe takes its set time; records when each probe of each port started.
struct Timed {
    took: HashMap<u16, Duration>,
    starts: Mutex<Vec<(u16, Instant)>>,
}

#[async_trait]
impl Prober for Timed {
    async fn probe(&self, target: &ProbeTarget) -> ProbeResult {
        self.starts
            .lock()
            .unwrap()
            .push((target.port, Instant::now()));
        let took = self.took[&target.port];
        tokio::time::sleep(took).await;
        ProbeResult {
            duration: took,
            http_status: Some(200),
            cert_not_after: None,
            reused_connection: false,
            outcome: Ok(()),
        }
    }
}

impl Timed {
    fn starts(&self, port: u16) -> Vec<Instant> {
        let starts = self.starts.lock().unwrap();
        starts.iter().filter(|s| s.0 == port).map(|s| s.1).collect()
    }
}

struct Ignore;

impl ProbeSink for Ignore {
    fn observe(&self, _: &ServiceKey, _: &ProbeReport<'_>) {}
}

/// Run the monitor over `services` (port, how long its probe takes, its interval), one
/// each, for `span` of paused time; the start times of each one's probes.
async fn run(
    settings: MonitorSettings,
    services: &[(u16, Duration, Duration)],
    span: Duration,
) -> Vec<Vec<Instant>> {
    let prober = Arc::new(Timed {
        took: services.iter().map(|s| (s.0, s.1)).collect(),
        starts: Mutex::new(Vec::new()),
    });
    let monitor = Monitor::new(prober.clone(), settings);
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (monitor, stop) = (monitor.clone(), stop.clone());
        async move { monitor.run(Arc::new(Ignore), stop).await }
    });
    for &(port, _, interval) in services {
        let mut t = target(ServiceKind::Psws, port, Duration::from_secs(1));
        t.check.interval = interval;
        monitor.watch(&ServiceKey::new(format!("app{port}"), ServiceKind::Psws), t);
    }
    tokio::time::sleep(span).await;
    stop.cancel();
    running.await.unwrap();
    services.iter().map(|s| prober.starts(s.0)).collect()
}

fn gaps(starts: &[Instant]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn probes_start_one_interval_apart() {
    let interval = 60 * MS;
    let starts = run(
        MonitorSettings::default(),
        &[(1, 5 * MS, interval)],
        1000 * MS,
    )
    .await;
    let starts = &starts[0];
    assert!(starts.len() >= 10, "{} probes", starts.len());
    assert!(
        gaps(starts).iter().all(|g| *g == interval),
        "{:?}",
        gaps(starts)
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_started_late_is_not_followed_by_a_catch_up_probe() {
    // One slot: the quick service's first probe waits for the slow one's, so starts 50 ms
    // late. Its next probe is still planned an interval after that one started, not right
    // behind it (as it was when planned from when the first was due).
    let interval = 60 * MS;
    let starts = run(
        MonitorSettings {
            healthy_slots: 1,
            failing_slots: 1,
        },
        &[(1, 50 * MS, 10_000 * MS), (2, MS, interval)],
        600 * MS,
    )
    .await;
    let quick = &starts[1];
    assert_eq!(quick.first().map(|s| *s - starts[0][0]), Some(50 * MS));
    assert!(quick.len() >= 5, "{} probes", quick.len());
    assert!(
        gaps(quick).iter().all(|g| *g == interval),
        "{:?}",
        gaps(quick)
    );
}
