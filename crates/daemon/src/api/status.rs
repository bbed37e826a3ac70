//! `GET /api/v1/status`: the dashboard model (docs/http-api.md). The controllers' fleet status,
//! plus what the watcher knows about the desired state. Typed (and so described by the
//! OpenAPI document from the same types) rather than assembled as loose JSON.

use axum::extract::State;
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;
use steward_controllers::FleetStatus;
use steward_model::diagnostic::Severity;
use steward_model::Diagnostic;
use steward_watch::{LoadOutcome, Trigger, WatchStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::AppState;

/// The whole status document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument {
    /// The live desired-state generation (0 before the first valid load); the one the
    /// controllers accepted is `observedGeneration`, and what the loader last attempted
    /// is under `desiredState`.
    pub generation: u64,
    /// Whether the desired-state directory validates now.
    pub valid: bool,
    /// The errors of the last load (the first 100; `desiredState.errorCount` has them
    /// all), as `FILE:LINE:COL: error[CODE]: message`.
    pub errors: Vec<String>,
    pub desired_state: DesiredStateStatus,
    /// Controller HA: this daemon's role and who leads (absent for a single daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha::HaStatus>,
    #[serde(flatten)]
    pub fleet: FleetStatus,
}

/// The desired-state watcher's view.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStateStatus {
    pub directory: String,
    /// Above the document's `generation` while the files are not what runs (invalid).
    pub last_attempted_generation: u64,
    pub valid: bool,
    /// The first 100 errors; `errorCount` has them all.
    pub errors: Vec<DiagnosticView>,
    pub error_count: usize,
    /// The first 100 warnings; `warningCount` has them all.
    pub warnings: Vec<DiagnosticView>,
    pub warning_count: usize,
    /// Desired-state files read by the last load.
    pub files: usize,
    pub attempts: u64,
    pub last_trigger: Option<TriggerView>,
    /// When the last load finished.
    #[schemars(with = "Option<String>")]
    pub last_loaded_at: Option<String>,
    #[schemars(with = "Option<String>")]
    pub last_applied_at: Option<String>,
    /// Seconds the last load took.
    pub last_load_duration: f64,
    /// When the last load started.
    #[schemars(with = "Option<String>")]
    pub last_load_started_at: Option<String>,
    /// What the last load found.
    pub last_outcome: Option<LoadOutcomeView>,
    /// Why the last load could not judge the files (outcome `deferred`: the process ran
    /// out of file descriptors, the file system was too slow); it is retried.
    pub last_load_error: Option<String>,
    /// Set while a load has run longer than 5 s: when it started.
    #[schemars(with = "Option<String>")]
    pub loading_since: Option<String>,
}

/// What a load of the desired-state directory found.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoadOutcomeView {
    /// Valid and different: a new generation.
    Applied,
    /// Valid and equal to the live generation.
    Unchanged,
    /// Read, but invalid: the live generation stays.
    Invalid,
    /// The directory could not be read: the live generation stays.
    Failed,
    /// Nothing could be judged; retried.
    Deferred,
}

/// One validation problem, pointing at the offending value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticView {
    /// Relative to the desired-state directory; `.` for the directory as a whole.
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: SeverityView,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeverityView {
    Error,
    Warning,
}

/// What caused the last load.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TriggerView {
    Initial,
    Change,
    Rescan,
    Manual,
    Retry,
}

pub async fn status(State(state): State<AppState>) -> Json<StatusDocument> {
    Json(document(&state))
}

pub fn document(state: &AppState) -> StatusDocument {
    let watch = state.watch.current_status();
    StatusDocument {
        generation: watch.last_applied_generation,
        valid: watch.valid,
        errors: watch.errors.iter().map(ToString::to_string).collect(),
        desired_state: desired_state(&watch),
        ha: state.ha.as_ref().map(crate::ha::HaStatus::of),
        fleet: state.store.status(),
    }
}

fn desired_state(watch: &WatchStatus) -> DesiredStateStatus {
    let diagnostics = |list: &[Diagnostic]| list.iter().map(diagnostic).collect();
    DesiredStateStatus {
        directory: watch.directory.display().to_string(),
        last_attempted_generation: watch.last_attempted_generation,
        valid: watch.valid,
        errors: diagnostics(&watch.errors),
        error_count: watch.error_count,
        warnings: diagnostics(&watch.warnings),
        warning_count: watch.warning_count,
        files: watch.files,
        attempts: watch.attempts,
        last_trigger: watch.last_trigger.map(|t| match t {
            Trigger::Initial => TriggerView::Initial,
            Trigger::Change => TriggerView::Change,
            Trigger::Rescan => TriggerView::Rescan,
            Trigger::Manual => TriggerView::Manual,
            Trigger::Retry => TriggerView::Retry,
        }),
        last_loaded_at: watch.last_loaded_at.and_then(rfc3339),
        last_applied_at: watch.last_applied_at.and_then(rfc3339),
        last_load_duration: watch.last_load_duration.as_secs_f64(),
        last_load_started_at: watch.last_load_started_at.and_then(rfc3339),
        last_outcome: watch.last_outcome.map(|o| match o {
            LoadOutcome::Applied => LoadOutcomeView::Applied,
            LoadOutcome::Unchanged => LoadOutcomeView::Unchanged,
            LoadOutcome::Invalid => LoadOutcomeView::Invalid,
            LoadOutcome::Failed => LoadOutcomeView::Failed,
            LoadOutcome::Deferred => LoadOutcomeView::Deferred,
        }),
        last_load_error: watch.last_load_error.clone(),
        loading_since: watch.loading_since.and_then(rfc3339),
    }
}

fn diagnostic(d: &Diagnostic) -> DiagnosticView {
    DiagnosticView {
        file: d.file_display(),
        line: d.line,
        column: d.column,
        severity: match d.severity {
            Severity::Error => SeverityView::Error,
            Severity::Warning => SeverityView::Warning,
        },
        code: d.code.as_str().to_owned(),
        message: d.message.clone(),
    }
}

fn rfc3339(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}
