//! The three controllers running together on scripted agents, on a paused clock.

use super::*;
use crate::certificate::Certificates;
use crate::fakes::{fixture, headline, Call, Fixture};
use crate::server::Servers;
use crate::triggers::Applied;
use steward_agent::ClientError;
use steward_model::ServiceKind;

/// Polls on the paused clock, so "120 s" costs nothing unless the fleet really stalls.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let (deadline, poll) = (Duration::from_secs(120), Duration::from_millis(100));
    steward_testkit::eventually_async(what, deadline, poll, || std::future::ready(done())).await;
}

struct Running {
    store: Arc<Store>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<RunReport>,
    _desired: watch::Sender<Option<Desired>>,
}

fn start(fx: &mut Fixture) -> Running {
    let controllers = fx.controllers.take().unwrap();
    let store = controllers.store();
    let (tx, rx) = watch::channel(Some(fx.desired(fx.generation(), fx.current())));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(controllers.run(rx, shutdown.clone()));
    Running {
        store,
        shutdown,
        task,
        _desired: tx,
    }
}

impl Running {
    async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }
}

/// Position in the event ring (newest first) of the oldest matching event.
fn first(events: &[Event], object: &str, reason: &str) -> usize {
    events
        .iter()
        .rposition(|e| e.object == object && e.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} event for {object}"))
}

#[tokio::test(start_paused = true)]
async fn a_fresh_fleet_converges_in_order_despite_a_flaky_agent() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH", "HL7"])]);
    let app2 = fx.agent("app2");
    app2.fail_next(Call::Host, ClientError::Timeout(Duration::from_secs(5)));
    for _ in 0..2 {
        app2.fail_next(
            Call::Services,
            ClientError::Status {
                status: 503,
                code: None,
                message: "starting".into(),
            },
        );
    }
    app2.fail_next(Call::Certificate, ClientError::InvalidBody("<html>".into()));
    let running = start(&mut fx);
    let store = running.store.clone();
    wait_until("convergence", || store.converged(1)).await;

    let events = store.status().events;
    let psis_ready = first(&events, "service/app1/PSIS", "Healthy");
    let psws_installed = first(&events, "service/app1/PSWS", "Installed");
    let psws_ready = first(&events, "service/app1/PSWS", "Healthy");
    assert!(first(&events, "service/app1/PSIS", "Installed") > psis_ready);
    assert!(
        psis_ready > psws_installed,
        "PSWS installed before PSIS was healthy"
    );
    for rest in ["service/app2/HEALTH", "service/app2/HL7"] {
        assert!(
            psws_ready > first(&events, rest, "Installed"),
            "{rest} installed before PSWS was healthy"
        );
    }
    let status = store.status();
    assert_eq!(status.hl7.active_listener.as_deref(), Some("app2"));
    assert!(status.servers.iter().all(|s| s.agent_up == Some(true)));
    assert_eq!(
        fx.gauge("steward_hl7_active_listener", &[("server", "app2")]),
        Some(1.0)
    );

    let report = running.stop().await;
    assert!(report["service"].succeeded > 0);
    assert!(report["server"].failed >= 1, "{report:?}");
    assert!(
        fx.counter(
            "steward_reconcile_total",
            &[("controller", "service"), ("result", "success")]
        ) > 0.0
    );
    assert!(
        fx.counter(
            "steward_reconcile_total",
            &[("controller", "server"), ("result", "error")]
        ) >= 1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_whose_agent_is_down_does_not_hold_up_the_others() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS", "CLIENT"]), ("app2", &["HEALTH"])]);
    let app2 = fx.agent("app2");
    app2.set_down(true);
    let running = start(&mut fx);
    let store = running.store.clone();
    let app1_ready = |store: &Store| {
        let status = store.status();
        let app1 = status.servers.iter().find(|s| s.name == "app1").unwrap();
        app1.services.iter().all(|s| s.healthy == Some(true))
            && status.servers[1].agent_up == Some(false)
    };
    wait_until("app1 to converge while app2 is down", || app1_ready(&store)).await;
    let status = store.status();
    let app2_status = &status.servers[1];
    assert_eq!(headline(&app2_status.conditions), "AgentConnectionRefused");
    assert!(!store.converged(1));
    assert_eq!(
        fx.gauge("steward_agent_up", &[("server", "app2")]),
        Some(0.0)
    );
    let health = store.resource("service", "app2.HEALTH").unwrap();
    assert_eq!(headline(&health.conditions), "AgentConnectionRefused");

    // Back: noticed within the server controller's backoff cap, then converged.
    app2.set_down(false);
    wait_until("app2 to converge after its agent came back", || {
        store.converged(1)
    })
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn new_generations_wake_what_they_change_and_prune_servers() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let running = start(&mut fx);
    let store = running.store.clone();
    wait_until("convergence", || store.converged(1)).await;

    // app2 leaves with prune: its service is uninstalled and the server forgotten.
    let mut next = fx.current();
    next.servers.remove("app2");
    next.installation.prune = true;
    running._desired.send(Some(fx.desired(2, next))).unwrap();
    wait_until("app2 to be pruned and forgotten", || {
        store.status().servers.len() == 1
    })
    .await;
    assert!(fx.agent("app2").state().services.is_empty());
    assert!(fx.agent("app2").calls(Call::CleanupRemnants) >= 1);
    assert!(store.converged(2));
    // A pruned server's series is removed, not left at 0.
    assert_eq!(fx.gauge("steward_agent_up", &[("server", "app2")]), None);
    running.stop().await;
}

