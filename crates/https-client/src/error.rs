//! Why an HTTPS exchange failed, by the phase it failed in: the name, the TCP connection,
//! the TLS handshake (with the class of TLS failure), the response head, or the body.
//! Callers turn these into their own words (the prober's `ProbeError`, the agent client's
//! `ClientError`); `metric_label()` is a bounded name of each cause.

use std::fmt;

/// The step an exchange was in when it failed or ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    TlsHandshake,
    /// Request sent, waiting for the status line and headers.
    Response,
    Body,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resolve => "resolving the name",
            Self::Connect => "connecting",
            Self::TlsHandshake => "the TLS handshake",
            Self::Response => "waiting for the response",
            Self::Body => "reading the body",
        })
    }
}

/// Which part of TLS failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// Not issued by a CA the client trusts.
    UnknownIssuer,
    /// The certificate does not carry the name the client asked for (SNI).
    NameMismatch {
        name: String,
    },
    Expired,
    NotYetValid,
    /// Any other reason the certificate was rejected.
    BadCertificate(String),
    /// The peer refused the handshake with an alert.
    Alert(String),
    /// The peer does not speak TLS (plain HTTP, garbage).
    Protocol(String),
    /// The peer hung up during the handshake.
    Closed,
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str("certificate issued by an untrusted CA"),
            Self::NameMismatch { name } => write!(f, "certificate not valid for {name}"),
            Self::Expired => f.write_str("certificate expired"),
            Self::NotYetValid => f.write_str("certificate not yet valid"),
            Self::BadCertificate(why) => write!(f, "certificate rejected: {why}"),
            Self::Alert(alert) => write!(f, "handshake refused by the peer ({alert})"),
            Self::Protocol(why) => write!(f, "the peer does not speak TLS ({why})"),
            Self::Closed => f.write_str("the peer closed the connection during the handshake"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

impl TlsFailure {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownIssuer => "tls_unknown_issuer",
            Self::NameMismatch { .. } => "tls_name_mismatch",
            Self::Expired => "tls_expired",
            Self::NotYetValid => "tls_not_yet_valid",
            Self::BadCertificate(_) => "tls_bad_certificate",
            Self::Alert(_) => "tls_alert",
            Self::Protocol(_) => "tls_protocol",
            Self::Closed => "tls_closed",
            Self::Other(_) => "tls_other",
        }
    }

    /// What tokio-rustls reports for a failed handshake to `name`.
    pub(crate) fn from_io(error: &std::io::Error, name: &str) -> Self {
        use rustls::Error as E;
        use std::io::ErrorKind as K;
        let Some(inner) = error.get_ref() else {
            return match error.kind() {
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                    Self::Closed
                }
                _ => Self::Other(error.to_string()),
            };
        };
        match inner.downcast_ref::<E>() {
            Some(tls) => Self::from_rustls(tls, name),
            None => Self::Other(inner.to_string()),
        }
    }

    fn from_rustls(tls: &rustls::Error, name: &str) -> Self {
        use rustls::{CertificateError as C, Error as E};
        match tls {
            E::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => Self::UnknownIssuer,
                C::NotValidForName | C::NotValidForNameContext { .. } => Self::NameMismatch {
                    name: name.to_owned(),
                },
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
                other => Self::BadCertificate(format!("{other:?}")),
            },
            E::AlertReceived(alert) => Self::Alert(format!("{alert:?}")),
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerSentOversizedRecord => Self::Protocol(tls.to_string()),
            other => Self::Other(other.to_string()),
        }
    }

    /// A TLS error under an exchange's error: with TLS 1.3 the server judges the client's
    /// certificate after the client's handshake is done, so its refusal (an alert) arrives
    /// with the response. An `io::Error` does not expose its payload as `source()`, so it
    /// is unwrapped explicitly.
    fn within(error: &(dyn std::error::Error + 'static), name: &str) -> Option<Self> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Some(Self::from_rustls(tls, name));
            }
            if let Some(inner) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                current = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
            current = e.source();
        }
        None
    }
}

