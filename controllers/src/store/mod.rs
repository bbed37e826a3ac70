//! What the controllers know: per-object records ([`records`]), the event ring and stream
//! ([`events`]), the questions controllers gate on ([`gates`]) and the status rendered
//! from all of it ([`render`]).
//!
//! One mutex guards everything and is never held across an `.await`, so a reader always
//! sees one consistent moment and no reconcile can stall another through the store.
//! Every write goes through the few methods here, which is also where the series that
//! merely restate records (`steward_service_installed`/`_healthy`, the kind-wide verdict,
//! the HL7 listener) are derived: they cannot disagree with the status.

mod balancer;
mod database;
mod document;
mod events;
mod fragments;
mod gates;
mod hl7;
mod records;
mod render;
mod upgrade;

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use steward_model::resource::Mode;
use steward_model::{ServiceKind, Snapshot};
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::service_key::ServiceKey;
use crate::status::{Event, EventType, Phase};

pub(crate) use database::DatabaseSeen;
pub use document::{Compaction, DocumentError, FleetJson};
pub(crate) use records::{
    matches_spec, DirectoryRecord, Hl7Record, NotificationsRecord, ServerRecord, ServiceRecord,
};
use records::{InstallationRecord, State};
pub(crate) use upgrade::ServiceView;

/// The controllers' shared state and the status it renders.
pub struct Store {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// Where derived series go; none in benchmarks that render a store on its own.
    gauges: Option<Metrics>,
    /// Where the Notifications objects' delivery figures are read from.
    notifier: std::sync::OnceLock<std::sync::Arc<steward_notify::Notifier>>,
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
            gauges: None,
            notifier: std::sync::OnceLock::new(),
        }
    }
}

/// What a service's series say; `None`: no record, no series.
type ServiceGauge = Option<(bool, Option<bool>)>;

