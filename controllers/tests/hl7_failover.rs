//! The HL7 failover controller against real peers: two in-process agents over mutual TLS
//! whose lab HL7 listeners answer MLLP with real ACKs, a real TDS server, and a real
//! HAProxy 2.6 whose HL7 backend steward switches over the runtime API. Throughout, a
//! watcher checks every 5 ms that two listeners are never active at once, and an MLLP sender
//! through HAProxy's HL7 frontend retransmits what was not acknowledged; at the end every
//! message was acknowledged (none lost) and the retransmitted ones are counted.
//!
//! One scenario, in order: converge (preferred active, standby installed and held);
//! the active listener killed (standby takes over); `failback: manual` stays, then goes
//! back when asked; the active's agent dies with its listener still running (taken out of
//! the HL7 backend first, then the standby started; the agent back, the old listener is
//! stopped); `failback: automatic` returns to preferred; `failover: manual` only reports;
//! a daemon restart keeps `lastFailover` and moves nothing.
//!
//! The agents' process driver starts services as `PROGRAM lab-service ...`, PROGRAM being
//! this test executable (see `tests/fleet.rs`). Run it inside a private network namespace.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::ServiceStatus;
use steward_agent::AgentClient;
use steward_balancer::haproxy::MemberState;
use steward_controllers::{ConditionType, MetricsRegistry, Store};
use steward_model::ServiceKind;
use tokio_util::sync::CancellationToken;

mod support;
use support::agents::{controllers_config, desired, RunningControllers};
use support::hl7_lab::{spawn_sender, spawn_watcher, Hl7Lab, Policy};

const TEST_NAME: &str = "hl7_listener_fails_over_without_two_active";
/// Generous: two cores shared with parallel builds.
const PATIENCE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    support::harness::main(TEST_NAME, scenario)
}

const AUTOMATIC: Policy = Policy {
    failover: "automatic",
    failback: "manual",
    failover_after: "1s",
};

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    steward_testkit::eventually_async(what, PATIENCE, POLL, || std::future::ready(done())).await;
}

fn active(store: &Store) -> Option<String> {
    store.status().hl7.active_listener
}

fn last_failover(store: &Store) -> Option<(String, String, String)> {
    store
        .status()
        .hl7
        .last_failover
        .map(|l| (l.from, l.to, l.reason))
}

