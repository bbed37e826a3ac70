use super::*;
use crate::fakes::{fixture, headline, snapshot, Call, Fixture};
use steward_agent::ClientError;
use steward_runtime::ReconcileError;

/// One run as the runtime makes it: reconcile, then the error policy.
async fn run(fx: &Fixture, server: &str, kind: ServiceKind) -> Result<Action, ControllerError> {
    crate::reconciler::reconcile_and_record::<Services>(
        ServiceKey::new(server, kind),
        Reason::Resync,
        fx.ctx.clone(),
    )
    .await
}

fn reason(fx: &Fixture, server: &str, kind: ServiceKind) -> String {
    let status = fx
        .ctx
        .store
        .resource("service", &format!("{server}.{kind}"))
        .unwrap_or_else(|| panic!("no status for {server}/{kind}"));
    headline(&status.conditions)
}

async fn certificates(fx: &Fixture, servers: &[&str]) {
    for server in servers {
        crate::reconciler::reconcile_and_record::<crate::certificate::Certificates>(
            (*server).into(),
            Reason::Resync,
            fx.ctx.clone(),
        )
        .await
        .unwrap();
    }
}

/// One scheduled probe (if the service is being probed), then a run: what the monitor
/// and the verdict-change trigger do in the daemon.
async fn cycle(fx: &Fixture, server: &str, kind: ServiceKind) -> Result<Action, ControllerError> {
    fx.probe(server, kind).await;
    run(fx, server, kind).await
}

/// Install and probe until `server/kind` is ready (a few runs).
async fn converge(fx: &Fixture, server: &str, kind: ServiceKind) {
    run(fx, server, kind).await.unwrap();
    for _ in 0..3 {
        cycle(fx, server, kind).await.unwrap();
    }
    assert_eq!(reason(fx, server, kind), "Healthy", "{server}/{kind}");
}

use ServiceKind::{Health, Hl7, Job, Psis, Psws};

