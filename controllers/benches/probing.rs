//! Figures for the health-check and status goals (printed; not a timed test):
//!
//! 1. probes per second per core through kept-alive connections to in-process lab
//!    services (goal >= 2,000/s), the prober alone on one current_thread runtime (its
//!    HTTPS client, steward-https-client, is also the agents' client stack);
//! 2. `/metrics` gather + text encoding at 1,000 servers x 11 services (goal <= 10 ms);
//! 3. `/api/v1/status` rendering + JSON at that size (goal p99 <= 100 ms);
//! 4. failure detection at interval 1 s, fall 3: a lab service stopped -> verdict down
//!    (goal <= 4 s);
//! 5. a healthy service's probes per second at a 100 ms interval while 200 hung services
//!    fill the failing lane (goal >= 7 in a second: failing peers do not slow it).
//!
//! `cargo bench -p steward-controllers --bench probing` (`-- quick` for a short run;
//! `-- probes N [reuse|dial|resume]` runs goal 1 alone for exactly N probes, for an
//! instruction count under `valgrind --tool=callgrind --separate-threads=yes`: the
//! difference between two counts over the difference in probes is the prober's
//! instructions per probe, setup excluded. `reuse` (the default) keeps connections alive;
//! `dial` keeps none and no TLS session, a full handshake per probe; `resume` keeps no
//! connection but the TLS sessions, as the daemon's probes mostly run).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steward_controllers::prober::{
    Monitor, MonitorSettings, NetworkProber, PoolLimits, ProbeReport, ProbeSink, ProbeTarget,
    Prober, PROBE_POOL,
};
use steward_controllers::ServiceKey;
use steward_model::snapshot::HealthCheck;
use steward_model::ServiceKind;
use tokio_util::sync::CancellationToken;

mod measure;
use measure::{ms, percentile};

const HOST: &str = "app1.example.eng";
const FLEET: usize = 1000;

struct Lab {
    _dir: tempfile::TempDir,
    ca_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn lab_pki() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let issued = ca
        .issue_server(&[HOST.to_owned()], &[], Duration::from_secs(3600))
        .unwrap();
    let (cert, key) = issued.write_pair(dir.path(), "server").unwrap();
    Lab {
        ca_pem: ca.cert_pem().to_owned(),
        cert,
        key,
        _dir: dir,
    }
}

/// Binds a lab service of `kind` and serves it on the current runtime until `stop`.
async fn serve(lab: &Lab, kind: ServiceKind, stop: CancellationToken) -> SocketAddr {
    let args = steward_lab::LabServiceArgs {
        kind,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: vec![0; kind.port_count()],
        cert: Some(lab.cert.clone()),
        key: Some(lab.key.clone()),
        connection_strings: None,
        release: Some("6.12.1".into()),
    };
    let service = steward_lab::LabService::bind(args).await.unwrap();
    let addr = service.local_addrs()[0];
    tokio::spawn(service.serve(stop.cancelled_owned()));
    addr
}

fn target(kind: ServiceKind, addr: SocketAddr, check: HealthCheck) -> ProbeTarget {
    ProbeTarget {
        kind,
        hostname: HOST.into(),
        connect_ip: Some(addr.ip()),
        port: addr.port(),
        check,
    }
}

/// This thread's CPU time; zero in a counted run (`probes N`): rustix reads the clock
/// through the vDSO, and under valgrind the address it finds for it is not mapped.
fn thread_cpu(budget: Budget) -> Duration {
    if let Budget::Probes(_) = budget {
        return Duration::ZERO;
    }
    measure::thread_cpu()
}

const PROBED: [ServiceKind; 4] = [
    ServiceKind::Psis,
    ServiceKind::Psws,
    ServiceKind::Client,
    ServiceKind::Report,
];

/// Services of each kind probed: with 16 probes in flight, one per service, as the
/// monitor never probes a service twice at once (and a service's one kept connection or
/// TLS session is what its next probe finds).
const COPIES: usize = 4;

/// Lab services of the `PROBED` kinds, [`COPIES`] of each, on a thread (and core) of
/// their own, until `stop`.
fn lab_services(
    lab: &Arc<Lab>,
    stop: &CancellationToken,
) -> (Vec<(ServiceKind, SocketAddr)>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn({
        let (lab, stop) = (lab.clone(), stop.clone());
        move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut addrs = Vec::new();
                for _ in 0..COPIES {
                    for kind in PROBED {
                        addrs.push((kind, serve(&lab, kind, stop.clone()).await));
                    }
                }
                tx.send(addrs).unwrap();
                stop.cancelled().await;
            });
        }
    });
    (rx.recv().unwrap(), server)
}

/// How long a probe load runs.
#[derive(Clone, Copy)]
enum Budget {
    Seconds(u64),
    /// Exactly this many probes in all.
    Probes(u64),
}