#[tokio::test]
async fn an_empty_snapshot_is_refused_while_servers_are_managed() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    let mut empty = fx.current();
    empty.servers.clear();
    assert_eq!(fx.apply(empty), Applied::Refused);
    assert_eq!(
        fx.ctx.desired.current().unwrap().generation(),
        1,
        "the last good one stays"
    );
    let status = fx.ctx.store.status();
    let installation = status.installation.unwrap();
    assert_eq!(headline(&installation.conditions), "EmptySnapshotRefused");
    assert_eq!(status.servers.len(), 1);
    assert!(status.servers[0].desired);
    let resource = fx.ctx.store.resource("installation", "ps").unwrap();
    assert!(resource
        .events
        .iter()
        .any(|e| e.reason == "EmptySnapshotRefused" && e.message.contains("app1")));

    assert!(matches!(fx.apply(fx.current()), Applied::Accepted(_)));
    let installation = fx.ctx.store.status().installation.unwrap();
    assert_eq!(headline(&installation.conditions), "Applied");
}

#[tokio::test]
async fn status_is_camel_case_and_names_no_secret() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HL7"])]);
    fx.run::<Servers>("app1".into()).await.unwrap();
    fx.run::<Certificates>("app1".into()).await.unwrap();
    let status = fx.ctx.store.status();
    let json = serde_json::to_value(&status).unwrap();
    let back: FleetStatus = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, status, "clients (`steward status`) can read it back");
    assert_eq!(json["observedGeneration"], 1);
    let database = &json["database"];
    assert_eq!(
        (
            &database["server"],
            database["port"].as_u64(),
            &database["name"],
            &database["user"],
            &database["up"],
            &database["serviceLogin"],
            &database["missing"]
        ),
        (
            &serde_json::json!("db.example.eng"),
            Some(1433),
            &serde_json::json!("PS"),
            &serde_json::json!("u"),
            &serde_json::json!(true),
            &serde_json::json!("ImprivataPatientSecureServices_PS"),
            &serde_json::json!([])
        )
    );
    assert_eq!(json["activeDirectory"], serde_json::json!([]));
    assert_eq!(
        json["hl7"],
        serde_json::json!({"activeListener": null, "standby": [], "lastFailover": null, "conditions": []})
    );
    let server = &json["servers"][0];
    assert_eq!(server["agentUp"], true);
    assert_eq!(server["hostname"], "app1.example.eng");
    assert_eq!(server["host"]["computerName"], "APP1");
    let thumbprint = server["certificate"]["thumbprint"].as_str().unwrap();
    assert_eq!(thumbprint.len(), 40);
    assert_eq!(thumbprint, thumbprint.to_ascii_uppercase());
    assert!(server["certificate"]["notAfter"].as_str().is_some());
    let service = &server["services"][0];
    assert_eq!(service["kind"], "PSIS");
    assert_eq!(service["port"], 7001);
    assert_eq!(service["installed"], false);
    assert!(service["healthy"].is_null());
    assert_eq!(service["conditions"][0]["type"], "Ready");
    assert_eq!(server["services"][2]["kind"], "HL7");
    assert!(json["events"].as_array().is_some_and(|e| !e.is_empty()));
    let text = json.to_string();
    for secret in ["passwordRef", "PRIVATE", "env:PW"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(fx.ctx.store.resource("service", "app1:hl7").is_some());
    assert!(fx.ctx.store.resource("certificates", "app1").is_some());
    assert!(fx.ctx.store.resource("server", "nope").is_none());
    assert!(fx.ctx.store.resource("service", "app1.NOPE").is_none());
}

