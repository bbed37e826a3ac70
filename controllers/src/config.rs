//! What the daemon hands the controllers: the desired state, and how to reach the fleet.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use steward_model::diff::SnapshotDiff;
use steward_model::snapshot::Server;
use steward_model::Snapshot;
use steward_pki::CertificateAuthority;

/// One valid generation of the desired state.
#[derive(Debug, Clone)]
pub struct Desired {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    /// The desired-state directory: `file:` references and certificate files resolve
    /// against it.
    pub dir: PathBuf,
    /// What changed from `generation - 1`, as the loader computed it: taken as it is when
    /// the controllers accepted that generation, so the diff is computed once; `None` (or
    /// a gap in generations) and the controllers compute it against what is in force.
    pub diff: Option<Arc<SnapshotDiff>>,
}

/// Where a server's agent answers, and where its services are probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// `https://host:port` of the agent.
    pub base_url: String,
    /// Connect to the services at this address instead of resolving the hostname (the lab
    /// puts every server on its own loopback address). The TLS name checked is still the
    /// server's hostname, as a browser would.
    pub connect_ip: Option<IpAddr>,
}

impl AgentEndpoint {
    /// The production answer: the agent URL from the Server, services by hostname, or at
    /// the agent URL's address when it names one (`https://10.0.0.5:7443`): the services
    /// run on the agent's machine, and a server named by address may have no DNS entry
    /// (the simulated fleet's do not).
    pub fn from_server(server: &Server) -> Self {
        Self {
            base_url: server.agent_url.clone(),
            connect_ip: url_address(&server.agent_url),
        }
    }
}

/// The IP address of an `https://host:port` URL whose host is one.
fn url_address(url: &str) -> Option<IpAddr> {
    let authority = url.strip_prefix("https://")?;
    let (host, _port) = authority.rsplit_once(':')?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Maps a Server to its endpoint.
pub type EndpointFn = Arc<dyn Fn(&Server) -> AgentEndpoint + Send + Sync>;

/// Everything the controllers need besides the desired state.
#[derive(Clone)]
pub struct ControllersConfig {
    /// The steward CA (generated mode): issues servers' certificates.
    pub ca: Option<Arc<CertificateAuthority>>,
    /// mTLS client configuration for the agents (the daemon's client certificate).
    pub agent_tls: rustls::ClientConfig,
    /// CA certificates (PEM) trusted when probing services.
    pub probe_roots: Vec<String>,
    pub endpoints: EndpointFn,
    /// How often a converged object is checked again.
    pub resync: Duration,
    /// Deadline of each agent request.
    pub agent_timeout: Duration,
    pub max_concurrent: usize,
    /// Reconciles of one server's services running at once.
    pub per_server: usize,
    /// Recorded by the agent as the installer of each service.
    pub installed_by: String,
    /// Where the controllers keep what must survive a restart (which certificates steward
    /// issued); `None`: memory only.
    pub state_dir: Option<PathBuf>,
}

impl fmt::Debug for ControllersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllersConfig")
            .field("ca", &self.ca.is_some())
            .field("probe_roots", &self.probe_roots.len())
            .field("resync", &self.resync)
            .field("agent_timeout", &self.agent_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("per_server", &self.per_server)
            .field("installed_by", &self.installed_by)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Where an ActiveDirectory's stand-in listens in the lab (by directory name); `None`: use
/// its URL.
pub type DirectoryAddressFn = Arc<dyn Fn(&str) -> Option<std::net::SocketAddr> + Send + Sync>;

/// The lab's directories: each reached at its lab address (the certificate is still
/// checked for the URL's host), trusted through `trust` besides the system roots and
/// the directory's own `trust` files.
#[derive(Clone)]
pub struct DirectoryLab {
    pub trust: Vec<PathBuf>,
    pub address: DirectoryAddressFn,
}

impl fmt::Debug for DirectoryLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryLab")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn an_agent_url_naming_an_address_is_where_services_are_probed() {
        assert_eq!(
            url_address("https://127.1.0.7:7443"),
            Some(IpAddr::from([127, 1, 0, 7]))
        );
        assert_eq!(
            url_address("https://[::1]:7443"),
            Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        );
        assert_eq!(url_address("https://app1.example.eng:7443"), None);
    }
}
