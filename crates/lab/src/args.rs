//! What a lab service is told to serve: the `steward lab-service` command line (the
//! agent's process driver writes it; the `steward` binary parses it).

use std::net::IpAddr;
use std::path::PathBuf;

use steward_model::catalog::ServiceKind;

/// Serve one PatientSecure service's health surface (the lab stand-in for the real service).
#[derive(Debug, Clone)]
pub struct LabServiceArgs {
    /// The catalog kind to impersonate (PSIS, PSWS, CLIENT, ..., HL7).
    pub kind: ServiceKind,

    /// Address to listen on (the server's loopback address in the lab).
    pub bind: IpAddr,

    /// Ports in catalog order; as many as the kind takes (ADMIN: HTTPS then the redirect
    /// port, EMERGENCY: two). 0 picks a free port.
    pub ports: Vec<u16>,

    /// PEM certificate chain served over TLS; watched and reloaded when it changes.
    pub cert: Option<PathBuf>,

    /// PEM private key of the certificate; watched like `--cert`.
    pub key: Option<PathBuf>,

    /// File holding the connection strings the agent handed the service, shown by
    /// `GET /steward/lab` (JSON, or `NAME=VALUE` lines).
    pub connection_strings: Option<PathBuf>,

    /// The release (version) the agent installed, shown by `GET /steward/lab`.
    pub release: Option<String>,
}