#[tokio::test]
async fn changes_are_signalled_and_quiet_probes_are_not() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    let mut changes = fx.ctx.store.changes();
    changes.borrow_and_update();
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert!(changes.has_changed().unwrap());
    let key = ServiceKey::new("app1", ServiceKind::Psis);
    fx.until_healthy("app1", ServiceKind::Psis).await;
    changes.borrow_and_update();
    assert_eq!(fx.probe("app1", ServiceKind::Psis).await, Some(true));
    fx.run::<crate::service::Services>(key).await.unwrap();
    assert!(
        !changes.has_changed().unwrap(),
        "a probe that changed nothing"
    );
}

#[test]
fn construction_checks_roots_limits_and_single_registration() {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path()).unwrap();
    let pem = ca.cert_pem().to_owned();
    let config = ControllersConfig {
        ca: Some(Arc::new(ca)),
        agent_tls: steward_pki::client_config(std::slice::from_ref(&pem)).unwrap(),
        probe_roots: vec![pem],
        endpoints: Arc::new(AgentEndpoint::from_server),
        resync: Duration::from_secs(2),
        agent_timeout: Duration::from_secs(5),
        max_concurrent: 4,
        per_server: 2,
        installed_by: "steward".into(),
        state_dir: None,
    };
    let registry = crate::MetricsRegistry::default();
    assert!(Controllers::new(config.clone(), &registry).is_ok());
    let again = Controllers::new(config.clone(), &registry).unwrap_err();
    assert_eq!(again.metric_label(), "metrics");
    let fresh = crate::MetricsRegistry::default();
    let no_roots = ControllersConfig {
        probe_roots: vec!["junk".into()],
        ..config.clone()
    };
    assert_eq!(
        Controllers::new(no_roots, &fresh)
            .unwrap_err()
            .metric_label(),
        "probe_roots"
    );
    let zero = ControllersConfig {
        per_server: 0,
        ..config
    };
    assert_eq!(
        Controllers::new(zero, &fresh).unwrap_err().metric_label(),
        "limit"
    );
}

/// Every key a trigger receiver holds now, as text.
fn drain<K: std::fmt::Display>(
    rx: &mut futures::channel::mpsc::UnboundedReceiver<crate::reconciler::Trigger<K>>,
) -> Vec<String> {
    let mut keys = Vec::new();
    while let Ok((key, reason)) = rx.try_recv() {
        assert_eq!(reason, steward_runtime::Reason::Manual);
        keys.push(key.to_string());
    }
    keys.sort();
    keys
}

#[tokio::test]
async fn a_full_resync_wakes_every_object_of_every_controller() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let handle = fx.controllers.as_ref().unwrap().handle();
    let controllers = fx.controllers.as_mut().unwrap();
    let mut servers = controllers.triggers::<crate::server::Servers>();
    let mut certificates = controllers.triggers::<crate::certificate::Certificates>();
    let mut services = controllers.triggers::<crate::service::Services>();
    // What the desired state's arrival woke is not the point here.
    while servers.try_recv().is_ok() {}
    while certificates.try_recv().is_ok() {}
    while services.try_recv().is_ok() {}

    handle.resync_all();
    assert_eq!(drain(&mut servers), ["app1", "app2"]);
    assert_eq!(drain(&mut certificates), ["app1", "app2"]);
    assert_eq!(
        drain(&mut services),
        ["app1/PSIS", "app1/PSWS", "app2/HEALTH"]
    );
}

