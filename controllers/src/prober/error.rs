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

/// Why an HTTPS exchange failed, as the HTTPS client says it.
pub use steward_https_client::HttpsError;

/// Why a probe failed. The text is shown in status; it never holds a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The HTTPS client's failure (an MLLP probe's connect is judged the same way), in
    /// the prober's words; its timeouts are [`Self::Timeout`], which names the check's.
    #[error("{}", HttpsFailure(.0))]
    Https(HttpsError),
    #[error("timed out after {after:?} during {phase}")]
    Timeout { phase: ProbePhase, after: Duration },
    #[error("status {status} (expected {accepted})")]
    Status { status: u16, accepted: String },
    #[error("body did not contain \"{0}\"")]
    BodyMismatch(String),
    /// An MLLP exchange that did not end in an accepting ACK (MSA-1 = AA).
    #[error("HL7: {message}")]
    Hl7 {
        label: &'static str,
        message: String,
    },
}

/// An HTTPS client failure as a probe reports it. Steward out of sockets is no verdict
/// on the service, and anything that broke the HTTP exchange (not HTTP, a broken
/// connection, a request that cannot be sent) is one failure, `http`; the rest are the
/// client's own words and labels.
struct HttpsFailure<'a>(&'a HttpsError);

impl fmt::Display for HttpsFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            HttpsError::LocalResources(why) => write!(
                f,
                "steward is out of local resources ({why}); the service was not probed"
            ),
            HttpsError::Malformed(why)
            | HttpsError::Broken(why)
            | HttpsError::InvalidRequest(why) => {
                write!(f, "HTTP: {why}")
            }
            other => other.fmt(f),
        }
    }
}

impl ProbeError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Https(
                HttpsError::Malformed(_) | HttpsError::Broken(_) | HttpsError::InvalidRequest(_),
            ) => "http",
            Self::Https(e) => e.metric_label(),
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "status",
            Self::BodyMismatch(_) => "body_mismatch",
            Self::Hl7 { label, .. } => label,
        }
    }

    /// The HTTPS client's failure of a check whose timeout is `after`.
    pub(crate) fn https(error: HttpsError, after: Duration) -> Self {
        match error {
            HttpsError::Timeout(phase) => Self::Timeout {
                phase: phase.into(),
                after,
            },
            other => Self::Https(other),
        }
    }

    pub(crate) fn connect(error: &std::io::Error) -> Self {
        Self::Https(HttpsError::connect(error))
    }

    /// The probe says nothing about the service: steward itself could not open a socket
    /// (out of file descriptors, memory or local ports).
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Https(HttpsError::LocalResources(_)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Status reasons and the `failure` label of docs/metrics.md, as operators see them.
    fn shown(e: &ProbeError) -> (&'static str, String) {
        (e.metric_label(), e.to_string())
    }

    #[test]
    fn every_failure_keeps_its_words_and_label() {
        let after = Duration::from_secs(5);
        let cases = [
            (
                ProbeError::connect(&io::Error::from_raw_os_error(24)),
                "local_resources",
                "steward is out of local resources (Too many open files (os error 24)); \
                 the service was not probed",
            ),
            (
                ProbeError::connect(&io::Error::from_raw_os_error(111)),
                "connection_refused",
                "connection refused",
            ),
            (
                ProbeError::connect(&io::Error::from_raw_os_error(113)),
                "connect",
                "cannot connect: No route to host (os error 113)",
            ),
            (
                ProbeError::https(HttpsError::Resolve("app1.example.eng".into()), after),
                "resolve",
                "cannot resolve app1.example.eng",
            ),
            (
                ProbeError::https(HttpsError::Timeout(Phase::TlsHandshake), after),
                "timeout",
                "timed out after 5s during the TLS handshake",
            ),
            (
                ProbeError::https(HttpsError::Tls(TlsFailure::Expired), after),
                "tls_expired",
                "TLS: certificate expired",
            ),
            (
                ProbeError::https(HttpsError::Malformed("bad status line".into()), after),
                "http",
                "HTTP: bad status line",
            ),
            (
                ProbeError::https(HttpsError::Broken("reset".into()), after),
                "http",
                "HTTP: reset",
            ),
            (
                ProbeError::https(HttpsError::InvalidRequest("bad host".into()), after),
                "http",
                "HTTP: bad host",
            ),
            (
                ProbeError::https(HttpsError::BodyTooLarge(65536), after),
                "body_too_large",
                "body larger than 65536 bytes",
            ),
            (
                ProbeError::hl7(
                    &steward_hl7::Hl7Error::Timeout {
                        phase: steward_hl7::ProbePhase::Connect,
                    },
                    after,
                ),
                "timeout",
                "timed out after 5s during connecting",
            ),
            (
                ProbeError::hl7(
                    &steward_hl7::Hl7Error::Timeout {
                        phase: steward_hl7::ProbePhase::Receive,
                    },
                    after,
                ),
                "timeout",
                "timed out after 5s during the HL7 exchange",
            ),
        ];
        for (error, label, text) in cases {
            assert_eq!(shown(&error), (label, text.to_owned()));
        }
    }
}
