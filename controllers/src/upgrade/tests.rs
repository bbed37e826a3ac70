//! The upgrade controller with the others, on scripted agents and a paused clock: four
//! servers behind a (fake) load balancer, each running PSIS and PSWS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use steward_balancer::BalancerError;
use steward_model::{ServiceKind, Snapshot};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fakes::{compiled, fixture, fixture_in_state_dir, Call, Fixture};
use crate::status::UpgradeStatus;
use crate::{Controllers, ControllersHandle, RunReport, Store};

const SERVERS: [&str; 4] = ["app1", "app2", "app3", "app4"];

/// The fleet at `release`, with `policy` (the spec's YAML lines) as its UpgradePolicy.
fn fleet(release: &str, servers: &[&str], policy: &str) -> Snapshot {
    fleet_of(release, servers, &["PSIS", "PSWS"], policy)
}

/// [`fleet`], each server placing `services`.
fn fleet_of(release: &str, servers: &[&str], services: &[&str], policy: &str) -> Snapshot {
    let mut f = steward_testkit::Fixture::installation()
        .release(release)
        .load_balancer("lb.example.eng");
    for name in servers {
        f = f.server(
            steward_testkit::Fixture::server(name)
                .certificate("{generate: true}")
                .services(services.iter().copied()),
        );
    }
    let f = f.document(&format!(
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {{name: default}}\nspec:\n{policy}"
    ));
    compiled(&f.documents())
}

/// The gate outlasts `fall` failures on the default schedule (3 x 10 s), so a service
/// that fails after passing its first probe is judged down inside it.
const POLICY: &str = "  healthGate: 60s\n  drainTimeout: 20s\n  from: [\"6.12.*\"]\n";

/// A load balancer that records what was drained; sessions end at once.
#[derive(Default)]
struct FakeBalancer {
    /// (server, drained) in call order.
    calls: Mutex<Vec<(String, bool)>>,
}

impl FakeBalancer {
    fn drained(&self) -> Vec<String> {
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        for (s, d) in self.calls.lock().unwrap().iter() {
            out.insert(s.clone(), *d);
        }
        out.into_iter()
            .filter(|(_, d)| *d)
            .map(|(s, _)| s)
            .collect()
    }
}

#[async_trait]
impl Drainer for FakeBalancer {
    async fn set_drained(&self, server: &str, drained: bool) -> Result<(), BalancerError> {
        self.calls
            .lock()
            .unwrap()
            .push((server.to_owned(), drained));
        Ok(())
    }
    async fn sessions(&self, _server: &str) -> Result<u64, BalancerError> {
        Ok(0)
    }
}

/// A wall clock the test sets.
struct FixedClock(Mutex<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct Running {
    store: Arc<Store>,
    handle: ControllersHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<RunReport>,
    _desired: watch::Sender<Option<crate::Desired>>,
}

impl Running {
    async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }

    fn upgrade(&self) -> Option<UpgradeStatus> {
        self.store.status().upgrade
    }

    /// Waits until the upgrade is in `phase`.
    async fn until_phase(&self, what: &str, phase: UpgradePhase) {
        wait_until(what, || self.upgrade().is_some_and(|u| u.phase == phase)).await;
    }

    fn phases(&self) -> Vec<ServerUpgradePhase> {
        self.upgrade()
            .map(|u| u.servers.iter().map(|s| s.phase).collect())
            .unwrap_or_default()
    }
}