#[tokio::test]
async fn installs_wait_for_the_certificate_then_for_dependencies() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let app1 = fx.agent("app1");

    assert_eq!(
        run(&fx, "app1", Psis).await.unwrap(),
        Action::requeue(fx.ctx.pace.wait())
    );
    assert_eq!(reason(&fx, "app1", Psis), "WaitingForCertificate");
    assert_eq!(app1.calls(Call::Install), 0);

    certificates(&fx, &["app1", "app2"]).await;
    run(&fx, "app2", Health).await.unwrap();
    assert_eq!(reason(&fx, "app2", Health), "WaitingForDependency");
    let status = fx.ctx.store.resource("service", "app2/HEALTH").unwrap();
    assert!(
        status.conditions[0].message.contains("PSIS and PSWS"),
        "{:?}",
        status.conditions[0]
    );
    run(&fx, "app1", Psws).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psws), "WaitingForDependency");
    assert_eq!(app1.calls(Call::Install), 0);

    // PSIS installs; it is not ready until a probe passed.
    assert_eq!(
        run(&fx, "app1", Psis).await.unwrap(),
        Action::requeue(fx.ctx.pace.short())
    );
    assert_eq!(app1.calls(Call::Install), 1);
    assert_eq!(app1.state().services[&Psis].ports, vec![7001]);
    assert_eq!(app1.state().services[&Psis].installed_by, "steward-test");
    run(&fx, "app1", Psws).await.unwrap();
    assert_eq!(
        app1.calls(Call::Install),
        1,
        "PSIS installed but not yet healthy"
    );

    cycle(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "WaitingForHealthCheck");
    cycle(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "Healthy");
    converge(&fx, "app1", Psws).await;
    converge(&fx, "app2", Health).await;
    assert!(fx.ctx.store.converged(fx.generation()));
    assert_eq!(
        fx.gauge(
            "steward_service_healthy",
            &[("server", "app2"), ("service", "HEALTH")]
        ),
        Some(1.0)
    );
    // A fresh rollout is not drift.
    assert_eq!(
        fx.counter(
            "steward_drift_detected_total",
            &[("kind", "service_missing")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_stopped_service_is_restarted_and_counted_as_drift() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HEALTH"])]);
    certificates(&fx, &["app1"]).await;
    for kind in [Psis, Psws, Health] {
        converge(&fx, "app1", kind).await;
    }
    let agent = fx.agent("app1");
    agent.set_status(Health, ServiceStatus::Stopped);
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 1);
    assert_eq!(
        agent.state().services[&Health].status,
        ServiceStatus::Running
    );
    assert_eq!(reason(&fx, "app1", Health), "Restarted");
    let stopped = [("kind", "service_stopped")];
    assert_eq!(
        fx.counter("steward_drift_detected_total", &stopped),
        Some(1.0)
    );
    assert_eq!(
        fx.counter("steward_drift_corrected_total", &stopped),
        Some(1.0)
    );
    let events = fx
        .ctx
        .store
        .resource("service", "app1.HEALTH")
        .unwrap()
        .events;
    assert!(events.iter().any(|e| e.reason == "Restarted"), "{events:?}");
    converge(&fx, "app1", Health).await;

    // A crash loop is restarted ever more slowly.
    let mut delays = Vec::new();
    for _ in 0..3 {
        agent.set_status(Health, ServiceStatus::Failed);
        delays.push(run(&fx, "app1", Health).await.unwrap());
    }
    let short = fx.ctx.pace.short();
    assert_eq!(
        delays,
        [short, short * 2, short * 4].map(Action::requeue).to_vec()
    );
}

#[tokio::test]
async fn changed_ports_reinstall_and_a_vanished_service_is_reinstalled() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    certificates(&fx, &["app1"]).await;
    converge(&fx, "app1", Psis).await;
    converge(&fx, "app1", Psws).await;
    let agent = fx.agent("app1");

    agent.state().services.get_mut(&Psws).unwrap().ports = vec![7777];
    run(&fx, "app1", Psws).await.unwrap();
    assert_eq!(agent.state().services[&Psws].ports, vec![7002]);
    assert_eq!(
        fx.counter("steward_drift_corrected_total", &[("kind", "service_spec")]),
        Some(1.0)
    );

    agent.state().services.remove(&Psws);
    run(&fx, "app1", Psws).await.unwrap();
    assert!(agent.state().services.contains_key(&Psws));
    assert_eq!(
        fx.counter(
            "steward_drift_corrected_total",
            &[("kind", "service_missing")]
        ),
        Some(1.0)
    );

    // A new release is a rollout, not drift.
    let mut next = fx.current();
    next.installation.release = "6.13.0".into();
    fx.apply(next);
    converge(&fx, "app1", Psws).await;
    assert_eq!(agent.state().services[&Psws].release, "6.13.0");
    assert_eq!(
        fx.counter("steward_drift_detected_total", &[("kind", "service_spec")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn monitor_mode_reports_drift_and_changes_nothing() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HEALTH"])]);
    certificates(&fx, &["app1"]).await;
    for kind in [Psis, Psws, Health] {
        converge(&fx, "app1", kind).await;
    }
    fx.set_mode(Mode::Monitor);
    let agent = fx.agent("app1");
    agent.set_status(Health, ServiceStatus::Stopped);
    agent.state().services.remove(&Psws);
    agent.state().services.get_mut(&Psis).unwrap().release = "6.0.0".into();
    let calls = |a: &crate::fakes::FakeAgent| {
        a.calls(Call::Install) + a.calls(Call::Restart) + a.calls(Call::Uninstall)
    };
    let before = calls(&agent);
    for _ in 0..3 {
        for kind in [Psis, Psws, Health] {
            run(&fx, "app1", kind).await.unwrap();
        }
    }
    assert_eq!(calls(&agent), before, "monitor mode changed something");
    assert_eq!(reason(&fx, "app1", Health), "NotRunning");
    assert_eq!(reason(&fx, "app1", Psws), "NotInstalled");
    assert_eq!(reason(&fx, "app1", Psis), "SpecDrift");
    for kind in ["service_stopped", "service_missing", "service_spec"] {
        assert_eq!(
            fx.counter("steward_drift_detected_total", &[("kind", kind)]),
            Some(1.0),
            "{kind} counted once"
        );
        assert_eq!(
            fx.counter("steward_drift_corrected_total", &[("kind", kind)]),
            Some(0.0)
        );
    }
    assert!(!fx.ctx.store.converged(fx.generation()));

    // Back to autoCorrect: repaired.
    fx.set_mode(Mode::AutoCorrect);
    for kind in [Psis, Psws, Health] {
        converge(&fx, "app1", kind).await;
    }
    assert_eq!(agent.state().services[&Psis].release, "6.12.1");
    assert!(fx.ctx.store.converged(fx.generation()));
}

#[tokio::test]
async fn undeclared_services_are_reported_unless_pruned_dependents_first() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HEALTH"])]);
    certificates(&fx, &["app1"]).await;
    for kind in [Psis, Psws, Health] {
        converge(&fx, "app1", kind).await;
    }
    let agent = fx.agent("app1");
    // Installed by hand: reported, left alone.
    agent
        .install(
            Job,
            &InstallRequest {
                ports: vec![7010],
                drive: "C:".into(),
                release: "6.12.1".into(),
                installed_by: "someone".into(),
            },
            false,
        )
        .await
        .unwrap();
    run(&fx, "app1", Job).await.unwrap();
    assert_eq!(reason(&fx, "app1", Job), "Orphaned");
    assert_eq!(agent.calls(Call::Uninstall), 0);
    let status = fx.ctx.store.status();
    let job = status.servers[0]
        .services
        .iter()
        .find(|s| s.kind == Job)
        .unwrap();
    assert!(job.installed && !job.desired);

    // Everything undeclared, with prune: uninstalled, dependents first.
    fx.apply(snapshot(
        &[("app1", &[])],
        "certificate: {generate: true}",
        Mode::AutoCorrect,
        true,
    ));
    run(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "WaitingForDependents");
    run(&fx, "app1", Psws).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psws), "WaitingForDependents");
    assert_eq!(agent.calls(Call::Uninstall), 0);
    run(&fx, "app1", Health).await.unwrap();
    run(&fx, "app1", Job).await.unwrap();
    assert_eq!(agent.calls(Call::Uninstall), 2);
    run(&fx, "app1", Psis).await.unwrap();
    assert_eq!(
        reason(&fx, "app1", Psis),
        "WaitingForDependents",
        "PSWS still there"
    );
    run(&fx, "app1", Psws).await.unwrap();
    run(&fx, "app1", Psis).await.unwrap();
    assert!(agent.state().services.is_empty());
    // Gone from the agent: forgotten on the next look.
    for kind in [Psis, Psws, Health, Job] {
        assert_eq!(
            run(&fx, "app1", kind).await.unwrap(),
            Action::await_change()
        );
    }
    assert!(fx.ctx.store.status().servers[0].services.is_empty());
    // Forgotten: its series is removed, not left at 0.
    assert_eq!(
        fx.gauge(
            "steward_service_installed",
            &[("server", "app1"), ("service", "PSIS")]
        ),
        None
    );
}

