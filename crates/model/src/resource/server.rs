use serde::Deserialize;

use crate::{Located, SecretRef};

/// `kind: Server`: one application server and the services it runs.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSpec {
    /// Fully qualified host name, at most 50 characters, unique.
    pub hostname: Located<String>,
    /// The agent's URL; default `https://<hostname>:7443`.
    #[serde(default)]
    pub agent: Option<Located<String>>,
    /// False: left off the System Health dashboard (a standby). Default true.
    #[serde(default)]
    pub monitor: Option<Located<bool>>,
    /// Exactly one of `generate: true`, `certFile` + `keyFile`, or `pfxFile` + `passwordRef`.
    pub certificate: Located<ServerCertificateSpec>,
    /// The services this server runs; each kind at most once.
    #[serde(default)]
    pub services: Vec<ServerServiceSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerCertificateSpec {
    /// Issued by the steward CA (not allowed in production).
    #[serde(default)]
    pub generate: Option<Located<bool>>,
    /// An existing third-party certificate chain (PEM).
    #[serde(default)]
    pub cert_file: Option<Located<String>>,
    /// The private key of `certFile` (PEM).
    #[serde(default)]
    pub key_file: Option<Located<String>>,
    /// An existing certificate and key as PKCS#12.
    #[serde(default)]
    pub pfx_file: Option<Located<String>>,
    /// The PFX password: `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub password_ref: Option<Located<SecretRef>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerServiceSpec {
    /// A catalog kind: PSIS, PSWS, CLIENT, REPORT, ADMIN, EMERGENCY, HEALTH, FHIR, EMPI, JOB, HL7.
    pub kind: Located<String>,
    /// Overrides the catalog port (not allowed for ADMIN).
    #[serde(default)]
    pub port: Option<Located<u16>>,
    /// Install drive, default "C:".
    #[serde(default)]
    pub drive: Option<Located<String>>,
}
