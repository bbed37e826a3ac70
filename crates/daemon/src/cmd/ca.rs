//! `steward ca init | export | issue-agent`: the steward certificate authority.

use std::net::IpAddr;
use std::path::PathBuf;

use steward_pki::CertificateAuthority;

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

pub fn run(args: &Args) -> u8 {
    match execute(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("steward ca: {e}");
            1
        }
    }
}

fn execute(args: &Args) -> Result<(), steward_pki::PkiError> {
    match &args.command {
        CaCommand::Init => {
            let ca = CertificateAuthority::init(&args.dir)?;
            eprintln!("created the steward CA in {}", ca.dir().display());
        }
        CaCommand::Export => {
            let ca = CertificateAuthority::load(&args.dir)?;
            print!("{}", ca.cert_pem());
        }
        CaCommand::IssueAgent { hostname, ips, out } => {
            let ca = CertificateAuthority::load(&args.dir)?;
            std::fs::create_dir_all(out).map_err(|e| steward_pki::PkiError::Io {
                path: out.clone(),
                source: e,
            })?;
            let issued = ca.issue_agent(hostname, ips)?;
            let (cert, key) = issued.write_pair(out, "agent")?;
            eprintln!(
                "issued {} (thumbprint {}) -> {} and {}",
                hostname,
                issued.sha1_thumbprint,
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}
