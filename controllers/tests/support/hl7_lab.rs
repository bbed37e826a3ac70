//! Two servers running HL7 behind a real HAProxy: real agents (mutual TLS) whose lab HL7
//! listeners answer MLLP with real ACKs, a real TDS server (installs wait for the
//! database), and HAProxy 2.6 with the HL7 backend steward's renderer writes, started on
//! the lab's own loopback address. Plus the two observers the HL7 failover is judged by:
//! an MLLP sender through HAProxy that retransmits what was not acknowledged, and a watcher
//! that checks every few milliseconds that two listeners are never active at once.
//! Run inside a private network namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_agent::AgentClient;
use steward_balancer::haproxy::{Haproxy, MemberState, RuntimeApi};
use steward_balancer::render::haproxy::{render, HaproxyOptions};
use steward_balancer::Farms;
use steward_model::{ServiceKind, Snapshot};
use steward_pki::CertificateAuthority;
use steward_testkit::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::agents::{daemon_tls, snapshot_of, Services, TestAgent};
use super::iridium::Iridium;

/// HL7's catalog port: each lab listener binds it on its server's address.
pub const HL7_PORT: u16 = 2244;

/// Addresses no other test uses: 127.1xx.y.z from this process's id.
pub fn address(host: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + ((pid >> 8) % 100) as u8,
        (pid % 250) as u8 + 1,
        host,
    ))
}

/// The HL7 settings of the installation (`hl7:` flow map).
#[derive(Debug, Clone)]
pub struct Policy {
    pub failover: &'static str,
    pub failback: &'static str,
    pub failover_after: &'static str,
}

pub struct Hl7Lab {
    pub dir: tempfile::TempDir,
    pub ca: Arc<CertificateAuthority>,
    pub agent_tls: rustls::ClientConfig,
    /// app1, app2 (`None` while stopped).
    pub agents: [Option<TestAgent>; 2],
    pub agent_addrs: [SocketAddr; 2],
    pub clients: [AgentClient; 2],
    pub db: Iridium,
    pub haproxy: Haproxy,
    _haproxy_process: tokio::process::Child,
    /// Where HL7 senders connect: HAProxy's HL7 frontend.
    pub front: SocketAddr,
    pub desired_dir: PathBuf,
    pub state_dir: PathBuf,
}

pub const SERVERS: [&str; 2] = ["app1", "app2"];