/// Whether a series exists at all (absent and 0 are not the same answer).
fn has_series(fx: &Fixture, name: &str, labels: &[(&str, &str)]) -> bool {
    fx.series(name, labels).is_some()
}

#[tokio::test]
async fn health_is_unknown_while_the_agent_is_down_and_the_gauge_agrees() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    fx.run::<Servers>("app1".into()).await.unwrap();
    fx.run::<Certificates>("app1".into()).await.unwrap();
    fx.until_healthy("app1", ServiceKind::Psis).await;
    let labels = [("server", "app1"), ("service", "PSIS")];
    let shown = |fx: &Fixture| {
        let status = fx.ctx.store.resource("service", "app1.PSIS").unwrap();
        let ResourceDetail::Service(health) = status.detail else {
            panic!("{status:?}")
        };
        (health.healthy, health.health_unknown)
    };
    assert_eq!(shown(&fx), (Some(true), None));
    assert_eq!(fx.gauge("steward_service_healthy", &labels), Some(1.0));

    fx.agent("app1").set_down(true);
    fx.run::<Servers>("app1".into()).await.unwrap_err();
    let (healthy, why) = shown(&fx);
    assert_eq!(
        healthy, None,
        "an agent that does not answer proves nothing"
    );
    assert!(why.unwrap().contains("does not answer"));
    assert!(
        !has_series(&fx, "steward_service_healthy", &labels),
        "unknown in the status, no series in /metrics"
    );
    assert_eq!(fx.gauge("steward_service_installed", &labels), Some(1.0));
    let json = serde_json::to_value(fx.ctx.store.status()).unwrap();
    assert!(json["servers"][0]["services"][0]["healthy"].is_null());

    fx.agent("app1").set_down(false);
    fx.run::<Servers>("app1".into()).await.unwrap();
    assert_eq!(shown(&fx), (Some(true), None));
    assert_eq!(fx.gauge("steward_service_healthy", &labels), Some(1.0));
}

#[tokio::test]
async fn a_restarting_service_is_unknown_in_status_and_metrics_alike() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    let psis = ServiceKey::new("app1", ServiceKind::Psis);
    fx.until_healthy("app1", ServiceKind::Psis).await;
    fx.agent("app1").set_status(
        ServiceKind::Psis,
        steward_agent::api::ServiceStatus::Stopped,
    );
    fx.run::<crate::service::Services>(psis).await.unwrap();
    assert_eq!(fx.agent("app1").calls(Call::Restart), 1);
    let status = fx.ctx.store.status();
    assert_eq!(status.servers[0].services[0].healthy, None);
    let labels = [("server", "app1"), ("service", "PSIS")];
    assert!(!has_series(&fx, "steward_service_healthy", &labels));
    assert_eq!(fx.gauge("steward_service_installed", &labels), Some(1.0));
}

#[tokio::test]
async fn convergence_waits_for_pending_prunes() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HEALTH"])]);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    for kind in [ServiceKind::Psis, ServiceKind::Psws, ServiceKind::Health] {
        fx.until_healthy("app1", kind).await;
    }
    assert!(fx.ctx.store.converged(fx.generation()));

    let mut next = fx.current();
    next.servers
        .get_mut("app1")
        .unwrap()
        .services
        .retain(|s| s.kind != ServiceKind::Health);
    next.installation.prune = true;
    fx.apply(next);
    assert!(
        !fx.ctx.store.converged(fx.generation()),
        "HEALTH is still to be uninstalled"
    );
    let health = ServiceKey::new("app1", ServiceKind::Health);
    fx.run::<crate::service::Services>(health.clone())
        .await
        .unwrap();
    assert_eq!(fx.agent("app1").calls(Call::Uninstall), 1);
    fx.run::<crate::service::Services>(health).await.unwrap();
    assert!(fx.ctx.store.converged(fx.generation()));
}

