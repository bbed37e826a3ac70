use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use steward_model::ServiceKind;
use steward_pki::PkiError;

use crate::api::ErrorBody;

/// What a [`Driver`](crate::Driver) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid} did not exit after SIGKILL")]
    Unkillable { pid: u32 },
}

impl DriverError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "spawn",
            Self::Io { .. } => "io",
            Self::Remove { .. } => "remove",
            Self::Signal { .. } => "signal",
            Self::Unkillable { .. } => "unkillable",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Everything the agent can fail with: at startup (bad configuration, certificates, state)
/// and per API request. Each variant maps to one HTTP status and one stable error code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent state {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error("unknown service kind `{0}`; expected one of PSIS, PSWS, CLIENT, REPORT, ADMIN, EMERGENCY, HEALTH, FHIR, EMPI, JOB, HL7")]
    UnknownKind(String),
    #[error("{0} is not installed")]
    NotInstalled(ServiceKind),
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error("no {0} has been set")]
    NotSet(&'static str),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(PkiError),
    #[error("{0}")]
    Conflict(String),
    /// A restart of a service stopped through `POST .../stop`: only `POST .../start`
    /// runs it again, so a drift repair cannot bring back a fenced HL7 listener.
    #[error("{0} was stopped on request (held); POST /v1/services/{0}/start runs it again")]
    Held(ServiceKind),
    #[error("{kind} was stopped but its files could not be removed ({detail}); retry with ?force=true to forget it")]
    FilesRemain { kind: ServiceKind, detail: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Fencing: the caller's leader epoch is older than one this agent has obeyed.
    #[error("refused: this call carries leader epoch {epoch}, but this agent has already obeyed epoch {highest}; the caller is no longer steward's leader")]
    StaleEpoch { epoch: u64, highest: u64 },
    /// Fencing: the agent is in HA mode and the change carries no epoch.
    #[error("refused: this agent takes changes only from steward's leader (HA mode) and the call carries no steward-epoch header")]
    EpochRequired,
}

impl AgentError {
    /// A bounded label for metrics and the `error` field of error responses.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Pki(_) => "pki",
            Self::Bind { .. } => "bind",
            Self::Io { .. } => "io",
            Self::State { .. } => "state",
            Self::UnknownKind(_) => "unknown_kind",
            Self::NotInstalled(_) => "not_installed",
            Self::NoRoute(_) => "no_route",
            Self::NotSet(_) => "not_set",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::Conflict(_) => "conflict",
            Self::FilesRemain { .. } => "files_remain",
            Self::Held(_) => "held",
            Self::Driver(_) => "driver",
            Self::StaleEpoch { .. } => "stale_epoch",
            Self::EpochRequired => "epoch_required",
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownKind(_) | Self::NotInstalled(_) | Self::NoRoute(_) | Self::NotSet(_) => {
                StatusCode::NOT_FOUND
            }
            Self::InvalidRequest(_) | Self::InvalidCertificate(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_)
            | Self::FilesRemain { .. }
            | Self::Held(_)
            | Self::StaleEpoch { .. } => StatusCode::CONFLICT,
            Self::EpochRequired => StatusCode::PRECONDITION_REQUIRED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.metric_label(), "request failed");
        }
        let body = ErrorBody {
            error: self.metric_label().to_owned(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_4xx() {
        assert_eq!(
            AgentError::NotInstalled(ServiceKind::Psis).status_code(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            AgentError::InvalidRequest("x".into()).status_code(),
            StatusCode::BAD_REQUEST
        );
        let remain = AgentError::FilesRemain {
            kind: ServiceKind::Hl7,
            detail: "busy".into(),
        };
        assert_eq!(remain.status_code(), StatusCode::CONFLICT);
        assert!(remain.to_string().contains("force=true"));
    }
}
