//! The raw resource documents exactly as written in `desired-state/`.
//!
//! These types mirror the file format one to one (camelCase, unknown fields rejected,
//! every user-written scalar [`Located`]). They are compiled by [`crate::validate`] into
//! the typed [`crate::Snapshot`] that controllers use; nothing outside this crate should
//! need them except the schema generator.

mod active_directory;
mod health_check;
mod installation;
mod notifications;
mod server;
mod upgrade_policy;

pub use active_directory::{ActiveDirectorySpec, MembersPolicy, RoleGroups};
pub use health_check::HealthCheckSpec;
pub use installation::{
    Affinity, CaMode, CertificateAuthoritySpec, DatabaseSpec, Environment, Failback, HaproxySpec,
    Hl7Failover, Hl7Spec, InstallationSpec, LbVendor, LoadBalancerSpec, Mode, ServiceLoginSpec,
};
pub use notifications::{NotificationEvent, NotificationsSpec, SmtpSpec, SmtpTls};
pub use server::{ServerCertificateSpec, ServerServiceSpec, ServerSpec};
pub use upgrade_policy::{UpgradePolicySpec, UpgradeWindowSpec, WindowKind};

use serde::Deserialize;

use crate::Located;

/// The only `apiVersion` this release understands.
pub const API_VERSION: &str = "steward/v1";

/// The resource kinds a document may declare.
pub const KINDS: [&str; 6] = [
    "Installation",
    "Server",
    "ActiveDirectory",
    "HealthCheck",
    "Notifications",
    "UpgradePolicy",
];

/// `metadata` of every document.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Unique per kind: lowercase letters, digits and `-`, at most 63 characters.
    pub name: Located<String>,
}

/// One document of a known kind.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S> {
    /// Always `steward/v1`.
    pub api_version: Located<String>,
    /// The resource kind.
    pub kind: Located<String>,
    pub metadata: Metadata,
    pub spec: S,
}

/// The first look at a document: just enough to pick its kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    pub api_version: Option<Located<String>>,
    pub kind: Option<Located<String>>,
}

/// A parsed document of any kind.
#[derive(Debug, Clone)]
pub enum Resource {
    Installation(Document<InstallationSpec>),
    Server(Document<ServerSpec>),
    ActiveDirectory(Document<ActiveDirectorySpec>),
    HealthCheck(Document<HealthCheckSpec>),
    Notifications(Document<NotificationsSpec>),
    UpgradePolicy(Document<UpgradePolicySpec>),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Installation(_) => "Installation",
            Self::Server(_) => "Server",
            Self::ActiveDirectory(_) => "ActiveDirectory",
            Self::HealthCheck(_) => "HealthCheck",
            Self::Notifications(_) => "Notifications",
            Self::UpgradePolicy(_) => "UpgradePolicy",
        }
    }

    pub fn name(&self) -> &Located<String> {
        match self {
            Self::Installation(d) => &d.metadata.name,
            Self::Server(d) => &d.metadata.name,
            Self::ActiveDirectory(d) => &d.metadata.name,
            Self::HealthCheck(d) => &d.metadata.name,
            Self::Notifications(d) => &d.metadata.name,
            Self::UpgradePolicy(d) => &d.metadata.name,
        }
    }

    pub fn api_version(&self) -> &Located<String> {
        match self {
            Self::Installation(d) => &d.api_version,
            Self::Server(d) => &d.api_version,
            Self::ActiveDirectory(d) => &d.api_version,
            Self::HealthCheck(d) => &d.api_version,
            Self::Notifications(d) => &d.api_version,
            Self::UpgradePolicy(d) => &d.api_version,
        }
    }
}
