//! The store's public side: the status document, one resource, the planner's view.

use std::collections::BTreeMap;

use steward_agent::api::ServiceStatus as AgentStatus;
use steward_model::plan::{Observed, ObservedServer, ObservedService};
use steward_model::ServiceKind;

use super::events::OBJECT_EVENTS;
use super::records::{
    shown_health, CertRecord, DirectoryRecord, InstallationRecord, NotificationsRecord,
    ServerRecord, ServiceRecord, State,
};
use super::Store;
use crate::service_key::ServiceKey;
use crate::status::{
    CertificateSummary, DeliveryStatus, DirectoryStatus, FleetStatus, Hl7Status,
    InstallationStatus, NotificationsStatus, ResourceDetail, ResourceStatus, ServerStatus,
    ServiceHealth, ServiceKindStatus,
};

impl Store {
    /// The controllers' part of the status document (the daemon adds the loader's).
    pub fn status(&self) -> FleetStatus {
        let state = self.lock();
        // Standby servers (`monitor: false`) are reconciled and visible as resources,
        // but left off the dashboard.
        let servers = state
            .servers
            .iter()
            .filter(|(_, record)| record.monitor)
            .map(|(name, record)| server_status(&state, name, record))
            .collect();
        self.fleet_status(&state, servers)
    }

    /// The status with `servers` as its servers and everything else from `state`.
    pub(super) fn fleet_status(&self, state: &State, servers: Vec<ServerStatus>) -> FleetStatus {
        FleetStatus {
            observed_generation: state.generation,
            installation: state.installation.as_ref().map(installation_status),
            database: state
                .database
                .as_ref()
                .map(|d| d.status(state.database_note.as_ref())),
            servers,
            service_kinds: kind_statuses(state),
            active_directory: state
                .directories
                .iter()
                .map(|(name, record)| directory_status(name, record))
                .collect(),
            hl7: match &state.hl7 {
                Some(record) => Hl7Status {
                    active_listener: record.answering().map(str::to_owned),
                    standby: record.standby.clone(),
                    last_failover: record.last_failover.clone(),
                    conditions: record.conditions.list(),
                },
                None => Hl7Status {
                    active_listener: crate::hl7::active(&state.services),
                    ..Hl7Status::default()
                },
            },
            load_balancer: state.load_balancer.as_ref().map(|lb| {
                crate::status::LoadBalancerStatus {
                    vendor: lb.vendor.to_owned(),
                    farms: lb.farms.clone(),
                    conditions: lb.conditions.list(),
                }
            }),
            notifications: state
                .notifications
                .iter()
                .map(|(name, record)| self.notifications_status(name, record))
                .collect(),
            upgrade: state.upgrade.clone(),
            events: state.events.iter().cloned().collect(),
        }
    }

    /// What the agents reported, in the planner's terms: the `steward plan --live` input.
    pub fn observed(&self) -> Observed {
        let state = self.lock();
        let mut servers: BTreeMap<String, ObservedServer> = BTreeMap::new();
        for (key, record) in &state.services {
            if let Some(seen) = &record.observed {
                servers
                    .entry(key.server.clone())
                    .or_default()
                    .services
                    .insert(
                        key.kind,
                        ObservedService {
                            ports: seen.ports.clone(),
                            drive: seen.drive.clone(),
                            release: seen.release.clone(),
                            running: seen.status == AgentStatus::Running,
                        },
                    );
            }
        }
        for (name, record) in &state.servers {
            // Only a certificate that is the one the desired state asks for counts as in
            // place; anything else is still to be issued or installed.
            if record.cert.ready {
                servers
                    .entry(name.clone())
                    .or_default()
                    .certificate_thumbprint = record.cert.thumbprint.clone();
            }
        }
        Observed {
            servers,
            ca_exists: true,
        }
    }