impl Store {
    pub(crate) fn with_gauges(metrics: Metrics) -> Self {
        Self {
            gauges: Some(metrics),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent; a panic elsewhere while
        // holding it must not take the status endpoint down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Bumped on every change of the status (not on probes that change nothing).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every event from now on, as it is recorded (the status keeps the last 256).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.lock().events.subscribe()
    }

    // ---- writes ----

    pub(crate) fn set_notifier(&self, notifier: std::sync::Arc<steward_notify::Notifier>) {
        let _ = self.notifier.set(notifier);
    }

    /// Change (or create) a Notifications object's record; a condition change is an event.
    pub(crate) fn with_notifications<R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut NotificationsRecord) -> R,
    ) -> R {
        let mut state = self.lock();
        let record = state.notifications.entry(name.to_owned()).or_default();
        let before = record.conditions.clone();
        let result = change(record);
        let after = record.conditions.clone();
        state
            .events
            .note_transition(format!("notifications/{name}"), &before, &after);
        drop(state);
        self.bump();
        result
    }

    pub(crate) fn forget_notifications(&self, name: &str) {
        if self.lock().notifications.remove(name).is_some() {
            self.bump();
        }
    }

    /// Take a new desired state in: records for every declared server and service, the
    /// others marked undeclared (their controllers decide what happens to them).
    pub(crate) fn sync_desired(&self, generation: u64, snapshot: &Snapshot) {
        let mut state = self.lock();
        state.fragments.touch_all();
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
        state.events.note_transition(
            format!("installation/{}", inst.name),
            &before,
            &record.conditions,
        );
        state.installation = Some(record);
        database::sync(&mut state, &inst.database, self.gauges.as_ref());
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
                .or_insert_with(|| ServerRecord::new(server));
            records::refresh_source(record, server);
            for placed in &server.services {
                let key = ServiceKey::new(&server.name, placed.kind);
                let before = service_gauge(&state, &key);
                state
                    .services
                    .entry(key.clone())
                    .or_insert_with(|| ServiceRecord::new(None))
                    .desired = Some(placed.clone());
                self.derive_service(&state, &key, before);
            }
        }
        for kind in ServiceKind::ALL {
            self.derive_kind(&state, kind);
        }
        let previous = std::mem::take(&mut state.directories);
        for (name, record) in &previous {
            if !snapshot.directories.contains_key(name) {
                self.derive_directory(name, Some(record), None);
            }
        }
        for (name, directory) in &snapshot.directories {
            let before = previous.get(name);
            let record = DirectoryRecord::refreshed(before, directory);
            self.derive_directory(name, before, Some(&record));
            state.directories.insert(name.clone(), record);
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
        state.events.note_transition(
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
        if before != after {
            state.fragments.touch(name);
        }
        state.events.note_transition(
            format!("server/{name}"),
            &before.conditions,
            &after.conditions,
        );
        state.events.note_transition(
            format!("certificate/{name}"),
            &before.cert.conditions,
            &after.cert.conditions,
        );
        if before.agent_up != after.agent_up {
            // The one writer of `steward_agent_up`: the gauge follows the record.
            if let (Some(metrics), Some(up)) = (&self.gauges, after.agent_up) {
                metrics.agent_up(name, up);
            }
            // A service's shown health depends on whether its agent answers.
            let keys: Vec<ServiceKey> = state.services_on(name).map(|(k, _)| k.clone()).collect();
            for key in keys {
                self.derive_service(&state, &key, None);
            }
        }
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
        let gauge = service_gauge(&state, key);
        let record = state
            .services
            .entry(key.clone())
            .or_insert_with(|| ServiceRecord::new(None));
        let before = record.clone();
        let result = change(record);
        let after = record.clone();
        state.note_ready(key.kind, before.ready(), after.ready());
        if !shown_alike(&before, &after) {
            state.fragments.touch(&key.server);
        }
        state.events.note_transition(
            format!("service/{key}"),
            &before.conditions,
            &after.conditions,
        );
        if let Some(metrics) = &self.gauges {
            let release = |r: &ServiceRecord| r.observed.as_ref().map(|o| o.release.clone());
            let (old, new) = (release(&before), release(&after));
            if old != new {
                metrics.release_info(&key.server, key.kind, old.as_deref(), new.as_deref());
            }
        }
        if gauge.is_none() || before != after {
            self.derive_service(&state, key, gauge);
            if before.ready() != after.ready()
                || before.desired.is_some() != after.desired.is_some()
            {
                self.derive_kind(&state, key.kind);
            }
        }
        drop(state);
        if before != after {
            self.bump();
        }
        result
    }

    /// Change one directory's record; `None` if the desired state in force does not
    /// declare it (a reconcile that outlived its directory changes nothing).
    pub(crate) fn with_directory<R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut DirectoryRecord) -> R,
    ) -> Option<R> {
        let mut state = self.lock();
        let record = state.directories.get_mut(name)?;
        let before = record.clone();
        let result = change(record);
        let after = record.clone();
        state.events.note_transition(
            format!("activedirectory/{name}"),
            &before.conditions,
            &after.conditions,
        );
        self.derive_directory(name, Some(&before), Some(&after));
        drop(state);
        if before != after {
            self.bump();
        }
        Some(result)
    }

    pub(crate) fn event(&self, object: String, event_type: EventType, reason: &str, message: &str) {
        self.lock()
            .events
            .record(object, event_type, reason, message);
        self.bump();
    }

    pub(crate) fn forget_service(&self, key: &ServiceKey) {
        let mut state = self.lock();
        let removed = state.services.remove(key);
        if let Some(record) = &removed {
            state.note_ready(key.kind, record.ready(), false);
        }
        state.fragments.touch(&key.server);
        if let Some(metrics) = &self.gauges {
            metrics.forget_service(&key.server, key.kind);
            if let Some(old) = removed.as_ref().and_then(|r| r.observed.as_ref()) {
                metrics.release_info(&key.server, key.kind, Some(&old.release), None);
            }
        }
        let removed = removed.is_some();
        self.derive_kind(&state, key.kind);
        drop(state);
        if removed {
            self.bump();
        }
    }

    pub(crate) fn forget_server(&self, name: &str) {
        let mut state = self.lock();
        let removed = state.servers.remove(name).is_some();
        state.fragments.forget(name);
        let kinds: Vec<ServiceKind> = state.services_on(name).map(|(k, _)| k.kind).collect();
        let releases: Vec<(ServiceKind, String)> = state
            .services_on(name)
            .filter_map(|(k, r)| r.observed.as_ref().map(|o| (k.kind, o.release.clone())))
            .collect();
        let ready: Vec<ServiceKind> = state
            .services_on(name)
            .filter(|(_, r)| r.ready())
            .map(|(k, _)| k.kind)
            .collect();
        state.services.retain(|k, _| k.server != name);
        for kind in ready {
            state.note_ready(kind, true, false);
        }
        if let Some(metrics) = &self.gauges {
            metrics.forget_server(name);
            for (kind, release) in &releases {
                metrics.release_info(name, *kind, Some(release), None);
            }
        }
        for kind in kinds {
            self.derive_kind(&state, kind);
        }
        drop(state);
        if removed {
            self.bump();
        }
    }

    // ---- derived series ----

    /// `steward_active_directory_up` and `_group_present` of one directory: what its
    /// record says (no series while unknown), none once it is gone.
    fn derive_directory(
        &self,
        name: &str,
        before: Option<&DirectoryRecord>,
        after: Option<&DirectoryRecord>,
    ) {
        let Some(metrics) = &self.gauges else {
            return;
        };
        metrics.directory_up(name, after.and_then(|r| r.up));
        let now: Vec<_> = after
            .map(|r| r.groups.as_slice())
            .unwrap_or_default()
            .to_vec();
        for old in before.map(|r| r.groups.as_slice()).unwrap_or_default() {
            let kept = now
                .iter()
                .any(|g| g.role == old.role && g.group == old.group && g.present.is_some());
            if !kept {
                metrics.group_present(name, &old.role, &old.group, None);
            }
        }
        for group in &now {
            metrics.group_present(name, &group.role, &group.group, group.present);
        }
    }

    /// `steward_service_installed`/`_healthy` of `key`, if they changed from `before`
    /// (`None`: unknown, write them).
    fn derive_service(&self, state: &State, key: &ServiceKey, before: ServiceGauge) {
        let Some(metrics) = &self.gauges else {
            return;
        };
        let now = service_gauge(state, key);
        if before.is_some() && before == now {
            return;
        }
        match now {
            Some((installed, healthy)) => {
                metrics.service(&key.server, key.kind, installed, healthy)
            }
            None => metrics.forget_service(&key.server, key.kind),
        }
    }

    /// The kind-wide verdict of `kind`, and for HL7 the active listener.
    fn derive_kind(&self, state: &State, kind: ServiceKind) {
        let Some(metrics) = &self.gauges else {
            return;
        };
        metrics.service_kind(kind, render::kind_status(state, kind).map(|s| s.healthy));
        if kind == ServiceKind::Hl7 {
            let (active, all) = match &state.hl7 {
                Some(record) => (
                    record.answering().map(str::to_owned),
                    record.servers.clone(),
                ),
                None => crate::hl7::listeners(state.services.iter()),
            };
            for server in all {
                metrics.hl7_active(&server, active.as_deref() == Some(server.as_str()));
            }
        }
    }
}

