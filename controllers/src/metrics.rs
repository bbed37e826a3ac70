//! Prometheus metrics of the controllers (DESIGN §10), registered once into the daemon's
//! registry. Label values come from the desired state's names, the catalog and fixed enums
//! only, never from error text; series of servers and services that leave the fleet are
//! removed so that the label sets stay bounded.

use std::time::Duration;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};
use steward_model::ServiceKind;
use steward_runtime::observer::RESULT_OK;
use steward_runtime::{ControllerObserver, Reason};

use crate::drift::DriftKind;

/// The controller names: the `controller` label.
pub(crate) const CONTROLLERS: [&str; 3] = ["server", "certificate", "service"];

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
    agent_up: IntGaugeVec,
    service_installed: IntGaugeVec,
    service_healthy: IntGaugeVec,
    probe_duration: GaugeVec,
    certificate_expiry: GaugeVec,
    hl7_active: IntGaugeVec,
}

impl Metrics {
    /// Create and register every metric. Fails if they are registered already: two sets
    /// of controllers writing one registry would report each other's numbers.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
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
                "Objects waiting to be reconciled, by controller.",
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
            agent_up: gauge(
                "steward_agent_up",
                "Whether the server's agent answers (1) or not (0).",
                &["server"],
            )?,
            service_installed: gauge(
                "steward_service_installed",
                "Whether the service is installed on the server.",
                &["server", "service"],
            )?,
            service_healthy: gauge(
                "steward_service_healthy",
                "Whether the service passes its health test.",
                &["server", "service"],
            )?,
            probe_duration: GaugeVec::new(
                Opts::new(
                    "steward_probe_duration_seconds",
                    "Duration of the last health probe of the service.",
                ),
                &["server", "service"],
            )?,
            certificate_expiry: GaugeVec::new(
                Opts::new(
                    "steward_certificate_expiry_timestamp_seconds",
                    "When the server's TLS certificate expires (Unix time).",
                ),
                &["server"],
            )?,
            hl7_active: gauge(
                "steward_hl7_active_listener",
                "1 on the server whose HL7 listener is active, 0 on the other HL7 servers.",
                &["server"],
            )?,
        };
        for collector in metrics.collectors() {
            registry.register(collector)?;
        }
        // Known label values start at zero, so that rate() and alerts see the first event.
        for controller in CONTROLLERS {
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
            Box::new(self.agent_up.clone()),
            Box::new(self.service_installed.clone()),
            Box::new(self.service_healthy.clone()),
            Box::new(self.probe_duration.clone()),
            Box::new(self.certificate_expiry.clone()),
            Box::new(self.hl7_active.clone()),
        ]
    }

    /// Observes the reconcile's duration when dropped, however the reconcile ends
    /// (early return, error, panic).
    pub(crate) fn reconcile_timer(&self, controller: &'static str) -> HistogramTimer {
        self.reconcile_duration
            .with_label_values(&[controller])
            .start_timer()
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

    pub(crate) fn agent_up(&self, server: &str, up: bool) {
        self.agent_up
            .with_label_values(&[server])
            .set(i64::from(up));
    }

    pub(crate) fn service(&self, server: &str, kind: ServiceKind, installed: bool, healthy: bool) {
        let labels = [server, kind.as_str()];
        self.service_installed
            .with_label_values(&labels)
            .set(i64::from(installed));
        self.service_healthy
            .with_label_values(&labels)
            .set(i64::from(healthy));
    }

    pub(crate) fn probe_duration(&self, server: &str, kind: ServiceKind, took: Duration) {
        self.probe_duration
            .with_label_values(&[server, kind.as_str()])
            .set(took.as_secs_f64());
    }

    pub(crate) fn certificate_expiry(&self, server: &str, unix_seconds: i64) {
        // Unix seconds fit an f64 exactly for the next 285 million years.
        self.certificate_expiry
            .with_label_values(&[server])
            .set(unix_seconds as f64);
    }

    pub(crate) fn hl7_active(&self, server: &str, active: bool) {
        self.hl7_active
            .with_label_values(&[server])
            .set(i64::from(active));
    }

    pub(crate) fn forget_service(&self, server: &str, kind: ServiceKind) {
        let labels = [server, kind.as_str()];
        let _ = self.service_installed.remove_label_values(&labels);
        let _ = self.service_healthy.remove_label_values(&labels);
        let _ = self.probe_duration.remove_label_values(&labels);
        if kind == ServiceKind::Hl7 {
            let _ = self.hl7_active.remove_label_values(&[server]);
        }
    }

    pub(crate) fn forget_server(&self, server: &str) {
        let _ = self.agent_up.remove_label_values(&[server]);
        let _ = self.certificate_expiry.remove_label_values(&[server]);
        let _ = self.hl7_active.remove_label_values(&[server]);
    }
}

/// The runtime reports outcomes through this; `ok` becomes `success`, every error label
/// (and a panic) becomes `error`, keeping the result label to the two values users alert on.
impl ControllerObserver for Metrics {
    fn on_reconcile_end(&self, controller: &str, _reason: Reason, _took: Duration, result: &str) {
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
        let metrics = Metrics::register(&registry).unwrap();
        assert!(
            Metrics::register(&registry).is_err(),
            "a second registration must fail"
        );
        metrics.agent_up("app1", true);
        metrics.service("app1", ServiceKind::Psis, true, false);
        metrics.probe_duration("app1", ServiceKind::Psis, Duration::from_millis(5));
        metrics.certificate_expiry("app1", 1_900_000_000);
        metrics.hl7_active("app2", true);
        drop(metrics.reconcile_timer("service"));
        metrics.on_reconcile_end("service", Reason::Resync, Duration::ZERO, RESULT_OK);
        metrics.on_reconcile_end("service", Reason::Resync, Duration::ZERO, "agent_timeout");
        let text = text(&registry);
        for line in [
            "steward_reconcile_total{controller=\"service\",result=\"success\"} 1",
            "steward_reconcile_total{controller=\"service\",result=\"error\"} 1",
            "steward_reconcile_total{controller=\"server\",result=\"error\"} 0",
            "steward_reconcile_duration_seconds_count{controller=\"service\"} 1",
            "steward_reconcile_queue_depth{controller=\"certificate\"} 0",
            "steward_drift_detected_total{kind=\"service_stopped\"} 0",
            "steward_drift_corrected_total{kind=\"connection_strings\"} 0",
            "steward_agent_up{server=\"app1\"} 1",
            "steward_service_installed{server=\"app1\",service=\"PSIS\"} 1",
            "steward_service_healthy{server=\"app1\",service=\"PSIS\"} 0",
            "steward_probe_duration_seconds{server=\"app1\",service=\"PSIS\"} 0.005",
            "steward_certificate_expiry_timestamp_seconds{server=\"app1\"} 1900000000",
            "steward_hl7_active_listener{server=\"app2\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert!(!text.contains("agent_timeout"), "error text is no label");
    }

    #[test]
    fn forgotten_objects_lose_their_series() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        metrics.agent_up("app3", false);
        metrics.service("app3", ServiceKind::Hl7, true, true);
        metrics.hl7_active("app3", true);
        metrics.forget_service("app3", ServiceKind::Hl7);
        metrics.forget_server("app3");
        assert!(!text(&registry).contains("app3"));
    }
}