#[tokio::test]
async fn a_failing_probe_degrades_after_fall_failures_and_recovers_after_rise() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    certificates(&fx, &["app1"]).await;
    converge(&fx, "app1", Psis).await;
    fx.prober.set_healthy("app1.example.eng", Psis, false);
    for _ in 0..2 {
        cycle(&fx, "app1", Psis).await.unwrap();
        assert_eq!(reason(&fx, "app1", Psis), "Healthy", "fall is 3");
    }
    cycle(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "HealthCheckFailing");
    let kinds = fx.ctx.store.status().service_kinds;
    let psis = kinds.iter().find(|k| k.kind == Psis).unwrap();
    assert_eq!((psis.healthy_servers, psis.healthy), (0, false));
    assert_eq!(
        fx.gauge("steward_service_kind_healthy", &[("service", "PSIS")]),
        Some(0.0)
    );
    let health = fx.ctx.store.resource("service", "app1.PSIS").unwrap();
    let crate::status::ResourceDetail::Service(detail) = health.detail else {
        panic!()
    };
    assert_eq!(detail.healthy, Some(false));
    let probe = detail.last_probe.unwrap();
    assert_eq!((probe.success, probe.http_status), (false, Some(503)));
    assert_eq!(
        fx.gauge(
            "steward_service_healthy",
            &[("server", "app1"), ("service", "PSIS")]
        ),
        Some(0.0)
    );
    // Unhealthy is not ready: PSWS may not install.
    run(&fx, "app1", Psws).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psws), "WaitingForDependency");

    fx.prober.set_healthy("app1.example.eng", Psis, true);
    cycle(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "HealthCheckFailing", "rise is 2");
    cycle(&fx, "app1", Psis).await.unwrap();
    assert_eq!(reason(&fx, "app1", Psis), "Healthy");
    assert_eq!(
        fx.gauge("steward_service_kind_healthy", &[("service", "PSIS")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_unreachable_agent_degrades_its_services_but_they_are_still_probed() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HL7"])]);
    certificates(&fx, &["app1"]).await;
    for kind in [Psis, Psws, Hl7] {
        converge(&fx, "app1", kind).await;
    }
    assert_eq!(
        fx.ctx.store.status().hl7.active_listener.as_deref(),
        Some("app1")
    );
    assert_eq!(
        fx.gauge("steward_hl7_active_listener", &[("server", "app1")]),
        Some(1.0)
    );
    let agent = fx.agent("app1");
    agent.set_down(true);
    let probes = fx.prober.probes(Hl7);
    let err = cycle(&fx, "app1", Hl7).await.unwrap_err();
    assert_eq!(err.metric_label(), "agent_connect_refused");
    assert_eq!(reason(&fx, "app1", Hl7), "AgentConnectionRefused");
    assert_eq!(fx.probe("app1", Hl7).await, Some(true));
    assert_eq!(
        fx.prober.probes(Hl7),
        probes + 2,
        "probed without the agent"
    );
    assert_eq!(
        fx.ctx.store.status().hl7.active_listener.as_deref(),
        Some("app1")
    );

    // 503 then OK: the error is reported, the next run recovers.
    agent.set_down(false);
    agent.fail_next(
        Call::Services,
        ClientError::Status {
            status: 503,
            code: None,
            message: "busy".into(),
        },
    );
    assert_eq!(
        run(&fx, "app1", Hl7).await.unwrap_err().metric_label(),
        "agent_http_status"
    );
    cycle(&fx, "app1", Hl7).await.unwrap();
    assert_eq!(reason(&fx, "app1", Hl7), "Healthy");
}

#[tokio::test]
async fn install_failures_are_conditions_not_panics() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    certificates(&fx, &["app1"]).await;
    fx.agent("app1").fail_next(
        Call::Install,
        ClientError::Status {
            status: 409,
            code: Some("conflict".into()),
            message: "port 7001 is already used by JOB on this server".into(),
        },
    );
    let err = run(&fx, "app1", Psis).await.unwrap_err();
    assert_eq!(err.metric_label(), "agent_http_status");
    assert_eq!(reason(&fx, "app1", Psis), "AgentError");
    let status = fx.ctx.store.resource("service", "app1.psis").unwrap();
    assert!(status.conditions[0].message.contains("already used"));
    converge(&fx, "app1", Psis).await;
}

#[test]
fn a_spec_difference_reads_from_installed_to_declared() {
    let placed = PlacedService {
        kind: ServiceKind::Empi,
        ports: vec![7029],
        drive: "C:".into(),
    };
    let observed = crate::fakes::listed(ServiceKind::Empi, 7019, "D:", "6.12.1", false);
    assert_eq!(
        spec_difference(&observed, &placed, "6.13.0"),
        "port 7019 -> 7029, drive D: -> C:, release 6.12.1 -> 6.13.0"
    );
}

mod failures;
mod resync;
