use serde::{Deserialize, Serialize};

use crate::{Located, SecretRef};

/// `kind: Notifications`: who is mailed about which events, through which SMTP server.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationsSpec {
    pub smtp: SmtpSpec,
    /// The sender address, e.g. `steward@example.eng`.
    pub from: Located<String>,
    /// Recipient addresses; at least one.
    pub to: Vec<Located<String>>,
    /// The events mailed; at least one.
    pub events: Vec<Located<NotificationEvent>>,
    /// At most one mail per event kind and object within this window, e.g. "5m". Default 5m.
    #[serde(default)]
    pub rate_limit: Option<Located<String>>,
    /// Subject template (minijinja); default `[PatientSecure] {{ event }}: {{ object }}`.
    #[serde(default)]
    pub subject: Option<Located<String>>,
    /// Body template (minijinja); default a short text naming the event, object, reason,
    /// message and time.
    #[serde(default)]
    pub body: Option<Located<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpSpec {
    /// Host name or IP address of the SMTP server.
    pub server: Located<String>,
    /// Default 587 for `starttls`, 465 for `implicit`, 25 for `none`.
    #[serde(default)]
    pub port: Option<Located<u16>>,
    /// `starttls` (default: the server must offer it), `implicit` (SMTPS) or `none`.
    #[serde(default)]
    pub tls: Option<Located<SmtpTls>>,
    /// The oldest TLS version accepted: "1.2" (default) or "1.3".
    #[serde(default)]
    pub min_tls_version: Option<Located<String>>,
    /// `env:NAME` or `file:PATH`; with `passwordRef`.
    #[serde(default)]
    pub username_ref: Option<Located<SecretRef>>,
    /// `env:NAME` or `file:PATH`; with `usernameRef`.
    #[serde(default)]
    pub password_ref: Option<Located<SecretRef>>,
    /// PEM files of CAs trusted for the server's certificate, besides the system's.
    #[serde(default)]
    pub trust: Vec<Located<String>>,
}

/// How the SMTP connection is protected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; a server that does not offer it is refused.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No encryption (a relay on the same host); credentials are refused with it.
    None,
}

/// The events a Notifications object can mail: a closed list.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum NotificationEvent {
    ServiceDown,
    ServiceRecovered,
    AgentDown,
    CertificateExpiring,
    CertificateFailed,
    DesiredStateInvalid,
    DatabaseDown,
    ActiveDirectoryGroupMissing,
    #[serde(rename = "HL7Failover")]
    Hl7Failover,
    UpgradeHalted,
    UpgradeComplete,
    /// Servers run different releases outside an upgrade (the installation's condition).
    MixedReleases,
    DriftCorrected,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 13] = [
        Self::ServiceDown,
        Self::ServiceRecovered,
        Self::AgentDown,
        Self::CertificateExpiring,
        Self::CertificateFailed,
        Self::DesiredStateInvalid,
        Self::DatabaseDown,
        Self::ActiveDirectoryGroupMissing,
        Self::Hl7Failover,
        Self::UpgradeHalted,
        Self::UpgradeComplete,
        Self::MixedReleases,
        Self::DriftCorrected,
    ];

    /// The name as written in the files (and as `{{ event }}` in templates).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ServiceDown => "ServiceDown",
            Self::ServiceRecovered => "ServiceRecovered",
            Self::AgentDown => "AgentDown",
            Self::CertificateExpiring => "CertificateExpiring",
            Self::CertificateFailed => "CertificateFailed",
            Self::DesiredStateInvalid => "DesiredStateInvalid",
            Self::DatabaseDown => "DatabaseDown",
            Self::ActiveDirectoryGroupMissing => "ActiveDirectoryGroupMissing",
            Self::Hl7Failover => "HL7Failover",
            Self::UpgradeHalted => "UpgradeHalted",
            Self::UpgradeComplete => "UpgradeComplete",
            Self::MixedReleases => "MixedReleases",
            Self::DriftCorrected => "DriftCorrected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
