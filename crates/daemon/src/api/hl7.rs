//! `POST /api/v1/hl7/failback`: move the HL7 listener back to `hl7.preferred` now, the
//! request `failback: manual` waits for. The same bearer token, logging and rate limit as
//! `POST /api/v1/reconcile`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Extension;

use super::reconcile::{refusal, FailedAttempts};
use super::AppState;

pub(super) fn post() -> MethodRouter<AppState> {
    axum::routing::post(failback).layer(Extension(Arc::new(FailedAttempts::default())))
}

async fn failback(
    State(state): State<AppState>,
    Extension(failures): Extension<Arc<FailedAttempts>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&state, &failures, peer, &headers, "HL7 failback") {
        return refused;
    }
    // Done by the HL7 failover's next run, if the preferred server's listener can take
    // over (its status says what happened).
    state.controllers.hl7_failback();
    (StatusCode::ACCEPTED, "HL7 failback requested\n").into_response()
}
