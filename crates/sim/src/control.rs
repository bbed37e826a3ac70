//! The control API of one simulated server, plain HTTP on the server's own address (so it
//! works the same whichever shard serves the server):
//!
//! ```text
//! GET  /sim                          the server: agent reachable, faults, services
//! POST /sim/services/{KIND}/kill     stop the service as SIGKILL would
//! POST /sim/services/{KIND}/fail-health   its health path answers 503 ...
//! POST /sim/services/{KIND}/heal          ... until this
//! POST /sim/agent/unreachable        the agent stops listening (services keep running)
//! POST /sim/agent/reachable          and listens again
//! PUT  /sim/agent/slow               {"ms": 2000}: every driver call takes that much longer
//! PUT  /sim/install-failures         {"percent": 20}: that share of installs fails
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use steward_model::ServiceKind;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::fleet::SimAgent;

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("unknown service kind {0:?}")]
    UnknownKind(String),
    #[error("{0} is not installed on this server")]
    NotInstalled(ServiceKind),
    #[error("{0} is not running on this server")]
    NotRunning(ServiceKind),
    #[error(transparent)]
    Sim(#[from] SimError),
}

impl ControlError {
    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownKind(_) => StatusCode::BAD_REQUEST,
            Self::NotInstalled(_) | Self::NotRunning(_) => StatusCode::CONFLICT,
            Self::Sim(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub name: String,
    pub hostname: String,
    pub address: String,
    pub agent_reachable: bool,
    pub slow_ms: u64,
    pub install_failure_percent: u8,
    pub services: Vec<ServiceView>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub kind: ServiceKind,
    pub running: bool,
    pub healthy: bool,
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

#[derive(Deserialize)]
struct InstallFailures {
    percent: u8,
}

type Agent = State<Arc<SimAgent>>;

pub(crate) async fn bind(
    addr: SocketAddr,
    agent: Arc<SimAgent>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, SimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Control { addr, source })?;
    let app = router(agent);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(%addr, error = %e, "sim control API stopped");
        }
    }))
}

fn router(agent: Arc<SimAgent>) -> Router {
    Router::new()
        .route("/sim", get(view))
        .route("/sim/services/{kind}/kill", post(kill))
        .route("/sim/services/{kind}/fail-health", post(fail_health))
        .route("/sim/services/{kind}/heal", post(heal))
        .route("/sim/agent/unreachable", post(unreachable))
        .route("/sim/agent/reachable", post(reachable))
        .route("/sim/agent/slow", put(slow))
        .route("/sim/install-failures", put(install_failures))
        .with_state(agent)
}

fn kind(raw: &str) -> Result<ServiceKind, ControlError> {
    raw.parse()
        .map_err(|_| ControlError::UnknownKind(raw.chars().take(32).collect()))
}

fn describe(agent: &SimAgent) -> ServerView {
    let faults = agent.driver.faults();
    ServerView {
        name: agent.server.name.clone(),
        hostname: agent.server.hostname.clone(),
        address: agent.server.address.to_string(),
        agent_reachable: agent.reachable(),
        slow_ms: u64::try_from(faults.slow().as_millis()).unwrap_or(u64::MAX),
        install_failure_percent: faults.install_failure_percent(),
        services: agent
            .driver
            .overview()
            .into_iter()
            .map(|(kind, running, healthy)| ServiceView {
                kind,
                running,
                healthy,
            })
            .collect(),
    }
}

async fn view(State(agent): Agent) -> Json<ServerView> {
    Json(describe(&agent))
}

async fn kill(
    State(agent): Agent,
    Path(raw): Path<String>,
) -> Result<Json<ServerView>, ControlError> {
    let kind = kind(&raw)?;
    if !agent.driver.kill(kind).await {
        return Err(ControlError::NotRunning(kind));
    }
    Ok(Json(describe(&agent)))
}

fn set_health(
    agent: &SimAgent,
    raw: &str,
    healthy: bool,
) -> Result<Json<ServerView>, ControlError> {
    let kind = kind(raw)?;
    if !agent.driver.set_healthy(kind, healthy) {
        return Err(ControlError::NotInstalled(kind));
    }
    Ok(Json(describe(agent)))
}

async fn fail_health(
    State(agent): Agent,
    Path(raw): Path<String>,
) -> Result<Json<ServerView>, ControlError> {
    set_health(&agent, &raw, false)
}

async fn heal(
    State(agent): Agent,
    Path(raw): Path<String>,
) -> Result<Json<ServerView>, ControlError> {
    set_health(&agent, &raw, true)
}

async fn unreachable(State(agent): Agent) -> Json<ServerView> {
    agent.stop().await;
    Json(describe(&agent))
}

async fn reachable(State(agent): Agent) -> Result<Json<ServerView>, ControlError> {
    agent.start().await?;
    Ok(Json(describe(&agent)))
}

async fn slow(State(agent): Agent, Json(slow): Json<Slow>) -> Json<ServerView> {
    agent
        .driver
        .faults()
        .set_slow(Duration::from_millis(slow.ms));
    Json(describe(&agent))
}

async fn install_failures(
    State(agent): Agent,
    Json(body): Json<InstallFailures>,
) -> Json<ServerView> {
    agent
        .driver
        .faults()
        .set_install_failure_percent(body.percent);
    Json(describe(&agent))
}
