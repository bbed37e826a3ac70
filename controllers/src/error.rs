//! The one error every controller returns: an agent call that failed, the database
//! (its own classified error, `crate::database::DatabaseError`), or a directory that could
//! not be bound or read. What a person
//! should look at is its condition reason ([`ControllerError::reason`]); what a metric may
//! carry is its bounded label ([`ReconcileError::metric_label`]), never the error text.

use steward_agent::ClientError;
use steward_balancer::BalancerError;
use steward_directory::DirectoryError;
use steward_model::secret::SecretResolveError;
use steward_runtime::ReconcileError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControllerError {
    /// The agent did not answer what every reconcile asks first (who are you, what do
    /// you run): the server counts as down until it does.
    #[error("agent {url} does not answer: {source}")]
    AgentDown {
        url: String,
        #[source]
        source: ClientError,
    },
    /// The agent answered, but one call failed; `doing` says what for.
    #[error("{doing} failed: {source}")]
    AgentCall {
        doing: String,
        #[source]
        source: ClientError,
    },
    /// The database controller could not check or provision the database.
    #[error(transparent)]
    Database(#[from] crate::database::DatabaseError),
    /// The load balancer could not be configured (HAProxy missing, configuration
    /// rejected, reload failed, socket silent, a rendered file not written).
    #[error(transparent)]
    Balancer(#[from] BalancerError),
    /// The HL7 failover could not fence a listener or record its state.
    #[error(transparent)]
    Hl7(crate::hl7_failover::Hl7FailoverError),
    /// An ActiveDirectory could not be bound or read. `bound`: the bind had succeeded (the
    /// directory answers; an operation on it failed).
    #[error("ActiveDirectory {directory}: {source}")]
    Directory {
        directory: String,
        bound: bool,
        #[source]
        source: DirectoryError,
    },
    /// The directory's bind password cannot be read from its reference (the error names
    /// the reference, never a value).
    #[error(
        "ActiveDirectory {directory}: the bind password ({reference}) cannot be read: {source}"
    )]
    Secret {
        directory: String,
        reference: String,
        #[source]
        source: SecretResolveError,
    },
}

impl ControllerError {
    pub(crate) fn down(url: impl Into<String>, source: ClientError) -> Self {
        Self::AgentDown {
            url: url.into(),
            source,
        }
    }

    pub(crate) fn call(doing: impl Into<String>, source: ClientError) -> Self {
        Self::AgentCall {
            doing: doing.into(),
            source,
        }
    }

    /// The condition reason: what a person should look at.
    pub(crate) fn reason(&self) -> &'static str {
        let source = match self {
            Self::Database(e) => return e.reason(),
            Self::Balancer(e) => return e.reason(),
            Self::Hl7(e) => return e.reason(),
            // The directory crate's labels are the documented condition reasons.
            Self::Directory { source, .. } => return source.label(),
            Self::Secret { .. } => return "PasswordUnavailable",
            Self::AgentDown { source, .. } | Self::AgentCall { source, .. } => source,
        };
        match source {
            ClientError::ConnectRefused => "AgentConnectionRefused",
            ClientError::Connect(_) | ClientError::Transport(_) => "AgentUnreachable",
            ClientError::Tls(_) => "AgentTlsFailure",
            ClientError::Timeout(_) => "AgentTimeout",
            ClientError::Status { .. } => "AgentError",
            ClientError::Protocol(_) | ClientError::InvalidBody(_) => "AgentBadResponse",
            ClientError::InvalidUrl(_) => "InvalidAgentUrl",
            ClientError::NotLeader(_) => "NotLeader",
        }
    }
}

impl ReconcileError for ControllerError {
    fn metric_label(&self) -> &'static str {
        let source = match self {
            Self::Database(e) => return e.metric_label(),
            Self::Balancer(e) => return e.metric_label(),
            Self::Hl7(e) => return e.metric_label(),
            Self::Secret { .. } => return "directory_password",
            Self::Directory { source, .. } => {
                return match source {
                    DirectoryError::Config(_) => "directory_config",
                    DirectoryError::TlsUntrusted { .. } => "directory_tls_untrusted",
                    DirectoryError::TlsHostMismatch { .. } => "directory_tls_host_mismatch",
                    DirectoryError::BindFailed { .. } => "directory_bind_failed",
                    DirectoryError::Unreachable { .. } => "directory_unreachable",
                    DirectoryError::Timeout { .. } => "directory_timeout",
                    DirectoryError::Protocol { .. } => "directory_protocol",
                    DirectoryError::Rejected { .. } => "directory_rejected",
                }
            }
            Self::AgentDown { source, .. } | Self::AgentCall { source, .. } => source,
        };
        match source {
            ClientError::ConnectRefused => "agent_connect_refused",
            ClientError::Connect(_) | ClientError::Transport(_) => "agent_unreachable",
            ClientError::Tls(_) => "agent_tls",
            ClientError::Timeout(_) => "agent_timeout",
            ClientError::Status { .. } => "agent_http_status",
            ClientError::Protocol(_) | ClientError::InvalidBody(_) => "agent_bad_response",
            ClientError::InvalidUrl(_) => "agent_invalid_url",
            ClientError::NotLeader(_) => "not_leader",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_text_stays_in_the_message() {
        let error = ControllerError::call(
            "installing PSIS on port 7001",
            ClientError::Status {
                status: 409,
                code: None,
                message: "port 7001 is already used by JOB".into(),
            },
        );
        assert_eq!(error.metric_label(), "agent_http_status");
        assert_eq!(error.reason(), "AgentError");
        assert!(error
            .to_string()
            .starts_with("installing PSIS on port 7001 failed: "));
        assert!(error.to_string().contains("already used"));
        let down = ControllerError::down("https://10.0.0.2:7443", ClientError::ConnectRefused);
        assert_eq!(down.reason(), "AgentConnectionRefused");
        assert!(down
            .to_string()
            .starts_with("agent https://10.0.0.2:7443 does not answer"));
    }
}