impl Hl7Lab {
    /// `None` when a peer (HAProxy, iridium) is missing outside CI.
    pub async fn start(policy: &Policy) -> Option<Self> {
        let haproxy_bin = steward_testkit::require_tool("haproxy", "haproxy")?;
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::init(dir.path().join("ca")).unwrap());
        let agent_tls = daemon_tls(&ca);
        let mut agents = [None, None];
        let mut agent_addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); 2];
        for (i, name) in SERVERS.iter().enumerate() {
            let agent = TestAgent::start_on(
                &dir.path().join(name),
                &ca,
                &format!("{name}.example.eng"),
                SocketAddr::new(address(i as u8 + 1), 0),
                Services::Lab,
                false,
            )
            .await;
            agent_addrs[i] = agent.url.trim_start_matches("https://").parse().unwrap();
            agents[i] = Some(agent);
        }
        let clients = [0, 1].map(|i| agents[i].as_ref().unwrap().client(&agent_tls));
        let db = Iridium::start(&dir.path().join("db"))?;
        let desired_dir = dir.path().join("desired");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let hl7_dir = dir.path().join("haproxy");
        std::fs::create_dir_all(&hl7_dir).unwrap();
        let haproxy = Haproxy::new(
            haproxy_bin,
            hl7_dir.join("haproxy.cfg"),
            hl7_dir.join("admin.sock"),
        );
        let front = SocketAddr::new(address(10), HL7_PORT);
        let snapshot = write_desired(
            &desired_dir,
            &dir.path().join("lb"),
            &haproxy.admin_socket,
            &db,
            &agent_addrs,
            policy,
        );
        // HAProxy serves the HL7 farm steward renders, its members at the agents'
        // addresses (the lab's host names do not resolve).
        let mut farms = Farms::from_snapshot(&snapshot, None).expect("a vendor is set");
        farms.farms.retain(|f| f.kind == ServiceKind::Hl7);
        let addresses = SERVERS
            .iter()
            .zip(agent_addrs)
            .map(|(name, addr)| ((*name).to_owned(), addr.ip()))
            .collect();
        let opts = HaproxyOptions {
            bind: front.ip().to_string(),
            map_low_ports: false,
            admin_socket: haproxy.admin_socket.clone(),
            state_file: haproxy.state_file.clone(),
            ca_file: None,
            addresses,
        };
        std::fs::write(&haproxy.config_file, render(&farms, &opts)).unwrap();
        let process = haproxy.master().spawn().await.unwrap();
        Some(Self {
            dir,
            ca,
            agent_tls,
            agents,
            agent_addrs,
            clients,
            db,
            haproxy,
            _haproxy_process: process,
            front,
            desired_dir,
            state_dir,
        })
    }

    /// Rewrite the desired state with `policy`; its snapshot.
    pub fn desired(&self, policy: &Policy) -> Snapshot {
        write_desired(
            &self.desired_dir,
            &self.dir.path().join("lb"),
            &self.haproxy.admin_socket,
            &self.db,
            &self.agent_addrs,
            policy,
        )
    }

    pub fn runtime(&self) -> RuntimeApi {
        self.haproxy.runtime()
    }

    /// HL7's listener address on server `i`.
    pub fn listener(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.agent_addrs[i].ip(), HL7_PORT)
    }

    /// The HL7 backend's member states, by server.
    pub async fn backend(&self) -> BTreeMap<String, MemberState> {
        backend_states(&self.runtime()).await
    }

    /// Stop server `i`'s agent; its services keep running (a dead agent, a live listener).
    pub async fn stop_agent(&mut self, i: usize) {
        if let Some(agent) = self.agents[i].take() {
            agent.shutdown().await;
        }
    }

    /// Start server `i`'s agent again on the same address, on the same state.
    pub async fn start_agent(&mut self, i: usize) {
        let name = SERVERS[i];
        let agent = TestAgent::start_on(
            &self.dir.path().join(name),
            &self.ca,
            &format!("{name}.example.eng"),
            self.agent_addrs[i],
            Services::Lab,
            false,
        )
        .await;
        self.agents[i] = Some(agent);
    }

    /// Stop the agents and the services they run.
    pub async fn shutdown(mut self) {
        for i in 0..2 {
            if self.agents[i].is_none() {
                self.start_agent(i).await;
            }
            for kind in [ServiceKind::Hl7, ServiceKind::Psws, ServiceKind::Psis] {
                let _ = self.clients[i].stop(kind).await;
            }
            self.stop_agent(i).await;
        }
    }
}

/// app1 runs PSIS, PSWS and HL7, app2 HL7: two HL7 listeners behind `vendor: haproxy`.
/// The load-balancer controller's own configuration file goes to `lb_dir` (its reloads have
/// no master there: this lab's HAProxy is started by the test); both use `admin_socket`.
fn write_desired(
    dir: &Path,
    lb_dir: &Path,
    admin_socket: &Path,
    db: &Iridium,
    agents: &[SocketAddr; 2],
    policy: &Policy,
) -> Snapshot {
    let agent = |i: usize| format!("https://{}", agents[i]);
    Fixture::installation()
        .name("hl7")
        .load_balancer_flow(&format!(
            "{{fqdn: lb.example.eng, vendor: haproxy, haproxy: {{configFile: \"{}\", adminSocket: \"{}\"}}}}",
            lb_dir.join("haproxy.cfg").display(),
            admin_socket.display(),
        ))
        .spec_lines(&format!(
            "  hl7: {{failover: {}, preferred: app1, failoverAfter: {}, failback: {}}}\n",
            policy.failover, policy.failover_after, policy.failback,
        ))
        .database_flow(&db.database_yaml())
        .server(
            Fixture::server("app1")
                .agent(&agent(0))
                .services(["PSIS", "PSWS", "HL7"]),
        )
        .server(Fixture::server("app2").agent(&agent(1)).services(["HL7"]))
        .write(dir);
    snapshot_of(dir)
}

async fn backend_states(runtime: &RuntimeApi) -> BTreeMap<String, MemberState> {
    runtime
        .servers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.backend == "hl7")
        .map(|s| (s.server, s.state))
        .collect()
}

/// What the MLLP sender saw.
#[derive(Debug, Clone, Default)]
pub struct SenderReport {
    /// Distinct messages (MSH-10) sent.
    pub messages: usize,
    /// Messages acknowledged with AA.
    pub acknowledged: usize,
    /// Messages sent more than once (no ACK came back the first time): the duplicates a
    /// receiver may have seen, by MSH-10.
    pub duplicates: usize,
    /// Transmissions in all.
    pub transmissions: usize,
    /// Messages never acknowledged within the sender's patience.
    pub lost: Vec<String>,
    /// The longest time between two acknowledgements.
    pub longest_gap: Duration,
}

