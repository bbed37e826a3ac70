//! What the controllers know: per-object records (desired slice, last observation,
//! conditions), the event ring, and the queries controllers gate on (is PSIS healthy
//! anywhere? is app1's certificate in place?). The public side renders the status
//! document.
//!
//! One mutex guards everything and is never held across an `.await`, so a reader always
//! sees one consistent moment and no reconcile can stall another through the store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use steward_agent::api::{ConnectionStrings, HostInfo, ServiceInfo, ServiceStatus as AgentStatus};
use steward_model::plan::{Observed, ObservedServer, ObservedService};
use steward_model::resource::Mode;
use steward_model::snapshot::{CertificateSource, PlacedService};
use steward_model::{ServiceKind, Snapshot};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::drift::DriftKind;
use crate::status::{
    CertificateSummary, ConditionType, Conditions, DatabaseStatus, Event, EventType, FleetStatus,
    Hl7Status, InstallationStatus, LastProbe, Phase, ResourceDetail, ResourceStatus, ServerStatus,
    ServiceHealth, ServiceKindStatus,
};

/// Events kept, newest first.
const EVENT_CAPACITY: usize = 256;
/// Events of one object shown with it.
const OBJECT_EVENTS: usize = 20;

/// The service controller's key: one service kind on one server.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub server: String,
    pub kind: ServiceKind,
}

impl ServiceKey {
    pub fn new(server: impl Into<String>, kind: ServiceKind) -> Self {
        Self {
            server: server.into(),
            kind,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.kind)
    }
}