    /// One object: `installation/NAME`, `server/NAME`, `certificate/SERVER`,
    /// `service/SERVER.KIND` (also `SERVER:KIND` or `SERVER/KIND`; kind in any case) or
    /// `activedirectory/NAME`.
    pub fn resource(&self, kind: &str, name: &str) -> Option<ResourceStatus> {
        let state = self.lock();
        let kind = kind.to_ascii_lowercase();
        let kind = kind.strip_suffix('s').unwrap_or(&kind);
        let (kind, object, generation, conditions, detail) = match kind {
            "installation" => {
                let record = state.installation.as_ref().filter(|i| i.name == name)?;
                let status = installation_status(record);
                (
                    "Installation",
                    format!("installation/{name}"),
                    record.observed_generation,
                    status.conditions.clone(),
                    ResourceDetail::Installation(status),
                )
            }
            "server" => {
                let record = state.servers.get(name)?;
                let status = server_status(&state, name, record);
                (
                    "Server",
                    format!("server/{name}"),
                    record.observed_generation,
                    status.conditions.clone(),
                    ResourceDetail::Server(Box::new(status)),
                )
            }
            "certificate" => {
                let record = state.servers.get(name)?;
                let summary = certificate_summary(&record.cert);
                (
                    "Certificate",
                    format!("certificate/{name}"),
                    record.cert.observed_generation,
                    summary.conditions.clone(),
                    ResourceDetail::Certificate(summary),
                )
            }
            "service" => {
                let (server, raw_kind) = name.split_once(['.', ':', '/'])?;
                let key = ServiceKey::new(server, raw_kind.to_ascii_uppercase().parse().ok()?);
                let record = state.services.get(&key)?;
                let health = service_health(&key, record, state.agent_up(server));
                (
                    "Service",
                    format!("service/{key}"),
                    record.observed_generation,
                    health.conditions.clone(),
                    ResourceDetail::Service(health),
                )
            }
            "notification" => {
                let record = state.notifications.get(name)?;
                let status = self.notifications_status(name, record);
                (
                    "Notifications",
                    format!("notifications/{name}"),
                    record.observed_generation,
                    status.conditions.clone(),
                    ResourceDetail::Notifications(status),
                )
            }
            "activedirectory" | "directory" => {
                let record = state.directories.get(name)?;
                let status = directory_status(name, record);
                (
                    "ActiveDirectory",
                    format!("activedirectory/{name}"),
                    record.observed_generation,
                    status.conditions.clone(),
                    ResourceDetail::ActiveDirectory(status),
                )
            }
            "upgradepolicy" | "upgradepolicie" => {
                let mut status = state.upgrade_policy.clone().filter(|p| p.name == name)?;
                status.upgrade = state.upgrade.clone();
                (
                    "UpgradePolicy",
                    format!("upgradepolicy/{name}"),
                    None,
                    Vec::new(),
                    ResourceDetail::UpgradePolicy(status),
                )
            }
            _ => return None,
        };
        let events = state
            .events
            .iter()
            .filter(|e| e.object == object)
            .take(OBJECT_EVENTS)
            .cloned()
            .collect();
        Some(ResourceStatus {
            kind: kind.to_owned(),
            name: name.to_owned(),
            observed_generation: generation,
            conditions,
            events,
            detail,
        })
    }

    /// A Notifications object with its live delivery figures (the notifier's own lock is
    /// never held while the store's is wanted, so taking it under the store's is safe).
    fn notifications_status(
        &self,
        name: &str,
        record: &NotificationsRecord,
    ) -> NotificationsStatus {
        let delivery = self
            .notifier
            .get()
            .and_then(|n| n.status(name))
            .map(|s| DeliveryStatus {
                last_sent: s.last_sent,
                last_error: s.last_error,
                last_error_reason: s.last_error_reason.map(str::to_owned),
                last_error_time: s.last_error_time,
                queued: s.queued as u64,
                sent: s.sent,
                failed: s.failed,
                dropped: s.dropped,
            })
            .unwrap_or_default();
        NotificationsStatus {
            name: name.to_owned(),
            server: record.server.clone(),
            tls: record.tls.to_owned(),
            to: record.to.clone(),
            events: record.events.clone(),
            observed_generation: record.observed_generation,
            conditions: record.conditions.list(),
            delivery,
        }
    }

    /// The verdict on a service kind as a whole: `None` if the desired state places it
    /// nowhere.
    pub fn service_kind(&self, kind: ServiceKind) -> Option<ServiceKindStatus> {
        kind_status(&self.lock(), kind)
    }
}

pub(super) fn installation_status(record: &InstallationRecord) -> InstallationStatus {
    InstallationStatus {
        name: record.name.clone(),
        release: record.release.clone(),
        mode: record.mode,
        prune: record.prune,
        observed_generation: record.observed_generation,
        conditions: record.conditions.list(),
    }
}

