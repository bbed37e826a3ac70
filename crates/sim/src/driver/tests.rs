//! The driver against real sockets: these bind 127.0.3.x, so run them in a network
//! namespace of their own when other tests share the machine.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use steward_agent::{Driver, Layout, RunStatus, ServiceDefinition};
use steward_model::ServiceKind;
use steward_pki::CertificateAuthority;
use steward_testkit::http::Request;

use super::SimDriver;
use crate::faults::Faults;

const HOST: &str = "sim0001.sim.example.eng";

struct Bench {
    _dir: tempfile::TempDir,
    driver: SimDriver,
    tls: Arc<rustls::ClientConfig>,
    ip: IpAddr,
}

fn bench(last_octet: u8) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 3, last_octet));
    let layout = Layout::new(dir.path().join("agent"));
    ca.issue_agent(HOST, &[ip])
        .unwrap()
        .write_pair(&layout.tls_dir(), "server")
        .unwrap();
    let tls = Arc::new(steward_pki::client_config(&[ca.cert_pem()]).unwrap());
    Bench {
        driver: SimDriver::new(ip, layout, Arc::new(Faults::default())),
        _dir: dir,
        tls,
        ip,
    }
}

fn definition(kind: ServiceKind, ports: &[u16]) -> ServiceDefinition {
    ServiceDefinition {
        kind,
        ports: ports.to_vec(),
        drive: "C:".into(),
        release: "6.12.1".into(),
    }
}

/// GET the PSIS health path over TLS; `None` when nothing answers.
async fn psis_health(bench: &Bench, port: u16) -> Option<u16> {
    let addr = format!("{}:{port}", bench.ip);
    let tls = bench.tls.clone();
    tokio::task::spawn_blocking(move || {
        let path = match ServiceKind::Psis.spec().health {
            steward_model::HealthTest::Https { path, .. } => path,
            steward_model::HealthTest::Mllp => unreachable!("PSIS is probed over HTTPS"),
        };
        Request {
            tls: Some((tls, HOST)),
            ..Request::get(&addr, path)
        }
        .send()
        .ok()
        .map(|r| r.status)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_started_service_serves_its_health_path_until_killed_and_starts_again() {
    let bench = bench(1);
    let def = definition(ServiceKind::Psis, &[7001]);
    bench.driver.install(&def).await.unwrap();
    assert_eq!(
        bench.driver.status(ServiceKind::Psis).await,
        RunStatus::NotStarted
    );
    let first = bench.driver.start(&def).await.unwrap();
    assert_eq!(psis_health(&bench, 7001).await, Some(200));
    // Starting a running service is a no-op returning the same instance.
    assert_eq!(bench.driver.start(&def).await.unwrap(), first);

    assert!(bench.driver.kill(ServiceKind::Psis).await);
    assert_eq!(
        bench.driver.status(ServiceKind::Psis).await,
        RunStatus::Exited {
            code: None,
            signal: Some(9)
        }
    );
    assert_eq!(
        psis_health(&bench, 7001).await,
        None,
        "a killed service closes its port"
    );

    let second = bench.driver.start(&def).await.unwrap();
    assert_ne!(second.pid, first.pid);
    assert_eq!(psis_health(&bench, 7001).await, Some(200));
    bench.driver.uninstall(ServiceKind::Psis).await.unwrap();
    assert_eq!(psis_health(&bench, 7001).await, None);
    assert!(bench.driver.overview().is_empty());
}

#[tokio::test]
async fn failing_health_answers_503_until_healed() {
    let bench = bench(2);
    let def = definition(ServiceKind::Psis, &[7001]);
    bench.driver.install(&def).await.unwrap();
    bench.driver.start(&def).await.unwrap();
    assert!(bench.driver.set_healthy(ServiceKind::Psis, false));
    assert_eq!(psis_health(&bench, 7001).await, Some(503));
    assert_eq!(
        bench.driver.overview(),
        vec![(ServiceKind::Psis, true, false)]
    );
    assert!(bench.driver.set_healthy(ServiceKind::Psis, true));
    assert_eq!(psis_health(&bench, 7001).await, Some(200));
    assert!(
        !bench.driver.set_healthy(ServiceKind::Fhir, false),
        "not installed"
    );
    bench.driver.detach(true).await;
    assert_eq!(psis_health(&bench, 7001).await, None);
}

#[tokio::test]
async fn injected_install_failures_fail_the_install() {
    let bench = bench(3);
    bench.driver.faults().set_install_failure_percent(100);
    let err = bench
        .driver
        .install(&definition(ServiceKind::Psis, &[7001]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("simulated install failure"),
        "{err}"
    );
    bench.driver.faults().set_install_failure_percent(0);
    bench
        .driver
        .install(&definition(ServiceKind::Psis, &[7001]))
        .await
        .unwrap();
}

#[tokio::test]
async fn privileged_ports_are_mapped_and_every_role_is_served() {
    let bench = bench(4);
    assert_eq!(bench.driver.listen_ports(&[443, 80]), vec![10443, 10080]);
    assert_eq!(bench.driver.listen_ports(&[2244]), vec![2244]);
    for def in [
        definition(ServiceKind::Admin, &[443, 80]),
        definition(ServiceKind::Hl7, &[2244]),
    ] {
        bench.driver.install(&def).await.unwrap();
        bench.driver.start(&def).await.unwrap();
    }
    for port in [10443, 10080, 2244] {
        let addr = std::net::SocketAddr::new(bench.ip, port);
        tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
    }
    // A reload of a running HTTPS service re-reads its pair; HL7 has none but runs.
    assert!(bench.driver.reload(ServiceKind::Admin).await.unwrap());
    assert!(bench.driver.reload(ServiceKind::Hl7).await.unwrap());
    bench.driver.stop(ServiceKind::Hl7).await.unwrap();
    assert!(!bench.driver.reload(ServiceKind::Hl7).await.unwrap());
    bench.driver.detach(true).await;
}