/// Whether the status shows the two records alike: equal, and with the same last probe
/// time and duration (which their equality leaves out, so that a probe with the same
/// outcome is no change to notify, but which the document shows).
fn shown_alike(before: &ServiceRecord, after: &ServiceRecord) -> bool {
    let probe_time = |r: &ServiceRecord| {
        r.last_probe
            .as_ref()
            .map(|p| (p.time, p.duration_seconds.to_bits()))
    };
    before == after && probe_time(before) == probe_time(after)
}

/// Installed, and healthy as the status shows it: 1 for `true`, 0 for `false` and for a
/// service that is not installed (the dashboards' "not installed" is installed 0 with
/// healthy 0), and no series while an installed service's health is unknown (its agent
/// does not answer, it is restarting, not probed yet), so that no alert takes unknown for
/// down.
fn service_gauge(state: &State, key: &ServiceKey) -> ServiceGauge {
    let record = state.services.get(key)?;
    let installed = record.observed.is_some();
    let healthy = if installed {
        state.shown_health(key, record).0
    } else {
        Some(false)
    };
    Some((installed, healthy))
}

pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::AutoCorrect => "autoCorrect",
        Mode::Monitor => "monitor",
    }
}

#[cfg(test)]
mod tests {
    use super::events::EVENT_CAPACITY;
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
    fn the_agent_up_gauge_follows_the_server_record() {
        let registry = crate::MetricsRegistry::default();
        let metrics = Metrics::register(&registry, &["server"]).unwrap();
        let store = Store::with_gauges(metrics);
        store.sync_desired(1, &crate::bench::snapshot(1));
        let up = |registry: &crate::MetricsRegistry| {
            registry
                .text()
                .lines()
                .find_map(|l| l.strip_prefix("steward_agent_up{server=\"app0001\"} "))
                .map(str::to_owned)
        };
        assert_eq!(up(&registry), None, "not known yet");
        store.with_server("app0001", |r| r.agent_up = Some(false));
        assert_eq!(up(&registry).as_deref(), Some("0"));
        store.with_server("app0001", |r| r.agent_up = Some(true));
        assert_eq!(up(&registry).as_deref(), Some("1"));
        store.with_server("elsewhere", |r| r.agent_up = Some(true));
        assert!(
            !registry.text().contains("elsewhere"),
            "no series for a server the store does not know"
        );
    }

    #[test]
    fn events_are_a_stream_too() {
        let store = Store::default();
        let mut stream = store.events();
        store.event(
            "service/app1/PSIS".into(),
            EventType::Warning,
            "Restarted",
            "PSIS was stopped; restarted",
        );
        let event = stream.try_recv().unwrap();
        assert_eq!(
            (event.object.as_str(), event.reason.as_str()),
            ("service/app1/PSIS", "Restarted")
        );
        assert!(stream.try_recv().is_err(), "one event, once");
    }
}
