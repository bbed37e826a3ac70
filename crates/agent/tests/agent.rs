//! The agent end to end: real mTLS on 127.0.0.1, real child processes.

mod support;

use std::time::Duration;

use steward_agent::api::{
    ConnectionStrings, InstallOutcome, InstallRequest, ServiceStatus, UninstallOutcome,
};
use steward_agent::{AgentClient, ClientError};
use steward_model::ServiceKind;
use steward_pki::{CertificateAuthority, PrivateKeyPem};
use support::*;

fn request(ports: &[u16]) -> InstallRequest {
    InstallRequest {
        ports: ports.to_vec(),
        drive: "C:".into(),
        release: "6.12.1".into(),
        installed_by: "steward".into(),
    }
}

/// An agent that stops its services when it exits (not a lab agent), and a client of it.
async fn started(pki: &Pki) -> (RunningAgent, AgentClient) {
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let client = pki.client(agent.addr);
    (agent, client)
}

async fn status_of(
    client: &AgentClient,
    kind: ServiceKind,
) -> Option<(ServiceStatus, Option<u32>)> {
    let services = client.services().await.unwrap();
    services
        .into_iter()
        .find(|s| s.kind == kind)
        .map(|s| (s.status, s.pid))
}

#[tokio::test]
async fn install_kill_restart_uninstall() {
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;

    let host = client.host().await.unwrap();
    assert_eq!(host.hostname, "app1.example.eng");
    assert_eq!(host.computer_name, "APP1");
    assert!(client.services().await.unwrap().is_empty());

    let installed = client
        .install(ServiceKind::Psis, &request(&[7001]))
        .await
        .unwrap();
    assert_eq!(installed.outcome, InstallOutcome::Created);
    let service = installed.service;
    assert_eq!(service.status, ServiceStatus::Running);
    assert_eq!(service.listen_ports, [7001]);
    assert_eq!(service.link, "https://127.0.0.1:7001/identityserver");
    let pid = service.pid.unwrap();
    assert!(alive(pid));

    let listed = client.services().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, ServiceKind::Psis);
    assert_eq!(listed[0].pid, Some(pid));
    assert_eq!(listed[0].tls_thumbprint.as_ref().map(String::len), Some(40));

    let again = client
        .install(ServiceKind::Psis, &request(&[7001]))
        .await
        .unwrap();
    assert_eq!(again.outcome, InstallOutcome::Unchanged);
    assert_eq!(again.service.pid, Some(pid));

    let log = eventually("the service's output in its log", || async {
        let logs = client.logs(ServiceKind::Psis, 64 * 1024).await.unwrap();
        logs.log
            .contains("fake service started")
            .then_some(logs.log)
    })
    .await;
    assert!(
        log.contains("lab-service --kind PSIS --bind 127.0.0.1 --port 7001"),
        "{log}"
    );
    assert!(log.contains("--release 6.12.1"), "{log}");

    // Killed behind the agent's back: reported stopped, and not restarted by the agent.
    kill(pid);
    eventually("PSIS reported stopped", || async {
        (status_of(&client, ServiceKind::Psis).await == Some((ServiceStatus::Stopped, None)))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(&client, ServiceKind::Psis).await,
        Some((ServiceStatus::Stopped, None))
    );

    let restarted = client.restart(ServiceKind::Psis).await.unwrap();
    assert_eq!(restarted.status, ServiceStatus::Running);
    let new_pid = restarted.pid.unwrap();
    assert_ne!(new_pid, pid);
    assert!(alive(new_pid));

    let removed = client.uninstall(ServiceKind::Psis, false).await.unwrap();
    assert_eq!(removed.outcome, UninstallOutcome::Removed);
    assert!(client.services().await.unwrap().is_empty());
    eventually("the process to be gone", || async {
        (!alive(new_pid)).then_some(())
    })
    .await;
    assert!(!pki.state_dir().join("services/PSIS").exists());
    let err = client
        .uninstall(ServiceKind::Psis, false)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    agent.shutdown().await;
}

