//! The controllers against real agents (in-process `steward_agent` servers with mutual
//! TLS on their own loopback addresses) running real lab services (the `steward_lab`
//! code, over real TLS and MLLP). One scenario, in order: a fresh converge (PSIS, then
//! PSWS, then the rest), a killed service restarted, monitor mode changing nothing, and
//! an agent that is down degrading its server while the other server converges.
//!
//! The agents' process driver starts services as `PROGRAM lab-service --kind K ...`.
//! PROGRAM is this test executable itself: with `harness = false` its `main` sees
//! `lab-service` and becomes that service. This needs no build step beyond the test's own,
//! no `steward` binary (another crate's), and runs exactly the lab code the daemon runs.
//! A lab service exits when this process goes away, so a failed run leaves no strays.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::ServiceStatus;
use steward_agent::AgentClient;
use steward_controllers::{ConditionStatus, ConditionType, FleetStatus, ServiceHealth, Store};
use steward_model::resource::Mode;
use steward_model::{ServiceKind, Snapshot};
use steward_pki::CertificateAuthority;
use steward_testkit::Fixture;

mod support;
use support::agents::{
    controllers_config, daemon_tls, desired, snapshot_of, RunningControllers, Services, TestAgent,
};

const TEST_NAME: &str = "fleet_converges_repairs_and_degrades";
/// Generous: two cores shared with a parallel build.
const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    support::harness::main(TEST_NAME, scenario)
}

/// Addresses no other test uses: 127.1xx.y.z from this process's id.
fn address(pid: u32, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + ((pid >> 8) % 100) as u8,
        (pid % 250) as u8 + 1,
        host,
    ))
}

fn desired_state(
    dir: &Path,
    database: &str,
    agents: [&str; 2],
    app1: &[&str],
    app2: &[&str],
) -> Snapshot {
    let mut fleet = Fixture::installation()
        .name("fleet")
        .database_flow(database);
    for (name, agent, kinds) in [("app1", agents[0], app1), ("app2", agents[1], app2)] {
        fleet = fleet.server(
            Fixture::server(name)
                .agent(agent)
                .services(kinds.iter().copied()),
        );
    }
    fleet.write(dir);
    snapshot_of(dir)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    steward_testkit::eventually_async(what, PATIENCE, POLL, || std::future::ready(done())).await;
}

fn service<'a>(status: &'a FleetStatus, server: &str, kind: ServiceKind) -> &'a ServiceHealth {
    status
        .servers
        .iter()
        .find(|s| s.name == server)
        .and_then(|s| s.services.iter().find(|x| x.kind == kind))
        .unwrap_or_else(|| panic!("no {server}/{kind} in the status"))
}

/// False also while the service is not in the status yet (a generation not yet applied).
fn healthy(store: &Store, server: &str, kind: ServiceKind) -> bool {
    store
        .status()
        .servers
        .iter()
        .filter(|s| s.name == server)
        .flat_map(|s| s.services.iter())
        .any(|s| s.kind == kind && s.healthy == Some(true))
}

