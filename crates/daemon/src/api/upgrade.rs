//! `POST /api/v1/upgrade/resume`: resume a halted rolling upgrade, for holders of the
//! reconcile token (the same check, log and rate limit as `POST /api/v1/reconcile`).
//! Steward never resumes by itself: after a failure the vendor says not to run the
//! upgrade again before someone has looked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Extension;
use steward_controllers::ResumeOutcome;

use super::reconcile::{refusal, FailedAttempts};
use super::AppState;

/// The route, with its own record of failed attempts.
pub(super) fn post() -> MethodRouter<AppState> {
    axum::routing::post(resume).layer(Extension(Arc::new(FailedAttempts::default())))
}

async fn resume(
    State(state): State<AppState>,
    Extension(failures): Extension<Arc<FailedAttempts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&state, &failures, peer, &headers, "upgrade resume") {
        return refused;
    }
    match state.controllers.resume_upgrade() {
        ResumeOutcome::Resumed => {
            tracing::info!(%peer, "upgrade resumed");
            (StatusCode::ACCEPTED, "upgrade resumed\n").into_response()
        }
        ResumeOutcome::NotHalted(phase) => (
            StatusCode::CONFLICT,
            format!("no halted upgrade to resume (phase {})\n", phase.as_str()),
        )
            .into_response(),
        ResumeOutcome::Refused(reason) => (
            StatusCode::CONFLICT,
            format!("the upgrade was refused, not halted; commit an allowed release: {reason}\n"),
        )
            .into_response(),
    }
}
