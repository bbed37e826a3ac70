//! `/metrics` at 1,000 servers x 11 services, the same series in two mechanisms: steward's
//! own registry (typed label sets, fleet series kept in rows, text written directly) and
//! prometheus-client (typed label sets through `EncodeLabelSet`, its text encoder). Both
//! hold every series the daemon exports at that size: the controllers' fleet, reconcile
//! and drift series and the desired-state series. Goal: /metrics <= 10 ms p99.
//!
//! `cargo bench -p steward-controllers --bench metrics_encoding` prints p50/p99 of each
//! (one encode per sample), then criterion's estimates.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use steward_controllers::{MetricsRegistry, DURATION_BUCKETS};
use steward_model::{ServiceKind, Snapshot};

const FLEET: usize = 1000;
const CONTROLLERS: [&str; 3] = ["server", "certificate", "service"];
const DRIFT: [&str; 5] = [
    "service_missing",
    "service_stopped",
    "service_spec",
    "certificate",
    "connection_strings",
];
const OUTCOMES: [&str; 5] = ["applied", "unchanged", "invalid", "failed", "deferred"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Kind(ServiceKind);

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    server: String,
    service: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    service: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type IntGauges<S> = Family<S, Gauge>;

/// The same series as `steward_controllers::bench::metrics` plus the daemon's, in
/// prometheus-client.
fn client_registry(snapshot: &Snapshot) -> Registry {
    let mut r = Registry::default();
    let expiry = time::OffsetDateTime::now_utc().unix_timestamp() + 60 * 86400;
    let (agent_up, cert, renewal, hl7) = (
        IntGauges::<ServerLabels>::default(),
        IntGauges::<ServerLabels>::default(),
        IntGauges::<ServerLabels>::default(),
        IntGauges::<ServerLabels>::default(),
    );
    let (installed, healthy, success, status, ssl) = (
        IntGauges::<ServiceLabels>::default(),
        IntGauges::<ServiceLabels>::default(),
        IntGauges::<ServiceLabels>::default(),
        IntGauges::<ServiceLabels>::default(),
        IntGauges::<ServiceLabels>::default(),
    );
    let duration = Family::<ServiceLabels, Gauge<f64, AtomicU64>>::default();
    for server in snapshot.servers.values() {
        let s = ServerLabels {
            server: server.name.clone(),
        };
        agent_up.get_or_create(&s).set(1);
        cert.get_or_create(&s).set(expiry);
        renewal.get_or_create(&s).set(expiry - 30 * 86400);
        for placed in &server.services {
            let l = ServiceLabels {
                server: server.name.clone(),
                service: Kind(placed.kind),
            };
            installed.get_or_create(&l).set(1);
            healthy.get_or_create(&l).set(1);
            duration.get_or_create(&l).set(0.0023);
            success.get_or_create(&l).set(1);
            status.get_or_create(&l).set(200);
            ssl.get_or_create(&l).set(expiry);
            if placed.kind == ServiceKind::Hl7 {
                hl7.get_or_create(&s)
                    .set(i64::from(server.name == "app0001"));
            }
        }
    }
    let kind_healthy = IntGauges::<KindLabels>::default();
    for kind in ServiceKind::ALL {
        kind_healthy
            .get_or_create(&KindLabels {
                service: Kind(kind),
            })
            .set(1);
    }
    let reconciles = Family::<ResultLabels, Counter>::default();
    // Reconcile durations have no series before the first reconcile, in both.
    let took = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
        Histogram::new(DURATION_BUCKETS.iter().copied())
    });
    let depth = IntGauges::<ControllerLabels>::default();
    for controller in CONTROLLERS {
        for result in ["success", "error"] {
            // Created at zero, as steward exports them from start-up.
            drop(reconciles.get_or_create(&ResultLabels { controller, result }));
        }
        depth.get_or_create(&ControllerLabels { controller }).set(0);
    }
    let (detected, corrected) = (
        Family::<DriftLabels, Counter>::default(),
        Family::<DriftLabels, Counter>::default(),
    );
    for kind in DRIFT {
        drop(detected.get_or_create(&DriftLabels { kind }));
        drop(corrected.get_or_create(&DriftLabels { kind }));
    }
    let loads = Family::<OutcomeLabels, Counter>::default();
    for outcome in OUTCOMES {
        drop(loads.get_or_create(&OutcomeLabels { outcome }));
    }
    for name in [
        "steward_desired_state_valid",
        "steward_desired_state_generation",
        "steward_desired_state_last_attempted_generation",
        "steward_desired_state_errors",
        "steward_desired_state_load_stalled",
    ] {
        r.register(name, "help", Gauge::<i64>::default());
    }
    r.register(
        "steward_desired_state_last_load_timestamp_seconds",
        "help",
        Gauge::<f64, AtomicU64>::default(),
    );
    r.register(
        "steward_desired_state_load_duration_seconds",
        "help",
        Histogram::new(DURATION_BUCKETS.iter().copied()),
    );
    // prometheus-client names a counter without `_total` and adds it to the samples.
    r.register("steward_desired_state_loads", "help", loads);
    r.register("steward_reconcile", "help", reconciles);
    r.register("steward_reconcile_duration_seconds", "help", took);
    r.register("steward_reconcile_queue_depth", "help", depth);
    r.register("steward_drift_detected", "help", detected);
    r.register("steward_drift_corrected", "help", corrected);
    r.register("steward_agent_up", "help", agent_up);
    r.register("steward_certificate_expiry_timestamp_seconds", "help", cert);
    r.register(
        "steward_certificate_renewal_timestamp_seconds",
        "help",
        renewal,
    );
    r.register("steward_hl7_active_listener", "help", hl7);
    r.register("steward_service_installed", "help", installed);
    r.register("steward_service_healthy", "help", healthy);
    r.register("steward_service_kind_healthy", "help", kind_healthy);
    r.register("steward_probe_duration_seconds", "help", duration);
    r.register("steward_probe_success", "help", success);
    r.register("steward_probe_http_status_code", "help", status);
    r.register(
        "steward_probe_ssl_earliest_cert_expiry_seconds",
        "help",
        ssl,
    );
    r
}

