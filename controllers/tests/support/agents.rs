//! Real agents (in-process `steward_agent` servers over mutual TLS on loopback) and the
//! controllers' settings to drive them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use steward_agent::{AgentClient, AgentConfig, AgentError, AgentServer, DriverConfig};
use steward_controllers::{AgentEndpoint, ControllersConfig, Desired};
use steward_model::snapshot::Server;
use steward_model::Snapshot;
use steward_pki::CertificateAuthority;
use tokio_util::sync::CancellationToken;

/// What an agent's process driver starts for an installed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    /// This test executable as `lab-service` (the test's `main` is [`super::harness::main`]).
    Lab,
    /// The driver's own stand-in: the test only looks at certificates.
    Stub,
}

pub struct TestAgent {
    /// `https://IP:PORT` of its API.
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl TestAgent {
    /// An agent for `hostname` on `ip` (a free port), its certificate issued by `ca`, its
    /// state under `dir`.
    pub async fn start(
        dir: &Path,
        ca: &CertificateAuthority,
        hostname: &str,
        ip: IpAddr,
        services: Services,
    ) -> Self {
        Self::start_on(dir, ca, hostname, SocketAddr::new(ip, 0), services, true).await
    }

    /// An agent listening on `listen` (port 0: a free one); with `stop_services_on_exit`
    /// false, its services outlive it (an agent that dies while its services run).
    pub async fn start_on(
        dir: &Path,
        ca: &CertificateAuthority,
        hostname: &str,
        listen: SocketAddr,
        services: Services,
        stop_services_on_exit: bool,
    ) -> Self {
        let ip = listen.ip();
        let issued = ca.issue_agent(hostname, &[ip]).unwrap();
        let (cert, key) = issued.write_pair(dir, "agent").unwrap();
        let (program, stop_timeout) = match services {
            Services::Lab => (Some(std::env::current_exe().unwrap()), 3),
            Services::Stub => (None, 1),
        };
        let server = AgentServer::bind(AgentConfig {
            listen,
            state_dir: dir.join("state"),
            ca_pem: ca.cert_path(),
            cert,
            key,
            hostname: Some(hostname.to_owned()),
            driver: DriverConfig {
                program,
                lab: true,
                bind: None,
                stop_timeout: Duration::from_secs(stop_timeout),
                stop_services_on_exit,
            },
        })
        .await
        .unwrap();
        let url = format!("https://{}", server.local_addr());
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone().cancelled_owned()));
        Self { url, stop, task }
    }

    /// A client of this agent, as the daemon would have it.
    pub fn client(&self, tls: &rustls::ClientConfig) -> AgentClient {
        AgentClient::new(&self.url, tls.clone(), Duration::from_secs(5)).unwrap()
    }

    /// Stop it (and the services it started) and wait until it is gone.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// The daemon's side of mutual TLS: a client certificate issued by `ca`.
pub fn daemon_tls(ca: &CertificateAuthority) -> rustls::ClientConfig {
    let issued = ca.issue_client("steward-daemon").unwrap();
    steward_pki::mtls_client_config(ca.cert_pem(), &issued.cert_pem, issued.key_pem.expose())
        .unwrap()
}

/// Controllers' settings for test agents: a 1 s resync, 5 s agent calls, no state
/// directory; services are reached at the agent's address under the server's hostname.
pub fn controllers_config(
    ca: Arc<CertificateAuthority>,
    agent_tls: rustls::ClientConfig,
    probe_roots: Vec<String>,
    installed_by: &str,
) -> ControllersConfig {
    ControllersConfig {
        ca: Some(ca),
        agent_tls,
        probe_roots,
        endpoints: Arc::new(|server: &Server| AgentEndpoint {
            base_url: server.agent_url.clone(),
            connect_ip: server
                .agent_url
                .trim_start_matches("https://")
                .rsplit_once(':')
                .and_then(|(host, _)| host.parse().ok()),
        }),
        resync: Duration::from_secs(1),
        agent_timeout: Duration::from_secs(5),
        max_concurrent: 8,
        per_server: 2,
        installed_by: installed_by.into(),
        state_dir: None,
    }
}

/// Generation `generation` of `snapshot`, loaded from `dir`.
pub fn desired(generation: u64, snapshot: Snapshot, dir: &Path) -> Option<Desired> {
    Some(Desired {
        generation,
        snapshot: Arc::new(snapshot),
        dir: dir.to_owned(),
        diff: None,
    })
}

/// Validate the desired-state directory `dir`; its snapshot, or a panic with the
/// diagnostics.
pub fn snapshot_of(dir: &Path) -> Snapshot {
    let compiled = steward_model::validate_dir(dir).unwrap();
    compiled
        .snapshot
        .unwrap_or_else(|| panic!("invalid desired state: {:?}", compiled.diagnostics))
}

/// Controllers running on their own task, fed generation 1 of `snapshot`.
pub struct RunningControllers {
    pub registry: steward_controllers::MetricsRegistry,
    pub store: Arc<steward_controllers::Store>,
    /// Later generations go here.
    pub desired: tokio::sync::watch::Sender<Option<Desired>>,
    /// What the daemon's API asks of them.
    pub handle: steward_controllers::ControllersHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<steward_controllers::RunReport>,
}

impl RunningControllers {
    pub fn start(config: ControllersConfig, snapshot: Snapshot, dir: &Path) -> Self {
        let registry = steward_controllers::MetricsRegistry::default();
        let controllers = steward_controllers::Controllers::new(config, &registry).unwrap();
        let store = controllers.store();
        let handle = controllers.handle();
        let (desired_tx, rx) = tokio::sync::watch::channel(desired(1, snapshot, dir));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(controllers.run(rx, shutdown.clone()));
        Self {
            registry,
            store,
            desired: desired_tx,
            handle,
            shutdown,
            task,
        }
    }

    /// Stop them and wait until they have; what their loops did.
    pub async fn stop(self) -> steward_controllers::RunReport {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }
}
