//! The lab: real agents for every Server of the desired state, on loopback, as child
//! processes of `steward run --lab`.
//!
//! Each agent is the real `steward agent` binary with a certificate from the steward CA,
//! serving mutual TLS on its own 127.0.0.x address; its process driver runs `steward
//! lab-service` processes that serve the catalog's health surface. Nothing here imitates
//! steward's own logic: the lab only supplies the machines.

mod addresses;

pub use addresses::{LabAddresses, DEFAULT_FIRST_ADDRESS};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use steward_model::Snapshot;
use steward_pki::CertificateAuthority;
use tokio::process::{Child, Command};

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
    #[error("no loopback address left for {0}")]
    NoAddress(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One running lab agent.
#[derive(Debug)]
struct LabAgent {
    child: Child,
    addr: IpAddr,
}

/// The lab agents, by server host name.
#[derive(Debug)]
pub struct LabFleet {
    program: PathBuf,
    state_dir: PathBuf,
    addresses: LabAddresses,
    agents: BTreeMap<String, LabAgent>,
}

impl LabFleet {
    /// `program` is the steward binary the agents (and their services) run as.
    pub fn new(program: PathBuf, state_dir: PathBuf, addresses: LabAddresses) -> Self {
        Self {
            program,
            state_dir,
            addresses,
            agents: BTreeMap::new(),
        }
    }

    pub fn addresses(&self) -> &LabAddresses {
        &self.addresses
    }

    /// Start an agent for every server of `snapshot` that has none yet. Agents of servers
    /// that left the desired state keep running: the service controller decides (prune)
    /// what happens to their services, and it needs the agent for that.
    pub fn ensure(
        &mut self,
        snapshot: &Snapshot,
        ca: &CertificateAuthority,
    ) -> Result<(), LabError> {
        self.addresses.extend_for(snapshot);
        for server in snapshot.servers.values() {
            let running = self
                .agents
                .get_mut(&server.hostname)
                .is_some_and(|a| matches!(a.child.try_wait(), Ok(None)));
            if running {
                continue;
            }
            let addr = self
                .addresses
                .get(&server.hostname)
                .ok_or_else(|| LabError::NoAddress(server.hostname.clone()))?;
            let port = agent_port(&server.agent_url);
            let agent = self.start_agent(&server.name, &server.hostname, addr, port, ca)?;
            tracing::info!(server = %server.name, hostname = %server.hostname, %addr, port, "lab agent started");
            self.agents.insert(server.hostname.clone(), agent);
        }
        Ok(())
    }

    fn start_agent(
        &self,
        name: &str,
        hostname: &str,
        addr: IpAddr,
        port: u16,
        ca: &CertificateAuthority,
    ) -> Result<LabAgent, LabError> {
        let dir = self.state_dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            path: dir.clone(),
            source,
        })?;
        let pki = |source| LabError::Pki {
            host: hostname.to_owned(),
            source,
        };
        let issued = ca.issue_agent(hostname, &[addr]).map_err(pki)?;
        let (cert, key) = issued.write_pair(&dir, "agent").map_err(pki)?;
        let log_path = dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LabError::Io {
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| LabError::Io {
            path: log_path,
            source,
        })?;
        let child = Command::new(&self.program)
            .arg("agent")
            .arg("--listen")
            .arg(format!("{}:{port}", bracket(addr)))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--ca")
            .arg(ca.cert_path())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--hostname")
            .arg(hostname)
            .arg("--service-program")
            .arg(&self.program)
            .arg("--lab")
            .arg("--stop-services-on-exit")
            .arg("--stop-timeout-secs")
            .arg("3")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so stopping the lab reaches the agent and anything
            // it started even if it cannot clean up itself.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LabError::Spawn {
                host: hostname.to_owned(),
                program: self.program.clone(),
                source,
            })?;
        Ok(LabAgent { child, addr })
    }

    /// Stop every agent (which stops its services), SIGKILL after `grace`.
    pub async fn shutdown(&mut self, grace: Duration) {
        for agent in self.agents.values() {
            signal(&agent.child, Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (host, agent) in &mut self.agents {
            match tokio::time::timeout_at(deadline, agent.child.wait()).await {
                Ok(_) => tracing::debug!(%host, addr = %agent.addr, "lab agent stopped"),
                Err(_) => {
                    tracing::warn!(%host, "lab agent did not stop in time; killing it");
                    signal(&agent.child, Signal::KILL);
                    let _ = agent.child.wait().await;
                }
            }
        }
        self.agents.clear();
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

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| Pid::from_raw(p as i32)) {
        let _ = kill_process_group(pid, sig);
    }
}

/// Processes (other than this one) whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(marker))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter says it is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z')))
}

fn signal_pid(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn agent_port(agent_url: &str) -> u16 {
    agent_url
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .unwrap_or(steward_model::catalog::DEFAULT_AGENT_PORT)
}

fn bracket(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The lab's state lives beside the daemon's.
pub fn lab_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("lab")
}
