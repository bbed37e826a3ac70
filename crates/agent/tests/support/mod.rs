//! Shared setup for the agent's integration tests: a CA, certificates, and agents started
//! on 127.0.0.1 with the process driver running `fixtures/fake-service.sh`.

#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_agent::{AgentClient, AgentConfig, AgentServer, DriverConfig};
use steward_pki::{CertificateAuthority, IssuedCertificate};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub agent_cert: PathBuf,
    pub agent_key: PathBuf,
    pub daemon: IssuedCertificate,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let agent = ca.issue_agent("localhost", &[LOCALHOST]).unwrap();
        let (agent_cert, agent_key) = agent
            .write_pair(&dir.path().join("agent"), "agent")
            .unwrap();
        let daemon = ca.issue_client("steward-daemon").unwrap();
        Self {
            dir,
            ca,
            agent_cert,
            agent_key,
            daemon,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config(&self, lab: bool, stop_services_on_exit: bool) -> AgentConfig {
        AgentConfig {
            listen: SocketAddr::new(LOCALHOST, 0),
            state_dir: self.state_dir(),
            ca_pem: self.ca.cert_path(),
            cert: self.agent_cert.clone(),
            key: self.agent_key.clone(),
            hostname: Some("app1.example.eng".into()),
            driver: DriverConfig {
                program: Some(fake_service()),
                lab,
                bind: None,
                stop_timeout: Duration::from_secs(3),
                stop_services_on_exit,
            },
        }
    }

    pub fn client(&self, addr: SocketAddr) -> AgentClient {
        AgentClient::with_mtls(
            &format!("https://localhost:{}", addr.port()),
            self.ca.cert_pem(),
            &self.daemon.cert_pem,
            &self.daemon.key_pem,
            TIMEOUT,
        )
        .unwrap()
    }
}

impl Drop for Pki {
    /// A failed test must not leave its services running.
    fn drop(&mut self) {
        let state = self.state_dir().to_string_lossy().into_owned();
        for pid in processes_with(&[&state]) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

pub fn fake_service() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-service.sh")
}

pub struct RunningAgent {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), steward_agent::AgentError>>>,
}

impl RunningAgent {
    pub async fn start(config: AgentConfig) -> Self {
        let server = AgentServer::bind(config).await.unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Poll `check` until it returns `Some`, or fail after a while.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    steward_testkit::eventually_async(what, TIMEOUT, Duration::from_millis(50), check).await
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, s)| s.starts_with('Z'))
    })
}

/// Service instances (process-group leaders: a service's own helpers, and the shell's
/// forks before they exec, share its command line but not its pid as group id) whose
/// command line contains all of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<u32> {
    steward_testkit::processes::command_lines()
        .into_iter()
        .filter_map(|(pid, args)| {
            let pid = u32::try_from(pid).ok()?;
            let cmdline = args.join(" ");
            (alive(pid)
                && group_of(pid) == Some(pid)
                && needles.iter().all(|n| cmdline.contains(n)))
            .then_some(pid)
        })
        .collect()
}

fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: state, ppid, pgrp.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(2)?.parse().ok()
}

pub fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
