//! Why a service failed (the agent's `lastFailure`), the crash-loop delay, and liveness
//! restarts of a service that runs but fails its health test.

use super::*;
use steward_agent::api::{FailureReason, LastFailure};
use time::OffsetDateTime;

const HOST: &str = "app1.example.eng";

async fn healthy_fleet() -> Fixture {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HEALTH"])]);
    certificates(&fx, &["app1"]).await;
    for kind in [Psis, Psws, Health] {
        converge(&fx, "app1", kind).await;
    }
    fx
}

fn port_in_use() -> LastFailure {
    LastFailure {
        reason: FailureReason::PortInUse,
        message: "port 7003 on 127.0.0.1 is in use by process 4242 (nc); the service exited \
                  with code 98"
            .into(),
        port: Some(7003),
        holder_pid: Some(4242),
        holder_command: Some("nc".into()),
        exit_code: Some(98),
        log_tail: "bind 127.0.0.1:7003: address in use".into(),
        at: OffsetDateTime::now_utc(),
    }
}

/// The agent reports HEALTH failed for `failure` (a new exit each call: a new `at`).
fn fail(fx: &Fixture, mut failure: LastFailure) {
    failure.at = OffsetDateTime::now_utc();
    let agent = fx.agent("app1");
    let mut state = agent.state();
    let service = state.services.get_mut(&Health).unwrap();
    service.status = ServiceStatus::Failed;
    service.message = Some(failure.message.clone());
    service.last_failure = Some(failure);
}

fn events(fx: &Fixture, reason: &str) -> usize {
    let status = fx.ctx.store.resource("service", "app1.HEALTH").unwrap();
    status.events.iter().filter(|e| e.reason == reason).count()
}

fn message(fx: &Fixture) -> String {
    let status = fx.ctx.store.resource("service", "app1.HEALTH").unwrap();
    status.conditions[0].message.clone()
}

#[tokio::test]
async fn a_port_held_by_another_process_is_the_condition_one_event_and_in_the_status() {
    let fx = healthy_fleet().await;
    fail(&fx, port_in_use());
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(reason(&fx, "app1", Health), "PortInUse");
    let said = message(&fx);
    assert!(
        said.contains("port 7003") && said.contains("4242 (nc)"),
        "{said}"
    );
    // The same cause again (a crash loop): still the condition, not a second event.
    fail(&fx, port_in_use());
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(reason(&fx, "app1", Health), "PortInUse");
    assert_eq!(events(&fx, "PortInUse"), 1);

    let status = fx.ctx.store.status();
    let shown = status.servers[0]
        .services
        .iter()
        .find(|s| s.kind == Health)
        .and_then(|s| s.last_failure.clone())
        .expect("lastFailure in the status");
    assert_eq!(
        (shown.reason, shown.port, shown.holder_pid),
        (FailureReason::PortInUse, Some(7003), Some(4242))
    );
    assert!(
        shown.log_tail.is_empty(),
        "raw service output stays with the agent"
    );

    // The port is freed: healthy, and the agent's report is history.
    converge(&fx, "app1", Health).await;
    // A later exit with an error is its own cause, with its code.
    fail(
        &fx,
        LastFailure {
            reason: FailureReason::Exited,
            message: "exited with code 3: config missing".into(),
            port: None,
            holder_pid: None,
            holder_command: None,
            exit_code: Some(3),
            ..port_in_use()
        },
    );
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(reason(&fx, "app1", Health), "ExitedWithError");
    assert!(message(&fx).contains("code 3"), "{}", message(&fx));
    assert_eq!(events(&fx, "ExitedWithError"), 1);
}

#[tokio::test]
async fn a_crash_loop_waits_at_most_ten_seconds_and_a_health_pass_resets_it() {
    let fx = healthy_fleet().await;
    let mut delays = Vec::new();
    for _ in 0..7 {
        fail(&fx, port_in_use());
        delays.push(run(&fx, "app1", Health).await.unwrap());
    }
    let ms = Duration::from_millis;
    assert_eq!(
        delays,
        [500, 1000, 2000, 4000, 8000, 10_000, 10_000]
            .map(|d| Action::requeue(ms(d)))
            .to_vec()
    );
    converge(&fx, "app1", Health).await;
    fail(&fx, port_in_use());
    assert_eq!(
        run(&fx, "app1", Health).await.unwrap(),
        Action::requeue(ms(500))
    );
    assert_eq!(
        events(&fx, "PortInUse"),
        2,
        "announced again after a health pass"
    );
}

/// HEALTH keeps running but stops answering: probed until its verdict is "failing".
async fn hang(fx: &Fixture) {
    fx.prober.set_healthy(HOST, Health, false);
    for _ in 0..4 {
        cycle(fx, "app1", Health).await.unwrap();
    }
    assert_eq!(reason(fx, "app1", Health), "HealthCheckFailing");
}

fn restart_after(fx: &Fixture, after: Duration) {
    let mut next = fx.current();
    let mut check = next.health_check(Health);
    check.restart_after = after;
    next.health_checks.insert(Health, check);
    fx.apply(next);
}

#[tokio::test(start_paused = true)]
async fn a_running_service_failing_for_restart_after_is_restarted_with_backoff() {
    let fx = healthy_fleet().await;
    let agent = fx.agent("app1");
    hang(&fx).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(
        agent.calls(Call::Restart),
        0,
        "60 s (the default) not over yet"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 1);
    assert_eq!(reason(&fx, "app1", Health), "WaitingForHealthCheck");
    assert!(
        message(&fx).contains("restarted after failing"),
        "{}",
        message(&fx)
    );
    assert_eq!(events(&fx, "RestartedUnhealthy"), 1);

    // Still hung after the restart: the next one waits twice as long.
    hang(&fx).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 2);

    // It answers again: healthy, and the backoff starts over.
    fx.prober.set_healthy(HOST, Health, true);
    converge(&fx, "app1", Health).await;
    hang(&fx).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 3);
}

#[tokio::test(start_paused = true)]
async fn monitor_mode_and_restart_after_zero_never_restart_a_failing_service() {
    let fx = healthy_fleet().await;
    let agent = fx.agent("app1");
    fx.set_mode(Mode::Monitor);
    hang(&fx).await;
    tokio::time::advance(Duration::from_secs(600)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 0, "monitor mode only reports");
    assert_eq!(reason(&fx, "app1", Health), "HealthCheckFailing");

    fx.set_mode(Mode::AutoCorrect);
    restart_after(&fx, Duration::ZERO);
    hang(&fx).await;
    tokio::time::advance(Duration::from_secs(600)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 0, "restartAfter: 0 is never");

    restart_after(&fx, Duration::from_secs(5));
    run(&fx, "app1", Health).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    run(&fx, "app1", Health).await.unwrap();
    assert_eq!(agent.calls(Call::Restart), 1, "restartAfter 5s");
}
