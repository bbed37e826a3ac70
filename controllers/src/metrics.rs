//! Prometheus metrics of the controllers (docs/metrics.md), registered once into the daemon's
//! registry. Label values come from the desired state's names, the catalog and fixed enums
//! only, never from error text; series of servers and services that leave the fleet are
//! removed so that the label sets stay bounded.

use std::time::Duration;

use steward_model::ServiceKind;
use steward_runtime::observer::RESULT_OK;
use steward_runtime::{ControllerObserver, Reason};

use crate::drift::DriftKind;
use crate::prober::ProbeResult;

mod exposition;
mod family;
mod fleet;
mod registry;

pub use exposition::Value;
pub use family::{Counter, Gauge, Histogram, LabelSet};
use fleet::FleetSeries;
pub use registry::{Family, MetricsError, MetricsRegistry};

/// Bucket bounds for durations of seconds to a minute (reconciles, directory loads).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `controller`: a registered controller's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ControllerLabel {
    controller: String,
}

impl LabelSet for ControllerLabel {
    const NAMES: &'static [&'static str] = &["controller"];
    fn values(&self) -> Vec<&str> {
        vec![&self.controller]
    }
}

/// How a reconcile ended, as users alert on it: every error label (and a panic) is `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ReconcileResult {
    Success,
    Error,
}

impl ReconcileResult {
    const ALL: [Self; 2] = [Self::Success, Self::Error];

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ReconcileLabels {
    controller: String,
    result: ReconcileResult,
}

impl LabelSet for ReconcileLabels {
    const NAMES: &'static [&'static str] = &["controller", "result"];
    fn values(&self) -> Vec<&str> {
        vec![&self.controller, self.result.as_str()]
    }
}

impl LabelSet for DriftKind {
    const NAMES: &'static [&'static str] = &["kind"];
    fn values(&self) -> Vec<&str> {
        vec![self.as_str()]
    }
}

/// `service`: a catalog kind, fleet-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KindLabel(ServiceKind);

impl LabelSet for KindLabel {
    const NAMES: &'static [&'static str] = &["service"];
    fn values(&self) -> Vec<&str> {
        vec![self.0.as_str()]
    }
}

/// `version`: what the database server last reported (one series at a time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VersionLabel {
    version: String,
}

impl LabelSet for VersionLabel {
    const NAMES: &'static [&'static str] = &["version"];
    fn values(&self) -> Vec<&str> {
        vec![&self.version]
    }
}

/// `kind`, `server`: one member of a load-balancer farm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LbMemberLabels {
    kind: ServiceKind,
    server: String,
}

impl LabelSet for LbMemberLabels {
    const NAMES: &'static [&'static str] = &["kind", "server"];
    fn values(&self) -> Vec<&str> {
        vec![self.kind.as_str(), &self.server]
    }
}

/// `directory`: an ActiveDirectory's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DirectoryLabel {
    directory: String,
}

impl LabelSet for DirectoryLabel {
    const NAMES: &'static [&'static str] = &["directory"];
    fn values(&self) -> Vec<&str> {
        vec![&self.directory]
    }
}

/// `directory`, `role`, `group`: one role group of an ActiveDirectory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupLabels {
    directory: String,
    role: String,
    group: String,
}

impl LabelSet for GroupLabels {
    const NAMES: &'static [&'static str] = &["directory", "role", "group"];
    fn values(&self) -> Vec<&str> {
        vec![&self.directory, &self.role, &self.group]
    }
}

/// `phase`: one of the five upgrade phases.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UpgradePhaseLabel(crate::status::UpgradePhase);

impl LabelSet for UpgradePhaseLabel {
    const NAMES: &'static [&'static str] = &["phase"];
    fn values(&self) -> Vec<&str> {
        vec![self.0.as_str()]
    }
}

/// `server`, `service`, `release`: what one service runs (one series per service: the
/// old release's goes when it changes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ReleaseLabels {
    server: String,
    service: ServiceKind,
    release: String,
}

impl LabelSet for ReleaseLabels {
    const NAMES: &'static [&'static str] = &["server", "service", "release"];
    fn values(&self) -> Vec<&str> {
        vec![&self.server, self.service.as_str(), &self.release]
    }
}

