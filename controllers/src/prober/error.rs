//! Why a probe failed, in the words a blackbox_exporter user expects: the text names the
//! cause ("timed out after 5s during the TLS handshake", "TLS: certificate expired",
//! "connection refused", "status 503 (expected 200-399)", `body did not contain
//! "IdentityServer4"`), and `metric_label()` is a bounded name of the same cause.

use std::fmt;
use std::time::Duration;

/// The step a probe was in when it failed or ran out of time: one of the HTTPS client's
/// steps (an MLLP probe's connect is the same step), or the HL7 round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbePhase {
    Https(Phase),
    /// The HL7 message and its ACK.
    Hl7Exchange,
}

impl From<Phase> for ProbePhase {
    fn from(phase: Phase) -> Self {
        Self::Https(phase)
    }
}

impl fmt::Display for ProbePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Https(phase) => phase.fmt(f),
            Self::Hl7Exchange => f.write_str("the HL7 exchange"),
        }
    }
}

/// The steps of an HTTPS exchange, named by the HTTPS client.
pub use steward_https_client::Phase;

/// Which part of TLS failed: the HTTPS client's classes.
pub use steward_https_client::TlsFailure;

/// Why a probe failed. The text is shown in status; it never holds a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Steward itself could not open a socket (out of file descriptors, memory or local
    /// ports): says nothing about the service, so it is no verdict on it.
    #[error("steward is out of local resources ({0}); the service was not probed")]
    LocalResources(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connection refused")]
    ConnectionRefused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {after:?} during {phase}")]
    Timeout { phase: ProbePhase, after: Duration },
    #[error("TLS: {0}")]
    Tls(TlsFailure),
    /// Not HTTP, or the connection broke during the exchange.
    #[error("HTTP: {0}")]
    Http(String),
    #[error("status {status} (expected {accepted})")]
    Status { status: u16, accepted: String },
    #[error("body did not contain \"{0}\"")]
    BodyMismatch(String),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// An MLLP exchange that did not end in an accepting ACK (MSA-1 = AA).
    #[error("HL7: {message}")]
    Hl7 {
        label: &'static str,
        message: String,
    },
}

impl ProbeError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::LocalResources(_) => "local_resources",
            Self::Resolve(_) => "resolve",
            Self::ConnectionRefused => "connection_refused",
            Self::Connect(_) => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Tls(tls) => tls.metric_label(),
            Self::Http(_) => "http",
            Self::Status { .. } => "status",
            Self::BodyMismatch(_) => "body_mismatch",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::Hl7 { label, .. } => label,
        }
    }

    pub(crate) fn connect(error: &std::io::Error) -> Self {
        if steward_https_client::local_exhaustion(error) {
            return Self::LocalResources(error.to_string());
        }
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            _ => Self::Connect(error.to_string()),
        }
    }

    /// The probe says nothing about the service (see [`Self::LocalResources`]).
    pub fn is_local(&self) -> bool {
        matches!(self, Self::LocalResources(_))
    }

    /// The probe's own verdict on an MLLP failure.
    pub(crate) fn hl7(error: &steward_hl7::Hl7Error, after: Duration) -> Self {
        use steward_hl7::Hl7Error as H;
        match error {
            H::Connect(io) => Self::connect(io),
            H::Timeout { phase } => Self::Timeout {
                phase: match phase {
                    steward_hl7::ProbePhase::Connect => Phase::Connect.into(),
                    _ => ProbePhase::Hl7Exchange,
                },
                after,
            },
            other => Self::Hl7 {
                label: match other {
                    H::NotAccepted { .. } => "hl7_not_accepted",
                    H::NotAnAck(_) => "hl7_not_an_ack",
                    H::ControlIdMismatch { .. } => "hl7_control_id_mismatch",
                    H::Framing(_) => "hl7_framing",
                    H::Closed => "hl7_closed",
                    _ => "hl7_io",
                },
                message: other.to_string(),
            },
        }
    }
}