fn hl7_reason(store: &Store) -> String {
    store
        .status()
        .hl7
        .conditions
        .iter()
        .find(|c| c.condition_type == ConditionType::Ready)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

fn metric(registry: &MetricsRegistry, line_start: &str) -> Option<f64> {
    registry
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

fn failovers(registry: &MetricsRegistry) -> f64 {
    metric(registry, "steward_hl7_failovers_total ").unwrap_or(-1.0)
}

fn hl7_runs(registry: &MetricsRegistry) -> f64 {
    metric(
        registry,
        "steward_reconcile_total{controller=\"hl7_failover\",result=\"success\"}",
    )
    .unwrap_or_default()
}

/// Wait for `n` more successful runs of the HL7 failover: what "it did nothing" is
/// judged after (a count of runs, not a duration).
async fn runs(registry: &MetricsRegistry, n: f64) {
    let start = hl7_runs(registry);
    eventually(&format!("{n} more HL7 failover runs"), || {
        hl7_runs(registry) >= start + n
    })
    .await;
}

async fn hl7_of(client: &AgentClient) -> Option<(ServiceStatus, bool, Option<u32>)> {
    client
        .service(ServiceKind::Hl7)
        .await
        .ok()
        .map(|s| (s.status, s.held, s.pid))
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
}

async fn scenario() {
    let Some(mut lab) = Hl7Lab::start(&AUTOMATIC).await else {
        return;
    };
    let snapshot = lab.desired(&AUTOMATIC);
    let mut config = controllers_config(
        lab.ca.clone(),
        lab.agent_tls.clone(),
        vec![lab.ca.cert_pem().to_owned()],
        "steward-hl7-test",
    );
    config.state_dir = Some(lab.state_dir.clone());
    let controllers = RunningControllers::start(config.clone(), snapshot, &lab.desired_dir);
    let mut generation = 1;

    // 1. Converged: the preferred app1 active, app2 installed and held stopped, the HL7
    //    backend pointed at app1.
    {
        let store = &controllers.store;
        eventually("app1's HL7 listener active", || {
            active(store).as_deref() == Some("app1")
        })
        .await;
        eventually("app2 a standby", || store.status().hl7.standby == ["app2"]).await;
    }
    let (status, held, _) = hl7_of(&lab.clients[1]).await.unwrap();
    assert_eq!((status, held), (ServiceStatus::Stopped, true));
    steward_testkit::eventually_async("the HL7 backend routed to app1", PATIENCE, POLL, || async {
        let b = lab.backend().await;
        b.get("app1") == Some(&MemberState::Up) && b.get("app2") == Some(&MemberState::Maint)
    })
    .await;
    assert_eq!(
        metric(
            &controllers.registry,
            "steward_hl7_active_listener{server=\"app1\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &controllers.registry,
            "steward_hl7_active_listener{server=\"app2\"}"
        ),
        Some(0.0)
    );
    assert_eq!(failovers(&controllers.registry), 0.0);

    // The observers, from now to the end.
    let stop = CancellationToken::new();
    let acked = Arc::new(AtomicUsize::new(0));
    let both_running = Arc::new(AtomicUsize::new(0));
    let sender = spawn_sender(lab.front, stop.clone(), acked.clone());
    let watcher = spawn_watcher(
        [lab.listener(0), lab.listener(1)],
        lab.runtime(),
        stop.clone(),
        both_running.clone(),
    );
    let progress = |from: usize| {
        let acked = acked.clone();
        move || acked.load(Ordering::SeqCst) >= from + 5
    };
    eventually("the sender acknowledged through HAProxy", progress(0)).await;

    // 2. The active listener is killed: app2 takes over; app1 is fenced (held), not
    //    restarted by drift repair.
    let pid = hl7_of(&lab.clients[0]).await.unwrap().2.unwrap();
    kill(pid);
    {
        let store = &controllers.store;
        eventually("app2 active after app1's listener died", || {
            active(store).as_deref() == Some("app2")
        })
        .await;
        assert_eq!(
            last_failover(store),
            Some(("app1".into(), "app2".into(), "ListenerStopped".into()))
        );
        assert!(store
            .status()
            .events
            .iter()
            .any(|e| e.reason == "HL7Failover" && e.message.contains("from app1 to app2")));
    }
    assert_eq!(failovers(&controllers.registry), 1.0);
    let (status, held, _) = hl7_of(&lab.clients[0]).await.unwrap();
    assert_eq!(
        (status, held),
        (ServiceStatus::Stopped, true),
        "app1 fenced"
    );
    let seen = acked.load(Ordering::SeqCst);
    eventually("the sender acknowledged after the failover", progress(seen)).await;

    // 3. failback: manual: app1 could take over again, but only when asked.
    eventually("app1 a standby", || {
        controllers.store.status().hl7.standby == ["app1"]
    })
    .await;
    runs(&controllers.registry, 10.0).await;
    assert_eq!(active(&controllers.store).as_deref(), Some("app2"));
    controllers.handle.hl7_failback();
    eventually("back on app1 when asked", || {
        active(&controllers.store).as_deref() == Some("app1")
    })
    .await;
    assert_eq!(
        last_failover(&controllers.store),
        Some(("app2".into(), "app1".into(), "Failback".into()))
    );
    let seen = acked.load(Ordering::SeqCst);
    eventually("the sender acknowledged after the failback", progress(seen)).await;

    assert_eq!(
        both_running.load(Ordering::SeqCst),
        0,
        "two HL7 listeners ran at once"
    );

    // 4. app1's agent dies, its listener still running: taken out of the HL7 backend
    //    first (the watcher would see two active otherwise), then app2 started.
    lab.stop_agent(0).await;
    eventually("app2 active after app1's agent died", || {
        active(&controllers.store).as_deref() == Some("app2")
    })
    .await;
    assert_eq!(
        last_failover(&controllers.store),
        Some(("app1".into(), "app2".into(), "AgentUnreachable".into()))
    );
    assert_eq!(
        lab.backend().await.get("app1"),
        Some(&MemberState::Maint),
        "the fenced listener is out of the backend"
    );
    let seen = acked.load(Ordering::SeqCst);
    eventually(
        "the sender acknowledged with app1's agent down",
        progress(seen),
    )
    .await;
    // The agent back: its listener, still running, is stopped (only one may run).
    lab.start_agent(0).await;
    steward_testkit::eventually_async(
        "app1's leftover listener stopped",
        PATIENCE,
        POLL,
        || async {
            hl7_of(&lab.clients[0])
                .await
                .is_some_and(|(s, held, _)| s == ServiceStatus::Stopped && held)
        },
    )
    .await;

    // Two ran while app1's agent was dead (one of them fenced out of the backend).
    let overlap = both_running.load(Ordering::SeqCst);

    // 5. failback: automatic: back to the preferred app1 once it has been ready a while.
    generation += 1;
    let failback = Policy {
        failback: "automatic",
        ..AUTOMATIC
    };
    controllers
        .desired
        .send(desired(
            generation,
            lab.desired(&failback),
            &lab.desired_dir,
        ))
        .unwrap();
    eventually("back on app1 by itself", || {
        last_failover(&controllers.store) == Some(("app2".into(), "app1".into(), "Failback".into()))
            && active(&controllers.store).as_deref() == Some("app1")
    })
    .await;

    // 6. failover: manual only reports: app1 killed, app2 not started.
    generation += 1;
    let manual = Policy {
        failover: "manual",
        ..AUTOMATIC
    };
    controllers
        .desired
        .send(desired(generation, lab.desired(&manual), &lab.desired_dir))
        .unwrap();
    runs(&controllers.registry, 3.0).await;
    let before = failovers(&controllers.registry);
    let pid = hl7_of(&lab.clients[0]).await.unwrap().2.unwrap();
    kill(pid);
    eventually("FailoverNeeded reported", || {
        controllers
            .store
            .status()
            .hl7
            .conditions
            .iter()
            .any(|c| c.reason == "FailoverNeeded" && c.message.contains("manual"))
    })
    .await;
    runs(&controllers.registry, 5.0).await;
    assert_eq!(failovers(&controllers.registry), before, "manual moved it");
    let (status, held, _) = hl7_of(&lab.clients[1]).await.unwrap();
    assert_eq!(
        (status, held),
        (ServiceStatus::Stopped, true),
        "app2 started"
    );
    assert_eq!(active(&controllers.store), None, "nothing answers");
    assert_eq!(
        metric(
            &controllers.registry,
            "steward_hl7_active_listener{server=\"app1\"}"
        ),
        Some(0.0)
    );

    // Automatic again: app2 takes over.
    generation += 1;
    controllers
        .desired
        .send(desired(
            generation,
            lab.desired(&AUTOMATIC),
            &lab.desired_dir,
        ))
        .unwrap();
    eventually("app2 active once failover is automatic", || {
        active(&controllers.store).as_deref() == Some("app2")
    })
    .await;
    let last = controllers.store.status().hl7.last_failover.unwrap();
    assert_eq!((last.from.as_str(), last.to.as_str()), ("app1", "app2"));
    let seen = acked.load(Ordering::SeqCst);
    eventually("the sender acknowledged again", progress(seen)).await;

    // 7. A daemon restart keeps lastFailover and moves nothing.
    controllers.stop().await;
    let restarted = RunningControllers::start(config, lab.desired(&AUTOMATIC), &lab.desired_dir);
    eventually("the restarted daemon shows the last failover", || {
        restarted.store.status().hl7.last_failover.as_ref() == Some(&last)
    })
    .await;
    eventually("app2 still active after the restart", || {
        active(&restarted.store).as_deref() == Some("app2")
    })
    .await;
    runs(&restarted.registry, 10.0).await;
    assert_eq!(active(&restarted.store).as_deref(), Some("app2"));
    assert_eq!(failovers(&restarted.registry), 0.0, "the restart flapped");
    assert_eq!(hl7_reason(&restarted.store), "Active");

    stop.cancel();
    let sent = sender.await.unwrap();
    let watched = watcher.await.unwrap();
    println!(
        "MLLP sender through HAProxy: {} messages, {} acknowledged AA, {} lost, {} sent more than once (possible duplicates by MSH-10), {} transmissions, longest gap between ACKs {:.2} s",
        sent.messages,
        sent.acknowledged,
        sent.lost.len(),
        sent.duplicates,
        sent.transmissions,
        sent.longest_gap.as_secs_f64()
    );
    println!(
        "watcher: {} sweeps, both listeners accepting {} times (only while app1's agent was dead), both active {} times",
        watched.sweeps,
        watched.both_running,
        watched.both_active.len()
    );
    assert!(sent.lost.is_empty(), "messages lost: {:?}", sent.lost);
    assert_eq!(sent.acknowledged, sent.messages);
    assert!(
        watched.both_active.is_empty(),
        "two listeners active at once: {:?}",
        watched.both_active
    );
    assert!(watched.sweeps > 100, "the watcher hardly ran");
    assert_eq!(
        both_running.load(Ordering::SeqCst),
        overlap,
        "two HL7 listeners ran at once after app1's agent was back"
    );
    restarted.stop().await;
    lab.shutdown().await;
}