fn directory_status(name: &str, record: &DirectoryRecord) -> DirectoryStatus {
    DirectoryStatus {
        name: name.to_owned(),
        display_name: record.display_name.clone(),
        domain: record.domain.clone(),
        server: record.server.clone(),
        up: record.up,
        groups: record.groups.clone(),
        observed_generation: record.observed_generation,
        conditions: record.conditions.list(),
    }
}

fn certificate_summary(cert: &CertRecord) -> CertificateSummary {
    CertificateSummary {
        source: cert.source.to_owned(),
        thumbprint: cert.thumbprint.clone(),
        not_after: cert.not_after,
        subject: cert.subject.clone(),
        observed_generation: cert.observed_generation,
        conditions: cert.conditions.list(),
    }
}

/// [`kind_status`] of every kind placed somewhere, in one pass over the services (the
/// status document's, at 11,000 services: one pass per kind cost eleven).
fn kind_statuses(state: &State) -> Vec<ServiceKindStatus> {
    let mut counts: BTreeMap<ServiceKind, (u32, u32)> = BTreeMap::new();
    for (key, record) in &state.services {
        if record.desired.is_some() {
            let (servers, healthy) = counts.entry(key.kind).or_default();
            *servers += 1;
            if record.ready() {
                *healthy += 1;
            }
        }
    }
    state
        .minimum_healthy
        .iter()
        .map(|(kind, minimum_healthy)| {
            let (servers, healthy_servers) = counts.get(kind).copied().unwrap_or_default();
            ServiceKindStatus {
                kind: *kind,
                servers,
                healthy_servers,
                minimum_healthy: *minimum_healthy,
                healthy: healthy_servers >= *minimum_healthy,
            }
        })
        .collect()
}

pub(super) fn kind_status(state: &State, kind: ServiceKind) -> Option<ServiceKindStatus> {
    let minimum_healthy = *state.minimum_healthy.get(&kind)?;
    let (mut servers, mut healthy_servers) = (0, 0);
    for (key, record) in &state.services {
        if key.kind == kind && record.desired.is_some() {
            servers += 1;
            if record.ready() {
                healthy_servers += 1;
            }
        }
    }
    Some(ServiceKindStatus {
        kind,
        servers,
        healthy_servers,
        minimum_healthy,
        healthy: healthy_servers >= minimum_healthy,
    })
}

pub(super) fn server_status(state: &State, name: &str, record: &ServerRecord) -> ServerStatus {
    let mut services: Vec<ServiceHealth> = state
        .services_on(name)
        .map(|(k, r)| service_health(k, r, record.agent_up))
        .collect();
    services.sort_by_key(|s| s.kind.install_rank());
    ServerStatus {
        name: name.to_owned(),
        hostname: record.hostname.clone(),
        agent_up: record.agent_up,
        monitor: record.monitor,
        desired: record.desired,
        observed_generation: record.observed_generation,
        host: record.host.clone(),
        certificate: certificate_summary(&record.cert),
        conditions: record.conditions.list(),
        services,
    }
}

fn service_health(
    key: &ServiceKey,
    record: &ServiceRecord,
    agent_up: Option<bool>,
) -> ServiceHealth {
    let observed = record.observed.as_ref();
    let ports = record
        .desired
        .as_ref()
        .map(|d| d.ports.clone())
        .or_else(|| observed.map(|o| o.ports.clone()))
        .unwrap_or_default();
    let (healthy, health_unknown) = shown_health(key, record, agent_up);
    ServiceHealth {
        kind: key.kind,
        port: ports.first().copied(),
        ports,
        listen_ports: observed.map(|o| o.listen_ports.clone()).unwrap_or_default(),
        installed: observed.is_some(),
        healthy,
        health_unknown,
        status: observed.map(|o| o.status),
        release: observed.map(|o| o.release.clone()),
        desired: record.desired.is_some(),
        observed_generation: record.observed_generation,
        conditions: record.conditions.list(),
        last_probe: record.last_probe.clone(),
        // The log tail stays with the agent (`GET /v1/services/KIND/logs`): a status
        // document is not the place for a service's raw output.
        last_failure: observed.and_then(|o| o.last_failure.clone()).map(|f| {
            Box::new(steward_agent::api::LastFailure {
                log_tail: String::new(),
                ..f
            })
        }),
        standby: healthy.is_none() && agent_up != Some(false) && record.standby(),
    }
}