#[tokio::test]
async fn a_restarted_daemon_recognises_the_certificates_it_issued() {
    let state = tempfile::tempdir().unwrap();
    let fx = crate::fakes::fixture_in_state_dir(&[("app1", &["PSIS", "PSWS"])], state.path());
    fx.run::<Certificates>("app1".into()).await.unwrap();
    let agent = fx.agent("app1");
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    let thumbprint = agent.state().certificate.clone().unwrap().thumbprint;

    let restarted = fx.restart();
    restarted.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(
        agent.calls(Call::InstallCertificate),
        1,
        "nothing issued again"
    );
    assert_eq!(
        agent.state().certificate.clone().unwrap().thumbprint,
        thumbprint
    );
    let status = restarted.ctx.store.status();
    assert!(
        !status
            .events
            .iter()
            .any(|e| e.reason == "CertificateIssued"),
        "{:?}",
        status.events
    );
    assert_eq!(
        headline(&status.servers[0].certificate.conditions),
        "CertificateInstalled"
    );
    assert!(restarted.ctx.store.cert_ready("app1"));
}

#[tokio::test]
async fn trusted_ca_files_are_read_again_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let fx = crate::fakes::fixture_in(&[("app1", &["PSIS", "PSWS"])], dir.path());
    let trusted = |fx: &Fixture| fx.prober.trusted.lock().unwrap().clone();
    let base = trusted(&fx).last().cloned().unwrap();
    std::fs::write(dir.path().join("corp-root.pem"), "first CA\n").unwrap();
    let mut next = fx.current();
    next.installation.certificate_authority.trust = vec!["corp-root.pem".into()];
    fx.apply(next);
    let with_corp = trusted(&fx).last().cloned().unwrap();
    assert_eq!(with_corp.len(), base.len() + 1);
    assert_eq!(with_corp.last().unwrap(), "first CA\n");

    let calls = trusted(&fx).len();
    fx.ctx.refresh_trust();
    assert_eq!(trusted(&fx).len(), calls, "unchanged files: nothing to do");

    std::fs::write(dir.path().join("corp-root.pem"), "replaced CA\n").unwrap();
    fx.ctx.refresh_trust();
    assert_eq!(
        trusted(&fx).last().unwrap().last().unwrap(),
        "replaced CA\n"
    );
}

#[test]
fn the_run_report_reads_as_a_sentence() {
    let summary = |succeeded, failed| steward_runtime::RunSummary {
        succeeded,
        failed,
        abandoned: 0,
        not_started: 0,
        stop: steward_runtime::StopCause::Shutdown,
    };
    let report = RunReport(
        [("server", summary(12, 1)), ("service", summary(40, 0))]
            .into_iter()
            .collect(),
    );
    assert_eq!(
        report.to_string(),
        "server: 12 ok, 1 failed; service: 40 ok, 0 failed"
    );
    assert_eq!(report["service"].succeeded, 40);
}

/// Moved here with the reading of trusted CA files (it was the daemon's, at start).
#[tokio::test]
async fn a_trusted_ca_file_that_is_a_fifo_does_not_block_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let fx = crate::fakes::fixture_in(&[("app1", &["PSIS", "PSWS"])], dir.path());
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("corp-root.pem"))
        .status()
        .unwrap();
    assert!(status.success());
    let base = fx.prober.trusted.lock().unwrap().last().cloned().unwrap();
    let mut next = fx.current();
    next.installation.certificate_authority.trust = vec!["corp-root.pem".into()];
    // On a thread of its own: a blocked read fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let ctx = fx.ctx.clone();
    let desired = fx.desired(fx.generation() + 1, next);
    std::thread::spawn(move || {
        crate::triggers::apply(&ctx, desired);
        ctx.refresh_trust();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("reading the trusted CA blocked");
    let roots = fx.prober.trusted.lock().unwrap().last().cloned().unwrap();
    assert_eq!(roots, base, "only the steward CA");
}
