//! The HL7 failover's decisions against scripted agents and probes: what it may never do
//! (start a standby it cannot fence the active listener from; move anything under
//! `failover: manual`) and what it must (one listener; fence, then start). The same against
//! real agents, lab listeners and HAProxy is `tests/hl7_failover.rs`.

use std::time::Duration;

use steward_agent::api::{InstallRequest, ServiceStatus};
use steward_model::resource::{Failback, Hl7Failover};
use steward_model::snapshot::Hl7;
use steward_model::ServiceKind;

use super::Hl7Failovers;
use crate::agent::AgentApi;
use crate::fakes::{fixture, Call, Fixture};
use crate::server::Servers;

/// app1 and app2 both place HL7 (app1 with PSIS and PSWS), under `policy`; app1's
/// listener runs, app2's is installed and held.
async fn two_listeners(policy: Hl7) -> Fixture {
    let fx = fixture(&[("app1", &["PSIS", "PSWS", "HL7"]), ("app2", &["HEALTH"])]);
    let mut snapshot = fx.current();
    let hl7 = snapshot.servers["app1"]
        .service(ServiceKind::Hl7)
        .unwrap()
        .clone();
    snapshot.servers.get_mut("app2").unwrap().services.push(hl7);
    snapshot.installation.hl7 = policy;
    fx.apply(snapshot);
    let request = InstallRequest {
        ports: vec![2244],
        drive: "C:".into(),
        release: "6.12.1".into(),
        installed_by: "steward-test".into(),
    };
    fx.agent("app1")
        .install(ServiceKind::Hl7, &request, false)
        .await
        .unwrap();
    fx.agent("app2")
        .install(ServiceKind::Hl7, &request, true)
        .await
        .unwrap();
    fx
}

fn policy(failover: Hl7Failover) -> Hl7 {
    Hl7 {
        failover,
        preferred: Some("app1".into()),
        // Failing at all is failing long enough: one run decides.
        failover_after: Duration::ZERO,
        failback: Failback::Manual,
    }
}

/// app1's listener fails its test while stopping app1 or starting app2 fails the test;
/// three failover runs.
async fn fail_app1_where_nothing_may_move(fx: &Fixture) {
    fx.prober
        .set_healthy("app1.example.eng", ServiceKind::Hl7, false);
    fx.agent("app1").forbid(Call::Stop);
    fx.agent("app2").forbid(Call::Start);
    for _ in 0..3 {
        fx.run::<Hl7Failovers>(()).await.unwrap();
    }
}

fn status(fx: &Fixture, server: &str) -> (ServiceStatus, bool) {
    let agent = fx.agent(server);
    let state = agent.state();
    let hl7 = &state.services[&ServiceKind::Hl7];
    (hl7.status, hl7.held)
}

fn reason(fx: &Fixture) -> String {
    crate::fakes::headline(&fx.ctx.store.status().hl7.conditions)
}

#[tokio::test]
async fn a_healthy_active_listener_stays_and_the_standby_stays_stopped() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    fx.agent("app2").forbid(Call::Start);
    fx.run::<Hl7Failovers>(()).await.unwrap();
    let hl7 = fx.ctx.store.status().hl7;
    assert_eq!(hl7.active_listener.as_deref(), Some("app1"));
    assert_eq!(hl7.standby, ["app2"]);
    assert_eq!(
        fx.gauge("steward_hl7_active_listener", &[("server", "app2")]),
        Some(0.0)
    );
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
}

#[tokio::test]
async fn failover_manual_only_reports() {
    let fx = two_listeners(policy(Hl7Failover::Manual)).await;
    fail_app1_where_nothing_may_move(&fx).await;
    assert!(reason(&fx).contains("FailoverNeeded"), "{}", reason(&fx));
    assert_eq!(fx.ctx.store.status().hl7.active_listener, None);
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
    assert_eq!(fx.counter("steward_hl7_failovers_total", &[]), Some(0.0));
}

/// A follower sees the failing listener but moves nothing: the HL7 backend's runtime API
/// is not fenced by the agents, so the controller itself must hold back.
#[tokio::test]
async fn a_follower_reports_and_moves_nothing() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    fx.follow();
    fail_app1_where_nothing_may_move(&fx).await;
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
    assert_eq!(fx.counter("steward_hl7_failovers_total", &[]), Some(0.0));
}

#[tokio::test]
async fn a_failing_listener_is_stopped_before_the_standby_starts() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    fx.prober
        .set_healthy("app1.example.eng", ServiceKind::Hl7, false);
    fx.run::<Hl7Failovers>(()).await.unwrap();
    assert_eq!(status(&fx, "app1"), (ServiceStatus::Stopped, true));
    assert_eq!(status(&fx, "app2").0, ServiceStatus::Running);
    let hl7 = fx.ctx.store.status().hl7;
    assert_eq!(hl7.active_listener.as_deref(), Some("app2"));
    let last = hl7.last_failover.unwrap();
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.reason.as_str()),
        ("app1", "app2", "ListenerFailing")
    );
    assert_eq!(fx.counter("steward_hl7_failovers_total", &[]), Some(1.0));
    assert!(fx
        .ctx
        .store
        .status()
        .events
        .iter()
        .any(|e| e.reason == "HL7Failover" && e.object == "hl7"));
}

/// Without a load balancer runtime API, an active listener whose agent does not answer
/// cannot be fenced: starting the standby could make two listeners active.
#[tokio::test]
async fn an_unfenceable_listener_keeps_the_standby_stopped() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    fx.run::<Hl7Failovers>(()).await.unwrap();
    fx.agent("app1").set_down(true);
    fx.agent("app2").forbid(Call::Start);
    let err = fx.run::<Hl7Failovers>(()).await.unwrap_err();
    assert_eq!(
        steward_runtime::ReconcileError::metric_label(&err),
        "hl7_cannot_fence"
    );
    assert!(reason(&fx).contains("CannotFence"), "{}", reason(&fx));
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
    fx.agent("app1").set_down(false);
}

