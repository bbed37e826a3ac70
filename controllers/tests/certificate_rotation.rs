//! Certificate rotation with zero failed requests, end to end: the controllers issue a
//! short-lived certificate (`duration: 2m`, `renewBefore: 1m40s`, so renewal 20 s after
//! issue) to a real agent (in-process `steward_agent` over mutual TLS) whose process
//! driver runs real lab services; while steward renews it, a client keeps opening fresh
//! HTTPS connections to PSIS (verified against the steward CA under the server's
//! hostname, as a browser would). None may fail, and the served certificate must change
//! to the renewed one.
//!
//! Like `fleet`, the lab services are this test executable itself (`harness = false`:
//! `main` sees `lab-service` and becomes that service).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_controllers::{EventType, Store};
use steward_model::ServiceKind;
use steward_pki::CertificateAuthority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use steward_testkit::Fixture;
use support::agents::{
    controllers_config, daemon_tls, snapshot_of, RunningControllers, Services, TestAgent,
};

const TEST_NAME: &str = "certificate_rotation_fails_no_request";
/// Generous: two cores shared with a parallel build.
const PATIENCE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);
const HOST: &str = "app1.example.eng";

fn main() -> ExitCode {
    support::harness::main(TEST_NAME, scenario)
}

/// An address no other test uses: 127.2xx.y.9 from this process's id (the fleet test
/// uses 127.1xx).
fn address(pid: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        200 + ((pid >> 8) % 50) as u8,
        (pid % 250) as u8 + 1,
        9,
    ))
}

fn desired_state(dir: &Path, database: &str, agent: &str) -> steward_model::Snapshot {
    Fixture::installation()
        .name("rotation")
        .database_flow(database)
        .certificate_authority("{mode: generated, duration: 2m, renewBefore: 1m40s}")
        .server(
            Fixture::server("app1")
                .hostname(HOST)
                .agent(agent)
                .services(["PSIS", "PSWS"]),
        )
        .write(dir);
    snapshot_of(dir)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    steward_testkit::eventually_async(what, PATIENCE, POLL, || std::future::ready(done())).await;
}

/// Thumbprints the controllers announced in `CertificateRenewed` events, oldest first.
fn renewed(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = store
        .status()
        .events
        .iter()
        .filter(|e| e.object == "certificate/app1" && e.reason == "CertificateRenewed")
        .filter_map(|e| {
            e.message
                .strip_prefix("thumbprint ")
                .and_then(|m| m.split_whitespace().next())
                .map(str::to_owned)
        })
        .collect();
    out.reverse();
    out
}

/// One browser-like request on a fresh connection: TLS verified against the steward CA
/// under the server's hostname. Returns the served certificate's thumbprint.
async fn probe(tls: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
        let mut stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let served = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| steward_pki::thumbprint_sha1(c))
            .ok_or("no certificate")?;
        let request = format!(
            "GET /identityserver HTTP/1.1\r\nHost: {HOST}:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        if !text.starts_with("HTTP/1.1 200") || !text.contains("IdentityServer4") {
            return Err(format!(
                "unexpected answer: {}",
                text.lines().next().unwrap_or("")
            ));
        }
        Ok(served)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
}

async fn scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::init(tmp.path().join("ca")).unwrap());
    let agent_tls = daemon_tls(&ca);
    let ip = address(std::process::id());
    let agent = TestAgent::start(&tmp.path().join("app1"), &ca, HOST, ip, Services::Lab).await;
    let agent_url = agent.url.clone();
    let client = agent.client(&agent_tls);

    let desired_dir = tmp.path().join("desired");
    // Installs wait for the database: a real one.
    let Some(db) = support::iridium::Iridium::start(&tmp.path().join("db")) else {
        return;
    };
    let snapshot = desired_state(&desired_dir, &db.database_yaml(), &agent_url);
    let config = controllers_config(
        ca.clone(),
        agent_tls.clone(),
        vec![ca.cert_pem().to_owned()],
        "steward-rotation-test",
    );
    let controllers = RunningControllers::start(config, snapshot, &desired_dir);
    let store = &controllers.store;

    eventually("the server to converge", || store.converged(1)).await;
    let first = store.status().servers[0]
        .certificate
        .thumbprint
        .clone()
        .unwrap();
    let renewals_before = renewed(store).len();
    let psis = client.service(ServiceKind::Psis).await.unwrap();
    let addr = SocketAddr::new(ip, psis.listen_ports[0]);
    let warnings_before = store
        .status()
        .events
        .iter()
        .filter(|e| e.object.starts_with("service/") && e.event_type == EventType::Warning)
        .count();

    // Continuous probes, through at least one renewal.
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        steward_pki::client_config(&[ca.cert_pem()]).unwrap(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                match probe(&tls, addr).await {
                    Ok(thumbprint) => served.lock().unwrap().push(thumbprint),
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        })
    };

    // Renewed (20 s after issue), and the renewed certificate served.
    let mut renewed_to = None;
    eventually("a renewal whose certificate PSIS serves", || {
        let renewals = renewed(store);
        let seen = served.lock().unwrap();
        renewed_to = renewals[renewals_before..]
            .iter()
            .find(|t| seen.contains(t))
            .cloned();
        renewed_to.is_some()
    })
    .await;
    // Keep probing a little past it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    let served = served.lock().unwrap().clone();
    let renewed_to = renewed_to.unwrap();
    println!(
        "{} requests during rotation, {} failed; served {} -> {}",
        served.len() + failures.len(),
        failures.len(),
        first,
        renewed_to
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(served.len() > 20, "only {} requests", served.len());
    assert_eq!(
        served.first(),
        Some(&first),
        "probes started on the first certificate"
    );
    assert_ne!(renewed_to, first);
    // Served in order: once the new one is served, the old one is not any more.
    let switched = served.iter().position(|t| *t == renewed_to).unwrap();
    assert!(
        served[switched..].iter().all(|t| *t != first),
        "the old certificate came back after the new one was served"
    );

    // What the agent reports and what the services serve agree with the status.
    let on_agent = client.certificate().await.unwrap().unwrap();
    let psis = client.service(ServiceKind::Psis).await.unwrap();
    assert_eq!(
        psis.tls_thumbprint.as_deref(),
        Some(on_agent.thumbprint.as_str())
    );
    let status = store.status();
    let summary = &status.servers[0].certificate;
    assert_eq!(
        summary.thumbprint.as_deref(),
        Some(on_agent.thumbprint.as_str())
    );
    let left = on_agent.not_after - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::minutes(2), "lifetime {left}");
    // The services stayed healthy through it: no warnings about them.
    let warnings = status
        .events
        .iter()
        .filter(|e| e.object.starts_with("service/") && e.event_type == EventType::Warning)
        .count();
    assert_eq!(warnings, warnings_before, "{:#?}", status.events);
    assert!(store.converged(1));

    controllers.stop().await;
    agent.shutdown().await;
}
