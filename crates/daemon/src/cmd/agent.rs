//! `steward agent`: the agent that runs on every application server. Its command line
//! lives here, in the binary; the agent crate takes an `AgentConfig`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use steward_agent::{AgentConfig, DriverConfig};
use steward_model::catalog::DEFAULT_AGENT_PORT;

/// `steward agent` command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve the mTLS API on.
    #[arg(long, default_value_t = SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_AGENT_PORT)))]
    pub listen: SocketAddr,
    /// Where the agent keeps its state, services' files and logs.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The steward CA certificate (PEM); only clients it certified are served.
    #[arg(long)]
    pub ca: PathBuf,
    /// The agent's certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// The agent's private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// The program services are run with (`PROGRAM lab-service --kind ...`); defaults to
    /// this executable.
    #[arg(long)]
    pub service_program: Option<PathBuf>,
    /// Lab mode: serve ports below 1024 on 10000 + port, so no privileges are needed
    /// (ADMIN's 443 and 80 become 10443 and 10080).
    #[arg(long)]
    pub lab: bool,
    /// Report this hostname instead of the system's.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Stop the services when the agent exits (by default they keep running and are
    /// re-adopted when the agent starts again).
    #[arg(long)]
    pub stop_services_on_exit: bool,
    /// Seconds a service gets to exit after SIGTERM before it is killed.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout_secs: u64,
    /// Controller HA from the start: refuse every change that does not carry a steward
    /// leader's epoch (without it, from the first change that carries one).
    #[arg(long)]
    pub require_epoch: bool,
}

impl From<Args> for AgentConfig {
    fn from(args: Args) -> Self {
        Self {
            listen: args.listen,
            state_dir: args.state_dir,
            ca_pem: args.ca,
            cert: args.cert,
            key: args.key,
            hostname: args.hostname,
            driver: DriverConfig {
                program: args.service_program,
                lab: args.lab,
                bind: None,
                stop_timeout: Duration::from_secs(args.stop_timeout_secs),
                stop_services_on_exit: args.stop_services_on_exit,
            },
        }
    }
}

pub async fn run(args: Args) -> u8 {
    crate::open_files::raise();
    let shutdown = crate::signals::shutdown_token();
    let require_epoch = args.require_epoch;
    let served = async {
        let server = steward_agent::AgentServer::bind(args.into()).await?;
        let server = if require_epoch {
            server.require_epoch()
        } else {
            server
        };
        server.run(shutdown.cancelled_owned()).await
    };
    match served.await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: Args,
    }

    #[test]
    fn parses_the_documented_flags() {
        let cli = Cli::parse_from([
            "steward",
            "--state-dir",
            "/var/lib/steward-agent",
            "--ca",
            "ca.pem",
            "--cert",
            "agent.pem",
            "--key",
            "agent.key",
            "--lab",
            "--service-program",
            "/usr/bin/steward",
        ]);
        let config = AgentConfig::from(cli.agent);
        assert_eq!(config.listen, "0.0.0.0:7443".parse().unwrap());
        assert!(config.driver.lab);
        assert_eq!(config.driver.program, Some("/usr/bin/steward".into()));
        assert_eq!(config.driver.stop_timeout, Duration::from_secs(10));
    }
}
