//! The `steward lab-service` command line, as the agent's process driver writes it. Also
//! compiled into the controllers' integration tests (their test binary is its own lab
//! service), so it depends on nothing of this crate.

use std::net::IpAddr;
use std::path::PathBuf;

use steward_lab::LabServiceArgs;
use steward_model::catalog::ServiceKind;

/// Serve one PatientSecure service's health surface (the lab stand-in for the real service).
#[derive(Debug, Clone, clap::Args)]
pub struct LabServiceCli {
    /// The catalog kind to impersonate (PSIS, PSWS, CLIENT, ..., HL7).
    #[arg(long)]
    pub kind: ServiceKind,

    /// Address to listen on (the server's loopback address in the lab).
    #[arg(long)]
    pub bind: IpAddr,

    /// Ports in catalog order; as many as the kind takes (ADMIN: HTTPS then the redirect
    /// port, EMERGENCY: two). 0 picks a free port.
    #[arg(long = "port", required = true, value_delimiter = ',')]
    pub ports: Vec<u16>,

    /// PEM certificate chain served over TLS; watched and reloaded when it changes.
    #[arg(long)]
    pub cert: Option<PathBuf>,

    /// PEM private key of the certificate; watched like `--cert`.
    #[arg(long)]
    pub key: Option<PathBuf>,

    /// File holding the connection strings the agent handed the service, shown by
    /// `GET /steward/lab` (JSON, or `NAME=VALUE` lines).
    #[arg(long)]
    pub connection_strings: Option<PathBuf>,

    /// The release (version) the agent installed, shown by `GET /steward/lab`.
    #[arg(long)]
    pub release: Option<String>,
}

impl From<LabServiceCli> for LabServiceArgs {
    fn from(cli: LabServiceCli) -> Self {
        Self {
            kind: cli.kind,
            bind: cli.bind,
            ports: cli.ports,
            cert: cli.cert,
            key: cli.key,
            connection_strings: cli.connection_strings,
            release: cli.release,
        }
    }
}