/// Short, because it is the `key` field of every reconcile span.
impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedMemo {
    pub thumbprint: String,
    pub sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertRecord {
    pub source: &'static str,
    pub thumbprint: Option<String>,
    pub not_after: Option<OffsetDateTime>,
    pub subject: Option<String>,
    /// The server has the certificate the desired state asks for: services may install.
    pub ready: bool,
    /// What this daemon issued and installed for a generated certificate.
    pub issued: Option<IssuedMemo>,
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

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceRecord {
    pub desired: Option<PlacedService>,
    /// The agent's last word; `None` when not installed.
    pub observed: Option<ServiceInfo>,
    /// The prober's verdict (rise/fall applied); `None` until one is reached.
    pub verdict: Option<bool>,
    pub last_probe: Option<LastProbe>,
    pub conditions: Conditions,
    pub observed_generation: Option<u64>,
    /// The spec (and release) the service last ran healthy with: a difference from it
    /// that the desired state did not ask for is drift.
    pub synced: Option<(PlacedService, String)>,
    pub drift: BTreeSet<DriftKind>,
    /// Restarts since it was last healthy: a crash loop is restarted ever more slowly.
    pub restarts: u32,
}

impl ServiceRecord {
    fn new(desired: Option<PlacedService>) -> Self {
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
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.status == AgentStatus::Running)
    }

    pub(crate) fn ready(&self) -> bool {
        self.running() && self.verdict == Some(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct InstallationRecord {
    name: String,
    release: String,
    mode: Mode,
    prune: bool,
    observed_generation: Option<u64>,
    conditions: Conditions,
}

#[derive(Debug, Default)]
struct State {
    generation: Option<u64>,
    installation: Option<InstallationRecord>,
    database: Option<DatabaseStatus>,
    servers: BTreeMap<String, ServerRecord>,
    services: BTreeMap<ServiceKey, ServiceRecord>,
    /// `minimumHealthy` of every kind the desired state places somewhere.
    minimum_healthy: BTreeMap<ServiceKind, u32>,
    events: VecDeque<Event>,
}

impl State {
    fn push_event(&mut self, object: String, event_type: EventType, reason: &str, message: &str) {
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_back();
        }
        self.events.push_front(Event {
            time: OffsetDateTime::now_utc(),
            object,
            event_type,
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Records the headline change of an object's conditions as an event.
    fn note_transition(&mut self, object: String, before: &Conditions, after: &Conditions) {
        let (t0, r0, _) = before.headline();
        let (t1, r1, message) = after.headline();
        if (t0, r0) != (t1, r1) {
            let event_type = match t1 {
                ConditionType::Degraded | ConditionType::Stalled => EventType::Warning,
                ConditionType::Ready | ConditionType::Progressing => EventType::Normal,
            };
            let (reason, message) = (r1.to_owned(), message.to_owned());
            self.push_event(object, event_type, &reason, &message);
        }
    }
}

/// The controllers' shared state and the status it renders.
pub struct Store {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(0),
        }
    }
}

fn certificate_source(source: &CertificateSource) -> &'static str {
    match source {
        CertificateSource::Generate => "generated",
        CertificateSource::Pem { .. } => "pem",
        CertificateSource::Pfx { .. } => "pfx",
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent; a panic elsewhere while
        // holding it must not take the status endpoint down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    // ---- public: what the daemon reads ----

    /// The status document (docs/http-api.md, without the loader's generation/valid/errors).
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
        FleetStatus {
            observed_generation: state.generation,
            installation: state.installation.as_ref().map(installation_status),
            database: state.database.clone(),
            servers,
            service_kinds: state
                .minimum_healthy
                .keys()
                .filter_map(|kind| kind_status(&state, *kind))
                .collect(),
            active_directory: Vec::new(),
            hl7: Hl7Status {
                active_listener: hl7_active(&state),
            },
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

    /// One object: `installation/NAME`, `server/NAME`, `certificate/SERVER`, or
    /// `service/SERVER.KIND` (also `SERVER:KIND` or `SERVER/KIND`; kind in any case).
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
                let health = service_health(&key, record);
                (
                    "Service",
                    format!("service/{key}"),
                    record.observed_generation,
                    health.conditions.clone(),
                    ResourceDetail::Service(health),
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

    /// Whether the controllers accepted `generation` and every service it declares is
    /// installed as declared, running and passing its health test, on a server whose
    /// agent answers.
    pub fn converged(&self, generation: u64) -> bool {
        let state = self.lock();
        if state.generation != Some(generation) {
            return false;
        }
        let Some(release) = state.installation.as_ref().map(|i| i.release.as_str()) else {
            return false;
        };
        // What an unreachable agent last said is no proof of anything now.
        let reachable = |server: &str| {
            state
                .servers
                .get(server)
                .is_some_and(|s| s.agent_up != Some(false))
        };
        state
            .services
            .iter()
            .all(|(key, record)| match &record.desired {
                None => true,
                Some(desired) => {
                    reachable(&key.server)
                        && record.ready()
                        && record
                            .observed
                            .as_ref()
                            .is_some_and(|o| matches_spec(o, desired, release))
                }
            })
    }

    /// The verdict on a service kind as a whole: `None` if the desired state places it
    /// nowhere.
    pub fn service_kind(&self, kind: ServiceKind) -> Option<ServiceKindStatus> {
        kind_status(&self.lock(), kind)
    }

    /// Bumped on every change of the status (not on probes that change nothing).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    // ---- crate: what the controllers write and ask ----

    /// Take a new desired state in: records for every declared server and service, the
    /// others marked undeclared (their controllers decide what happens to them).
    pub(crate) fn sync_desired(&self, generation: u64, snapshot: &Snapshot) {
        let mut state = self.lock();
        state.generation = Some(generation);
        let inst = &snapshot.installation;
        let conditions = state
            .installation
            .as_ref()
            .map(|i| i.conditions.clone())
            .unwrap_or_default();
        let mut record = InstallationRecord {
            name: inst.name.clone(),
            release: inst.release.clone(),
            mode: inst.mode,
            prune: inst.prune,
            observed_generation: Some(generation),
            conditions,
        };
        let before = record.conditions.clone();
        record.conditions.set(
            Phase::Ready,
            "Applied",
            format!(
                "generation {generation} accepted: {} servers, release {}, mode {}, prune {}",
                snapshot.servers.len(),
                inst.release,
                mode_name(inst.mode),
                inst.prune
            ),
        );
        state.note_transition(
            format!("installation/{}", inst.name),
            &before,
            &record.conditions,
        );
        state.installation = Some(record);
        state.database = Some(DatabaseStatus {
            server: inst.database.server.clone(),
            name: inst.database.name.clone(),
            user: inst.database.user.clone(),
            up: None,
        });
        for record in state.servers.values_mut() {
            record.desired = false;
        }
        for record in state.services.values_mut() {
            record.desired = None;
        }
        state.minimum_healthy = snapshot
            .servers
            .values()
            .flat_map(|s| &s.services)
            .map(|placed| {
                let check = snapshot.health_check(placed.kind);
                (placed.kind, check.minimum_healthy)
            })
            .collect();
        for server in snapshot.servers.values() {
            let record = state
                .servers
                .entry(server.name.clone())
                .or_insert_with(|| ServerRecord {
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
                        issued: None,
                        conditions: Conditions::default(),
                        observed_generation: None,
                        drift: false,
                    },
                    strings_synced: None,
                    drift: BTreeSet::new(),
                });
            record.hostname.clone_from(&server.hostname);
            record.monitor = server.monitor;
            record.desired = true;
            record.cert.source = certificate_source(&server.certificate);
            for placed in &server.services {
                state
                    .services
                    .entry(ServiceKey::new(&server.name, placed.kind))
                    .or_insert_with(|| ServiceRecord::new(None))
                    .desired = Some(placed.clone());
            }
        }
        drop(state);
        self.bump();
    }

    /// Record that `generation` was refused, keeping the one in force.
    pub(crate) fn refuse(&self, generation: u64, reason: &str, message: &str) {
        let mut state = self.lock();
        let Some(mut record) = state.installation.clone() else {
            return;
        };
        let before = record.conditions.clone();
        record.conditions.set(
            Phase::Stalled,
            reason,
            format!("generation {generation} refused: {message}"),
        );
        state.note_transition(
            format!("installation/{}", record.name),
            &before,
            &record.conditions,
        );
        state.installation = Some(record);
        drop(state);
        self.bump();
    }

    /// Change one server's record; `None` if the server is not known.
    pub(crate) fn with_server<R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut ServerRecord) -> R,
    ) -> Option<R> {
        let mut state = self.lock();
        let record = state.servers.get_mut(name)?;
        let before = record.clone();
        let result = change(record);
        let after = record.clone();
        state.note_transition(
            format!("server/{name}"),
            &before.conditions,
            &after.conditions,
        );
        state.note_transition(
            format!("certificate/{name}"),
            &before.cert.conditions,
            &after.cert.conditions,
        );
        drop(state);
        if before != after {
            self.bump();
        }
        Some(result)
    }

    /// Change one service's record, creating it (undeclared) if needed.
    pub(crate) fn with_service<R>(
        &self,
        key: &ServiceKey,
        change: impl FnOnce(&mut ServiceRecord) -> R,
    ) -> R {
        let mut state = self.lock();
        let record = state
            .services
            .entry(key.clone())
            .or_insert_with(|| ServiceRecord::new(None));
        let before = record.clone();
        let result = change(record);
        let after = record.clone();
        state.note_transition(
            format!("service/{key}"),
            &before.conditions,
            &after.conditions,
        );
        drop(state);
        if before != after {
            self.bump();
        }
        result
    }

    pub(crate) fn event(&self, object: String, event_type: EventType, reason: &str, message: &str) {
        self.lock().push_event(object, event_type, reason, message);
        self.bump();
    }

    pub(crate) fn forget_service(&self, key: &ServiceKey) {
        if self.lock().services.remove(key).is_some() {
            self.bump();
        }
    }

    pub(crate) fn forget_server(&self, name: &str) {
        let mut state = self.lock();
        let removed = state.servers.remove(name).is_some();
        state.services.retain(|k, _| k.server != name);
        drop(state);
        if removed {
            self.bump();
        }
    }

    pub(crate) fn cert_ready(&self, server: &str) -> bool {
        self.lock()
            .servers
            .get(server)
            .is_some_and(|s| s.cert.ready)
    }

    /// Whether `kind` is installed, running and passing its test on some server.
    pub(crate) fn ready_somewhere(&self, kind: ServiceKind) -> bool {
        self.lock()
            .services
            .iter()
            .any(|(k, r)| k.kind == kind && r.ready())
    }

    /// Whether `kind` is ready on a declared placement other than `except` (a
    /// replacement exists, so `except` may go without stranding its dependents).
    pub(crate) fn ready_elsewhere(&self, kind: ServiceKind, except: &ServiceKey) -> bool {
        self.lock()
            .services
            .iter()
            .any(|(k, r)| k.kind == kind && k != except && r.desired.is_some() && r.ready())
    }

    /// Where `kind` is installed, ready or not, as far as the agents last said (service
    /// records and server inventories).
    pub(crate) fn installed_anywhere(&self, kind: ServiceKind) -> Vec<String> {
        let state = self.lock();
        let mut servers: BTreeSet<String> = state
            .services
            .iter()
            .filter(|(k, r)| k.kind == kind && r.observed.is_some())
            .map(|(k, _)| k.server.clone())
            .collect();
        for (name, record) in &state.servers {
            if record.inventory.as_ref().is_some_and(|i| i.contains(&kind)) {
                servers.insert(name.clone());
            }
        }
        servers.into_iter().collect()
    }

    /// Keys of every service record on `server`.
    pub(crate) fn service_keys_on(&self, server: &str) -> Vec<ServiceKey> {
        self.lock()
            .services
            .keys()
            .filter(|k| k.server == server)
            .cloned()
            .collect()
    }

    /// Every service key, declared or not.
    pub(crate) fn service_keys(&self) -> Vec<ServiceKey> {
        self.lock().services.keys().cloned().collect()
    }

    /// The server whose HL7 listener is active, and every server with an HL7 record.
    pub(crate) fn hl7_listeners(&self) -> (Option<String>, Vec<String>) {
        let state = self.lock();
        let all = state
            .services
            .keys()
            .filter(|k| k.kind == ServiceKind::Hl7)
            .map(|k| k.server.clone())
            .collect();
        (hl7_active(&state), all)
    }
}

pub(crate) fn matches_spec(observed: &ServiceInfo, desired: &PlacedService, release: &str) -> bool {
    observed.ports == desired.ports
        && observed.drive.eq_ignore_ascii_case(&desired.drive)
        && observed.release == release
}

pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::AutoCorrect => "autoCorrect",
        Mode::Monitor => "monitor",
    }
}

/// The first server, by name, whose HL7 is running and healthy: with a load balancer
/// several may run it, and exactly one listener is active.
fn hl7_active(state: &State) -> Option<String> {
    state
        .services
        .iter()
        .find(|(k, r)| k.kind == ServiceKind::Hl7 && r.ready())
        .map(|(k, _)| k.server.clone())
}

fn installation_status(record: &InstallationRecord) -> InstallationStatus {
    InstallationStatus {
        name: record.name.clone(),
        release: record.release.clone(),
        mode: record.mode,
        prune: record.prune,
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

/// The service records of one server, found by key range rather than by a scan (the
/// status of a thousand servers must not cost a million comparisons).
fn services_on<'a>(
    state: &'a State,
    server: &str,
) -> impl Iterator<Item = (&'a ServiceKey, &'a ServiceRecord)> {
    let kinds = ServiceKind::ALL.iter().copied();
    let (Some(first), Some(last)) = (kinds.clone().min(), kinds.max()) else {
        unreachable!("the catalog has kinds")
    };
    state
        .services
        .range(ServiceKey::new(server, first)..=ServiceKey::new(server, last))
}

fn kind_status(state: &State, kind: ServiceKind) -> Option<ServiceKindStatus> {
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

fn server_status(state: &State, name: &str, record: &ServerRecord) -> ServerStatus {
    let mut services: Vec<ServiceHealth> = services_on(state, name)
        .map(|(k, r)| service_health(k, r))
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

fn service_health(key: &ServiceKey, record: &ServiceRecord) -> ServiceHealth {
    let observed = record.observed.as_ref();
    let ports = record
        .desired
        .as_ref()
        .map(|d| d.ports.clone())
        .or_else(|| observed.map(|o| o.ports.clone()))
        .unwrap_or_default();
    ServiceHealth {
        kind: key.kind,
        port: ports.first().copied(),
        ports,
        listen_ports: observed.map(|o| o.listen_ports.clone()).unwrap_or_default(),
        installed: observed.is_some(),
        healthy: record.verdict,
        status: observed.map(|o| o.status),
        release: observed.map(|o| o.release.clone()),
        desired: record.desired.is_some(),
        observed_generation: record.observed_generation,
        conditions: record.conditions.list(),
        last_probe: record.last_probe.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ring_is_bounded_and_newest_first() {
        let store = Store::default();
        for i in 0..(EVENT_CAPACITY + 10) {
            store.event(
                "server/app1".into(),
                EventType::Normal,
                "Tick",
                &i.to_string(),
            );
        }
        let events = store.status().events;
        assert_eq!(events.len(), EVENT_CAPACITY);
        assert_eq!(events[0].message, (EVENT_CAPACITY + 9).to_string());
    }

    #[test]
    fn service_keys_print_short() {
        let key = ServiceKey::new("app1", ServiceKind::Psws);
        assert_eq!(format!("{key:?}"), "app1/PSWS");
    }
}
