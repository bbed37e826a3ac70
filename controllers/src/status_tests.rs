//! The dashboard model: standby servers, kind-wide health (`minimumHealthy`), the last
//! probe of each service, and the per-object resource view.

use steward_model::ServiceKind::{self, Health, Psis, Psws};

use crate::fakes::{fixture, headline, Call, Fixture};
use crate::service_key::ServiceKey;
use crate::status::{ConditionType, ResourceDetail};

async fn certificates(fx: &Fixture, servers: &[&str]) {
    for server in servers {
        fx.run::<crate::server::Servers>((*server).into())
            .await
            .unwrap();
        fx.run::<crate::certificate::Certificates>((*server).into())
            .await
            .unwrap();
    }
}

/// Reconcile and probe `server/kind` until its verdict settles.
async fn converge(fx: &Fixture, server: &str, kind: ServiceKind) {
    let key = ServiceKey::new(server, kind);
    for _ in 0..4 {
        fx.run::<crate::service::Services>(key.clone())
            .await
            .unwrap();
        fx.probe(server, kind).await;
    }
    fx.run::<crate::service::Services>(key).await.unwrap();
}

#[tokio::test]
async fn standby_servers_are_left_off_the_dashboard_but_reconciled() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let mut next = fx.current();
    next.servers.get_mut("app2").unwrap().monitor = false;
    fx.apply(next);
    certificates(&fx, &["app1", "app2"]).await;
    for (server, kind) in [("app1", Psis), ("app1", Psws), ("app2", Health)] {
        converge(&fx, server, kind).await;
    }
    assert_eq!(fx.agent("app2").calls(Call::Install), 1, "still reconciled");

    let status = fx.ctx.store.status();
    let names: Vec<&str> = status.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app1"]);
    let health = status.service_kinds.iter().find(|k| k.kind == Health);
    assert_eq!(
        health.map(|k| (k.servers, k.healthy_servers, k.healthy)),
        Some((1, 1, true)),
        "a standby server's services still count for their kind"
    );

    let app2 = fx.ctx.store.resource("server", "app2").unwrap();
    assert_eq!(app2.observed_generation, Some(fx.generation()));
    assert_eq!(headline(&app2.conditions), "AgentReady");
    let ResourceDetail::Server(detail) = &app2.detail else {
        panic!("{app2:?}")
    };
    assert!(!detail.monitor);
    assert_eq!(detail.services[0].healthy, Some(true));
    let json = serde_json::to_value(&app2).unwrap();
    assert_eq!(json["conditions"].as_array().map(Vec::len), Some(4));
    for c in json["conditions"].as_array().unwrap() {
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
    }
    let service = fx.ctx.store.resource("service", "app2.HEALTH").unwrap();
    assert!(service.events.iter().any(|e| e.reason == "Installed"));
    assert_eq!(
        service.conditions[0].condition_type,
        ConditionType::Ready,
        "Ready first"
    );
}

#[tokio::test]
async fn minimum_healthy_judges_a_service_kind_as_a_whole() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])]);
    let mut next = fx.current();
    let psis = next.servers["app1"].service(Psis).unwrap().clone();
    next.servers
        .get_mut("app2")
        .unwrap()
        .services
        .insert(0, psis);
    let mut check = next.health_check(Psis);
    check.minimum_healthy = 2;
    next.health_checks.insert(Psis, check);
    fx.apply(next);
    certificates(&fx, &["app1", "app2"]).await;
    let kind = |fx: &Fixture| {
        let s = fx.ctx.store.service_kind(Psis).unwrap();
        (s.servers, s.healthy_servers, s.minimum_healthy, s.healthy)
    };
    let gauge = |fx: &Fixture| fx.gauge("steward_service_kind_healthy", &[("service", "PSIS")]);

    converge(&fx, "app1", Psis).await;
    assert_eq!(kind(&fx), (2, 1, 2, false));
    assert_eq!(gauge(&fx), Some(0.0));
    // Ordering needs PSIS ready somewhere, not the whole kind: PSWS goes on.
    converge(&fx, "app1", Psws).await;
    assert_eq!(
        fx.ctx
            .store
            .resource("service", "app1.PSWS")
            .map(|r| headline(&r.conditions)),
        Some("Healthy".into())
    );

    converge(&fx, "app2", Psis).await;
    assert_eq!(kind(&fx), (2, 2, 2, true));
    assert_eq!(gauge(&fx), Some(1.0));
    let status = serde_json::to_value(fx.ctx.store.status()).unwrap();
    let kinds = status["serviceKinds"].as_array().unwrap();
    assert!(kinds.contains(&serde_json::json!({
        "kind": "PSIS", "servers": 2, "healthyServers": 2, "minimumHealthy": 2, "healthy": true
    })));

    fx.prober.set_healthy("app2.example.eng", Psis, false);
    for _ in 0..3 {
        fx.probe("app2", Psis).await;
    }
    assert_eq!(kind(&fx), (2, 1, 2, false));
    assert_eq!(gauge(&fx), Some(0.0));
    let last = fx.ctx.store.resource("service", "app2.PSIS").unwrap();
    let ResourceDetail::Service(detail) = last.detail else {
        panic!()
    };
    let probe = detail.last_probe.unwrap();
    assert_eq!(probe.failure.as_deref(), Some("status"));
    assert_eq!(
        probe.error.as_deref(),
        Some("status 503 (expected 200-399)")
    );
    assert_eq!(
        fx.gauge(
            "steward_probe_success",
            &[("server", "app2"), ("service", "PSIS")]
        ),
        Some(0.0)
    );
    assert_eq!(
        fx.gauge(
            "steward_probe_http_status_code",
            &[("server", "app2"), ("service", "PSIS")]
        ),
        Some(503.0)
    );
}

#[tokio::test]
async fn a_verdict_change_wakes_the_service_and_its_dependents() {
    let mut fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    certificates(&fx, &["app1"]).await;
    converge(&fx, "app1", Psis).await;
    let mut services = fx
        .controllers
        .as_mut()
        .unwrap()
        .triggers::<crate::service::Services>();
    let mut woken = || {
        let mut keys = Vec::new();
        while let Ok((key, _)) = services.try_recv() {
            keys.push(key.to_string());
        }
        keys
    };
    woken();
    fx.prober.set_healthy("app1.example.eng", Psis, false);
    for _ in 0..2 {
        fx.probe("app1", Psis).await;
    }
    assert!(woken().is_empty(), "no verdict change yet (fall is 3)");
    fx.probe("app1", Psis).await;
    assert_eq!(woken(), ["app1/PSIS"]);
    fx.prober.set_healthy("app1.example.eng", Psis, true);
    fx.probe("app1", Psis).await;
    fx.probe("app1", Psis).await;
    let mut keys = woken();
    keys.sort();
    assert_eq!(
        keys,
        ["app1/PSIS", "app1/PSWS"],
        "healthy again: PSWS may go on"
    );
}
