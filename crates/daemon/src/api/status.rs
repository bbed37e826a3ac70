//! `GET /api/v1/status`: the dashboard model (docs/http-api.md). The controllers' fleet status,
//! plus what the watcher knows about the desired state. Typed (and so described by the
//! OpenAPI document from the same types) rather than assembled as loose JSON.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steward_controllers::{Compaction, FleetStatus};
use steward_model::diagnostic::Severity;
use steward_model::Diagnostic;
use steward_watch::{LoadOutcome, Trigger, WatchStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::chunks::Chunks;
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
    /// Present when the document is compact (`?compact=true`, or `auto` on a large
    /// fleet): healthy services are left out of `servers[].services`, counted here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact: Option<CompactStatus>,
    #[serde(flatten)]
    pub fleet: FleetStatus,
}

/// What a compact status document left out.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactStatus {
    /// Per server name, how many of its services were left out: installed, declared and
    /// healthy. Servers named in `?detail=` keep every service.
    pub healthy_omitted: BTreeMap<String, usize>,
}

/// Above this many servers, `?compact=auto` gives the compact document: a dashboard
/// refreshing every second must not pull every service of a large fleet each time
/// (about 1 KB per service: 11 MB at 1,000 servers x 11).
pub const COMPACT_ABOVE_SERVERS: usize = 100;

/// `GET /api/v1/status?compact=...&detail=...`.
#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    #[serde(default)]
    compact: CompactMode,
    /// Comma-separated server names whose services are all listed in a compact document.
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CompactMode {
    #[default]
    False,
    True,
    /// Compact above [`COMPACT_ABOVE_SERVERS`] servers.
    Auto,
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

/// The members of [`StatusDocument`] before the fleet's, in its order and spelling: the
/// handler writes these, then the fleet's from the store's kept parts (the API's tests
/// compare the result with [`StatusDocument`] serialized, byte for byte).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    generation: u64,
    valid: bool,
    errors: Vec<String>,
    desired_state: DesiredStateStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    ha: Option<crate::ha::HaStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compact: Option<CompactView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompactView<'a> {
    healthy_omitted: &'a BTreeMap<String, usize>,
}

pub async fn status(
    State(state): State<AppState>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            let body = serde_json::json!({ "error": e.body_text() });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let detail: BTreeSet<&str> = query
        .detail
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let compaction = match query.compact {
        CompactMode::False => Compaction::Whole,
        CompactMode::True => Compaction::Compact(&detail),
        CompactMode::Auto => Compaction::Above(COMPACT_ABOVE_SERVERS, &detail),
    };
    match body(&state, compaction) {
        Ok(chunks) => (
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::new(Chunks::from_bytes(chunks)),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status document");
            let body = serde_json::json!({ "error": e.to_string() });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// The document in pieces: its head, then the fleet's members as the store keeps them
/// (no copy of the megabytes of servers), then the closing brace.
fn body(state: &AppState, compaction: Compaction<'_>) -> Result<Vec<Bytes>, StatusError> {
    let fleet = state.store.status_json(compaction)?;
    let watch = state.watch.current_status();
    let head = Head {
        generation: watch.last_applied_generation,
        valid: watch.valid,
        errors: watch.errors.iter().map(ToString::to_string).collect(),
        desired_state: desired_state(&watch),
        ha: state.ha.as_ref().map(crate::ha::HaStatus::of),
        compact: fleet
            .healthy_omitted
            .as_ref()
            .map(|healthy_omitted| CompactView { healthy_omitted }),
    };
    let mut open = serde_json::to_vec(&head)?;
    // `{...}` becomes `{...,`: the fleet's members follow, as `#[serde(flatten)]` puts them.
    open.pop();
    open.push(b',');
    let mut chunks = Vec::with_capacity(fleet.members.len() + 2);
    chunks.push(Bytes::from(open));
    chunks.extend(fleet.members);
    chunks.push(Bytes::from_static(b"}"));
    Ok(chunks)
}

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error(transparent)]
    Fleet(#[from] steward_controllers::DocumentError),
    #[error("the status document could not be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The document as one value: what the handler's bytes are (its tests compare them).
#[cfg(test)]
pub fn document(state: &AppState) -> StatusDocument {
    let watch = state.watch.current_status();
    StatusDocument {
        generation: watch.last_applied_generation,
        valid: watch.valid,
        errors: watch.errors.iter().map(ToString::to_string).collect(),
        desired_state: desired_state(&watch),
        ha: state.ha.as_ref().map(crate::ha::HaStatus::of),
        compact: None,
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