#[derive(Clone)]
pub(crate) struct Metrics {
    reconcile_total: Counter<ReconcileLabels>,
    reconcile_duration: Histogram<ControllerLabel>,
    queue_depth: Gauge<ControllerLabel>,
    drift_detected: Counter<DriftKind>,
    drift_corrected: Counter<DriftKind>,
    /// Per-server and per-service series (agent up, certificate expiry and renewal, HL7
    /// listener, installed, healthy, probe results): fleet-sized, so kept in rows.
    fleet: FleetSeries,
    kind_healthy: Gauge<KindLabel>,
    /// No series until the first check.
    database_up: Gauge<()>,
    database_info: Gauge<VersionLabel>,
    lb_member_up: Gauge<LbMemberLabels>,
    hl7_failovers: Counter<()>,
    /// No series before the first attempt.
    directory_up: Gauge<DirectoryLabel>,
    group_present: Gauge<GroupLabels>,
    /// No series without an UpgradePolicy.
    upgrade_phase: Gauge<UpgradePhaseLabel>,
    release_info: Gauge<ReleaseLabels>,
}

impl Metrics {
    /// Create and register every metric, with the series of each of `controllers` (the
    /// `controller` label) starting at zero. Fails if they are registered already: two
    /// sets of controllers writing one registry would report each other's numbers.
    pub(crate) fn register(
        registry: &MetricsRegistry,
        controllers: &[&str],
    ) -> Result<Self, MetricsError> {
        let metrics = Self {
            reconcile_total: Counter::new(
                "steward_reconcile_total",
                "Reconciles finished, by controller and result (success or error).",
            ),
            reconcile_duration: Histogram::new(
                "steward_reconcile_duration_seconds",
                "Time one reconcile took, by controller.",
                DURATION_BUCKETS,
            ),
            queue_depth: Gauge::new(
                "steward_reconcile_queue_depth",
                "Objects due to be reconciled and not yet running, by controller (a settled object waiting for its next periodic check is not counted).",
            ),
            drift_detected: Counter::new(
                "steward_drift_detected_total",
                "Differences from the desired state found after it had been reached, by kind.",
            ),
            drift_corrected: Counter::new(
                "steward_drift_corrected_total",
                "Drift repaired in autoCorrect mode, by kind.",
            ),
            fleet: FleetSeries::default(),
            kind_healthy: Gauge::new(
                "steward_service_kind_healthy",
                "Whether at least minimumHealthy servers pass the service kind's health test.",
            ),
            database_up: Gauge::new(
                "steward_database_up",
                "1 while steward logs in to the installation's SQL Server with the installer login and the database exists, else 0.",
            ),
            database_info: Gauge::new(
                "steward_database_info",
                "Always 1; the label is the version the database server last reported.",
            ),
            lb_member_up: Gauge::new(
                "steward_lb_member_up",
                "1 while the load balancer routes to the server's member of the kind's farm (up), 0 when it is down, draining or in maintenance.",
            ),
            hl7_failovers: Counter::new(
                "steward_hl7_failovers_total",
                "Times the active HL7 listener was moved to another server (failovers and failbacks).",
            ),
            directory_up: Gauge::new(
                "steward_active_directory_up",
                "Whether steward can bind to the ActiveDirectory (1) or not (0).",
            ),
            group_present: Gauge::new(
                "steward_active_directory_group_present",
                "Whether the role's group exists in the directory.",
            ),
            upgrade_phase: Gauge::new(
                "steward_upgrade_phase",
                "1 for the rolling upgrade's current phase (Idle, Waiting, Progressing, Halted, Complete), 0 for the others; no series without an UpgradePolicy.",
            ),
            release_info: Gauge::new(
                "steward_service_release_info",
                "Always 1; the labels are the release each installed service runs.",
            ),
        };
        registry.register(metrics.reconcile_total.clone())?;
        registry.register(metrics.reconcile_duration.clone())?;
        registry.register(metrics.queue_depth.clone())?;
        registry.register(metrics.drift_detected.clone())?;
        registry.register(metrics.drift_corrected.clone())?;
        registry.register(metrics.fleet.clone())?;
        registry.register(metrics.kind_healthy.clone())?;
        registry.register(metrics.database_up.clone())?;
        registry.register(metrics.database_info.clone())?;
        registry.register(metrics.lb_member_up.clone())?;
        registry.register(metrics.hl7_failovers.clone())?;
        registry.register(metrics.directory_up.clone())?;
        registry.register(metrics.group_present.clone())?;
        registry.register(metrics.upgrade_phase.clone())?;
        registry.register(metrics.release_info.clone())?;
        // Known label values start at zero, so that rate() and alerts see the first event.
        for controller in controllers {
            for result in ReconcileResult::ALL {
                metrics.reconcile_total.start_at_zero(&ReconcileLabels {
                    controller: (*controller).to_owned(),
                    result,
                });
            }
            metrics.queue_depth.set(
                &ControllerLabel {
                    controller: (*controller).to_owned(),
                },
                0,
            );
        }
        metrics.hl7_failovers.start_at_zero(&());
        for kind in DriftKind::ALL {
            metrics.drift_detected.start_at_zero(&kind);
            metrics.drift_corrected.start_at_zero(&kind);
        }
        Ok(metrics)
    }

