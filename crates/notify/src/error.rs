//! Why a mail was not delivered, told apart the way `steward notify test` reports it.
//! Messages never hold a secret: credentials are only ever named by their reference.

use std::fmt;

/// One failed delivery attempt (or a configuration that cannot be used).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("DNS: cannot resolve {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("TCP: cannot connect to {address}: {detail}")]
    Tcp { address: String, detail: String },
    #[error("timed out {during}")]
    Timeout { during: &'static str },
    #[error(
        "TLS version: the server and steward share no TLS version at or above {min} ({detail})"
    )]
    TlsVersion { min: &'static str, detail: String },
    #[error("certificate: the server's certificate is not trusted for {host}: {detail}")]
    Certificate { host: String, detail: String },
    #[error("TLS: {detail}")]
    Tls { detail: String },
    #[error("STARTTLS: the server does not offer STARTTLS, and `tls: starttls` requires it")]
    StarttlsUnavailable,
    #[error("AUTH: {detail}")]
    Auth { detail: String },
    #[error("sender refused: the server refused {from}: {reply}")]
    SenderRefused { from: String, reply: String },
    #[error("recipient refused: the server refused {to}: {reply}")]
    RecipientRefused { to: String, reply: String },
    #[error("message refused: {reply}")]
    MessageRefused { reply: String },
    #[error("server busy or closing: {reply}")]
    ServerBusy { reply: String },
    #[error("connection closed by the server: {detail}")]
    Closed { detail: String },
    #[error("SMTP protocol: {detail}")]
    Protocol { detail: String },
    #[error("settings: {detail}")]
    Config { detail: String },
    #[error("template: {detail}")]
    Template { detail: String },
}

impl DeliveryError {
    /// A bounded label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Dns { .. } => "dns",
            Self::Tcp { .. } => "tcp",
            Self::Timeout { .. } => "timeout",
            Self::TlsVersion { .. } => "tls_version",
            Self::Certificate { .. } => "certificate",
            Self::Tls { .. } => "tls",
            Self::StarttlsUnavailable => "starttls_unavailable",
            Self::Auth { .. } => "auth",
            Self::SenderRefused { .. } => "sender_refused",
            Self::RecipientRefused { .. } => "recipient_refused",
            Self::MessageRefused { .. } => "message_refused",
            Self::ServerBusy { .. } => "server_busy",
            Self::Closed { .. } => "closed",
            Self::Protocol { .. } => "protocol",
            Self::Config { .. } => "config",
            Self::Template { .. } => "template",
        }
    }

    /// Whether trying again later may succeed on its own: the network, a busy or restarting
    /// server. Refusals, certificates, TLS versions, credentials and settings need a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Dns { .. }
                | Self::Tcp { .. }
                | Self::Timeout { .. }
                | Self::ServerBusy { .. }
                | Self::Closed { .. }
                | Self::Protocol { .. }
        )
    }

    /// Whether the connection it happened on is finished: an idle connection the server
    /// closed, or a `421` (the server is closing the channel). Worth one fresh connection
    /// at once, before any backoff (lettre's own pool does not do this: its issue #743).
    pub fn is_stale_connection(&self) -> bool {
        matches!(self, Self::Closed { .. })
            || matches!(self, Self::ServerBusy { reply } if reply.starts_with("421"))
    }
}