#[tokio::test]
async fn a_second_running_listener_is_stopped() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    fx.agent("app2").start(ServiceKind::Hl7).await.unwrap();
    fx.run::<Hl7Failovers>(()).await.unwrap();
    // The preferred one stays.
    assert_eq!(status(&fx, "app1").0, ServiceStatus::Running);
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
}

/// One run, as the runtime makes it: what it reads follows from what earlier runs saw,
/// not from why it runs.
async fn pass(fx: &Fixture) {
    fx.run::<Hl7Failovers>(()).await.unwrap();
}

fn listings(fx: &Fixture, servers: &[String]) -> usize {
    servers
        .iter()
        .map(|s| fx.agent(s).calls(Call::Services))
        .sum()
}

/// app1 (preferred) runs HL7, app2 to app`n` hold theirs stopped.
async fn many_listeners(n: usize) -> (Fixture, Vec<String>) {
    let names: Vec<String> = (1..=n).map(|i| format!("app{i}")).collect();
    let mut servers: Vec<(&str, &[&str])> = vec![("app1", &["PSIS", "PSWS", "HL7"])];
    servers.extend(names[1..].iter().map(|s| (s.as_str(), &[][..])));
    let fx = fixture(&servers);
    let mut snapshot = fx.current();
    let hl7 = snapshot.servers["app1"]
        .service(ServiceKind::Hl7)
        .unwrap()
        .clone();
    for name in &names[1..] {
        snapshot
            .servers
            .get_mut(name)
            .unwrap()
            .services
            .push(hl7.clone());
    }
    snapshot.installation.hl7 = policy(Hl7Failover::Automatic);
    fx.apply(snapshot);
    for (i, name) in names.iter().enumerate() {
        fx.agent(name)
            .install(ServiceKind::Hl7, &request(), i > 0)
            .await
            .unwrap();
    }
    (fx, names)
}

fn request() -> InstallRequest {
    InstallRequest {
        ports: vec![2244],
        drive: "C:".into(),
        release: "6.12.1".into(),
        installed_by: "steward-test".into(),
    }
}

/// The agent restarted and re-adopted `server`'s listener, which kept running.
fn re_adopt(fx: &Fixture, server: &str) {
    let agent = fx.agent(server);
    let mut state = agent.state();
    let hl7 = state.services.get_mut(&ServiceKind::Hl7).unwrap();
    hl7.status = ServiceStatus::Running;
    hl7.held = false;
    hl7.pid = Some(4242);
}

/// A steady pass asks only the active listener's agent: listing every standby every
/// second was 1,000 listings a second on the generated 1,000-server fleet.
#[tokio::test]
async fn steady_passes_list_only_the_active_listener() {
    let (fx, names) = many_listeners(50).await;
    let before = listings(&fx, &names);
    pass(&fx).await;
    for _ in 0..20 {
        pass(&fx).await;
    }
    let hl7 = fx.ctx.store.status().hl7;
    assert_eq!(hl7.active_listener.as_deref(), Some("app1"));
    assert_eq!(hl7.standby.len(), 49, "the standbys are still shown");
    assert!(
        listings(&fx, &names) - before <= 20 + 50,
        "{} listings",
        listings(&fx, &names) - before
    );
    assert_eq!(fx.agent("app1").calls(Call::Services), 21);
}

/// The server controller lists every server each period: a standby it finds running
/// (an agent restart re-adopted it) is read again and stopped at the next pass.
#[tokio::test]
async fn a_re_adopted_standby_is_stopped_once_the_server_controller_lists_it() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    pass(&fx).await;
    re_adopt(&fx, "app2");
    let listed = fx.agent("app2").calls(Call::Services);
    pass(&fx).await;
    assert_eq!(fx.agent("app2").calls(Call::Services), listed, "not asked");
    fx.run::<Servers>("app2".to_owned()).await.unwrap();
    pass(&fx).await;
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
    assert_eq!(status(&fx, "app1").0, ServiceStatus::Running);
    // Read back after the stop: a standby again.
    pass(&fx).await;
    assert_eq!(fx.ctx.store.status().hl7.standby, ["app2"]);
}

/// Nobody wakes the failover: a standby found running is still stopped once the view is
/// a server controller's period old (the bound the module documents).
#[tokio::test(start_paused = true)]
async fn a_running_standby_is_stopped_within_the_server_controllers_period() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    pass(&fx).await;
    re_adopt(&fx, "app2");
    pass(&fx).await;
    assert_eq!(status(&fx, "app2").0, ServiceStatus::Running);
    let servers = fx.current().servers.len();
    tokio::time::advance(fx.ctx.pace.period(servers)).await;
    pass(&fx).await;
    assert_eq!(status(&fx, "app2"), (ServiceStatus::Stopped, true));
}

/// A move reads the chosen standby afresh right before it fences anything: one that
/// stopped being a standby since the view was taken is not started.
#[tokio::test]
async fn a_failover_reads_the_standby_afresh_before_fencing() {
    let fx = two_listeners(policy(Hl7Failover::Automatic)).await;
    pass(&fx).await;
    fx.agent("app2").set_down(true);
    fx.prober
        .set_healthy("app1.example.eng", ServiceKind::Hl7, false);
    fx.agent("app1").forbid(Call::Stop);
    pass(&fx).await;
    assert!(reason(&fx).contains("NoStandby"), "{}", reason(&fx));
    assert_eq!(status(&fx, "app1").0, ServiceStatus::Running);
    fx.agent("app2").set_down(false);
}
