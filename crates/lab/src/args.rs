//! The `steward lab-service` command line, as the agent's process driver writes it.

use std::net::IpAddr;
use std::path::PathBuf;

use steward_model::catalog::ServiceKind;

/// Serve one PatientSecure service's health surface (the lab stand-in for the real service).
#[derive(Debug, Clone, clap::Args)]
pub struct LabServiceArgs {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LabServiceArgs,
    }

    #[test]
    fn parses_the_agent_command_line() {
        let cli = Cli::try_parse_from([
            "lab-service",
            "--kind",
            "EMERGENCY",
            "--bind",
            "127.0.0.2",
            "--port",
            "7005",
            "--port",
            "7006",
            "--cert",
            "/s/cert.pem",
            "--key",
            "/s/key.pem",
            "--connection-strings",
            "/s/conn.json",
            "--release",
            "7.1.0",
        ])
        .unwrap();
        assert_eq!(cli.args.kind, ServiceKind::Emergency);
        assert_eq!(cli.args.ports, vec![7005, 7006]);
        assert_eq!(cli.args.bind.to_string(), "127.0.0.2");
        assert_eq!(cli.args.release.as_deref(), Some("7.1.0"));
    }

    #[test]
    fn refuses_unknown_kind_and_missing_port() {
        let err =
            Cli::try_parse_from(["x", "--kind", "PSXX", "--bind", "127.0.0.1", "--port", "1"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("PSXX"), "{err}");
        assert!(Cli::try_parse_from(["x", "--kind", "HL7", "--bind", "127.0.0.1"]).is_err());
    }
}
