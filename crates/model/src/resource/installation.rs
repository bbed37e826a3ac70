use serde::{Deserialize, Serialize};

use crate::{InstallType, Located, SecretRef};

/// `kind: Installation`: the deployment as a whole. Exactly one per directory.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallationSpec {
    /// `production` forbids generated certificates.
    pub environment: Located<Environment>,
    /// `basic`, `complete` or `advanced`; basic and complete fix the service set.
    pub install_type: Located<InstallType>,
    /// The service build to install or upgrade to, e.g. "6.12.1".
    pub release: Located<String>,
    /// `autoCorrect` repairs drift; `monitor` only reports it. Default autoCorrect.
    #[serde(default)]
    pub mode: Option<Located<Mode>>,
    /// When true, services and servers removed from the files are uninstalled. Default false.
    #[serde(default)]
    pub prune: Option<Located<bool>>,
    /// When set, service URLs point at the load balancer and a kind may run on several servers.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSpec>,
    pub database: DatabaseSpec,
    pub certificate_authority: CertificateAuthoritySpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Environment {
    Production,
    NonProduction,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Repair drift.
    #[default]
    AutoCorrect,
    /// Report drift only.
    Monitor,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// The load balancer's fully qualified name, as clients reach it.
    pub fqdn: Located<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// SQL Server host name or IP, optionally `\INSTANCE`; at most 50 characters.
    pub server: Located<String>,
    /// Default 1433.
    #[serde(default)]
    pub port: Option<Located<u16>>,
    /// Database name.
    pub name: Located<String>,
    /// The installer's SQL login.
    pub user: Located<String>,
    /// `env:NAME` or `file:PATH`; never the password itself.
    pub password_ref: Located<SecretRef>,
    /// When true, steward creates the database and service login. Default false.
    #[serde(default)]
    pub create: Option<Located<bool>>,
    /// TLS to SQL Server. Default true.
    #[serde(default)]
    pub encrypt: Option<Located<bool>>,
    /// More CAs (PEM files) trusted for the SQL Server's certificate, besides the system
    /// roots.
    #[serde(default)]
    pub trust: Vec<Located<String>>,
    /// The login PatientSecure's services use. Default name
    /// `ImprivataPatientSecureServices_<name>`.
    #[serde(default)]
    pub service_login: Option<Box<ServiceLoginSpec>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceLoginSpec {
    /// Default `ImprivataPatientSecureServices_<database name>` (the vendor's convention).
    #[serde(default)]
    pub name: Option<Located<String>>,
    /// `env:NAME` or `file:PATH`: the password the login is created with (`create: true`
    /// needs it); verification never reads it.
    #[serde(default)]
    pub password_ref: Option<Located<SecretRef>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateAuthoritySpec {
    /// `generated`: steward runs its own CA (test environments); `existing`: it issues nothing.
    pub mode: Located<CaMode>,
    /// Existing mode: the CA (PEM) that issued the servers' certificates.
    #[serde(default)]
    pub cert_file: Option<Located<String>>,
    /// More CAs (PEM files) steward trusts when it probes servers.
    #[serde(default)]
    pub trust: Vec<Located<String>>,
    /// Generated mode: the lifetime of the server certificates steward issues, e.g. "90d"
    /// (cert-manager's `duration`). Default 90d; at least 1m.
    #[serde(default)]
    pub duration: Option<Located<String>>,
    /// How long before expiry a generated certificate is renewed, e.g. "30d"
    /// (cert-manager's `renewBefore`); must be shorter than `duration`. Default a third of
    /// `duration`, i.e. renewal at two thirds of the lifetime. For existing certificates it
    /// is when the certificate is reported as due for replacement.
    #[serde(default)]
    pub renew_before: Option<Located<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CaMode {
    Generated,
    Existing,
}