    /// `steward_lb_member_up`; `None` removes the series (the member left its farm).
    pub(crate) fn lb_member(&self, kind: ServiceKind, server: &str, up: Option<bool>) {
        let labels = LbMemberLabels {
            kind,
            server: server.to_owned(),
        };
        match up {
            Some(up) => self.lb_member_up.set(&labels, up),
            None => self.lb_member_up.remove(&labels),
        }
    }

    /// `steward_upgrade_phase`: 1 for `phase`, 0 for the others; `None` removes them.
    pub(crate) fn upgrade_phase(&self, phase: Option<crate::status::UpgradePhase>) {
        for p in crate::status::UpgradePhase::ALL {
            let labels = UpgradePhaseLabel(p);
            match phase {
                Some(now) => self.upgrade_phase.set(&labels, now == p),
                None => self.upgrade_phase.remove(&labels),
            }
        }
    }

    /// `steward_service_release_info` of one service: the old release's series goes.
    pub(crate) fn release_info(
        &self,
        server: &str,
        service: ServiceKind,
        old: Option<&str>,
        new: Option<&str>,
    ) {
        let labels = |release: &str| ReleaseLabels {
            server: server.to_owned(),
            service,
            release: release.to_owned(),
        };
        if let Some(old) = old.filter(|o| Some(*o) != new) {
            self.release_info.remove(&labels(old));
        }
        if let Some(new) = new {
            self.release_info.set(&labels(new), 1);
        }
    }

    pub(crate) fn drift_detected(&self, kind: DriftKind) {
        self.drift_detected.inc(&kind);
    }

    pub(crate) fn drift_corrected(&self, kind: DriftKind) {
        self.drift_corrected.inc(&kind);
    }

    /// `steward_database_up`; `None` removes it (not checked yet).
    pub(crate) fn database_up(&self, up: Option<bool>) {
        match up {
            Some(up) => self.database_up.set(&(), up),
            None => self.database_up.remove(&()),
        }
    }

    /// `steward_database_info` has one series, of the version last reported: the old one
    /// goes when it changes, so the label stays bounded.
    pub(crate) fn database_version(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old.filter(|o| *o != new) {
            self.database_info.remove(&VersionLabel {
                version: old.to_owned(),
            });
        }
        self.database_info.set(
            &VersionLabel {
                version: new.to_owned(),
            },
            1,
        );
    }

    /// `steward_active_directory_up`; `None` removes it (not known yet, or any more).
    pub(crate) fn directory_up(&self, directory: &str, up: Option<bool>) {
        let labels = DirectoryLabel {
            directory: directory.to_owned(),
        };
        match up {
            Some(up) => self.directory_up.set(&labels, up),
            None => self.directory_up.remove(&labels),
        }
    }

    /// `steward_active_directory_group_present`; `None` removes it.
    pub(crate) fn group_present(
        &self,
        directory: &str,
        role: &str,
        group: &str,
        present: Option<bool>,
    ) {
        let labels = GroupLabels {
            directory: directory.to_owned(),
            role: role.to_owned(),
            group: group.to_owned(),
        };
        match present {
            Some(present) => self.group_present.set(&labels, present),
            None => self.group_present.remove(&labels),
        }
    }

