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

/// Refuses connections until `up_at`, passes from then on (a process starting after an
/// install); `down_from` makes it fail again from that instant.
struct Starting {
    up_at: Mutex<Instant>,
    down_from: Mutex<Option<Instant>>,
    starts: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Prober for Starting {
    async fn probe(&self, _target: &ProbeTarget) -> ProbeResult {
        let now = Instant::now();
        self.starts.lock().unwrap().push(now);
        let up = now >= *self.up_at.lock().unwrap()
            && self.down_from.lock().unwrap().is_none_or(|d| now < d);
        if up {
            ProbeResult {
                duration: MS,
                http_status: Some(200),
                cert_not_after: None,
                reused_connection: false,
                outcome: Ok(()),
            }
        } else {
            ProbeResult::failed(MS, ProbeError::Https(HttpsError::ConnectionRefused))
        }
    }
}

/// Every verdict change, with when it happened.
#[derive(Default)]
struct Verdicts(Mutex<Vec<(Instant, Option<bool>)>>);

impl ProbeSink for Verdicts {
    fn observe(&self, _: &ServiceKey, report: &ProbeReport<'_>) {
        if report.changed {
            self.0
                .lock()
                .unwrap()
                .push((Instant::now(), report.verdict));
        }
    }
}

impl Verdicts {
    fn all(&self) -> Vec<(Instant, Option<bool>)> {
        self.0.lock().unwrap().clone()
    }
}

/// A monitor running `prober` (interval 10 s, rise 2, fall 3) with one watched service.
async fn settling(
    prober: Arc<Starting>,
) -> (Monitor, ServiceKey, Arc<Verdicts>, CancellationToken) {
    let monitor = Monitor::new(prober, MonitorSettings::default());
    let sink = Arc::new(Verdicts::default());
    let stop = CancellationToken::new();
    tokio::spawn({
        let (monitor, stop, sink) = (monitor.clone(), stop.clone(), sink.clone());
        async move { monitor.run(sink, stop).await }
    });
    let mut t = target(ServiceKind::Psws, 7002, Duration::from_secs(1));
    t.check.interval = Duration::from_secs(10);
    t.check.rise = 2;
    t.check.fall = 3;
    let key = ServiceKey::new("app1", ServiceKind::Psws);
    monitor.watch(&key, t);
    (monitor, key, sink, stop)
}

fn starting(up_in: Duration) -> Arc<Starting> {
    Arc::new(Starting {
        up_at: Mutex::new(Instant::now() + up_in),
        down_from: Mutex::new(None),
        starts: Mutex::new(Vec::new()),
    })
}

#[tokio::test(start_paused = true)]
async fn a_service_starting_after_its_install_is_up_within_the_settle_pace() {
    // Refused for 250 ms (the process is starting), then passing: up at the first probe
    // after that, not at the next scheduled one 10 s after the install.
    let t0 = Instant::now();
    let prober = starting(250 * MS);
    let (monitor, key, sink, stop) = settling(prober.clone()).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let verdicts = sink.all();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].1, Some(true));
    let up_after = verdicts[0].0 - t0;
    assert!(
        up_after >= 250 * MS && up_after < 250 * MS + SETTLE_PACE,
        "{up_after:?}"
    );
    // Once up, back to the schedule: an interval apart.
    let starts = prober.starts.lock().unwrap().clone();
    let after_up: Vec<Instant> = starts.into_iter().filter(|s| *s >= verdicts[0].0).collect();
    assert!(
        gaps(&after_up)
            .iter()
            .all(|g| *g == Duration::from_secs(10)),
        "{:?}",
        gaps(&after_up)
    );

    // An install resets it: the same again, from no verdict.
    let t1 = Instant::now();
    *prober.up_at.lock().unwrap() = t1 + 300 * MS;
    monitor.reset(&key);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let verdicts = sink.all();
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    let up_after = verdicts[1].0 - t1;
    assert!(
        up_after >= 300 * MS && up_after < 300 * MS + SETTLE_PACE,
        "{up_after:?}"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn settling_failures_do_not_count_towards_fall() {
    // Never starts: judged down after `fall` (3) failures on the schedule, about two
    // intervals after the first probe, however many settling probes failed before.
    let t0 = Instant::now();
    let prober = starting(Duration::from_secs(3600));
    let (_monitor, _key, sink, stop) = settling(prober.clone()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let verdicts = sink.all();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].1, Some(false));
    let down_after = verdicts[0].0 - t0;
    assert!(down_after >= Duration::from_secs(20), "{down_after:?}");
    assert!(down_after < Duration::from_secs(21), "{down_after:?}");
    // It settled at the short pace for one interval only.
    let starts = prober.starts.lock().unwrap().clone();
    let settling = starts
        .iter()
        .filter(|s| **s - t0 < Duration::from_secs(10))
        .count();
    assert!((90..=101).contains(&settling), "{settling} settling probes");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn probe_soon_keeps_the_verdict_and_rise_still_counts() {
    // Up, then down (fall 3 on the schedule); it is mended and someone asks for a probe
    // soon: it comes back after `rise` (2) passes in a row at the settle pace, not at
    // once and not two intervals later.
    let prober = starting(Duration::ZERO);
    let (monitor, key, sink, stop) = settling(prober.clone()).await;
    tokio::time::sleep(MS).await;
    *prober.down_from.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(monitor.verdict(&key), Some(false));
    *prober.down_from.lock().unwrap() = Some(Instant::now() + Duration::from_secs(3600));
    let asked = Instant::now();
    monitor.probe_soon(&key);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let verdicts = sink.all();
    assert_eq!(
        verdicts.iter().map(|v| v.1).collect::<Vec<_>>(),
        [Some(true), Some(false), Some(true)]
    );
    let up_after = verdicts[2].0 - asked;
    assert!(
        up_after >= SETTLE_PACE && up_after < 2 * SETTLE_PACE,
        "second pass decides: {up_after:?}"
    );
    // Not watched: nothing happens.
    monitor.probe_soon(&ServiceKey::new("app9", ServiceKind::Psws));
    stop.cancel();
}
