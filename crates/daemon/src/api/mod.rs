//! The daemon's HTTP API (axum): health, readiness, metrics, status, resources, the CA,
//! and the OpenAPI document describing them (`/api/v1/openapi.json`).
//!
//! Served by `steward-serve` within [`limits`]: whatever clients do, the API holds at most a
//! quarter of the process's open files, so probes, agent calls and the desired-state
//! loader never run out. Unknown paths and methods get JSON errors (`fallback`).
//!
//! Every response is built from the controllers' store and the watcher's status; none of
//! them can carry a secret because neither holds one (secrets are resolved at the point of
//! use and dropped).

mod backup;
mod chunks;
mod fallback;
mod hl7;
mod openapi;
mod reconcile;
mod status;
mod upgrade;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use steward_controllers::{ControllersHandle, MetricsRegistry, Store};
use steward_model::SecretValue;
use steward_serve::{Limits, Server};
use steward_watch::WatchHandle;
use tokio::net::TcpListener;

pub use backup::BackupSource;

/// The most connections the API holds, however many files the process may open.
const MAX_CONNECTIONS: usize = 1024;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// The desired state the controllers accepted, and a full resync on request.
    pub controllers: ControllersHandle,
    pub watch: WatchHandle,
    pub registry: MetricsRegistry,
    pub ca_pem: Option<Arc<str>>,
    /// `POST /api/v1/reconcile` requires `Authorization: Bearer <token>`; `None` disables it.
    /// Redacted in `Debug`, wiped when dropped.
    pub reconcile_token: Option<Arc<SecretValue>>,
    /// `GET /api/v1/backup` (same token); `None`: no state directory to back up.
    pub backup: Option<Arc<backup::BackupSource>>,
    /// Controller HA: the election this daemon takes part in; `None` for a single daemon.
    pub ha: Option<steward_leader::Leadership>,
}

pub fn router(state: AppState) -> Router {
    let ha = state.ha.clone();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/resources/{kind}/{name}", get(resource))
        .route("/api/v1/observed", get(observed))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/reconcile", reconcile::post())
        .route("/api/v1/hl7/failback", hl7::post())
        .route("/api/v1/backup", backup::get())
        .route("/api/v1/upgrade/resume", upgrade::post())
        .route("/ca.pem", get(ca_pem))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .merge(crate::dashboard::routes())
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed);
    // Over every route: a follower serves reads only.
    let router = match ha {
        Some(leadership) => router.layer(axum::middleware::from_fn_with_state(
            leadership,
            crate::ha::refuse_changes_on_followers,
        )),
        None => router,
    };
    router.with_state(state)
}

/// The API's bounds, for a process that may open `open_files` files.
pub fn limits(open_files: Option<u64>) -> Limits {
    Limits {
        max_connections: Limits::connection_budget(open_files, MAX_CONNECTIONS),
        header_read_timeout: Duration::from_secs(10),
        // Above Prometheus's usual scrape intervals, so scrapes reuse their connection.
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(30),
        // Nothing the API takes has a body (POST /api/v1/reconcile ignores it).
        max_body_bytes: 64 * 1024,
        max_head_bytes: 64 * 1024,
        shutdown_grace: Duration::from_secs(5),
        ..Limits::default()
    }
}

/// Serve `router` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let limits = limits(steward_serve::open_files_limit());
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        "API limits"
    );
    Server::new("api", listener, limits)
        .serve(router, shutdown)
        .await;
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
    // Sent as the registry wrote it, chunk by chunk: a thousand servers' worth is megabytes.
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::new(chunks::Chunks::new(state.registry.encode())),
    )
        .into_response()
}

async fn resource(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match state.store.resource(&kind, &name) {
        Some(r) => Json(r).into_response(),
        None => {
            let (kind, name) = (fallback::echo(&kind), fallback::echo(&name));
            let body = serde_json::json!({"error": format!("no {kind} named {name}")});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
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

async fn ca_pem(State(state): State<AppState>) -> Response {
    match &state.ca_pem {
        Some(pem) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_string(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no steward CA: certificateAuthority.mode is existing"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
