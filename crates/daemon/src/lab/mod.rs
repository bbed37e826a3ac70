//! The lab: real agents for every Server of the desired state, on loopback, as child
//! processes of `steward run --lab`.
//!
//! Each agent is the real `steward agent` binary with a certificate from the steward CA,
//! serving mutual TLS on its own 127.0.0.x address; its process driver runs `steward
//! lab-service` processes that serve the catalog's health surface. Nothing here imitates
//! steward's own logic: the lab only supplies the machines.

mod addresses;
pub mod balancer;
mod database;
pub mod directory;
mod orphans;
mod supervise;

pub use addresses::{LabAddresses, DEFAULT_FIRST_ADDRESS};
pub(crate) use database::LabDatabase;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustix::process::Signal;
use steward_model::Snapshot;
use steward_pki::CertificateAuthority;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use orphans::{alive, processes_mentioning, signal_group, signal_pid};
use supervise::{supervise, AgentSpec};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab agent for {host}: {source}")]
    Pki {
        host: String,
        #[source]
        source: steward_pki::PkiError,
    },
    #[error("lab agent for {host}: cannot start {program}: {source}", program = program.display())]
    Spawn {
        host: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab agent for {host} cannot listen on {addr}: it is taken by {who}, which is not part of this lab; stop it or choose another --lab-first-address")]
    AddressTaken {
        host: String,
        addr: SocketAddr,
        who: String,
    },
    #[error(
        "lab agent for {host}: the agent a previous daemon left running (pid {pid}) does not stop"
    )]
    LeftoverAgent { host: String, pid: i32 },
    #[error("the lab has room for {room} server(s) from {first} (up to .254 of its /24), but the desired state declares {servers}; choose a lower --lab-first-address")]
    NoRoom {
        servers: usize,
        room: usize,
        first: Ipv4Addr,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One supervised lab agent.
#[derive(Debug)]
struct LabAgent {
    /// The running agent's pid, 0 while there is none.
    pid: Arc<AtomicI32>,
    task: JoinHandle<()>,
}

/// The lab agents, by server host name.
#[derive(Debug)]
pub struct LabFleet {
    program: PathBuf,
    state_dir: PathBuf,
    /// The one record of which address each server's agent has: assigned here, read by
    /// whoever holds the same handle (the daemon's agent endpoints).
    addresses: Arc<RwLock<LabAddresses>>,
    agents: BTreeMap<String, LabAgent>,
    database: database::LabDatabase,
    stop: CancellationToken,
}

impl LabFleet {
    /// `program` is the steward binary the agents (and their services) run as.
    /// `addresses` is shared: the fleet assigns addresses in it as servers arrive.
    pub fn new(program: PathBuf, state_dir: PathBuf, addresses: Arc<RwLock<LabAddresses>>) -> Self {
        Self {
            program,
            // Beside the lab directory, whose entries are the servers.
            database: database::LabDatabase::new(state_dir.with_file_name("lab-database.log")),
            state_dir,
            addresses,
            agents: BTreeMap::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Supervise an agent for every server of `snapshot` that has none yet: each is
    /// started at once and restarted whenever it dies. Agents of servers that left the
    /// desired state keep running: the service controller decides (prune) what happens to
    /// their services, and it needs the agent for that.
    pub fn ensure(
        &mut self,
        snapshot: &Snapshot,
        ca: &CertificateAuthority,
    ) -> Result<(), LabError> {
        let addresses = {
            let mut shared = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            check_room(&shared, snapshot)?;
            shared.extend_for(snapshot);
            shared.clone()
        };
        for server in snapshot.servers.values() {
            if self.agents.contains_key(&server.hostname) {
                continue;
            }
            let Some(addr) = addresses.get(&server.hostname) else {
                // check_room counted it in; unreachable unless the two disagree.
                return Err(LabError::NoRoom {
                    servers: snapshot.servers.len(),
                    room: addresses.room(),
                    first: addresses.first(),
                });
            };
            let dir = self.state_dir.join(&server.name);
            std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
                path: dir.clone(),
                source,
            })?;
            let pki = |source| LabError::Pki {
                host: server.hostname.clone(),
                source,
            };
            let issued = ca.issue_agent(&server.hostname, &[addr]).map_err(pki)?;
            let (cert, key) = issued.write_pair(&dir, "agent").map_err(pki)?;
            let spec = AgentSpec {
                name: server.name.clone(),
                hostname: server.hostname.clone(),
                addr,
                port: agent_port(&server.agent_url),
                dir,
                program: self.program.clone(),
                ca: ca.cert_path(),
                cert,
                key,
            };
            let pid = Arc::new(AtomicI32::new(0));
            let task = tokio::spawn(supervise(spec, pid.clone(), self.stop.child_token()));
            self.agents
                .insert(server.hostname.clone(), LabAgent { pid, task });
        }
        Ok(())
    }

    /// Start a TDS server for the declared database when it is on loopback and nothing
    /// serves it (see `database.rs`). `Some` says why the lab could not, for the database
    /// section of the status.
    pub async fn ensure_database(
        &mut self,
        snapshot: &Snapshot,
        desired_dir: &Path,
    ) -> Option<String> {
        self.database
            .ensure(snapshot, desired_dir, &self.program)
            .await
    }

    /// Stop every agent (which stops its services), SIGKILL after `grace`, and the
    /// database server.
    pub async fn shutdown(&mut self, grace: Duration) {
        self.database.stop().await;
        self.stop.cancel();
        let agents = std::mem::take(&mut self.agents);
        let pids: Vec<(String, Arc<AtomicI32>)> = agents
            .iter()
            .map(|(host, a)| (host.clone(), a.pid.clone()))
            .collect();
        let mut tasks: Vec<JoinHandle<()>> = agents.into_values().map(|a| a.task).collect();
        let all = futures_join(&mut tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            for (host, pid) in &pids {
                let pid = pid.load(Ordering::SeqCst);
                if pid != 0 {
                    tracing::warn!(%host, pid, "lab agent did not stop in time; killing it");
                    signal_group(pid, Signal::KILL);
                }
            }
            futures_join(&mut tasks).await;
        }
        self.reap_orphans(grace).await;
    }

    /// Services whose agent died (killed, crashed) are nobody's children any more and
    /// would outlive the lab. Find them by the lab's state directory on their command line
    /// and stop them too.
    async fn reap_orphans(&self, grace: Duration) {
        let marker = self.state_dir.to_string_lossy().into_owned();
        let orphans = processes_mentioning(&marker);
        if orphans.is_empty() {
            return;
        }
        tracing::warn!(
            count = orphans.len(),
            "stopping lab services left behind by a dead agent"
        );
        for pid in &orphans {
            signal_pid(*pid, Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if orphans.iter().all(|pid| !alive(*pid)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pid in orphans {
            signal_pid(pid, Signal::KILL);
        }
    }
}

/// Wait for every task (finished ones are skipped on a second call).
async fn futures_join(tasks: &mut [JoinHandle<()>]) {
    for task in tasks.iter_mut() {
        if !task.is_finished() {
            let _ = task.await;
        }
    }
}

/// Refuse a desired state with more servers than the lab has addresses for, naming how
/// many fit, instead of starting some and leaving the others to a DNS lookup.
pub fn check_room(addresses: &LabAddresses, snapshot: &Snapshot) -> Result<(), LabError> {
    let servers = addresses.needed_for(snapshot);
    let room = addresses.room();
    if servers > room {
        return Err(LabError::NoRoom {
            servers,
            room,
            first: addresses.first(),
        });
    }
    Ok(())
}

fn agent_port(agent_url: &str) -> u16 {
    agent_url
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .unwrap_or(steward_model::catalog::DEFAULT_AGENT_PORT)
}

/// The lab's state lives beside the daemon's.
pub fn lab_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("lab")
}