    pub(crate) fn agent_up(&self, server: &str, up: bool) {
        self.fleet
            .set_server(server, fleet::AGENT_UP, Some(Value::from(up)));
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
                (fleet::INSTALLED, Some(Value::from(installed))),
                (fleet::HEALTHY, healthy.map(Value::from)),
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
            (fleet::PROBE_SUCCESS, Some(Value::from(result.success()))),
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
            Some(healthy) => self.kind_healthy.set(&KindLabel(kind), healthy),
            None => self.kind_healthy.remove(&KindLabel(kind)),
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
        self.fleet.set_server(
            server,
            fleet::CERTIFICATE_RENEWAL,
            Some(Value::Int(unix_seconds)),
        );
    }

    pub(crate) fn hl7_active(&self, server: &str, active: bool) {
        self.fleet
            .set_server(server, fleet::HL7_ACTIVE, Some(Value::from(active)));
    }

    pub(crate) fn hl7_failover(&self) {
        self.hl7_failovers.inc(&());
    }

    /// HL7 is no longer placed on `server`: no `steward_hl7_active_listener` series.
    pub(crate) fn forget_hl7_listener(&self, server: &str) {
        self.fleet.set_server(server, fleet::HL7_ACTIVE, None);
    }

    pub(crate) fn forget_service(&self, server: &str, kind: ServiceKind) {
        self.fleet.forget_service(server, kind);
        if kind == ServiceKind::Hl7 {
            self.fleet.set_server(server, fleet::HL7_ACTIVE, None);
        }
    }

    pub(crate) fn forget_server(&self, server: &str) {
        self.fleet.forget_server(server);
    }
}

/// The runtime reports outcomes through this; `ok` becomes `success`, every error label
/// (and a panic) becomes `error`, keeping the result label to the two values users alert on.
/// The duration is the runtime's: the one measurement of a reconcile, however it ended.
impl ControllerObserver for Metrics {
    fn on_reconcile_end(&self, controller: &str, _reason: Reason, took: Duration, result: &str) {
        self.reconcile_duration.observe(
            &ControllerLabel {
                controller: controller.to_owned(),
            },
            took.as_secs_f64(),
        );
        let result = if result == RESULT_OK {
            ReconcileResult::Success
        } else {
            ReconcileResult::Error
        };
        self.reconcile_total.inc(&ReconcileLabels {
            controller: controller.to_owned(),
            result,
        });
    }

    fn on_queue_depth(&self, controller: &str, depth: usize) {
        self.queue_depth.set(
            &ControllerLabel {
                controller: controller.to_owned(),
            },
            i64::try_from(depth).unwrap_or(i64::MAX),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["server", "certificate", "service"];

    fn text(registry: &MetricsRegistry) -> String {
        registry.text()
    }

    #[test]
    fn registered_once_with_the_contract_names() {
        let registry = MetricsRegistry::default();
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

    /// What a text-format parser needs: every family declared once, and each sample right
    /// under its own family's header (a histogram's `_bucket`/`_sum`/`_count` included).
    #[test]
    fn each_family_is_declared_once_with_its_samples_under_it() {
        let registry = MetricsRegistry::default();
        let metrics = Metrics::register(&registry, &NAMES).unwrap();
        for server in ["app1", "app2", "app10"] {
            metrics.agent_up(server, server != "app2");
            metrics.certificate_expiry(server, 1_900_000_000);
            metrics.certificate_renewal(server, 1_897_408_000);
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
        metrics.on_reconcile_end(
            "server",
            Reason::Resync,
            Duration::from_millis(20),
            RESULT_OK,
        );
        let text = text(&registry);
        let mut declared = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_owned();
                assert!(declared.insert(current.clone()), "{current} declared twice");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                .unwrap_or(name);
            assert_eq!(base, current, "`{line}` is not under its own header");
        }
        assert!(text
            .contains("steward_probe_duration_seconds{server=\"app2\",service=\"HL7\"} 0.001234"));
        assert!(
            !text.contains("steward_probe_ssl_earliest_cert_expiry_seconds"),
            "no TLS, no series"
        );
        assert!(!text.contains("server=\"app10\",service=\"CLIENT\""));
        assert!(text.contains(
            "steward_reconcile_duration_seconds_bucket{controller=\"server\",le=\"0.025\"} 1"
        ));
    }

    #[test]
    fn forgotten_objects_lose_their_series() {
        let registry = MetricsRegistry::default();
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
