use std::net::SocketAddr;
use std::path::PathBuf;

use crate::driver::DriverConfig;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// The steward CA: clients must present a certificate it issued.
    pub ca_pem: PathBuf,
    /// The agent's own certificate and key (`steward ca issue-agent`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The hostname to report instead of the system's (lab agents share one machine).
    pub hostname: Option<String>,
    pub driver: DriverConfig,
}