fn ready_reason(conditions: &[steward_controllers::Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.condition_type == ConditionType::Ready)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The sample of the series `line_start` starts, `None` when there is no such series.
fn metric(registry: &steward_controllers::MetricsRegistry, line_start: &str) -> Option<f64> {
    registry
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
}

async fn pid_of(client: &AgentClient, kind: ServiceKind) -> Option<u32> {
    client.service(kind).await.ok().and_then(|s| s.pid)
}

async fn scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::init(tmp.path().join("ca")).unwrap());
    let agent_tls = daemon_tls(&ca);
    let pid = std::process::id();
    let a = TestAgent::start(
        &tmp.path().join("app1"),
        &ca,
        "app1.example.eng",
        address(pid, 1),
        Services::Lab,
    )
    .await;
    let b = TestAgent::start(
        &tmp.path().join("app2"),
        &ca,
        "app2.example.eng",
        address(pid, 2),
        Services::Lab,
    )
    .await;
    let (client_a, client_b) = (a.client(&agent_tls), b.client(&agent_tls));
    let seed_thumbprint = client_a.certificate().await.unwrap().unwrap().thumbprint;

    let desired_dir = tmp.path().join("desired");
    // Installs wait for the database: a real one.
    let Some(db) = support::iridium::Iridium::start(&tmp.path().join("db")) else {
        return;
    };
    let snapshot = desired_state(
        &desired_dir,
        &db.database_yaml(),
        [&a.url, &b.url],
        &["PSIS", "PSWS"],
        &["HEALTH", "HL7"],
    );
    let config = controllers_config(
        ca.clone(),
        agent_tls.clone(),
        vec![ca.cert_pem().to_owned()],
        "steward-fleet-test",
    );
    let controllers = RunningControllers::start(config, snapshot.clone(), &desired_dir);
    let (store, registry, tx) = (
        &controllers.store,
        &controllers.registry,
        &controllers.desired,
    );
    let desired = |generation: u64, snapshot: Snapshot| desired(generation, snapshot, &desired_dir);

    // 1. A fresh fleet converges, PSIS first, then PSWS, then the rest.
    eventually("the fleet to converge", || store.converged(1)).await;
    let status = store.status();
    let installed_at = |kind| {
        let e = status
            .events
            .iter()
            .rposition(|e| e.reason == "Installed" && e.object.ends_with(&format!("/{kind}")))
            .unwrap_or_else(|| panic!("no Installed event for {kind}"));
        status.events.len() - e
    };
    let healthy_at = |kind| {
        let e = status
            .events
            .iter()
            .rposition(|e| e.reason == "Healthy" && e.object.ends_with(&format!("/{kind}")))
            .unwrap_or_else(|| panic!("no Healthy event for {kind}"));
        status.events.len() - e
    };
    assert!(
        healthy_at("PSIS") < installed_at("PSWS"),
        "{:#?}",
        status.events
    );
    assert!(healthy_at("PSWS") < installed_at("HEALTH"));
    assert!(healthy_at("PSWS") < installed_at("HL7"));
    for server in &status.servers {
        assert_eq!(server.agent_up, Some(true));
        assert_eq!(
            ready_reason(&server.certificate.conditions),
            "CertificateInstalled"
        );
        let thumbprint = server.certificate.thumbprint.as_deref().unwrap();
        assert_ne!(
            thumbprint, seed_thumbprint,
            "steward's own certificate is installed"
        );
    }
    let psws = service(&status, "app1", ServiceKind::Psws);
    let probe = psws.last_probe.as_ref().unwrap();
    assert!(probe.success && probe.http_status == Some(200), "{probe:?}");
    assert_eq!(status.hl7.active_listener.as_deref(), Some("app2"));
    assert_eq!(
        metric(registry, "steward_hl7_active_listener{server=\"app2\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            registry,
            "steward_service_healthy{server=\"app1\",service=\"PSIS\"}"
        ),
        Some(1.0)
    );
    let on_agent = client_b.service(ServiceKind::Health).await.unwrap();
    assert_eq!(on_agent.installed_by, "steward-fleet-test");
    assert_eq!(
        on_agent.tls_thumbprint,
        status.servers[1].certificate.thumbprint
    );

    // 2. A killed service is restarted.
    let before = pid_of(&client_b, ServiceKind::Health).await.unwrap();
    kill(before);
    eventually("HEALTH to be restarted", || {
        store
            .resource("service", "app2.HEALTH")
            .is_some_and(|r| r.events.iter().any(|e| e.reason == "Restarted"))
    })
    .await;
    eventually("HEALTH to be healthy again", || {
        healthy(store, "app2", ServiceKind::Health)
    })
    .await;
    let after = pid_of(&client_b, ServiceKind::Health).await.unwrap();
    assert_ne!(before, after);
    assert_eq!(
        metric(
            registry,
            "steward_drift_corrected_total{kind=\"service_stopped\"}"
        ),
        Some(1.0)
    );

    // 3. Monitor mode reports drift and changes nothing.
    let mut monitor = snapshot.clone();
    monitor.installation.mode = Mode::Monitor;
    tx.send(desired(2, monitor)).unwrap();
    eventually("monitor mode to be in force", || {
        store
            .status()
            .installation
            .is_some_and(|i| i.mode == Mode::Monitor)
    })
    .await;
    kill(pid_of(&client_b, ServiceKind::Hl7).await.unwrap());
    eventually("the stopped HL7 to be reported", || {
        let status = store.status();
        let hl7 = service(&status, "app2", ServiceKind::Hl7);
        hl7.conditions
            .iter()
            .any(|c| c.condition_type == ConditionType::Degraded && c.reason == "NotRunning")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hl7 = client_b.service(ServiceKind::Hl7).await.unwrap();
    assert_ne!(
        hl7.status,
        ServiceStatus::Running,
        "monitor mode restarted HL7"
    );
    assert_eq!(
        metric(
            registry,
            "steward_drift_detected_total{kind=\"service_stopped\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            registry,
            "steward_drift_corrected_total{kind=\"service_stopped\"}"
        ),
        Some(1.0)
    );
    assert_eq!(store.status().hl7.active_listener, None);

    // ... and autoCorrect repairs it.
    tx.send(desired(3, snapshot.clone())).unwrap();
    eventually("HL7 to be repaired", || store.converged(3)).await;

    // 4. An agent that is down degrades its server; the other server still converges.
    b.shutdown().await;
    let grown = desired_state(
        &desired_dir,
        &db.database_yaml(),
        [&a.url, client_b.base_url()],
        &["PSIS", "PSWS", "CLIENT"],
        &["HEALTH", "HL7"],
    );
    tx.send(desired(4, grown)).unwrap();
    eventually("app1 to converge while app2's agent is down", || {
        let status = store.status();
        let app2 = status.servers.iter().find(|s| s.name == "app2").unwrap();
        let degraded = app2.conditions.iter().any(|c| {
            c.condition_type == ConditionType::Degraded && c.status == ConditionStatus::True
        });
        healthy(store, "app1", ServiceKind::Client) && app2.agent_up == Some(false) && degraded
    })
    .await;
    assert!(!store.converged(4));
    assert_eq!(
        metric(registry, "steward_agent_up{server=\"app2\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(registry, "steward_agent_up{server=\"app1\"}"),
        Some(1.0)
    );

    let report = controllers.stop().await;
    assert!(report["service"].succeeded > 0, "{report:?}");
    a.shutdown().await;
}
