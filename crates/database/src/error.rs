//! Why talking to the database failed, in the few classes an operator acts on.
//!
//! Messages carry the address, the login name and what the server or the network said;
//! never a password. [`Error::label`] is the bounded metric/condition label.

use std::fmt;
use std::io;
use std::time::Duration;

/// Where in a conversation a deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect or the SQL Browser lookup.
    Connect,
    /// Prelogin, TLS and login.
    Login,
    /// A statement or query.
    Command,
    /// Waiting for a free pooled connection.
    PoolWait,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Login => "login",
            Self::Command => "command",
            Self::PoolWait => "waiting for a pooled connection",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The server refused the login. The password is not part of this error.
    #[error("login failed for user `{user}` on {address} (server error {code})")]
    LoginFailed {
        address: String,
        user: String,
        code: u32,
    },
    #[error("the TLS certificate of {address} is not trusted: {reason}")]
    TlsUntrusted { address: String, reason: String },
    #[error("{address} did not answer within {after:?} ({stage})")]
    Timeout {
        address: String,
        stage: Stage,
        after: Duration,
    },
    #[error("{address} does not speak TDS as expected: {reason}")]
    Protocol { address: String, reason: String },
    /// The server answered a statement with an error.
    #[error("{address} refused a statement: server error {code}: {message}")]
    Rejected {
        address: String,
        code: u32,
        message: String,
    },
    #[error("trust file {path}: {reason}")]
    TrustFile { path: String, reason: String },
}

impl Error {
    /// A bounded label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::LoginFailed { .. } => "login_failed",
            Self::TlsUntrusted { .. } => "tls_untrusted",
            Self::Timeout { .. } => "timeout",
            Self::Protocol { .. } => "protocol",
            Self::Rejected { .. } => "rejected",
            Self::TrustFile { .. } => "trust_file",
        }
    }

    /// Classifies a tiberius error raised at `stage`. `user` names the login for
    /// `LoginFailed`; tiberius' own text never contains the password (it is sent, not
    /// echoed), and server messages are about the statement, which never holds one
    /// unescaped (see `provision`).
    pub(crate) fn from_tds(
        address: &str,
        user: &str,
        stage: Stage,
        e: tiberius::error::Error,
    ) -> Self {
        use tiberius::error::Error as Tds;
        let address = address.to_owned();
        match e {
            // tiberius reports some TLS failures as I/O errors of whatever kind the
            // transport ended with (a corrupt record shows up as BrokenPipe): the text
            // says what happened.
            Tds::Io { message, .. } if message.contains("invalid peer certificate") => {
                Self::TlsUntrusted {
                    address,
                    reason: message,
                }
            }
            Tds::Io { message, .. }
                if message.contains("corrupt message") || message.contains("alert") =>
            {
                Self::Protocol {
                    address,
                    reason: format!("TLS during {stage}: {message}"),
                }
            }
            Tds::Io { kind, message } => match kind {
                io::ErrorKind::TimedOut => Self::Timeout {
                    address,
                    stage,
                    after: Duration::ZERO,
                },
                // Before a byte was exchanged, every failure (name resolution
                // included) means the server cannot be reached.
                _ if stage == Stage::Connect => Self::Unreachable {
                    address,
                    reason: message,
                },
                kind if is_connection_loss(kind) => Self::Unreachable {
                    address,
                    reason: format!("connection lost during {stage}: {message}"),
                },
                _ => Self::Protocol {
                    address,
                    reason: format!("{stage}: {message}"),
                },
            },
            Tds::Server(token) if stage == Stage::Login => Self::LoginFailed {
                address,
                user: user.to_owned(),
                code: token.code(),
            },
            Tds::Server(token) => Self::Rejected {
                address,
                code: token.code(),
                message: token.message().to_owned(),
            },
            Tds::Tls(reason) if reason.contains("certificate") => {
                Self::TlsUntrusted { address, reason }
            }
            Tds::Tls(reason) => Self::Protocol {
                address,
                reason: format!("TLS: {reason}"),
            },
            Tds::Routing { host, port } => Self::Protocol {
                address,
                reason: format!(
                    "the server redirects to {host}:{port}, which steward does not follow"
                ),
            },
            other => Self::Protocol {
                address,
                reason: format!("{stage}: {other}"),
            },
        }
    }

    /// Gives a deadline error the duration that expired (tiberius' own timeouts do not say).
    pub(crate) fn with_deadline(self, after: Duration) -> Self {
        match self {
            Self::Timeout { address, stage, .. } => Self::Timeout {
                address,
                stage,
                after,
            },
            other => other,
        }
    }
}

fn is_connection_loss(kind: io::ErrorKind) -> bool {
    use io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_a_fixed_set() {
        let a = "db:1433".to_owned();
        let errors = [
            Error::Unreachable {
                address: a.clone(),
                reason: "refused".into(),
            },
            Error::LoginFailed {
                address: a.clone(),
                user: "u".into(),
                code: 18456,
            },
            Error::Timeout {
                address: a.clone(),
                stage: Stage::Login,
                after: Duration::from_secs(1),
            },
        ];
        let labels: Vec<_> = errors.iter().map(Error::label).collect();
        assert_eq!(labels, ["unreachable", "login_failed", "timeout"]);
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        let io = |kind| tiberius::error::Error::Io {
            kind,
            message: "m".into(),
        };
        let class = |kind, stage| Error::from_tds("a", "u", stage, io(kind)).label();
        assert_eq!(class(io::ErrorKind::TimedOut, Stage::Login), "timeout");
        assert_eq!(
            class(io::ErrorKind::UnexpectedEof, Stage::Login),
            "unreachable"
        );
        assert_eq!(class(io::ErrorKind::InvalidData, Stage::Login), "protocol");
        // A name that does not resolve fails with an uncategorized error at connect.
        assert_eq!(class(io::ErrorKind::Other, Stage::Connect), "unreachable");
    }

    #[test]
    fn tls_failures_reported_as_io_are_classified_by_their_text() {
        let io = |message: &str| tiberius::error::Error::Io {
            kind: io::ErrorKind::BrokenPipe,
            message: message.into(),
        };
        let class = |m| Error::from_tds("a", "u", Stage::Login, io(m)).label();
        assert_eq!(
            class("received corrupt message of type InvalidContentType"),
            "protocol"
        );
        assert_eq!(
            class("invalid peer certificate: UnknownIssuer"),
            "tls_untrusted"
        );
        assert_eq!(class("Broken pipe (os error 32)"), "unreachable");
    }
}