/// Passed and failed probes, wall time and prober CPU of 16 tasks probing `targets` (one
/// each when there are 16, as many services probed at once would be) within `budget`, on
/// this thread's current_thread runtime.
async fn probe_load<T, F>(
    targets: Vec<T>,
    budget: Budget,
    probe: F,
) -> (u64, u64, Duration, Duration)
where
    T: Clone + Send + 'static,
    F: Fn(T) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Clone
        + Send
        + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let seconds = match budget {
        Budget::Seconds(seconds) => seconds,
        Budget::Probes(_) => 3600,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let (wall, cpu) = (Instant::now(), thread_cpu(budget));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (probe, t) = (probe.clone(), targets[i % targets.len()].clone());
        let (done, failed, started) = (done.clone(), failed.clone(), started.clone());
        let more = move || match budget {
            Budget::Seconds(_) => tokio::time::Instant::now() < deadline,
            Budget::Probes(n) => started.fetch_add(1, Ordering::Relaxed) < n,
        };
        tasks.push(tokio::spawn(async move {
            while more() {
                let counter = if probe(t.clone()).await {
                    &done
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        wall.elapsed(),
        thread_cpu(budget) - cpu,
    )
}

fn report(what: &str, (count, failed, wall, cpu): (u64, u64, Duration, Duration), extra: &str) {
    println!(
        "{what}: {count} passed, {failed} failed in {:.1} s{extra}: {:.0}/s wall, {:.0}/s per prober core (CPU {:.2} s) [goal >= 2000/s per core]",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        count as f64 / cpu.as_secs_f64(),
        cpu.as_secs_f64()
    );
}

/// How probes reach the services in goal 1.
#[derive(Clone, Copy, Debug)]
enum Connections {
    /// Kept alive ([`PROBE_POOL`]).
    Reuse,
    /// A new connection and a full TLS handshake per probe.
    Dial,
    /// A new connection per probe, resuming the service's TLS session.
    Resume,
}

impl Connections {
    fn limits(self) -> PoolLimits {
        let none = PoolLimits {
            per_key: 0,
            total: 0,
            ..PROBE_POOL
        };
        match self {
            Self::Reuse => PROBE_POOL,
            Self::Dial => PoolLimits {
                sessions: 0,
                ..none
            },
            Self::Resume => none,
        }
    }
}

/// Goal 1: The servers run on their own thread; the prober on a current_thread runtime here.
fn probes_per_second(budget: Budget, connections: Connections) {
    let lab = Arc::new(lab_pki());
    let stop = CancellationToken::new();
    let (addrs, server) = lab_services(&lab, &stop);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (figures, idle) = rt.block_on(async {
        let prober = Arc::new(
            NetworkProber::with_limits(std::slice::from_ref(&lab.ca_pem), connections.limits())
                .unwrap(),
        );
        let targets: Vec<ProbeTarget> = addrs
            .iter()
            .map(|(kind, addr)| target(*kind, *addr, HealthCheck::catalog_default(*kind)))
            .collect();
        // Warm up: the handshakes that connection reuse then saves.
        for t in &targets {
            assert!(prober.probe(t).await.success());
        }
        let figures = probe_load(targets, budget, {
            let prober = prober.clone();
            move |t: ProbeTarget| {
                let prober = prober.clone();
                Box::pin(async move { prober.probe(&t).await.success() })
            }
        })
        .await;
        (figures, prober.idle_connections())
    });
    stop.cancel();
    server.join().unwrap();
    report(
        &format!("probes ({connections:?})"),
        figures,
        &format!(" over {idle} kept-alive connections"),
    );
}

/// Goal 2: What a scrape of `/metrics` costs the daemon: the registry's encoding, the
/// handler's path (`benches/metrics_encoding.rs` compares it with prometheus-client).
fn metrics_encoding(rounds: usize) {
    let snapshot = steward_controllers::bench::snapshot(FLEET);
    let registry = steward_controllers::MetricsRegistry::default();
    steward_controllers::bench::metrics(&registry, &snapshot).unwrap();
    let mut samples = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let chunks = registry.encode();
        samples.push(started.elapsed());
        size = chunks.iter().map(Vec::len).sum();
    }
    let series = registry
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    println!(
        "/metrics at {FLEET} servers x 11 services ({series} series, {} KiB): p50 {}, p99 {} [goal <= 10 ms]",
        size / 1024,
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
    );
}

/// Goal 3: What a request of `/api/v1/status` costs.
fn status_serialization(rounds: usize) {
    let snapshot = steward_controllers::bench::snapshot(FLEET);
    let store = steward_controllers::bench::store(&snapshot);
    let mut samples = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let body = serde_json::to_vec(&store.status()).unwrap();
        samples.push(started.elapsed());
        size = body.len();
    }
    println!(
        "/api/v1/status at {FLEET} servers x 11 services ({} KiB): p50 {}, p99 {} [goal p99 <= 100 ms]",
        size / 1024,
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
    );
}

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
    fn last(&self) -> Option<(Instant, Option<bool>)> {
        self.0.lock().unwrap().last().copied()
    }
}

/// Goal 4: A service stops; how long until its verdict is down.
fn failure_detection(trials: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut samples = Vec::new();
    rt.block_on(async {
        let lab = lab_pki();
        for trial in 0..trials {
            let stop = CancellationToken::new();
            let addr = serve(&lab, ServiceKind::Psis, stop.clone()).await;
            let prober = Arc::new(NetworkProber::new(std::slice::from_ref(&lab.ca_pem)).unwrap());
            let monitor = Monitor::new(prober, MonitorSettings::default());
            let verdicts = Arc::new(Verdicts::default());
            let shutdown = CancellationToken::new();
            let running = tokio::spawn({
                let (monitor, sink, shutdown) =
                    (monitor.clone(), verdicts.clone(), shutdown.clone());
                async move { monitor.run(sink, shutdown).await }
            });
            let mut check = HealthCheck::catalog_default(ServiceKind::Psis);
            check.interval = Duration::from_secs(1);
            check.timeout = Duration::from_millis(500);
            check.fall = 3;
            check.rise = 2;
            let key = ServiceKey::new("app1", ServiceKind::Psis);
            monitor.watch(&key, target(ServiceKind::Psis, addr, check));
            while verdicts.last().map(|v| v.1) != Some(Some(true)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Kill at a different point of the probe cycle in each trial.
            tokio::time::sleep(Duration::from_millis(300 + 250 * trial as u64)).await;
            let killed = Instant::now();
            stop.cancel();
            while verdicts.last().map(|v| v.1) != Some(Some(false)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples.push(verdicts.last().unwrap().0 - killed);
            shutdown.cancel();
            running.await.unwrap();
        }
    });
    let worst = samples.iter().max().copied().unwrap_or_default();
    let list: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .collect();
    println!(
        "failure detection (interval 1 s, timeout 0.5 s, fall 3): kill -> down in {} (worst {:.2} s) [goal <= 4 s]",
        list.join(", "),
        worst.as_secs_f64()
    );
}

/// Counts, per service, the probes the monitor reported.
#[derive(Default)]
struct Counts(Mutex<std::collections::HashMap<ServiceKey, usize>>);

impl ProbeSink for Counts {
    fn observe(&self, key: &ServiceKey, _: &ProbeReport<'_>) {
        *self.0.lock().unwrap().entry(key.clone()).or_default() += 1;
    }
}

impl Counts {
    fn of(&self, key: &ServiceKey) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

/// Goal 5: probes of a healthy service while hung ones fill the failing lane.
fn failing_lane_isolation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let probes = rt.block_on(async {
        let lab = lab_pki();
        let stop = CancellationToken::new();
        let healthy = serve(&lab, ServiceKind::Psws, stop.clone()).await;
        // Accepts and never answers: every probe ends in its timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let prober = Arc::new(NetworkProber::new(std::slice::from_ref(&lab.ca_pem)).unwrap());
        let monitor = Monitor::new(
            prober,
            MonitorSettings {
                healthy_slots: 256,
                failing_slots: 4,
            },
        );
        let counts = Arc::new(Counts::default());
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let (monitor, sink, shutdown) = (monitor.clone(), counts.clone(), shutdown.clone());
            async move { monitor.run(sink, shutdown).await }
        });
        let mut check = HealthCheck::catalog_default(ServiceKind::Psws);
        check.timeout = Duration::from_millis(300);
        check.interval = Duration::from_millis(310);
        for i in 0..200 {
            let key = ServiceKey::new(format!("hung{i}"), ServiceKind::Psws);
            monitor.watch(&key, target(ServiceKind::Psws, silent_addr, check.clone()));
        }
        while counts.total() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let key = ServiceKey::new("app1", ServiceKind::Psis);
        check.interval = Duration::from_millis(100);
        monitor.watch(&key, target(ServiceKind::Psws, healthy, check));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let probes = counts.of(&key);
        shutdown.cancel();
        running.await.unwrap();
        stop.cancel();
        probes
    });
    println!(
        "healthy probes in 1 s at a 100 ms interval while 200 hung services fill the failing lane: {probes} [goal >= 7]"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `quick` shortens every measurement.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "probes") {
        let n = args.get(at + 1).and_then(|n| n.parse().ok());
        let connections = match args.get(at + 2).map(String::as_str) {
            Some("dial") => Connections::Dial,
            Some("resume") => Connections::Resume,
            _ => Connections::Reuse,
        };
        let n = n.expect("probes N: a number of probes");
        probes_per_second(Budget::Probes(n), connections);
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let (seconds, rounds, trials) = if quick { (1, 10, 1) } else { (5, 100, 4) };
    for connections in [Connections::Reuse, Connections::Dial, Connections::Resume] {
        probes_per_second(Budget::Seconds(seconds), connections);
    }
    metrics_encoding(rounds);
    status_serialization(rounds);
    failure_detection(trials);
    failing_lane_isolation();
}