/// Why an exchange failed. The text never holds a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpsError {
    /// This process could not open a socket (out of file descriptors, memory or local
    /// ports): says nothing about the peer.
    #[error("out of local resources ({0})")]
    LocalResources(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connection refused")]
    ConnectionRefused,
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request's deadline passed during `0`.
    #[error("timed out during {0}")]
    Timeout(Phase),
    #[error("TLS: {0}")]
    Tls(TlsFailure),
    /// The peer's answer is not HTTP (a parse error of the status line or headers).
    #[error("not a valid HTTP response: {0}")]
    Malformed(String),
    /// The connection broke during the exchange.
    #[error("connection failed: {0}")]
    Broken(String),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The request itself cannot be sent (no `https://host` URI, a header hyper refuses).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl HttpsError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::LocalResources(_) => "local_resources",
            Self::Resolve(_) => "resolve",
            Self::ConnectionRefused => "connection_refused",
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Tls(tls) => tls.metric_label(),
            Self::Malformed(_) => "malformed",
            Self::Broken(_) => "broken",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }

    /// A failed TCP connect or socket(): local exhaustion, refused, or anything else.
    pub fn connect(error: &std::io::Error) -> Self {
        if local_exhaustion(error) {
            return Self::LocalResources(error.to_string());
        }
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            _ => Self::Connect(error.to_string()),
        }
    }

    /// hyper's error on the request or response to `name`, with its cause ("connection
    /// closed before message completed", "invalid HTTP version parsed"), or the TLS
    /// failure under it.
    pub(crate) fn exchange(error: &hyper::Error, name: &str) -> Self {
        if let Some(tls) = TlsFailure::within(error, name) {
            return Self::Tls(tls);
        }
        let text = match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        };
        if error.is_parse() || error.is_parse_status() {
            Self::Malformed(text)
        } else {
            Self::Broken(text)
        }
    }

    /// A body that broke off: the TLS failure under it, or the text.
    pub(crate) fn body(error: &(dyn std::error::Error + 'static), name: &str) -> Self {
        TlsFailure::within(error, name)
            .map(Self::Tls)
            .unwrap_or_else(|| Self::Broken(error.to_string()))
    }
}

/// This process could not get what a socket needs: descriptors (EMFILE, ENFILE), memory
/// (ENOBUFS, ENOMEM) or a local port (EADDRNOTAVAIL).
pub fn local_exhaustion(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM | Errno::ADDRNOTAVAIL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_refused_by_a_local_limit_is_local_resources() {
        for errno in [24, 23, 105, 12, 99] {
            let e = HttpsError::connect(&std::io::Error::from_raw_os_error(errno));
            assert_eq!(e.metric_label(), "local_resources", "errno {errno}");
        }
        let refused = HttpsError::connect(&std::io::Error::from_raw_os_error(111));
        assert_eq!(refused, HttpsError::ConnectionRefused);
        let unreachable = HttpsError::connect(&std::io::Error::from_raw_os_error(113));
        assert_eq!(unreachable.metric_label(), "connect");
    }

    #[test]
    fn a_refusal_after_the_handshake_is_found_under_the_io_errors() {
        use std::io::{Error, ErrorKind};
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        // tokio-rustls wraps the rustls error in an io::Error, hyper's I/O in another.
        let wrapped = Error::other(Error::new(ErrorKind::InvalidData, alert));
        let found = TlsFailure::within(&wrapped, "app1.example.eng");
        assert_eq!(found, Some(TlsFailure::Alert("CertificateRequired".into())));
        let plain = Error::other("connection reset");
        assert_eq!(TlsFailure::within(&plain, "app1.example.eng"), None);
        let body = HttpsError::body(&wrapped, "app1.example.eng");
        assert_eq!(body.metric_label(), "tls_alert");
    }
}