/// An MLLP sender through `front`: one message at a time, each with its own MSH-10,
/// retransmitted (on a new connection) until acknowledged with AA, as MLLP senders do.
/// Runs until `stop`; the message in flight is finished first.
pub fn spawn_sender(
    front: SocketAddr,
    stop: CancellationToken,
    acked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<SenderReport> {
    tokio::spawn(async move {
        let mut report = SenderReport::default();
        let mut conn: Option<TcpStream> = None;
        let mut last_ack = Instant::now();
        let patience = Duration::from_secs(180);
        while !stop.is_cancelled() {
            let id = format!("HL7FO{:06}", report.messages);
            report.messages += 1;
            let message = steward_hl7::probe_message(&id);
            let given_up = Instant::now() + patience;
            let mut tries = 0;
            loop {
                tries += 1;
                report.transmissions += 1;
                match exchange(front, &mut conn, &message, &id).await {
                    Ok(()) => {
                        report.acknowledged += 1;
                        acked.fetch_add(1, Ordering::SeqCst);
                        report.longest_gap = report.longest_gap.max(last_ack.elapsed());
                        last_ack = Instant::now();
                        break;
                    }
                    Err(_) if Instant::now() < given_up => {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => {
                        report.lost.push(id.clone());
                        break;
                    }
                }
            }
            if tries > 1 {
                report.duplicates += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        report
    })
}

/// One message through `front` on a new connection, acknowledged with AA.
pub async fn answers_through(front: SocketAddr, id: &str) -> bool {
    let mut conn = None;
    exchange(front, &mut conn, &steward_hl7::probe_message(id), id)
        .await
        .is_ok()
}

/// Send `message` over `conn` (connecting first if needed) and read an AA ACK for `id`.
async fn exchange(
    front: SocketAddr,
    conn: &mut Option<TcpStream>,
    message: &str,
    id: &str,
) -> Result<(), String> {
    let step = Duration::from_secs(2);
    if conn.is_none() {
        let stream = tokio::time::timeout(step, TcpStream::connect(front))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        *conn = Some(stream);
    }
    let stream = conn.as_mut().expect("connected");
    let frame = format!("\x0b{message}\x1c\r");
    stream
        .write_all(frame.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"\x1c\r") {
        let n = tokio::time::timeout(step, stream.read(&mut buf))
            .await
            .map_err(|_| "no ACK in time".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the ACK".into());
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let body = text.trim_start_matches('\x0b').trim_end_matches("\x1c\r");
    let ack = steward_hl7::Ack::parse(body).map_err(|e| e.to_string())?;
    if ack.code != steward_hl7::AckCode::ApplicationAccept || ack.control_id != id {
        return Err(format!("{:?} for {}", ack.code, ack.control_id));
    }
    Ok(())
}

/// What the watcher saw.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    pub sweeps: usize,
    /// Times both listeners accepted connections.
    pub both_running: usize,
    /// Times both accepted connections while both were in the HL7 backend's rotation (not
    /// in maintenance): two listeners active.
    pub both_active: Vec<String>,
}

/// Every 5 ms: does each listener accept connections, and is it in the backend's rotation?
/// Listener A is tested before and after B, so a handover between the two tests (A stops,
/// B starts) is not taken for overlap: A up before and after B means up while B was.
pub fn spawn_watcher(
    listeners: [SocketAddr; 2],
    runtime: RuntimeApi,
    stop: CancellationToken,
    both_running: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<WatchReport> {
    tokio::spawn(async move {
        let mut report = WatchReport::default();
        while !stop.is_cancelled() {
            report.sweeps += 1;
            let a0 = accepting(listeners[0]).await;
            let b = accepting(listeners[1]).await;
            let a1 = accepting(listeners[0]).await;
            let both = a0 && b && a1;
            if both {
                both_running.fetch_add(1, Ordering::SeqCst);
                report.both_running += 1;
                let states = backend_states(&runtime).await;
                let routed = |name: &str| {
                    states
                        .get(name)
                        .is_some_and(|s| !matches!(s, MemberState::Maint))
                };
                if routed(SERVERS[0]) && routed(SERVERS[1]) && accepting(listeners[1]).await {
                    report.both_active.push(format!("{states:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        report
    })
}

async fn accepting(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(50), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