#[tokio::test]
async fn agent_restart_readopts_running_services_without_duplicates() {
    let pki = Pki::new();
    let state = pki.state_dir().to_string_lossy().into_owned();
    let mine = |kind: &'static str| {
        let state = state.clone();
        move || processes_with(&[&state, "--kind", kind])
    };

    let first = RunningAgent::start(pki.config(false, false)).await;
    let client = pki.client(first.addr);
    let pid = client
        .install(ServiceKind::Psws, &request(&[7002]))
        .await
        .unwrap()
        .service
        .pid
        .unwrap();
    first.shutdown().await;
    assert!(alive(pid), "services outlive the agent");

    let second = RunningAgent::start(pki.config(false, false)).await;
    let client = pki.client(second.addr);
    let service = client.service(ServiceKind::Psws).await.unwrap();
    assert_eq!(
        (service.status, service.pid),
        (ServiceStatus::Running, Some(pid))
    );
    assert_eq!(mine("PSWS")(), [pid], "exactly one instance");
    let log = client.logs(ServiceKind::Psws, 64 * 1024).await.unwrap().log;
    assert!(
        log.contains(&format!("re-adopted running process {pid}")),
        "{log}"
    );

    // An adopted process is not our child: its death is noticed by polling.
    kill(pid);
    eventually("adopted PSWS reported stopped", || async {
        (status_of(&client, ServiceKind::Psws).await == Some((ServiceStatus::Stopped, None)))
            .then_some(())
    })
    .await;
    let pid = client
        .restart(ServiceKind::Psws)
        .await
        .unwrap()
        .pid
        .unwrap();
    second.shutdown().await;

    // A service that died while the agent was down is started again on agent start.
    kill(pid);
    eventually("PSWS gone", || async { (!alive(pid)).then_some(()) }).await;
    let third = RunningAgent::start(pki.config(false, true)).await;
    let client = pki.client(third.addr);
    let service = client.service(ServiceKind::Psws).await.unwrap();
    assert_eq!(service.status, ServiceStatus::Running);
    let new_pid = service.pid.unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(mine("PSWS")(), [new_pid]);

    // Stopping services on exit is the lab's choice.
    third.shutdown().await;
    eventually("PSWS stopped with the agent", || async {
        (!alive(new_pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn clients_without_a_steward_certificate_are_refused() {
    let pki = Pki::new();
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let url = format!("https://localhost:{}", agent.addr.port());

    let anonymous = AgentClient::new(
        &url,
        steward_pki::client_config(&[pki.ca.cert_pem()]).unwrap(),
        TIMEOUT,
    )
    .unwrap();
    let err = anonymous.host().await.unwrap_err();
    assert_eq!(err.metric_label(), "tls", "{err:?}");

    let other_dir = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::init(other_dir.path()).unwrap();
    let stranger = other.issue_client("steward-daemon").unwrap();
    let foreign = AgentClient::with_mtls(
        &url,
        pki.ca.cert_pem(),
        &stranger.cert_pem,
        &stranger.key_pem,
        TIMEOUT,
    )
    .unwrap();
    let err = foreign.services().await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");

    // A client that does not trust the agent's CA refuses the agent.
    let daemon_of_other = other.issue_client("steward-daemon").unwrap();
    let misconfigured = AgentClient::with_mtls(
        &url,
        other.cert_pem(),
        &daemon_of_other.cert_pem,
        &daemon_of_other.key_pem,
        TIMEOUT,
    )
    .unwrap();
    let err = misconfigured.host().await.unwrap_err();
    assert_eq!(err.metric_label(), "tls", "{err:?}");

    // Neither refused handshakes, nor junk, nor a peer stalling mid-handshake hurt the
    // server: every connection has its own task.
    use tokio::io::AsyncWriteExt;
    let mut junk = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let _stalled = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    pki.client(agent.addr).host().await.unwrap();
    agent.shutdown().await;
}

#[tokio::test]
async fn certificate_and_connection_strings_reach_the_services() {
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;
    client
        .install(ServiceKind::Client, &request(&[7003]))
        .await
        .unwrap();
    assert_eq!(client.connection_strings().await.unwrap(), None);
    let seeded = client.certificate().await.unwrap().unwrap();
    // Reloads are asked for by SIGHUP: only once the service runs its handler can one be
    // logged (a reload sent while it was still starting was lost, and the test flaked).
    eventually("the service to start", || async {
        let log = client
            .logs(ServiceKind::Client, 64 * 1024)
            .await
            .unwrap()
            .log;
        log.contains("fake service env:").then_some(())
    })
    .await;

    let server = pki
        .ca
        .issue_server(
            &["app1.example.eng".into()],
            &[],
            Duration::from_secs(30 * 86_400),
        )
        .unwrap();
    let installed = client
        .install_certificate(&server.cert_pem, &server.key_pem)
        .await
        .unwrap();
    assert_eq!(installed.thumbprint, server.sha1_thumbprint);
    assert_ne!(installed.thumbprint, seeded.thumbprint);
    assert_eq!(installed.not_after, server.not_after);
    assert_eq!(installed.reloaded, [ServiceKind::Client]);
    let service = client.service(ServiceKind::Client).await.unwrap();
    assert_eq!(
        service.tls_thumbprint.as_deref(),
        Some(server.sha1_thumbprint.as_str())
    );
    let key_file = pki.state_dir().join("tls/server.key");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        server.key_pem.expose()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    eventually("the service to log the reload", || async {
        let log = client
            .logs(ServiceKind::Client, 64 * 1024)
            .await
            .unwrap()
            .log;
        log.contains("reload requested").then_some(())
    })
    .await;
    assert_eq!(
        client.certificate().await.unwrap().unwrap().thumbprint,
        server.sha1_thumbprint
    );

    let other = pki
        .ca
        .issue_server(
            &["app2.example.eng".into()],
            &[],
            Duration::from_secs(86_400),
        )
        .unwrap();
    let err = client
        .install_certificate(&server.cert_pem, &other.key_pem)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let err = client
        .install_certificate("junk", &PrivateKeyPem::new("junk".into()))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!err.to_string().contains("junk"), "{err}");

    let strings = ConnectionStrings {
        identity_server: "https://app1.example.eng:7001/identityserver".into(),
        psws: "https://app1.example.eng:7002/psws/api".into(),
        client: Some("https://app1.example.eng:7003".into()),
        api: Some("https://app1.example.eng:7004/api".into()),
    };
    let update = client.set_connection_strings(&strings).await.unwrap();
    assert_eq!(update.pushed, [ServiceKind::Client]);
    assert_eq!(
        client.connection_strings().await.unwrap(),
        Some(strings.clone())
    );
    let file = pki
        .state_dir()
        .join("services/CLIENT/connection-strings.json");
    let written: ConnectionStrings = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(written, strings);

    agent.shutdown().await;
}

#[tokio::test]
async fn lab_mode_maps_admins_privileged_ports() {
    let pki = Pki::new();
    let agent = RunningAgent::start(pki.config(true, true)).await;
    let client = pki.client(agent.addr);
    let admin = client
        .install(ServiceKind::Admin, &request(&[443, 80]))
        .await
        .unwrap()
        .service;
    assert_eq!(admin.ports, [443, 80]);
    assert_eq!(admin.listen_ports, [10443, 10080]);
    assert_eq!(admin.link, "https://127.0.0.1:10443/AdminConsole");
    let state = pki.state_dir().to_string_lossy().into_owned();
    let found = processes_with(&[&state, "--kind ADMIN", "--port 10443 --port 10080"]);
    assert_eq!(found, [admin.pid.unwrap()]);
    agent.shutdown().await;
}

#[tokio::test]
async fn remnants_of_uninstalled_services_are_removed() {
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;
    client
        .install(ServiceKind::Hl7, &request(&[2244]))
        .await
        .unwrap();
    let leftover = pki.state_dir().join("services/FHIR/bin");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("Fhir.dll"), "x").unwrap();

    let report = client.cleanup_remnants().await.unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert!(report.removed[0].ends_with("services/FHIR"), "{report:?}");
    assert!(report.failed.is_empty());
    assert!(!pki.state_dir().join("services/FHIR").exists());
    assert!(pki.state_dir().join("services/HL7").exists());
    assert_eq!(client.cleanup_remnants().await.unwrap().removed.len(), 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn api_errors_are_json_with_stable_codes() {
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;

    let err = client.restart(ServiceKind::Job).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 404, code: Some(c), .. } if c == "not_installed"),
        "{err}"
    );
    let err = client
        .install(ServiceKind::Psis, &request(&[7001, 7002]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 400, code: Some(c), .. } if c == "invalid_request"),
        "{err}"
    );
    client
        .install(ServiceKind::Psis, &request(&[7001]))
        .await
        .unwrap();
    let err = client
        .install(ServiceKind::Psws, &request(&[7001]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("PSIS"), "{err}");

    agent.shutdown().await;
}

/// Waits longer than `eventually`: the agent's restart backoff reaches 10 s.
async fn within_30s<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let (deadline, poll) = (Duration::from_secs(30), Duration::from_millis(50));
    steward_testkit::eventually_async(what, deadline, poll, check).await
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_the_service_runs_once_it_is_freed() {
    use steward_agent::api::FailureReason;
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;
    // Another process (this test) holds the port; the service fails like a lab service
    // that cannot bind.
    let holder = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    std::fs::write(pki.state_dir().join("FAIL-WITH"), "98").unwrap();
    client
        .install(ServiceKind::Psis, &request(&[port]))
        .await
        .unwrap();

    let failure = eventually("PSIS's last failure reported", || async {
        let s = client.service(ServiceKind::Psis).await.ok()?;
        s.last_failure
    })
    .await;
    assert_eq!(failure.reason, FailureReason::PortInUse, "{failure:?}");
    assert_eq!(failure.port, Some(port));
    assert_eq!(failure.holder_pid, Some(std::process::id()));
    assert!(
        failure.log_tail.contains("address already in use"),
        "{failure:?}"
    );
    assert_eq!(failure.exit_code, Some(98));
    // The agent keeps trying on its own, with a backoff.
    let log = eventually("two restarts by the agent", || async {
        let log = client.logs(ServiceKind::Psis, 64 * 1024).await.ok()?.log;
        (log.matches("starting again in").count() >= 2).then_some(log)
    })
    .await;
    assert!(log.contains("starting again in 0.2 s"), "{log}");
    assert!(log.contains("starting again in 0.4 s"), "{log}");

    // The cause goes away: the agent's next attempt runs, no daemon involved.
    std::fs::remove_file(pki.state_dir().join("FAIL-WITH")).unwrap();
    drop(holder);
    let running = within_30s("PSIS running after the port was freed", || async {
        let s = client.service(ServiceKind::Psis).await.ok()?;
        (s.status == ServiceStatus::Running).then_some(s)
    })
    .await;
    assert!(alive(running.pid.unwrap()));
    // The failure stays visible (until a reinstall) for whoever investigates.
    assert_eq!(
        running.last_failure.map(|f| f.reason),
        Some(FailureReason::PortInUse)
    );
    // Not a stale instance: it stays up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status_of(&client, ServiceKind::Psis).await,
        Some((ServiceStatus::Running, running.pid))
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_service_failing_for_another_reason_shows_its_exit_code_and_log() {
    use steward_agent::api::FailureReason;
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;
    std::fs::write(pki.state_dir().join("FAIL-WITH"), "3").unwrap();
    client
        .install(ServiceKind::Psis, &request(&[7001]))
        .await
        .unwrap();
    let failed = eventually("PSIS failed with code 3", || async {
        let s = client.service(ServiceKind::Psis).await.ok()?;
        (s.status == ServiceStatus::Failed && s.last_failure.is_some()).then_some(s)
    })
    .await;
    let failure = failed.last_failure.unwrap();
    assert_eq!(failure.reason, FailureReason::Exited);
    assert_eq!(failure.exit_code, Some(3));
    assert_eq!(
        failure.message,
        "exited with code 3: fake service: cannot listen: address already in use"
    );
    assert_eq!(failed.message.as_deref(), Some(failure.message.as_str()));
    // An uninstall stops the agent's retries for good.
    client.uninstall(ServiceKind::Psis, false).await.unwrap();
    std::fs::remove_file(pki.state_dir().join("FAIL-WITH")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(client.services().await.unwrap().is_empty());
    let state = pki.state_dir().to_string_lossy().into_owned();
    assert!(
        processes_with(&[&state, "lab-service"]).is_empty(),
        "nothing started after the uninstall"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn services_get_a_minimal_environment() {
    // cargo sets CARGO_MANIFEST_DIR for the test process; the agent must not pass it on.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let pki = Pki::new();
    let (agent, client) = started(&pki).await;
    client
        .install(ServiceKind::Psis, &request(&[7001]))
        .await
        .unwrap();
    let log = eventually("the service's environment in its log", || async {
        let log = client.logs(ServiceKind::Psis, 64 * 1024).await.ok()?.log;
        log.contains("fake service env: PATH").then_some(log)
    })
    .await;
    let names: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("fake service env: "))
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
    agent.shutdown().await;
}

/// An HL7 standby: stopped on request, it stays stopped across an agent restart, refuses a
/// `restart` (a drift repair), and runs again only through `start`.
#[tokio::test]
async fn a_stopped_service_stays_stopped_across_an_agent_restart_until_started() {
    let pki = Pki::new();
    let state = pki.state_dir().to_string_lossy().into_owned();
    let mine = move || processes_with(&[&state, "--kind", "HL7"]);

    let (first, client) = started(&pki).await;
    let standby = client
        .install_held(ServiceKind::Hl7, &request(&[2244]))
        .await
        .unwrap();
    assert_eq!(standby.outcome, InstallOutcome::Created);
    assert_eq!(
        (standby.service.status, standby.service.held),
        (ServiceStatus::Stopped, true)
    );
    assert!(mine().is_empty(), "a held install starts nothing");

    let started = client.start(ServiceKind::Hl7).await.unwrap();
    assert_eq!(
        (started.status, started.held),
        (ServiceStatus::Running, false)
    );
    let pid = started.pid.unwrap();
    let stopped = client.stop(ServiceKind::Hl7).await.unwrap();
    assert_eq!(
        (stopped.status, stopped.held),
        (ServiceStatus::Stopped, true)
    );
    eventually("HL7 gone", || async { (!alive(pid)).then_some(()) }).await;
    let refused = client.restart(ServiceKind::Hl7).await.unwrap_err();
    assert!(refused.to_string().contains("held"), "{refused}");
    // Installing the same again (what a desired state re-applied does) keeps it held.
    let again = client
        .install(ServiceKind::Hl7, &request(&[2244]))
        .await
        .unwrap();
    assert_eq!(again.outcome, InstallOutcome::Unchanged);
    assert_eq!(again.service.status, ServiceStatus::Stopped);
    first.shutdown().await;

    let second = RunningAgent::start(pki.config(false, true)).await;
    let client = pki.client(second.addr);
    let after = client.service(ServiceKind::Hl7).await.unwrap();
    assert_eq!((after.status, after.held), (ServiceStatus::Stopped, true));
    assert!(mine().is_empty(), "the agent restart started the held HL7");

    let running = client.start(ServiceKind::Hl7).await.unwrap();
    assert_eq!(running.status, ServiceStatus::Running);
    assert_eq!(mine(), [running.pid.unwrap()]);
    second.shutdown().await;
}

/// An idle mutual-TLS connection costs tens of KB: a burst of calls to one agent leaves two
/// kept for the next calls, not one per call of the burst.
#[tokio::test]
async fn a_burst_of_calls_leaves_two_idle_connections() {
    let pki = Pki::new();
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let client = pki.client(agent.addr);
    let (a, b, c, d, e, f) = tokio::join!(
        client.services(),
        client.services(),
        client.services(),
        client.services(),
        client.services(),
        client.services()
    );
    for listed in [a, b, c, d, e, f] {
        listed.unwrap();
    }
    assert_eq!(client.idle_connections(), 2);
    agent.shutdown().await;
}

/// With 1,000 agents, two idle connections each would be 2,000 idle mutual-TLS
/// connections: clients made with one shared HTTPS client keep their idle connections in
/// one pool, bounded in all, not per client. (Two names of one agent are two pool keys,
/// as two agents would be.)
#[tokio::test]
async fn clients_sharing_one_https_client_keep_its_total_of_idle_connections() {
    use std::sync::Arc;
    use steward_https_client::{HttpsClient, PoolLimits};

    let pki = Pki::new();
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let tls = steward_pki::mtls_client_config(
        pki.ca.cert_pem(),
        &pki.daemon.cert_pem,
        pki.daemon.key_pem.expose(),
    )
    .unwrap();
    let limits = PoolLimits {
        per_key: 2,
        total: 3,
        ..PoolLimits::default()
    };
    let http = Arc::new(HttpsClient::new(tls, limits));
    let port = agent.addr.port();
    let by_name =
        AgentClient::sharing(&format!("https://localhost:{port}"), http.clone(), TIMEOUT).unwrap();
    let by_address =
        AgentClient::sharing(&format!("https://127.0.0.1:{port}"), http.clone(), TIMEOUT).unwrap();
    for client in [&by_name, &by_address] {
        let (a, b, c, d) = tokio::join!(
            client.services(),
            client.services(),
            client.services(),
            client.services()
        );
        for listed in [a, b, c, d] {
            listed.unwrap();
        }
    }
    // Two per key would be four; the shared pool stops at its total.
    assert_eq!(http.idle_connections(), 3);
    assert_eq!(
        by_name.idle_connections(),
        3,
        "one pool, seen from either client"
    );
    agent.shutdown().await;
}
