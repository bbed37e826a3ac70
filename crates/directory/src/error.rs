//! The one error type of the crate. Every variant names the directory (its URL, never the
//! password) and says precisely what failed; `label()` is the bounded metric label.

use std::time::Duration;

/// What went wrong talking to a directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The configuration cannot be used (bad URL, unreadable trust file, invalid group name).
    /// Found before anything is sent.
    #[error("directory configuration: {0}")]
    Config(String),
    /// The server's certificate does not chain to the system roots or the trust files.
    #[error("{url}: TLS certificate not trusted: {reason}")]
    TlsUntrusted { url: String, reason: String },
    /// The certificate chains to a trusted root but is not valid for the host in the URL.
    #[error("{url}: TLS certificate is not valid for host `{host}`: {reason}")]
    TlsHostMismatch {
        url: String,
        host: String,
        reason: String,
    },
    /// The bind was refused (or refused by us before sending, e.g. an empty password, which
    /// LDAP would treat as an anonymous bind). Never carries the password.
    #[error("{url}: bind as `{bind_dn}` failed: {reason}")]
    BindFailed {
        url: String,
        bind_dn: String,
        reason: String,
    },
    /// No connection: name resolution, refused, reset, or closed by the server.
    #[error("{url}: unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server accepted the connection but did not answer in time.
    #[error("{url}: no answer within {timeout:?} while {during}")]
    Timeout {
        url: String,
        during: &'static str,
        timeout: Duration,
    },
    /// The server answered something we cannot use: malformed messages, a referral, a
    /// refused StartTLS, or more entries than the configured bound.
    #[error("{url}: protocol error while {during}: {reason}")]
    Protocol {
        url: String,
        during: &'static str,
        reason: String,
    },
    /// The server refused an operation with an LDAP result code (e.g. 50 insufficient
    /// access, 32 no such object for a missing container).
    #[error("{url}: {during} refused: {reason} (LDAP result {code})")]
    Rejected {
        url: String,
        during: &'static str,
        code: u32,
        reason: String,
    },
}

impl DirectoryError {
    /// A bounded label for metrics and conditions (never the error text).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Config(_) => "Config",
            Self::TlsUntrusted { .. } => "TlsUntrusted",
            Self::TlsHostMismatch { .. } => "TlsHostMismatch",
            Self::BindFailed { .. } => "BindFailed",
            Self::Unreachable { .. } => "Unreachable",
            Self::Timeout { .. } => "Timeout",
            Self::Protocol { .. } => "Protocol",
            Self::Rejected { .. } => "Rejected",
        }
    }

    /// Whether retrying later (with backoff) can help without a configuration change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Protocol { .. }
        )
    }
}

/// The name of an LDAP result code (RFC 4511 appendix A, plus the AD-specific ones we meet).
pub(crate) fn result_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        80 => "other",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_documented_condition_names() {
        let url = || "ldaps://dc1:636".to_string();
        let all = [
            DirectoryError::Config("x".into()),
            DirectoryError::TlsUntrusted {
                url: url(),
                reason: "r".into(),
            },
            DirectoryError::TlsHostMismatch {
                url: url(),
                host: "h".into(),
                reason: "r".into(),
            },
            DirectoryError::BindFailed {
                url: url(),
                bind_dn: "d".into(),
                reason: "r".into(),
            },
            DirectoryError::Unreachable {
                url: url(),
                reason: "r".into(),
            },
            DirectoryError::Timeout {
                url: url(),
                during: "x",
                timeout: Duration::from_secs(1),
            },
            DirectoryError::Protocol {
                url: url(),
                during: "x",
                reason: "r".into(),
            },
            DirectoryError::Rejected {
                url: url(),
                during: "x",
                code: 50,
                reason: "r".into(),
            },
        ];
        let labels: Vec<_> = all.iter().map(DirectoryError::label).collect();
        assert_eq!(
            labels,
            [
                "Config",
                "TlsUntrusted",
                "TlsHostMismatch",
                "BindFailed",
                "Unreachable",
                "Timeout",
                "Protocol",
                "Rejected"
            ]
        );
    }
}
