//! The database's record: what the last check found, and the gate installs wait on.

use steward_model::snapshot::Database;

use super::records::State;
use super::Store;
use crate::metrics::Metrics;
use crate::status::{Conditions, DatabaseStatus, Phase};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DatabaseRecord {
    pub spec: Database,
    /// Logged in with the installer login and the database exists.
    pub up: Option<bool>,
    pub version: Option<String>,
    pub missing: Vec<String>,
    pub observed_generation: Option<u64>,
    pub conditions: Conditions,
}

impl DatabaseRecord {
    fn new(spec: &Database) -> Self {
        Self {
            spec: spec.clone(),
            up: None,
            version: None,
            missing: Vec::new(),
            observed_generation: None,
            conditions: Conditions::default(),
        }
    }

    /// `note`: what the lab could not do for it.
    pub(super) fn status(&self, note: Option<&String>) -> DatabaseStatus {
        DatabaseStatus {
            server: self.spec.server.clone(),
            port: self.spec.port,
            name: self.spec.name.clone(),
            user: self.spec.user.clone(),
            up: self.up,
            version: self.version.clone(),
            service_login: self.spec.service_login.name.clone(),
            missing: self.missing.clone(),
            observed_generation: self.observed_generation,
            conditions: self.conditions.list(),
            note: note.cloned(),
        }
    }
}

/// One check's outcome, as the database controller judged it.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseSeen {
    pub up: bool,
    /// `None`: unchanged (a failed check learns no version).
    pub version: Option<String>,
    /// `None`: unchanged (a failed check learns nothing about the pieces).
    pub missing: Option<Vec<String>>,
    pub phase: Phase,
    pub reason: &'static str,
    pub message: String,
}

/// A new desired state keeps what was seen of the same database; another database (or
/// login, or way to reach it) starts unknown, so installs wait for its first check.
pub(super) fn sync(state: &mut State, spec: &Database, gauges: Option<&Metrics>) {
    if state.database.as_ref().is_some_and(|r| r.spec == *spec) {
        return;
    }
    state.database = Some(DatabaseRecord::new(spec));
    if let Some(metrics) = gauges {
        metrics.database_up(None);
    }
}

impl Store {
    /// Record a check; true when the gate just opened (services waiting may install).
    pub(crate) fn record_database(&self, generation: u64, seen: DatabaseSeen) -> bool {
        let mut state = self.lock();
        let note = state.database_note.clone();
        let Some(record) = state.database.as_mut() else {
            return false;
        };
        let was_up = record.up == Some(true);
        let before = record.conditions.clone();
        record.up = Some(seen.up);
        if let Some(version) = seen.version {
            if let Some(metrics) = &self.gauges {
                metrics.database_version(record.version.as_deref(), &version);
            }
            record.version = Some(version);
        }
        if let Some(missing) = seen.missing {
            record.missing = missing;
        }
        record.observed_generation = Some(generation);
        let message = match (&note, seen.up) {
            (Some(note), false) => format!("{}; {note}", seen.message),
            _ => seen.message,
        };
        record.conditions.set(seen.phase, seen.reason, message);
        let (object, after) = (
            format!("database/{}", record.spec.name),
            record.conditions.clone(),
        );
        state.events.note_transition(object, &before, &after);
        if let Some(metrics) = &self.gauges {
            metrics.database_up(Some(seen.up));
        }
        drop(state);
        self.bump();
        !was_up && seen.up
    }

    /// Set only the condition (a provisioning failure says nothing about `up`).
    pub(crate) fn database_condition(&self, phase: Phase, reason: &str, message: String) {
        let mut state = self.lock();
        let Some(record) = state.database.as_mut() else {
            return;
        };
        let before = record.conditions.clone();
        record.conditions.set(phase, reason, message);
        let (object, after) = (
            format!("database/{}", record.spec.name),
            record.conditions.clone(),
        );
        state.events.note_transition(object, &before, &after);
        drop(state);
        self.bump();
    }

    /// What the lab could not do for the database (`None`: nothing to say). Kept until
    /// the lab says otherwise; shown in the database section and its failure messages.
    pub fn set_database_note(&self, note: Option<String>) {
        self.lock().database_note = note;
        self.bump();
    }

    /// Installs wait for this: the installer login works and the database exists.
    pub(crate) fn database_ready(&self) -> bool {
        self.lock()
            .database
            .as_ref()
            .is_some_and(|r| r.up == Some(true))
    }
}
