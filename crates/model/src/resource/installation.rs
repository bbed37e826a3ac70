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
    pub load_balancer: Option<Box<LoadBalancerSpec>>,
    /// Which server's HL7 listener is active, and how it fails over (needs a load balancer
    /// to move HL7 traffic).
    #[serde(default)]
    pub hl7: Option<Box<Hl7Spec>>,
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
    /// `haproxy` (reconciled live) or `arr`, `citrix-adc`, `f5` (configuration rendered
    /// for an operator to apply). Absent: steward only points service URLs at `fqdn`.
    #[serde(default)]
    pub vendor: Option<Located<LbVendor>>,
    /// `client` (the vendor guide's Client Affinity, by source address) or `none`.
    /// Default client.
    #[serde(default)]
    pub affinity: Option<Located<Affinity>>,
    /// TCP idle timeout, e.g. "1860s"; at least 1860s (a console session lasts 30 minutes).
    /// Default 1860s.
    #[serde(default)]
    pub idle_timeout: Option<Located<String>>,
    /// The virtual servers' IP address (what `fqdn` resolves to); vendors citrix-adc and
    /// f5 need it in their configuration.
    #[serde(default)]
    pub address: Option<Located<String>>,
    /// The name HL7 senders connect to. Default `fqdn`.
    #[serde(default)]
    pub hl7_fqdn: Option<Located<String>>,
    /// Vendor haproxy only: where its configuration and admin socket live.
    #[serde(default)]
    pub haproxy: Option<Located<HaproxySpec>>,
    /// Vendors arr, citrix-adc and f5: the directory the rendered configuration is
    /// written to, relative to the state directory unless absolute. Default `lb`.
    #[serde(default)]
    pub render: Option<Located<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LbVendor {
    /// HAProxy, configured and reloaded by steward.
    Haproxy,
    /// IIS Application Request Routing: `applicationHost.config` webFarms + rewrite rules.
    Arr,
    /// Citrix ADC (NetScaler): NITRO JSON.
    CitrixAdc,
    /// F5 BIG-IP: an AS3 declaration.
    F5,
}

impl LbVendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Haproxy => "haproxy",
            Self::Arr => "arr",
            Self::CitrixAdc => "citrix-adc",
            Self::F5 => "f5",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Affinity {
    /// A client keeps reaching the same server (by source address).
    Client,
    None,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HaproxySpec {
    /// The configuration file steward writes, relative to the state directory unless
    /// absolute. Default `haproxy/haproxy.cfg`.
    #[serde(default)]
    pub config_file: Option<Located<String>>,
    /// The stats socket (runtime API, level admin). Default `haproxy/admin.sock`.
    #[serde(default)]
    pub admin_socket: Option<Located<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hl7Spec {
    /// `automatic`: steward moves the listener; `manual`: it only reports. Default manual.
    #[serde(default)]
    pub failover: Option<Located<Hl7Failover>>,
    /// The server whose listener is active when healthy; it must run HL7.
    #[serde(default)]
    pub preferred: Option<Located<String>>,
    /// How long the active listener may fail before the standby takes over. Default 3s.
    #[serde(default)]
    pub failover_after: Option<Located<String>>,
    /// `manual` (default: no flapping) or `automatic` (back to `preferred` when healthy).
    #[serde(default)]
    pub failback: Option<Located<Failback>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Hl7Failover {
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Failback {
    Manual,
    Automatic,
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