fn start(fx: &mut Fixture) -> Running {
    let controllers: Controllers = fx.controllers.take().unwrap();
    let store = controllers.store();
    let handle = controllers.handle();
    let (tx, rx) = watch::channel(Some(fx.desired(fx.generation(), fx.current())));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(controllers.run(rx, shutdown.clone()));
    Running {
        store,
        handle,
        shutdown,
        task,
        _desired: tx,
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let (deadline, poll) = (Duration::from_secs(600), Duration::from_millis(100));
    steward_testkit::eventually_async(what, deadline, poll, || std::future::ready(done())).await;
}

/// Four servers installed at 6.12.1 and healthy, with a fake balancer.
async fn installed(fx: &mut Fixture) -> (Running, Arc<FakeBalancer>) {
    installed_with(fx, &SERVERS, POLICY).await
}

/// A fleet of four (empty) servers whose controllers keep their state in the directory
/// returned with it, as a restart would find it.
fn persisting() -> (tempfile::TempDir, Fixture) {
    let state = tempfile::tempdir().unwrap();
    let fx = fixture_in_state_dir(&empty_servers(), state.path());
    (state, fx)
}

/// `servers` installed at 6.12.1 under `policy` and healthy, with a fake balancer.
async fn installed_with(
    fx: &mut Fixture,
    servers: &[&str],
    policy: &str,
) -> (Running, Arc<FakeBalancer>) {
    let balancer = Arc::new(FakeBalancer::default());
    fx.ctx.upgrade.set_drainer(balancer.clone());
    fx.apply(fleet("6.12.1", servers, policy));
    let running = start(fx);
    let store = running.store.clone();
    let generation = fx.generation();
    wait_until("the fleet at 6.12.1", || store.converged(generation)).await;
    (running, balancer)
}

/// Once app2 has PSWS of 6.13.0, that PSWS fails its health test: the upgrade halts.
async fn fail_new_psws_on_app2(fx: &Fixture, running: &Running) {
    wait_until("PSWS of 6.13.0 on app2", || {
        fx.agent("app2")
            .state()
            .services
            .get(&ServiceKind::Psws)
            .is_some_and(|s| s.release == "6.13.0")
    })
    .await;
    fx.prober
        .set_healthy("app2.example.eng", ServiceKind::Psws, false);
    running
        .until_phase("the upgrade to halt", UpgradePhase::Halted)
        .await;
}

fn empty_servers() -> Vec<(&'static str, &'static [&'static str])> {
    SERVERS.iter().map(|s| (*s, &[][..])).collect()
}

fn releases(fx: &Fixture, server: &str) -> Vec<String> {
    fx.agent(server)
        .state()
        .services
        .values()
        .map(|s| s.release.clone())
        .collect()
}

/// Index (newest first) of the oldest event of `object` with `reason`.
fn oldest(store: &Store, object: &str, reason: &str) -> usize {
    store
        .status()
        .events
        .iter()
        .rposition(|e| e.object == object && e.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} event for {object}"))
}

#[tokio::test(start_paused = true)]
async fn four_servers_upgrade_one_at_a_time_psis_first() {
    let mut fx = fixture(&empty_servers());
    let (running, balancer) = installed(&mut fx).await;
    let app3_psws_at = |release: &str| {
        fx.gauge(
            "steward_service_release_info",
            &[
                ("server", "app3"),
                ("service", "PSWS"),
                ("release", release),
            ],
        )
    };
    assert_eq!(running.upgrade().unwrap().phase, UpgradePhase::Idle);
    assert_eq!(app3_psws_at("6.12.1"), Some(1.0));

    fx.apply(fleet("6.13.0", &SERVERS, POLICY));
    running
        .until_phase("the upgrade to complete", UpgradePhase::Complete)
        .await;
    for server in SERVERS {
        assert_eq!(releases(&fx, server), ["6.13.0", "6.13.0"], "{server}");
    }
    // Server by server: each one done before the next one's first service is touched,
    // and on each, PSIS before PSWS.
    let store = &running.store;
    for (i, server) in SERVERS.iter().enumerate() {
        let psis = oldest(store, &format!("service/{server}/PSIS"), "Upgrading");
        let psws = oldest(store, &format!("service/{server}/PSWS"), "Upgrading");
        let done = oldest(store, &format!("server/{server}"), "ServerUpgraded");
        assert!(
            psis > psws && psws > done,
            "{server}: PSIS, PSWS, then done"
        );
        if let Some(next) = SERVERS.get(i + 1) {
            let next_start = oldest(store, &format!("service/{next}/PSIS"), "Upgrading");
            assert!(done > next_start, "{next} started before {server} was done");
        }
    }
    assert!(
        balancer.drained().is_empty(),
        "every server is back in the balancer"
    );
    assert_eq!(balancer.calls.lock().unwrap().len(), 8);
    assert_eq!(
        fx.gauge("steward_upgrade_phase", &[("phase", "Complete")]),
        Some(1.0)
    );
    assert_eq!(
        fx.gauge("steward_upgrade_phase", &[("phase", "Progressing")]),
        Some(0.0)
    );
    assert_eq!(app3_psws_at("6.12.1"), None);
    assert_eq!(app3_psws_at("6.13.0"), Some(1.0));
    assert!(store
        .status()
        .events
        .iter()
        .any(|e| e.reason == "UpgradeComplete"));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_on_server_two_halts_leaves_the_rest_and_resumes() {
    let (state, mut fx) = persisting();
    let (running, balancer) = installed(&mut fx).await;
    let installs_before: Vec<usize> = SERVERS
        .iter()
        .map(|s| fx.agent(s).calls(Call::Install))
        .collect();

    fx.apply(fleet("6.13.0", &SERVERS, POLICY));
    // PSWS of the new release fails its health test on app2 only.
    fail_new_psws_on_app2(&fx, &running).await;
    let upgrade = running.upgrade().unwrap();
    assert_eq!(
        running.phases(),
        [
            ServerUpgradePhase::Done,
            ServerUpgradePhase::Failed,
            ServerUpgradePhase::Pending,
            ServerUpgradePhase::Pending
        ]
    );
    let reason = upgrade.reason.clone().unwrap();
    assert!(
        reason.contains("app2") && reason.contains("PSWS"),
        "{reason}"
    );
    assert_eq!(upgrade.logs, ["upgrade-logs/app2-PSWS.log"]);
    assert!(state.path().join("upgrade-logs/app2-PSWS.log").is_file());
    assert_eq!(
        balancer.drained(),
        ["app2"],
        "app2 stays out of the balancer"
    );
    assert!(running
        .store
        .status()
        .events
        .iter()
        .any(|e| e.reason == "UpgradeHalted"));
    assert_eq!(
        fx.gauge("steward_upgrade_phase", &[("phase", "Halted")]),
        Some(1.0)
    );

    // Nothing is retried or touched while halted, however long it stays so.
    let app2_installs = fx.agent("app2").calls(Call::Install);
    let app2_restarts = fx.agent("app2").calls(Call::Restart);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(fx.agent("app2").calls(Call::Install), app2_installs);
    assert_eq!(fx.agent("app2").calls(Call::Restart), app2_restarts);
    for (i, server) in SERVERS.iter().enumerate().skip(2) {
        assert_eq!(
            fx.agent(server).calls(Call::Install),
            installs_before[i],
            "{server}"
        );
        assert_eq!(releases(&fx, server), ["6.12.1", "6.12.1"], "{server}");
    }
    assert_eq!(running.upgrade().unwrap().phase, UpgradePhase::Halted);

    // The operator fixed it and resumes.
    fx.prober
        .set_healthy("app2.example.eng", ServiceKind::Psws, true);
    assert_eq!(running.handle.resume_upgrade(), ResumeOutcome::Resumed);
    running
        .until_phase("the resumed upgrade to complete", UpgradePhase::Complete)
        .await;
    for server in SERVERS {
        assert_eq!(releases(&fx, server), ["6.13.0", "6.13.0"], "{server}");
    }
    assert!(balancer.drained().is_empty());
    assert_eq!(
        running.handle.resume_upgrade(),
        ResumeOutcome::NotHalted(UpgradePhase::Complete)
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_upgrade_resumes_without_rerunning_finished_servers() {
    let (state, mut fx) = persisting();
    let (running, _balancer) = installed(&mut fx).await;
    fx.apply(fleet("6.13.0", &SERVERS, POLICY));
    wait_until("app1 done and app2 under way", || {
        let p = running.phases();
        p.len() == 4 && p[0] == ServerUpgradePhase::Done && p[1].in_flight()
    })
    .await;
    running.stop().await;
    let app1_installs = fx.agent("app1").calls(Call::Install);
    let persisted = rollout::load(state.path()).unwrap().unwrap();
    assert_eq!(persisted.servers[0].phase, ServerUpgradePhase::Done);

    let mut again = fx.restart();
    again
        .ctx
        .upgrade
        .set_drainer(Arc::new(FakeBalancer::default()));
    let running = start(&mut again);
    running
        .until_phase(
            "the upgrade to complete after the restart",
            UpgradePhase::Complete,
        )
        .await;
    assert_eq!(
        again.agent("app1").calls(Call::Install),
        app1_installs,
        "app1 ran again"
    );
    for server in SERVERS {
        assert_eq!(releases(&again, server), ["6.13.0", "6.13.0"], "{server}");
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_release_from_outside_the_allowed_path_is_refused() {
    let mut fx = fixture(&empty_servers()[..2]);
    let policy = "  from: [\"6.11.*\", \"6.10.4\"]\n";
    let (running, balancer) = installed_with(&mut fx, &SERVERS[..2], policy).await;
    let installs = fx.agent("app1").calls(Call::Install);
    fx.apply(fleet("6.13.0", &SERVERS[..2], policy));
    running
        .until_phase("the refusal", UpgradePhase::Halted)
        .await;
    let reason = running.upgrade().unwrap().reason.unwrap();
    assert!(
        reason.starts_with("UpgradePathRefused") && reason.contains("6.11.*, 6.10.4"),
        "{reason}"
    );
    assert!(matches!(
        running.handle.resume_upgrade(),
        ResumeOutcome::Refused(_)
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fx.agent("app1").calls(Call::Install), installs);
    assert!(balancer.calls.lock().unwrap().is_empty());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_commit_during_a_deny_window_waits_for_its_end() {
    let mut fx = fixture(&empty_servers()[..2]);
    // Saturday 13 June 2026 10:00 UTC, inside a weekend freeze that ends Monday 08:00 UTC.
    let clock = Arc::new(FixedClock(Mutex::new(
        "2026-06-13T10:00:00Z".parse().unwrap(),
    )));
    fx.ctx.upgrade.set_clock(clock.clone());
    let policy = "  healthGate: 1s\n  windows:\n    - {kind: deny, schedule: \"0 22 * * 5\", duration: 58h}\n";
    let (running, _balancer) = installed_with(&mut fx, &SERVERS[..2], policy).await;
    let installs = fx.agent("app1").calls(Call::Install);

    fx.apply(fleet("6.13.0", &SERVERS[..2], policy));
    wait_until("the upgrade to wait", || {
        running
            .upgrade()
            .is_some_and(|u| u.phase == UpgradePhase::Waiting && u.next_window.is_some())
    })
    .await;
    let upgrade = running.upgrade().unwrap();
    assert_eq!(upgrade.next_window.as_deref(), Some("2026-06-15T08:00:00Z"));
    assert!(upgrade
        .reason
        .unwrap()
        .starts_with("inside the deny window"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fx.agent("app1").calls(Call::Install), installs);

    *clock.0.lock().unwrap() = "2026-06-15T08:00:00Z".parse().unwrap();
    running
        .until_phase(
            "the upgrade to complete once the freeze ended",
            UpgradePhase::Complete,
        )
        .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_commit_after_a_halt_fixes_the_failed_server_first() {
    let mut fx = fixture(&empty_servers()[..3]);
    let (running, balancer) = installed_with(&mut fx, &SERVERS[..3], POLICY).await;
    fx.apply(fleet("6.13.0", &SERVERS[..3], POLICY));
    fail_new_psws_on_app2(&fx, &running).await;
    // A fixed release: app2's PSWS passes again once reinstalled.
    fx.prober
        .set_healthy("app2.example.eng", ServiceKind::Psws, true);
    fx.apply(fleet("6.13.1", &SERVERS[..3], POLICY));
    wait_until("the upgrade to 6.13.1 to complete", || {
        running
            .upgrade()
            .is_some_and(|u| u.phase == UpgradePhase::Complete && u.to.as_deref() == Some("6.13.1"))
    })
    .await;
    let store = &running.store;
    let app2 = oldest(store, "server/app2", "ServerUpgraded");
    let app1_again = store
        .status()
        .events
        .iter()
        .position(|e| e.object == "server/app1" && e.reason == "ServerUpgraded")
        .unwrap();
    assert!(app2 > app1_again, "app2 (the failed one) was fixed first");
    for server in &SERVERS[..3] {
        assert_eq!(releases(&fx, server), ["6.13.1", "6.13.1"], "{server}");
    }
    assert!(balancer.drained().is_empty());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_neither_plans_nor_drains() {
    let mut fx = fixture(&empty_servers()[..2]);
    // The fakes do not fence installs (the real agent client does): the fleet converges.
    fx.follow();
    let (running, balancer) = installed_with(&mut fx, &SERVERS[..2], "  maxUnavailable: 1\n").await;
    fx.apply(fleet("6.13.0", &SERVERS[..2], "  maxUnavailable: 1\n"));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        running
            .upgrade()
            .is_none_or(|u| u.phase != UpgradePhase::Progressing),
        "{:?}",
        running.upgrade()
    );
    assert!(balancer.calls.lock().unwrap().is_empty());
    assert!(releases(&fx, "app1").iter().all(|r| r == "6.12.1"));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_policy_is_a_resource_with_its_upgrade() {
    let mut fx = fixture(&empty_servers());
    let (running, _balancer) = installed(&mut fx).await;
    let store = &running.store;
    wait_until("the policy's first pass", || {
        store.resource("upgradepolicy", "default").is_some()
    })
    .await;
    let resource = store.resource("UpgradePolicy", "default").unwrap();
    assert_eq!(resource.kind, "UpgradePolicy");
    let crate::status::ResourceDetail::UpgradePolicy(policy) = &resource.detail else {
        panic!("{resource:?}");
    };
    assert_eq!(policy.health_gate_seconds, 60.0);
    assert_eq!(policy.drain_timeout_seconds, 20.0);
    assert_eq!(policy.from, ["6.12.*"]);
    assert_eq!(policy.max_unavailable, 1);
    assert_eq!(
        policy.upgrade.as_ref().map(|u| u.phase),
        Some(UpgradePhase::Idle)
    );
    assert!(store.resource("upgradepolicy", "other").is_none());

    // Its events are the upgrade's.
    fx.apply(fleet("6.13.0", &SERVERS, POLICY));
    running
        .until_phase("the upgrade to complete", UpgradePhase::Complete)
        .await;
    // The services' own resources show when the upgrade released them.
    let psis = store.resource("service", "app1.PSIS").unwrap();
    assert!(psis.events.iter().any(|e| e.reason == "Upgrading"));
    let resource = store.resource("upgradepolicies", "default").unwrap();
    assert!(
        resource
            .events
            .iter()
            .any(|e| e.reason == "UpgradeComplete"),
        "{:?}",
        resource.events
    );
    running.stop().await;
}

/// app1 and app2 with PSIS, PSWS and HL7 at `release`, HL7 failing over automatically
/// with app1 preferred (as examples/ha places it): app1's listener active, app2's a held
/// standby.
fn hl7_pair(release: &str) -> Snapshot {
    let mut snapshot = fleet_of(release, &SERVERS[..2], &["PSIS", "PSWS", "HL7"], POLICY);
    snapshot.installation.hl7 = steward_model::snapshot::Hl7 {
        failover: steward_model::resource::Hl7Failover::Automatic,
        preferred: Some("app1".into()),
        ..Default::default()
    };
    snapshot
}

/// HL7 on `server`: (release, running, held).
fn hl7_on(fx: &Fixture, server: &str) -> (String, bool, bool) {
    let agent = fx.agent(server);
    let state = agent.state();
    let hl7 = &state.services[&ServiceKind::Hl7];
    (
        hl7.release.clone(),
        hl7.status == steward_agent::api::ServiceStatus::Running,
        hl7.held,
    )
}

/// A held standby never runs, so it has no passing verdict to give: it must neither keep
/// the preconditions false nor keep its server from being done, and the upgrade must
/// reinstall it held, never start it.
#[tokio::test(start_paused = true)]
async fn a_held_hl7_standby_is_upgraded_held_and_does_not_block_the_upgrade() {
    let mut fx = fixture(&empty_servers()[..2]);
    let balancer = Arc::new(FakeBalancer::default());
    fx.ctx.upgrade.set_drainer(balancer.clone());
    fx.apply(hl7_pair("6.12.1"));
    let running = start(&mut fx);
    let store = running.store.clone();
    let generation = fx.generation();
    wait_until("the pair at 6.12.1", || store.converged(generation)).await;
    assert_eq!(hl7_on(&fx, "app1"), ("6.12.1".into(), true, false));
    assert_eq!(hl7_on(&fx, "app2"), ("6.12.1".into(), false, true));
    // The standby is never started and the active listener never stopped or moved.
    fx.agent("app2").forbid(Call::Start);
    fx.agent("app1").forbid(Call::Stop);

    fx.apply(hl7_pair("6.13.0"));
    wait_until("the upgrade to complete", || {
        running
            .upgrade()
            .is_some_and(|u| u.phase == UpgradePhase::Complete)
    })
    .await;
    assert_eq!(
        running.phases(),
        [ServerUpgradePhase::Done, ServerUpgradePhase::Done]
    );
    for server in &SERVERS[..2] {
        assert_eq!(
            releases(&fx, server),
            ["6.13.0", "6.13.0", "6.13.0"],
            "{server}"
        );
    }
    assert_eq!(hl7_on(&fx, "app2"), ("6.13.0".into(), false, true));
    assert_eq!(
        fx.agent("app2").installs_of(ServiceKind::Hl7),
        [("6.12.1".to_owned(), true), ("6.13.0".to_owned(), true)],
        "the standby is installed and upgraded held"
    );
    let hl7 = store.status().hl7;
    assert_eq!(hl7.active_listener.as_deref(), Some("app1"));
    assert_eq!(hl7.standby, ["app2"]);
    assert_eq!(hl7_on(&fx, "app1"), ("6.13.0".into(), true, false));
    assert_eq!(fx.counter("steward_hl7_failovers_total", &[]), Some(0.0));
    assert!(balancer.drained().is_empty());
    running.stop().await;
}
