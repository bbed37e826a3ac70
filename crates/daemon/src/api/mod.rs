//! The daemon's HTTP API (axum): health, readiness, metrics, status, resources, the CA,
//! and the OpenAPI document describing them (`/api/v1/openapi.json`).
//!
//! Every response is built from the controllers' store and the watcher's status; none of
//! them can carry a secret because neither holds one (secrets are resolved at the point of
//! use and dropped).

mod chunks;
mod openapi;
mod status;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::Registry;
use steward_controllers::{ControllersHandle, Store};
use steward_model::SecretValue;
use steward_watch::WatchHandle;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// The desired state the controllers accepted, and a full resync on request.
    pub controllers: ControllersHandle,
    pub watch: WatchHandle,
    pub registry: Registry,
    pub ca_pem: Option<Arc<str>>,
    /// `POST /api/v1/reconcile` requires `Authorization: Bearer <token>`; `None` disables it.
    /// Redacted in `Debug`, wiped when dropped.
    pub reconcile_token: Option<Arc<SecretValue>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/resources/{kind}/{name}", get(resource))
        .route("/api/v1/observed", get(observed))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/reconcile", post(reconcile))
        .route("/ca.pem", get(ca_pem))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .merge(crate::dashboard::routes())
        .with_state(state)
}

/// Ready once the controllers accepted a desired state: before that the daemon knows
/// nothing it could report or act on.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.controllers.desired().current().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no valid desired state loaded yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    // The fleet-sized families are rendered straight from the controllers' tables: a
    // thousand servers' worth in milliseconds rather than a gather of protobuf models.
    match steward_controllers::encode_metrics(&state.registry) {
        Ok(chunks) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            axum::body::Body::new(chunks::Chunks::new(chunks)),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn resource(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match state.store.resource(&kind, &name) {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no {kind} named {name}")})),
        )
            .into_response(),
    }
}

async fn observed(State(state): State<AppState>) -> Json<steward_model::plan::Observed> {
    Json(state.store.observed())
}

/// What the daemon would still do for the desired state in force (nothing once converged).
async fn plan(State(state): State<AppState>) -> Response {
    match state.controllers.desired().current() {
        Some(accepted) => Json(steward_model::plan::plan(
            &accepted.desired.snapshot,
            &state.store.observed(),
        ))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "no valid desired state loaded yet"})),
        )
            .into_response(),
    }
}

async fn reconcile(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.reconcile_token else {
        return (StatusCode::FORBIDDEN, "manual reconcile is disabled\n").into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes())) {
        return (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
    }
    // A changed directory becomes a new generation; either way every object is looked at.
    state.watch.reload();
    state.controllers.resync_all();
    (StatusCode::ACCEPTED, "reload and reconcile requested\n").into_response()
}

/// Compare tokens without leaking the matching prefix length through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ca_pem(State(state): State<AppState>) -> Response {
    match &state.ca_pem {
        Some(pem) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_string(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no steward CA: certificateAuthority.mode is existing\n",
        )
            .into_response(),
    }
}
