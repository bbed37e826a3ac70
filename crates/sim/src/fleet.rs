//! The fleet: one real agent (router, mutual TLS, limits) per simulated server, each over
//! its own [`SimDriver`], plus each server's control API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use steward_agent::{AgentConfig, AgentServer, DriverConfig, Layout};
use steward_pki::CertificateAuthority;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control;
use crate::driver::SimDriver;
use crate::error::SimError;
use crate::faults::Faults;
use crate::servers::SimServer;

/// What one `steward sim` process (or shard) serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// This process's servers (a shard's share of the fleet).
    pub servers: Vec<SimServer>,
    /// The agents' port on each server's address.
    pub agent_port: u16,
    /// The control API's port on each server's address; `None`: no control API.
    pub control_port: Option<u16>,
    /// Agents' state directories (`DIR/NAME/`), emptied at start: a sim starts fresh.
    pub work_dir: PathBuf,
    /// The share of installs (0-100) that fail, on every server, until changed through
    /// the control API.
    pub install_failure_percent: u8,
}

/// One simulated server: its agent (stopped and started again to make it unreachable)
/// and its driver, which outlives the agent so services keep running meanwhile.
pub(crate) struct SimAgent {
    pub server: SimServer,
    pub driver: Arc<SimDriver>,
    config: AgentConfig,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl SimAgent {
    fn running(&self) -> std::sync::MutexGuard<'_, Option<(CancellationToken, JoinHandle<()>)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reachable(&self) -> bool {
        self.running().is_some()
    }

    /// Bind and serve the agent; a no-op while it serves.
    pub async fn start(&self) -> Result<(), SimError> {
        if self.reachable() {
            return Ok(());
        }
        let server = AgentServer::bind_with_driver(self.config.clone(), self.driver.clone())
            .await
            .map_err(|source| SimError::Agent {
                host: self.server.hostname.clone(),
                source,
            })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            let host = self.server.hostname.clone();
            async move {
                if let Err(e) = server.run(stop.cancelled_owned()).await {
                    tracing::warn!(%host, error = %e, "sim agent stopped");
                }
            }
        });
        let previous = self.running().replace((stop, task));
        if let Some((stop, task)) = previous {
            stop.cancel();
            let _ = task.await;
        }
        Ok(())
    }

    /// Stop serving the agent API (connections refused); its services keep running.
    pub async fn stop(&self) {
        let running = self.running().take();
        if let Some((stop, task)) = running {
            stop.cancel();
            let _ = task.await;
        }
    }
}

pub struct SimFleet {
    agents: Vec<Arc<SimAgent>>,
    control: Vec<JoinHandle<()>>,
    stop_control: CancellationToken,
}

impl SimFleet {
    /// Issue each server's agent certificate from `ca` (as the lab does: the server's
    /// host name and address), start its agent and its control API.
    pub async fn start(config: SimConfig, ca: &CertificateAuthority) -> Result<Self, SimError> {
        let stop_control = CancellationToken::new();
        let mut fleet = Self {
            agents: Vec::with_capacity(config.servers.len()),
            control: Vec::new(),
            stop_control: stop_control.clone(),
        };
        for server in &config.servers {
            let agent = match prepare(&config, server, ca) {
                Ok(agent) => Arc::new(agent),
                Err(e) => {
                    fleet.shutdown().await;
                    return Err(e);
                }
            };
            if let Err(e) = agent.start().await {
                fleet.shutdown().await;
                return Err(e);
            }
            if let Some(port) = config.control_port {
                let addr = SocketAddr::new(server.address, port);
                match control::bind(addr, agent.clone(), stop_control.clone()).await {
                    Ok(task) => fleet.control.push(task),
                    Err(e) => {
                        fleet.agents.push(agent);
                        fleet.shutdown().await;
                        return Err(e);
                    }
                }
            }
            fleet.agents.push(agent);
        }
        Ok(fleet)
    }

    pub fn servers(&self) -> impl Iterator<Item = &SimServer> {
        self.agents.iter().map(|a| &a.server)
    }

    /// Stop the control APIs, the agents, then every service.
    pub async fn shutdown(&mut self) {
        self.stop_control.cancel();
        for task in self.control.drain(..) {
            let _ = task.await;
        }
        for agent in self.agents.drain(..) {
            agent.stop().await;
            steward_agent::Driver::detach(agent.driver.as_ref(), true).await;
        }
    }
}

fn prepare(
    config: &SimConfig,
    server: &SimServer,
    ca: &CertificateAuthority,
) -> Result<SimAgent, SimError> {
    let dir = config.work_dir.join(&server.name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(SimError::io(&dir, e)),
        _ => {}
    }
    std::fs::create_dir_all(&dir).map_err(|e| SimError::io(&dir, e))?;
    let pki = |source| SimError::Pki {
        host: server.hostname.clone(),
        source,
    };
    let (cert, key) = ca
        .issue_agent(&server.hostname, &[server.address])
        .and_then(|issued| issued.write_pair(&dir, "agent"))
        .map_err(pki)?;
    let state_dir = dir.join("state");
    let faults = Arc::new(Faults::new(config.install_failure_percent));
    let driver = Arc::new(SimDriver::new(
        server.address,
        Layout::new(&state_dir),
        faults,
    ));
    Ok(SimAgent {
        server: server.clone(),
        driver,
        config: AgentConfig {
            listen: SocketAddr::new(server.address, config.agent_port),
            state_dir,
            ca_pem: ca.cert_path(),
            cert,
            key,
            hostname: Some(server.hostname.clone()),
            driver: DriverConfig::default(),
        },
        running: Mutex::new(None),
    })
}
