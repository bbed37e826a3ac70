//! Prometheus metrics of the controllers (docs/metrics.md), registered once into the daemon's
//! registry. Label values come from the desired state's names, the catalog and fixed enums
//! only, never from error text; series of servers and services that leave the fleet are
//! removed so that the label sets stay bounded.

use std::time::Duration;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use steward_model::ServiceKind;
use steward_runtime::observer::RESULT_OK;
use steward_runtime::{ControllerObserver, Reason};

use crate::drift::DriftKind;
use crate::prober::ProbeResult;

mod fleet;

pub use fleet::encode;
use fleet::{FleetSeries, Value};

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone)]
pub(crate) struct Metrics {
    reconcile_total: IntCounterVec,
    reconcile_duration: HistogramVec,
    queue_depth: IntGaugeVec,
    drift_detected: IntCounterVec,
    drift_corrected: IntCounterVec,
    /// Per-server and per-service series (agent up, certificate expiry, HL7 listener,
    /// installed, healthy, probe results): fleet-sized, so rendered by their own tables.
    fleet: FleetSeries,
    kind_healthy: IntGaugeVec,
    certificate_renewal: GaugeVec,
    /// No labels; no series until the first check.
    database_up: IntGaugeVec,
    database_info: IntGaugeVec,
}

impl Metrics {
    /// Create and register every metric, with the series of each of `controllers` (the
    /// `controller` label) starting at zero. Fails if they are registered already: two
    /// sets of controllers writing one registry would report each other's numbers.
    pub(crate) fn register(
        registry: &Registry,
        controllers: &[&str],
    ) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let metrics = Self {
            reconcile_total: counter(
                "steward_reconcile_total",
                "Reconciles finished, by controller and result (success or error).",
                &["controller", "result"],
            )?,
            reconcile_duration: HistogramVec::new(
                HistogramOpts::new(
                    "steward_reconcile_duration_seconds",
                    "Time one reconcile took, by controller.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["controller"],
            )?,
            queue_depth: gauge(
                "steward_reconcile_queue_depth",
                "Objects due to be reconciled and not yet running, by controller (a settled object waiting for its next periodic check is not counted).",
                &["controller"],
            )?,
            drift_detected: counter(
                "steward_drift_detected_total",
                "Differences from the desired state found after it had been reached, by kind.",
                &["kind"],
            )?,
            drift_corrected: counter(
                "steward_drift_corrected_total",
                "Drift repaired in autoCorrect mode, by kind.",
                &["kind"],
            )?,
            kind_healthy: gauge(
                "steward_service_kind_healthy",
                "Whether at least minimumHealthy servers pass the service kind's health test.",
                &["service"],
            )?,
            fleet: FleetSeries::new()?,
            certificate_renewal: GaugeVec::new(
                Opts::new(
                    "steward_certificate_renewal_timestamp_seconds",
                    "When the server's TLS certificate is due for renewal (Unix time): renewBefore ahead of its expiry. Steward renews generated certificates then; existing ones must be replaced by then.",
                ),
                &["server"],
            )?,
            database_up: gauge(
                "steward_database_up",
                "1 while steward logs in to the installation's SQL Server with the installer login and the database exists, else 0.",
                &[],
            )?,
            database_info: gauge(
                "steward_database_info",
                "Always 1; the label is the version the database server last reported.",
                &["version"],
            )?,
        };
        for collector in metrics.collectors() {
            registry.register(collector)?;
        }
        // Known label values start at zero, so that rate() and alerts see the first event.
        for controller in controllers.iter().copied() {
            for result in ["success", "error"] {
                metrics
                    .reconcile_total
                    .with_label_values(&[controller, result]);
            }
            metrics.queue_depth.with_label_values(&[controller]).set(0);
        }
        for kind in DriftKind::ALL {
            metrics.drift_detected.with_label_values(&[kind.as_str()]);
            metrics.drift_corrected.with_label_values(&[kind.as_str()]);
        }
        Ok(metrics)
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.reconcile_total.clone()),
            Box::new(self.reconcile_duration.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.drift_detected.clone()),
            Box::new(self.drift_corrected.clone()),
            Box::new(self.fleet.clone()),
            Box::new(self.kind_healthy.clone()),
            Box::new(self.certificate_renewal.clone()),
            Box::new(self.database_up.clone()),
            Box::new(self.database_info.clone()),
        ]
    }

    pub(crate) fn drift_detected(&self, kind: DriftKind) {
        self.drift_detected
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    pub(crate) fn drift_corrected(&self, kind: DriftKind) {
        self.drift_corrected
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// `steward_database_up`; `None` removes it (not checked yet).
    pub(crate) fn database_up(&self, up: Option<bool>) {
        match up {
            Some(up) => self
                .database_up
                .with_label_values::<&str>(&[])
                .set(i64::from(up)),
            None => self.database_up.reset(),
        }
    }

    /// `steward_database_info` has one series, of the version last reported: the old one
    /// goes when it changes, so the label stays bounded.
    pub(crate) fn database_version(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old.filter(|o| *o != new) {
            let _ = self.database_info.remove_label_values(&[old]);
        }
        self.database_info.with_label_values(&[new]).set(1);
    }

    pub(crate) fn agent_up(&self, server: &str, up: bool) {
        self.fleet
            .set_server(server, fleet::AGENT_UP, Some(Value::Int(i64::from(up))));
    }

    /// `healthy: None`: unknown, so no `steward_service_healthy` series (see the store).
    pub(crate) fn service(
        &self,
        server: &str,
        kind: ServiceKind,
        installed: bool,
        healthy: Option<bool>,
    ) {
        self.fleet.set_service(
            server,
            kind,
            &[
                (fleet::INSTALLED, Some(Value::Int(i64::from(installed)))),
                (fleet::HEALTHY, healthy.map(|h| Value::Int(i64::from(h)))),
            ],
        );
    }

    /// The last probe, as blackbox_exporter reports one.
    pub(crate) fn probe(&self, server: &str, kind: ServiceKind, result: &ProbeResult) {
        let mut values = vec![
            (
                fleet::PROBE_DURATION,
                Some(Value::Micros(
                    u64::try_from(result.duration.as_micros()).unwrap_or(u64::MAX),
                )),
            ),
            (
                fleet::PROBE_SUCCESS,
                Some(Value::Int(i64::from(result.success()))),
            ),
            (
                fleet::PROBE_HTTP_STATUS,
                Some(Value::Int(result.http_status.map_or(0, i64::from))),
            ),
        ];
        if let Some(not_after) = result.cert_not_after {
            values.push((
                fleet::PROBE_CERT_EXPIRY,
                Some(Value::Int(not_after.unix_timestamp())),
            ));
        }
        self.fleet.set_service(server, kind, &values);
    }

    /// `None`: the kind is placed nowhere any more.
    pub(crate) fn service_kind(&self, kind: ServiceKind, healthy: Option<bool>) {
        match healthy {
            Some(healthy) => self
                .kind_healthy
                .with_label_values(&[kind.as_str()])
                .set(i64::from(healthy)),
            None => {
                let _ = self.kind_healthy.remove_label_values(&[kind.as_str()]);
            }
        }
    }

    pub(crate) fn certificate_expiry(&self, server: &str, unix_seconds: i64) {
        self.fleet.set_server(
            server,
            fleet::CERTIFICATE_EXPIRY,
            Some(Value::Int(unix_seconds)),
        );
    }

    pub(crate) fn certificate_renewal(&self, server: &str, unix_seconds: i64) {
        self.certificate_renewal
            .with_label_values(&[server])
            .set(unix_seconds as f64);
    }

    pub(crate) fn hl7_active(&self, server: &str, active: bool) {
        self.fleet.set_server(
            server,
            fleet::HL7_ACTIVE,
            Some(Value::Int(i64::from(active))),
        );
    }

    pub(crate) fn forget_service(&self, server: &str, kind: ServiceKind) {
        self.fleet.forget_service(server, kind);
        if kind == ServiceKind::Hl7 {
            self.fleet.set_server(server, fleet::HL7_ACTIVE, None);
        }
    }

    pub(crate) fn forget_server(&self, server: &str) {
        self.fleet.forget_server(server);
        let _ = self.certificate_renewal.remove_label_values(&[server]);
    }
}

/// The runtime reports outcomes through this; `ok` becomes `success`, every error label
/// (and a panic) becomes `error`, keeping the result label to the two values users alert on.
/// The duration is the runtime's: the one measurement of a reconcile, however it ended.
impl ControllerObserver for Metrics {
    fn on_reconcile_end(&self, controller: &str, _reason: Reason, took: Duration, result: &str) {
        self.reconcile_duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
        let result = if result == RESULT_OK {
            "success"
        } else {
            "error"
        };
        self.reconcile_total
            .with_label_values(&[controller, result])
            .inc();
    }

    fn on_queue_depth(&self, controller: &str, depth: usize) {
        self.queue_depth
            .with_label_values(&[controller])
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    const NAMES: [&str; 3] = ["server", "certificate", "service"];

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn registered_once_with_the_contract_names() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry, &NAMES).unwrap();
        assert!(
            Metrics::register(&registry, &NAMES).is_err(),
            "a second registration must fail"
        );
        metrics.agent_up("app1", true);
        metrics.service("app1", ServiceKind::Psis, true, Some(false));
        metrics.probe(
            "app1",
            ServiceKind::Psis,
            &ProbeResult {
                duration: Duration::from_millis(5),
                http_status: Some(503),
                cert_not_after: time::OffsetDateTime::from_unix_timestamp(1_900_000_000).ok(),
                reused_connection: true,
                outcome: Err(crate::prober::ProbeError::Status {
                    status: 503,
                    accepted: "200-399".into(),
                }),
            },
        );
        metrics.service_kind(ServiceKind::Psis, Some(false));
        metrics.service_kind(ServiceKind::Hl7, Some(true));
        metrics.service_kind(ServiceKind::Hl7, None);
        metrics.certificate_expiry("app1", 1_900_000_000);
        metrics.certificate_renewal("app1", 1_897_408_000);
        metrics.hl7_active("app2", true);
        metrics.on_reconcile_end("service", Reason::Resync, Duration::ZERO, RESULT_OK);
        metrics.on_reconcile_end("service", Reason::Resync, Duration::ZERO, "agent_timeout");
        let text = text(&registry);
        for line in [
            "steward_reconcile_total{controller=\"service\",result=\"success\"} 1",
            "steward_reconcile_total{controller=\"service\",result=\"error\"} 1",
            "steward_reconcile_total{controller=\"server\",result=\"error\"} 0",
            "steward_reconcile_duration_seconds_count{controller=\"service\"} 2",
            "steward_reconcile_queue_depth{controller=\"certificate\"} 0",
            "steward_drift_detected_total{kind=\"service_stopped\"} 0",
            "steward_drift_corrected_total{kind=\"connection_strings\"} 0",
            "steward_agent_up{server=\"app1\"} 1",
            "steward_service_installed{server=\"app1\",service=\"PSIS\"} 1",
            "steward_service_healthy{server=\"app1\",service=\"PSIS\"} 0",
            "steward_probe_duration_seconds{server=\"app1\",service=\"PSIS\"} 0.005",
            "steward_probe_success{server=\"app1\",service=\"PSIS\"} 0",
            "steward_probe_http_status_code{server=\"app1\",service=\"PSIS\"} 503",
            "steward_probe_ssl_earliest_cert_expiry_seconds{server=\"app1\",service=\"PSIS\"} 1900000000",
            "steward_service_kind_healthy{service=\"PSIS\"} 0",
            "steward_certificate_expiry_timestamp_seconds{server=\"app1\"} 1900000000",
            "steward_certificate_renewal_timestamp_seconds{server=\"app1\"} 1897408000",
            "steward_hl7_active_listener{server=\"app2\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert!(!text.contains("agent_timeout"), "error text is no label");
        assert!(
            !text.contains("service=\"HL7\""),
            "a kind placed nowhere has no series"
        );
    }

    #[test]
    fn the_fast_text_is_what_the_prometheus_encoder_writes() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry, &NAMES).unwrap();
        for server in ["app1", "app2", "app10"] {
            metrics.agent_up(server, server != "app2");
            metrics.certificate_expiry(server, 1_900_000_000);
            for kind in [ServiceKind::Psis, ServiceKind::Hl7, ServiceKind::Client] {
                metrics.service(server, kind, true, Some(kind != ServiceKind::Hl7));
                metrics.probe(
                    server,
                    kind,
                    &ProbeResult {
                        duration: Duration::from_micros(1234),
                        http_status: Some(200),
                        cert_not_after: None,
                        reused_connection: false,
                        outcome: Ok(()),
                    },
                );
            }
        }
        metrics.hl7_active("app1", true);
        metrics.forget_service("app10", ServiceKind::Client);
        let sorted = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        let fast = String::from_utf8(encode(&registry).unwrap().concat()).unwrap();
        assert_eq!(sorted(&fast), sorted(&text(&registry)));
        assert!(fast
            .contains("steward_probe_duration_seconds{server=\"app2\",service=\"HL7\"} 0.001234"));
        assert!(
            !fast.contains("steward_probe_ssl_earliest_cert_expiry_seconds"),
            "no TLS, no series"
        );
        assert!(!fast.contains("server=\"app10\",service=\"CLIENT\""));
    }

    #[test]
    fn forgotten_objects_lose_their_series() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry, &NAMES).unwrap();
        metrics.agent_up("app3", false);
        metrics.service("app3", ServiceKind::Hl7, true, Some(true));
        metrics.hl7_active("app3", true);
        metrics.certificate_expiry("app3", 1);
        metrics.certificate_renewal("app3", 1);
        metrics.forget_service("app3", ServiceKind::Hl7);
        metrics.forget_server("app3");
        assert!(!text(&registry).contains("app3"));
    }
}
