//! The `/v1` JSON API on top of [`ServiceManager`].

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use steward_model::ServiceKind;

use crate::api::{
    CertificateRequest, CertificateStatus, ConnectionStrings, ConnectionStringsUpdate,
    FencingStatus, HostInfo, InstallOutcome, InstallRequest, InstallResponse, RemnantCleanup,
    ServiceInfo, ServiceLogs, UninstallResponse,
};
use crate::error::AgentError;
use crate::fencing::{self, Fencing};
use crate::manager::ServiceManager;

const DEFAULT_LOG_TAIL: u64 = 64 * 1024;
const MAX_LOG_TAIL: u64 = 1024 * 1024;

pub(crate) struct App {
    pub manager: ServiceManager,
    pub host: HostInfo,
    pub fencing: Arc<Fencing>,
}

type AppState = State<Arc<App>>;
type ApiResult<T> = Result<Json<T>, AgentError>;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/host", get(host))
        .route("/v1/services", get(list_services))
        .route(
            "/v1/services/{kind}",
            get(get_service).put(install).delete(uninstall),
        )
        .route("/v1/services/{kind}/restart", post(restart))
        .route("/v1/services/{kind}/stop", post(stop))
        .route("/v1/services/{kind}/start", post(start))
        .route("/v1/services/{kind}/logs", get(logs))
        .route("/v1/certificate", get(get_certificate).put(put_certificate))
        .route(
            "/v1/connection-strings",
            get(get_connection_strings).put(put_connection_strings),
        )
        .route("/v1/remnants/cleanup", post(cleanup_remnants))
        .route("/v1/fencing", get(fencing_status).put(fencing_status))
        .fallback(not_found)
        // Last, so it covers every route above (and any added later): no change passes
        // without the leader's epoch once the agent is in HA mode.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app.fencing),
            fencing::guard,
        ))
        .with_state(app)
}

/// The guard already admitted a `PUT`'s epoch; both answer what the agent holds now.
async fn fencing_status(State(app): AppState) -> Json<FencingStatus> {
    Json(FencingStatus {
        highest_epoch: app.fencing.state().highest_epoch,
        ha_mode: app.fencing.in_ha_mode(),
    })
}

fn kind(raw: &str) -> Result<ServiceKind, AgentError> {
    raw.parse()
        .map_err(|_| AgentError::UnknownKind(raw.chars().take(32).collect()))
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, AgentError> {
    payload
        .map(|Json(v)| v)
        .map_err(|e| AgentError::InvalidRequest(e.body_text()))
}

async fn not_found(method: Method, uri: Uri) -> AgentError {
    AgentError::NoRoute(format!("{method} {}", uri.path()))
}

async fn host(State(app): AppState) -> Json<HostInfo> {
    Json(app.host.clone())
}

async fn list_services(State(app): AppState) -> Json<Vec<ServiceInfo>> {
    Json(app.manager.list().await)
}

async fn get_service(State(app): AppState, Path(raw): Path<String>) -> ApiResult<ServiceInfo> {
    Ok(Json(app.manager.get(kind(&raw)?).await?))
}

#[derive(Deserialize)]
struct InstallQuery {
    /// Lay the service down without starting it (an HL7 standby).
    #[serde(default)]
    held: bool,
}

async fn install(
    State(app): AppState,
    Path(raw): Path<String>,
    query: Result<Query<InstallQuery>, QueryRejection>,
    payload: Result<Json<InstallRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<InstallResponse>), AgentError> {
    let kind = kind(&raw)?;
    let Query(query) = query.map_err(|e| AgentError::InvalidRequest(e.body_text()))?;
    let response = app
        .manager
        .install(kind, body(payload)?, query.held)
        .await?;
    let status = match response.outcome {
        InstallOutcome::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(response)))
}

#[derive(Deserialize)]
struct UninstallQuery {
    #[serde(default)]
    force: bool,
}

async fn uninstall(
    State(app): AppState,
    Path(raw): Path<String>,
    query: Result<Query<UninstallQuery>, QueryRejection>,
) -> ApiResult<UninstallResponse> {
    let kind = kind(&raw)?;
    let Query(query) = query.map_err(|e| AgentError::InvalidRequest(e.body_text()))?;
    Ok(Json(app.manager.uninstall(kind, query.force).await?))
}

async fn restart(State(app): AppState, Path(raw): Path<String>) -> ApiResult<ServiceInfo> {
    Ok(Json(app.manager.restart(kind(&raw)?).await?))
}

async fn stop(State(app): AppState, Path(raw): Path<String>) -> ApiResult<ServiceInfo> {
    Ok(Json(app.manager.stop(kind(&raw)?).await?))
}

async fn start(State(app): AppState, Path(raw): Path<String>) -> ApiResult<ServiceInfo> {
    Ok(Json(app.manager.start_held(kind(&raw)?).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsQuery {
    tail_bytes: Option<u64>,
}

async fn logs(
    State(app): AppState,
    Path(raw): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<ServiceLogs> {
    let kind = kind(&raw)?;
    let Query(query) = query.map_err(|e| AgentError::InvalidRequest(e.body_text()))?;
    let tail = query
        .tail_bytes
        .unwrap_or(DEFAULT_LOG_TAIL)
        .min(MAX_LOG_TAIL);
    Ok(Json(app.manager.logs(kind, tail).await?))
}

async fn get_certificate(State(app): AppState) -> ApiResult<CertificateStatus> {
    Ok(Json(app.manager.certificate()?))
}

async fn put_certificate(
    State(app): AppState,
    payload: Result<Json<CertificateRequest>, JsonRejection>,
) -> ApiResult<CertificateStatus> {
    Ok(Json(app.manager.install_certificate(body(payload)?).await?))
}

async fn get_connection_strings(State(app): AppState) -> ApiResult<ConnectionStrings> {
    Ok(Json(app.manager.get_connection_strings()?))
}

async fn put_connection_strings(
    State(app): AppState,
    payload: Result<Json<ConnectionStrings>, JsonRejection>,
) -> ApiResult<ConnectionStringsUpdate> {
    Ok(Json(
        app.manager.set_connection_strings(body(payload)?).await?,
    ))
}

async fn cleanup_remnants(State(app): AppState) -> Json<RemnantCleanup> {
    Json(app.manager.cleanup_remnants().await)
}