/// The same series in steward's registry: the controllers' through their own code, the
/// daemon's desired-state families rebuilt here (that crate sits above this one).
fn steward_registry(snapshot: &Snapshot) -> MetricsRegistry {
    use steward_controllers::{Counter, Gauge, Histogram, LabelSet};

    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Outcome(&'static str);
    impl LabelSet for Outcome {
        const NAMES: &'static [&'static str] = &["outcome"];
        fn values(&self) -> Vec<&str> {
            vec![self.0]
        }
    }

    let registry = MetricsRegistry::default();
    for name in [
        "steward_desired_state_valid",
        "steward_desired_state_generation",
        "steward_desired_state_last_attempted_generation",
        "steward_desired_state_errors",
        "steward_desired_state_load_stalled",
        "steward_desired_state_last_load_timestamp_seconds",
    ] {
        let gauge = Gauge::<()>::new(name, "help");
        gauge.set(&(), 0);
        registry.register(gauge).unwrap();
    }
    let took = Histogram::<()>::new(
        "steward_desired_state_load_duration_seconds",
        "help",
        DURATION_BUCKETS,
    );
    took.start_at_zero(&());
    registry.register(took).unwrap();
    let loads = Counter::<Outcome>::new("steward_desired_state_loads_total", "help");
    for outcome in OUTCOMES {
        loads.start_at_zero(&Outcome(outcome));
    }
    registry.register(loads).unwrap();
    steward_controllers::bench::metrics(&registry, snapshot).unwrap();
    registry
}

fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

/// p50 and p99 of `rounds` runs of `encode`, which returns the text's size.
fn percentiles(rounds: usize, mut encode: impl FnMut() -> usize) -> (Duration, Duration, usize) {
    let mut samples = Vec::with_capacity(rounds);
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        size = encode();
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), size)
}

fn encoding(c: &mut Criterion) {
    let snapshot = steward_controllers::bench::snapshot(FLEET);
    let steward = steward_registry(&snapshot);
    let client = client_registry(&snapshot);
    let client_text = || {
        let mut out = String::with_capacity(8 << 20);
        prometheus_client::encoding::text::encode_registry(&mut out, &client).unwrap();
        out
    };
    let counts = (series(&steward.text()), series(&client_text()));
    for (name, (p50, p99, size)) in [
        (
            "steward registry",
            percentiles(200, || steward.encode().iter().map(Vec::len).sum()),
        ),
        (
            "prometheus-client",
            percentiles(200, || client_text().len()),
        ),
    ] {
        println!(
            "/metrics by {name} at {FLEET} servers x 11 services ({} KiB): p50 {:.2} ms, p99 {:.2} ms [goal p99 <= 10 ms]",
            size / 1024,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
        );
    }
    println!(
        "series: steward registry {}, prometheus-client {}",
        counts.0, counts.1
    );
    let mut group = c.benchmark_group("metrics_1000x11");
    group.sample_size(30);
    group.bench_function("steward_registry", |b| b.iter(|| steward.encode()));
    group.bench_function("prometheus_client", |b| b.iter(client_text));
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
