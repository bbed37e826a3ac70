//! What looking at settled services costs the agents: one listing per server per look
//! at all of its services, and drift still seen by a look woken for it.

use super::*;
use crate::fakes::FakeAgent;
use ServiceKind::{Admin, Client, Report};

/// What runs where: four services on each of two servers.
const FLEET: [(&str, [ServiceKind; 4]); 2] = [
    ("app1", [Psis, Psws, Health, Job]),
    ("app2", [Client, Admin, Report, Hl7]),
];

async fn healthy_fleet() -> Fixture {
    let fx = fixture(&[
        ("app1", &["PSIS", "PSWS", "HEALTH", "JOB"]),
        ("app2", &["CLIENT", "ADMIN", "REPORT", "HL7"]),
    ]);
    certificates(&fx, &["app1", "app2"]).await;
    for (server, kinds) in FLEET {
        for kind in kinds {
            converge(&fx, server, kind).await;
        }
    }
    fx
}

fn listings(fx: &Fixture) -> usize {
    ["app1", "app2"]
        .iter()
        .map(|s| fx.agent(s).calls(Call::Services))
        .sum()
}

/// Every service of both servers, one after the other, as the runtime runs them.
async fn look_at_all(fx: &Fixture, reason: Reason) {
    for (server, kinds) in FLEET {
        for kind in kinds {
            run_for(fx, server, kind, reason).await;
        }
    }
}

#[tokio::test]
async fn a_full_resync_lists_each_server_once() {
    let fx = healthy_fleet().await;
    let before = listings(&fx);
    fx.ctx.triggers.resync_all(&fx.ctx);
    look_at_all(&fx, Reason::Manual).await;
    assert_eq!(listings(&fx) - before, 2, "8 services on 2 servers");
    for (server, kinds) in FLEET {
        for kind in kinds {
            assert_eq!(reason(&fx, server, kind), "Healthy", "{server}/{kind}");
        }
    }
}

/// The server controller's look of a full resync shares its services' listing: one
/// listing per server for both controllers (two before).
#[tokio::test]
async fn a_full_resync_lists_each_server_once_for_its_server_and_its_services() {
    let fx = healthy_fleet().await;
    for server in ["app1", "app2"] {
        fx.run::<crate::server::Servers>(server.into())
            .await
            .unwrap();
    }
    let before = listings(&fx);
    fx.ctx.triggers.resync_all(&fx.ctx);
    // The services first: the server's look then takes their listing.
    look_at_all(&fx, Reason::Manual).await;
    for server in ["app1", "app2"] {
        crate::reconciler::reconcile_and_record::<crate::server::Servers>(
            server.into(),
            Reason::Manual,
            fx.ctx.clone(),
        )
        .await
        .unwrap();
    }
    assert_eq!(listings(&fx) - before, 2, "2 servers, 8 services");
}

#[tokio::test(start_paused = true)]
async fn periodic_looks_at_a_servers_services_share_one_listing() {
    let fx = healthy_fleet().await;
    // Past the age a periodic look tolerates: the first look of a server lists.
    tokio::time::advance(fx.ctx.pace.resync).await;
    let before = listings(&fx);
    look_at_all(&fx, Reason::Requeue).await;
    assert_eq!(listings(&fx) - before, 2, "8 services on 2 servers");
}

#[tokio::test(start_paused = true)]
async fn a_new_desired_state_lists_each_server_once() {
    let fx = healthy_fleet().await;
    let mut changed = fx.current();
    changed.installation.prune = !changed.installation.prune;
    fx.apply(changed);
    let before = listings(&fx);
    look_at_all(&fx, Reason::DesiredChanged).await;
    assert_eq!(listings(&fx) - before, 2, "8 services on 2 servers");
}

#[tokio::test(start_paused = true)]
async fn a_service_stopped_behind_stewards_back_is_restarted_by_a_woken_look() {
    let fx = healthy_fleet().await;
    fx.ctx.triggers.resync_all(&fx.ctx);
    look_at_all(&fx, Reason::Manual).await;
    let app1: Arc<FakeAgent> = fx.agent("app1");
    app1.set_status(Job, ServiceStatus::Stopped);

    // A periodic look within the age it tolerates still sees it running ...
    run_for(&fx, "app1", Job, Reason::Requeue).await;
    assert_eq!(app1.calls(Call::Restart), 0);
    // ... the look its failing probe or the server's listing wakes does not.
    run_for(&fx, "app1", Job, Reason::ObservedChanged).await;
    assert_eq!(app1.calls(Call::Restart), 1);

    // And a periodic look once the kept listing is too old sees it too.
    app1.set_status(Health, ServiceStatus::Stopped);
    tokio::time::advance(fx.ctx.pace.resync).await;
    run_for(&fx, "app1", Health, Reason::Requeue).await;
    assert_eq!(app1.calls(Call::Restart), 2);
}

#[tokio::test]
async fn the_server_controller_wakes_a_service_its_listing_shows_changed() {
    let mut fx = healthy_fleet().await;
    let mut services = fx.controllers.as_mut().unwrap().triggers::<Services>();
    // The first run of a server wakes all of its services (its agent came up).
    for server in ["app1", "app2"] {
        fx.run::<crate::server::Servers>(server.into())
            .await
            .unwrap();
    }
    while services.try_recv().is_ok() {}
    fx.agent("app1").set_status(Job, ServiceStatus::Stopped);

    fx.run::<crate::server::Servers>("app1".into())
        .await
        .unwrap();
    fx.run::<crate::server::Servers>("app2".into())
        .await
        .unwrap();
    let mut woken = Vec::new();
    while let Ok((key, reason)) = services.try_recv() {
        woken.push((key, reason));
    }
    assert_eq!(
        woken,
        [(ServiceKey::new("app1", Job), Reason::ObservedChanged)]
    );
}

async fn run_for(fx: &Fixture, server: &str, kind: ServiceKind, reason: Reason) {
    crate::reconciler::reconcile_and_record::<Services>(
        ServiceKey::new(server, kind),
        reason,
        fx.ctx.clone(),
    )
    .await
    .unwrap();
}

/// Gates ask for a dependency ready somewhere: a second PSIS passing opens nothing new,
/// so it wakes no dependent (on 1,000 servers, each PSIS and PSWS verdict woke 10,000).
#[tokio::test]
async fn only_the_first_ready_instance_of_a_kind_wakes_its_dependents() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let mut snapshot = fx.current();
    let psis = snapshot.servers["app1"].service(Psis).unwrap().clone();
    snapshot
        .servers
        .get_mut("app2")
        .unwrap()
        .services
        .push(psis);
    fx.apply(snapshot);
    let mut services = fx.controllers.as_mut().unwrap().triggers::<Services>();
    certificates(&fx, &["app1", "app2"]).await;
    converge(&fx, "app1", Psis).await;
    let mut woken = Vec::new();
    while let Ok((key, _)) = services.try_recv() {
        woken.push(key);
    }
    assert!(
        woken.contains(&ServiceKey::new("app2", Health)),
        "{woken:?}"
    );

    converge(&fx, "app2", Psis).await;
    let mut woken = Vec::new();
    while let Ok((key, _)) = services.try_recv() {
        woken.push(key);
    }
    assert_eq!(woken, [ServiceKey::new("app2", Psis)]);
}
