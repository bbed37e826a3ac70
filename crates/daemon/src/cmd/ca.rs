//! `steward ca init | export | issue-agent`: the steward certificate authority.

use std::net::IpAddr;
use std::path::PathBuf;

use steward_pki::CertificateAuthority;

use super::console::{err_line, out, OutputError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CaCommand,
    /// Where the CA lives (ca.pem, and ca.key with mode 0600).
    #[arg(long, global = true, default_value = ".steward/ca")]
    dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum CaCommand {
    /// Create the CA (refuses to overwrite an existing one).
    Init,
    /// Print the CA certificate (PEM), for clients and browsers to trust.
    Export,
    /// Issue an agent's TLS certificate and key into a directory (agent.pem, agent.key).
    IssueAgent {
        /// The agent's host name, as the daemon reaches it.
        #[arg(long)]
        hostname: String,
        /// Extra IP addresses the agent is reached on.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: &Args) -> Result<u8, OutputError> {
    match execute(args) {
        Ok(Done { output, note }) => {
            out(output)?;
            if !note.is_empty() {
                err_line(note)?;
            }
            Ok(0)
        }
        Err(e) => {
            err_line(format_args!("steward ca: {e}"))?;
            Ok(1)
        }
    }
}

/// What a subcommand prints: its output (stdout) and a note about what it did (stderr).
#[derive(Default)]
struct Done {
    output: String,
    note: String,
}

fn execute(args: &Args) -> Result<Done, steward_pki::PkiError> {
    match &args.command {
        CaCommand::Init => {
            let ca = CertificateAuthority::init(&args.dir)?;
            Ok(Done {
                note: format!("created the steward CA in {}", ca.dir().display()),
                ..Done::default()
            })
        }
        CaCommand::Export => {
            let ca = CertificateAuthority::load(&args.dir)?;
            Ok(Done {
                output: ca.cert_pem().to_owned(),
                ..Done::default()
            })
        }
        CaCommand::IssueAgent { hostname, ips, out } => {
            let ca = CertificateAuthority::load(&args.dir)?;
            std::fs::create_dir_all(out).map_err(|e| steward_pki::PkiError::Io {
                path: out.clone(),
                source: e,
            })?;
            let issued = ca.issue_agent(hostname, ips)?;
            let (cert, key) = issued.write_pair(out, "agent")?;
            Ok(Done {
                note: format!(
                    "issued {} (thumbprint {}) -> {} and {}",
                    hostname,
                    issued.sha1_thumbprint,
                    cert.display(),
                    key.display()
                ),
                ..Done::default()
            })
        }
    }
}