/// Classify a lettre error from a stage of the conversation.
pub(crate) fn classify(
    error: &lettre::transport::smtp::Error,
    stage: Stage<'_>,
    host: &str,
    min: &'static str,
) -> DeliveryError {
    if let Some(tls) = rustls_error(error) {
        return from_rustls(tls, host, min);
    }
    if let Some(code) = error.status() {
        let reply = reply_text(error, code);
        if code.to_string() == "421" || error.is_transient() {
            return DeliveryError::ServerBusy { reply };
        }
        return match stage {
            Stage::Auth => DeliveryError::Auth { detail: reply },
            Stage::Mail(from) => DeliveryError::SenderRefused {
                from: from.to_owned(),
                reply,
            },
            Stage::Rcpt(to) => DeliveryError::RecipientRefused {
                to: to.to_owned(),
                reply,
            },
            Stage::Data => DeliveryError::MessageRefused { reply },
            Stage::Connect | Stage::Starttls => DeliveryError::Protocol { detail: reply },
        };
    }
    if error.is_timeout() {
        return DeliveryError::Timeout {
            during: stage.describe(),
        };
    }
    let detail = chain(error);
    // A server that cannot speak any version steward offers may just hang up mid-handshake
    // instead of sending a protocol_version alert (OpenSSL capped at 1.2 meeting a 1.3-only
    // client does). With a 1.3 minimum that is the likely cause, and it is said so.
    if detail.contains("handshake") && matches!(stage, Stage::Connect | Stage::Starttls) {
        return if min == "1.3" {
            DeliveryError::TlsVersion {
                min,
                detail: format!("the server closed the connection during the TLS handshake ({detail}); it may not support TLS 1.3"),
            }
        } else {
            DeliveryError::Tls { detail }
        };
    }
    if let Some(io) = io_error(error) {
        use std::io::ErrorKind::*;
        if matches!(
            io.kind(),
            ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
        ) && matches!(stage, Stage::Connect)
        {
            return DeliveryError::Tcp {
                address: host.to_owned(),
                detail,
            };
        }
        if matches!(
            io.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        ) {
            return DeliveryError::Closed { detail };
        }
    }
    if error.is_tls() {
        return DeliveryError::Tls { detail };
    }
    if matches!(stage, Stage::Auth) {
        return DeliveryError::Auth { detail };
    }
    // lettre reports a connection that ended mid-reply as "incomplete response".
    if detail.contains("incomplete") || detail.contains("closed") {
        return DeliveryError::Closed { detail };
    }
    if matches!(stage, Stage::Connect) && io_error(error).is_some() {
        return DeliveryError::Tcp {
            address: host.to_owned(),
            detail,
        };
    }
    DeliveryError::Protocol { detail }
}

/// Where in the conversation an error happened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage<'a> {
    Connect,
    Starttls,
    Auth,
    Mail(&'a str),
    Rcpt(&'a str),
    Data,
}

impl Stage<'_> {
    fn describe(self) -> &'static str {
        match self {
            Self::Connect => "connecting",
            Self::Starttls => "during STARTTLS",
            Self::Auth => "during AUTH",
            Self::Mail(_) => "after MAIL FROM",
            Self::Rcpt(_) => "after RCPT TO",
            Self::Data => "sending the message",
        }
    }
}

pub(crate) fn from_rustls(e: &rustls::Error, host: &str, min: &'static str) -> DeliveryError {
    use rustls::{AlertDescription, Error as E};
    match e {
        E::AlertReceived(AlertDescription::ProtocolVersion)
        | E::PeerIncompatible(_)
        | E::AlertReceived(AlertDescription::HandshakeFailure) => DeliveryError::TlsVersion {
            min,
            detail: e.to_string(),
        },
        E::InvalidCertificate(_) | E::NoCertificatesPresented => DeliveryError::Certificate {
            host: host.to_owned(),
            detail: e.to_string(),
        },
        other => DeliveryError::Tls {
            detail: other.to_string(),
        },
    }
}

fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls);
            }
        }
        current = e.source();
    }
    None
}

fn io_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// The error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        current = e.source();
    }
    bounded(&out)
}

fn reply_text(error: &lettre::transport::smtp::Error, code: impl fmt::Display) -> String {
    // lettre's Display is "permanent error (550): text"; keep code and text.
    let text = error.to_string();
    let text = text.split_once("): ").map_or(text.as_str(), |(_, t)| t);
    bounded(&format!("{code} {text}"))
}

/// Server replies and error chains are foreign text: bounded, one line, no control bytes.
pub(crate) fn bounded(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}
