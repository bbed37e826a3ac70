//! What the store keeps per object: the desired slice, the last observation, conditions.

use std::collections::{BTreeMap, BTreeSet};

use steward_agent::api::{
    ConnectionStrings, FailureReason, HostInfo, ServiceInfo, ServiceStatus as AgentStatus,
};
use steward_model::resource::Mode;
use steward_model::snapshot::{ActiveDirectory, CertificateSource, PlacedService, Server};
use steward_model::ServiceKind;
use time::OffsetDateTime;

use super::events::EventRing;
use crate::drift::DriftKind;
use crate::service_key::ServiceKey;
use crate::status::{Conditions, GroupStatus, LastProbe};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertRecord {
    pub source: &'static str,
    pub thumbprint: Option<String>,
    pub not_after: Option<OffsetDateTime>,
    pub subject: Option<String>,
    /// The server has the certificate the desired state asks for: services may install.
    pub ready: bool,
    pub conditions: Conditions,
    pub observed_generation: Option<u64>,
    /// Drift reported and not yet resolved (monitor mode).
    pub drift: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerRecord {
    pub hostname: String,
    pub monitor: bool,
    pub desired: bool,
    pub observed_generation: Option<u64>,
    pub agent_up: Option<bool>,
    pub host: Option<HostInfo>,
    /// Kinds the agent last listed as installed; `None` before the first listing.
    pub inventory: Option<BTreeSet<ServiceKind>>,
    pub conditions: Conditions,
    pub cert: CertRecord,
    /// The connection strings last seen equal to the desired ones.
    pub strings_synced: Option<ConnectionStrings>,
    pub drift: BTreeSet<DriftKind>,
}

impl ServerRecord {
    pub(super) fn new(server: &Server) -> Self {
        Self {
            hostname: server.hostname.clone(),
            monitor: server.monitor,
            desired: true,
            observed_generation: None,
            agent_up: None,
            host: None,
            inventory: None,
            conditions: Conditions::default(),
            cert: CertRecord {
                source: certificate_source(&server.certificate),
                thumbprint: None,
                not_after: None,
                subject: None,
                ready: false,
                conditions: Conditions::default(),
                observed_generation: None,
                drift: false,
            },
            strings_synced: None,
            drift: BTreeSet::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceRecord {
    pub desired: Option<PlacedService>,
    /// The agent's last word; `None` when not installed.
    pub observed: Option<ServiceInfo>,
    /// The monitor's verdict (rise/fall applied), mirrored here only by the probes
    /// (`crate::probes`); `None` until one is reached.
    pub(crate) verdict: Option<bool>,
    pub last_probe: Option<LastProbe>,
    pub conditions: Conditions,
    pub observed_generation: Option<u64>,
    /// The spec (and release) the service last ran healthy with: a difference from it
    /// that the desired state did not ask for is drift.
    pub synced: Option<(PlacedService, String)>,
    pub drift: BTreeSet<DriftKind>,
    /// Restarts since it was last healthy: a crash loop is restarted ever more slowly.
    pub restarts: u32,
    /// The agent's `lastFailure` (its time) that a health pass came after: no longer
    /// the service's current trouble.
    pub failure_cleared: Option<OffsetDateTime>,
    /// The failure (cause, port, exit code) last announced by an event: a crash loop
    /// with the same cause is one event, not one per exit.
    pub failure_reported: Option<(FailureReason, Option<u16>, Option<i32>)>,
    /// Since when a running service has been failing its health test (liveness).
    pub failing_since: Option<tokio::time::Instant>,
}

impl ServiceRecord {
    pub(super) fn new(desired: Option<PlacedService>) -> Self {
        Self {
            desired,
            observed: None,
            verdict: None,
            last_probe: None,
            conditions: Conditions::default(),
            observed_generation: None,
            synced: None,
            drift: BTreeSet::new(),
            restarts: 0,
            failure_cleared: None,
            failure_reported: None,
            failing_since: None,
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.status == AgentStatus::Running)
    }

    /// Running and passing its health test: what dependents and the HL7 listener go by.
    pub(crate) fn ready(&self) -> bool {
        self.running() && self.verdict == Some(true)
    }

    /// Installed and stopped on request (an HL7 standby): as it should be, not down.
    pub(crate) fn standby(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.held && o.status == AgentStatus::Stopped)
    }

    pub(crate) fn verdict(&self) -> Option<bool> {
        self.verdict
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct InstallationRecord {
    pub name: String,
    pub release: String,
    pub mode: Mode,
    pub prune: bool,
    pub observed_generation: Option<u64>,
    pub conditions: Conditions,
}

/// Everything behind the store's one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub generation: Option<u64>,
    pub installation: Option<InstallationRecord>,
    pub database: Option<super::database::DatabaseRecord>,
    /// What the lab could not do for the database (`steward run --lab`).
    pub database_note: Option<String>,
    pub servers: BTreeMap<String, ServerRecord>,
    pub services: BTreeMap<ServiceKey, ServiceRecord>,
    /// How many of `services` of each kind are ready, kept in step with every change:
    /// the dependency gates ask on every reconcile, and scanning every record for it
    /// made a cold converge quadratic in the fleet.
    pub ready_count: BTreeMap<ServiceKind, usize>,
    /// `minimumHealthy` of every kind the desired state places somewhere.
    pub minimum_healthy: BTreeMap<ServiceKind, u32>,
    pub notifications: BTreeMap<String, NotificationsRecord>,
    pub directories: BTreeMap<String, DirectoryRecord>,
    pub events: EventRing,
    /// `None` without a `loadBalancer.vendor`.
    pub load_balancer: Option<LoadBalancerRecord>,
    /// `None` without an UpgradePolicy.
    pub upgrade: Option<crate::status::UpgradeStatus>,
    /// The UpgradePolicy in force (its resource), without its `upgrade`.
    pub upgrade_policy: Option<crate::status::UpgradePolicyStatus>,
    /// The HL7 failover's view; `None` before its first run or without HL7.
    pub hl7: Option<Hl7Record>,
    /// Each server's part of the status document, as last rendered.
    pub fragments: super::fragments::Fragments,
}

/// Which HL7 listener is active, as the HL7 failover controller keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hl7Record {
    /// The listener steward keeps running.
    pub active: Option<String>,
    /// Whether it answered its last MLLP test.
    pub answering: bool,
    pub standby: Vec<String>,
    /// Every server HL7 is placed on.
    pub servers: Vec<String>,
    pub last_failover: Option<crate::status::LastFailover>,
    pub conditions: Conditions,
}

impl Hl7Record {
    /// The active listener when it answers: the status's `activeListener`.
    pub(crate) fn answering(&self) -> Option<&str> {
        self.active.as_deref().filter(|_| self.answering)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadBalancerRecord {
    pub vendor: &'static str,
    pub farms: Vec<crate::status::FarmStatus>,
    pub conditions: Conditions,
}

/// One declared ActiveDirectory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DirectoryRecord {
    pub display_name: String,
    pub domain: String,
    pub server: String,
    pub up: Option<bool>,
    /// Every role group, in role order; `present` and `members` as last observed.
    pub groups: Vec<GroupStatus>,
    pub observed_generation: Option<u64>,
    pub conditions: Conditions,
}

impl DirectoryRecord {
    /// The record for `directory`, keeping what was observed of groups it still declares.
    pub(super) fn refreshed(previous: Option<&Self>, directory: &ActiveDirectory) -> Self {
        let groups = directory
            .roles
            .iter()
            .flat_map(|(role, groups)| groups.iter().map(move |g| (role.as_str(), g)))
            .map(|(role, group)| {
                previous
                    .and_then(|p| {
                        p.groups
                            .iter()
                            .find(|g| g.role == role && &g.group == group)
                    })
                    .cloned()
                    .unwrap_or_else(|| GroupStatus {
                        role: role.to_owned(),
                        group: group.clone(),
                        present: None,
                        members: None,
                    })
            })
            .collect();
        Self {
            display_name: directory.display_name.clone(),
            domain: directory.domain.clone(),
            server: directory.server.clone(),
            up: previous.and_then(|p| p.up),
            groups,
            observed_generation: previous.and_then(|p| p.observed_generation),
            conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
        }
    }
}

/// A Notifications object as its controller put it in force (delivery figures are the
/// notifier's, read when the status is rendered).
#[derive(Debug, Clone, Default)]
pub(crate) struct NotificationsRecord {
    pub observed_generation: Option<u64>,
    pub conditions: Conditions,
    /// `host:port`.
    pub server: String,
    pub tls: &'static str,
    pub to: Vec<String>,
    pub events: Vec<String>,
}

impl State {
    /// The service records of one server, found by key range rather than by a scan (the
    /// status of a thousand servers must not cost a million comparisons).
    pub(super) fn services_on<'a>(
        &'a self,
        server: &str,
    ) -> impl Iterator<Item = (&'a ServiceKey, &'a ServiceRecord)> {
        let kinds = ServiceKind::ALL.iter().copied();
        let (Some(first), Some(last)) = (kinds.clone().min(), kinds.max()) else {
            unreachable!("the catalog has kinds")
        };
        self.services
            .range(ServiceKey::new(server, first)..=ServiceKey::new(server, last))
    }

    pub(super) fn agent_up(&self, server: &str) -> Option<bool> {
        self.servers.get(server).and_then(|s| s.agent_up)
    }

    /// What the dashboard and `steward_service_healthy` say about a service: the verdict,
    /// unless there is none to trust (not running, or its agent does not answer), with
    /// the reason why not.
    pub(super) fn shown_health(
        &self,
        key: &ServiceKey,
        record: &ServiceRecord,
    ) -> (Option<bool>, Option<String>) {
        shown_health(key, record, self.agent_up(&key.server))
    }
}

/// [`State::shown_health`], given whether the service's agent answers.
pub(super) fn shown_health(
    key: &ServiceKey,
    record: &ServiceRecord,
    agent_up: Option<bool>,
) -> (Option<bool>, Option<String>) {
    if record.observed.is_none() {
        return (None, Some("not installed".to_owned()));
    }
    if agent_up == Some(false) {
        return (
            None,
            Some(format!(
                "unknown: the agent of {} does not answer",
                key.server
            )),
        );
    }
    if record.standby() {
        return (
            None,
            Some("standby: installed and stopped until the HL7 failover starts it".to_owned()),
        );
    }
    if !record.running() {
        return (None, Some("not running".to_owned()));
    }
    match record.verdict {
        Some(v) => (Some(v), None),
        None => (None, Some("no health verdict yet".to_owned())),
    }
}

fn certificate_source(source: &CertificateSource) -> &'static str {
    match source {
        CertificateSource::Generate => "generated",
        CertificateSource::Pem { .. } => "pem",
        CertificateSource::Pfx { .. } => "pfx",
    }
}

pub(super) fn refresh_source(record: &mut ServerRecord, server: &Server) {
    record.hostname.clone_from(&server.hostname);
    record.monitor = server.monitor;
    record.desired = true;
    record.cert.source = certificate_source(&server.certificate);
}

pub(crate) fn matches_spec(observed: &ServiceInfo, desired: &PlacedService, release: &str) -> bool {
    observed.ports == desired.ports
        && observed.drive.eq_ignore_ascii_case(&desired.drive)
        && observed.release == release
}
