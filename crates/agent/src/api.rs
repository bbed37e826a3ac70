//! The agent's JSON API under `/v1`: the wire types shared by the server and
//! [`AgentClient`](crate::AgentClient). Field names are camelCase on the wire.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steward_model::ServiceKind;
use steward_pki::PrivateKeyPem;
use time::OffsetDateTime;

/// What the agent reports about its host (`GET /v1/host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    pub hostname: String,
    /// The Windows-style NetBIOS name: first label, uppercase, at most 15 characters.
    pub computer_name: String,
    pub os: String,
    pub agent_version: String,
}

/// The agent's view of a service process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    Running,
    /// Not running: stopped on purpose, exited cleanly, or killed by a signal.
    Stopped,
    /// Exited with a non-zero code, or could not be started.
    Failed,
    Installing,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Installing => "installing",
        }
    }
}

/// One installed service, as `GET /v1/services` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub kind: ServiceKind,
    /// The ports the service was installed with.
    pub ports: Vec<u16>,
    /// The ports it actually listens on (differs in lab mode for ports below 1024).
    pub listen_ports: Vec<u16>,
    pub drive: String,
    pub release: String,
    pub installed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub installed_at: OffsetDateTime,
    pub status: ServiceStatus,
    /// Stopped on request (`POST /v1/services/{KIND}/stop`, or installed with
    /// `?held=true`): it stays stopped across agent restarts and reinstalls, `restart` is
    /// refused, and only `POST /v1/services/{KIND}/start` runs it again.
    #[serde(default)]
    pub held: bool,
    /// The SHA-1 thumbprint of the certificate the service serves (HTTPS services only).
    pub tls_thumbprint: Option<String>,
    /// Where a person would open the service.
    pub link: String,
    pub pid: Option<u32>,
    /// Exit code of the last run, when it exited on its own.
    pub exit_code: Option<i32>,
    /// Why the service is failed, when known.
    pub message: Option<String>,
    /// The last time the service failed (exited with an error, or could not start) and
    /// why; kept after it runs again, until it is reinstalled. Absent when it never failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
}

/// Why a service last failed, as far as the agent can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    pub reason: FailureReason,
    /// One line for people: the cause, and the service's last log line when it exited.
    pub message: String,
    /// The port the service could not bind (`portInUse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The process holding that port, when the agent can see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of the service's log before it exited.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: OffsetDateTime,
}

/// The kind of a [`LastFailure`]: a bounded set, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureReason {
    /// A port of the service is held by another process.
    PortInUse,
    /// The process exited with a non-zero code.
    Exited,
    /// The process could not be started at all.
    StartFailed,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PortInUse => "portInUse",
            Self::Exited => "exited",
            Self::StartFailed => "startFailed",
        }
    }
}

/// `PUT /v1/services/{KIND}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallRequest {
    pub ports: Vec<u16>,
    #[serde(default = "default_drive")]
    pub drive: String,
    pub release: String,
    pub installed_by: String,
}

fn default_drive() -> String {
    "C:".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallOutcome {
    /// Newly installed and started (HTTP 201).
    Created,
    /// The spec changed: stopped, reinstalled and started.
    Reinstalled,
    /// Same spec, but it was not running: started again.
    Started,
    /// Same spec and running: nothing done.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallResponse {
    pub outcome: InstallOutcome,
    pub service: ServiceInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UninstallOutcome {
    /// Stopped and its files removed.
    Removed,
    /// `?force=true`: forgotten although its files could not be removed (see remnants).
    Forgotten,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UninstallResponse {
    pub kind: ServiceKind,
    pub outcome: UninstallOutcome,
    /// Files left behind, for `POST /v1/remnants/cleanup`.
    pub remnants: Vec<String>,
}

/// `GET /v1/services/{KIND}/logs`: the tail of the captured stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLogs {
    pub kind: ServiceKind,
    pub log: String,
    /// The log is longer than what is returned.
    pub truncated: bool,
}

/// `PUT /v1/certificate`: the server's TLS certificate (PEM chain, leaf first) and key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateRequest {
    pub cert_pem: String,
    /// PEM (PKCS#8); never logged or echoed back.
    #[schemars(with = "String")]
    pub key_pem: PrivateKeyPem,
}

/// The installed server certificate (`PUT` and `GET /v1/certificate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    pub thumbprint: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub not_after: OffsetDateTime,
    pub subject: String,
    /// The installed chain (PEM, leaf first; public, never a key), so that a daemon that
    /// did not install it can check which CA issued it and for which names (after an HA
    /// takeover the new leader keeps a certificate its CA issued instead of re-issuing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// Services told to reload (by `PUT`); empty for `GET`.
    #[serde(default)]
    pub reloaded: Vec<ServiceKind>,
}

/// The service URLs every service is configured with (`GET`/`PUT /v1/connection-strings`).
/// `client` and `api` are absent when the installation has no CLIENT or REPORT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionStrings {
    pub identity_server: String,
    pub psws: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStringsUpdate {
    pub connection_strings: ConnectionStrings,
    /// Services whose connection-strings file was rewritten and that were told to reload.
    pub pushed: Vec<ServiceKind>,
}

/// `POST /v1/remnants/cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemnantCleanup {
    pub removed: Vec<String>,
    pub failed: Vec<RemnantFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemnantFailure {
    pub path: String,
    pub error: String,
}

/// Every error response: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// `GET /v1/fencing` (and `PUT`, with which a new leader announces its epoch): the
/// highest leader epoch this agent has obeyed, and whether it requires one on changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FencingStatus {
    pub highest_epoch: Option<u64>,
    pub ha_mode: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_camel_case() {
        let json = serde_json::json!({
            "ports": [7001], "release": "6.12.1", "installedBy": "steward"
        });
        let req: InstallRequest = serde_json::from_value(json).unwrap();
        assert_eq!(req.drive, "C:");
        let strings = ConnectionStrings {
            identity_server: "https://a:7001/identityserver".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&strings).unwrap();
        assert_eq!(json["identityServer"], "https://a:7001/identityserver");
        assert_eq!(
            serde_json::to_value(ServiceStatus::Installing).unwrap(),
            "installing"
        );
    }

    #[test]
    fn certificate_request_debug_hides_the_key() {
        let req = CertificateRequest {
            cert_pem: "cert".into(),
            key_pem: PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----".into()),
        };
        assert!(!format!("{req:?}").contains("PRIVATE"));
    }
}
