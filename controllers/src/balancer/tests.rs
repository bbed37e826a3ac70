//! The load-balancer controller on a fixture fleet: rendered files written once and
//! repaired, HAProxy failures as conditions.

use std::path::Path;

use steward_model::load::{load_text, Loaded};
use steward_model::Snapshot;

use super::*;
use crate::fakes::{fixture_in_state_dir, headline, Fixture};

/// Two servers running PSIS and PSWS behind the load balancer `lb` (a YAML flow map).
fn snapshot(lb: &str) -> Snapshot {
    let mut text = format!(
        "apiVersion: steward/v1\nkind: Installation\nmetadata: {{name: ps}}\nspec:\n  environment: non-production\n  installType: advanced\n  release: \"6.12.1\"\n  loadBalancer: {lb}\n  database: {{server: db.example.eng, name: PS, user: u, passwordRef: env:PW}}\n  certificateAuthority: {{mode: generated}}\n"
    );
    for name in ["app1", "app2"] {
        text.push_str(&format!(
            "---\napiVersion: steward/v1\nkind: Server\nmetadata: {{name: {name}}}\nspec:\n  hostname: {name}.example.eng\n  certificate: {{generate: true}}\n  services: [{{kind: PSIS}}, {{kind: PSWS}}]\n"
        ));
    }
    let mut loaded = Loaded::default();
    load_text(Path::new("fixture.yaml"), &text, &mut loaded);
    steward_model::validate::compile(loaded)
        .snapshot
        .expect("valid fixture")
}

fn fleet(state_dir: &Path, lb: &str) -> Fixture {
    let fx = fixture_in_state_dir(
        // Agents for both servers; the snapshot below puts both behind the load balancer.
        &[("app1", &["PSIS", "PSWS"]), ("app2", &["HEALTH"])],
        state_dir,
    );
    fx.apply(snapshot(lb));
    fx
}

fn events(fx: &Fixture, reason: &str) -> usize {
    fx.ctx
        .store
        .status()
        .events
        .iter()
        .filter(|e| e.reason == reason)
        .count()
}

#[tokio::test]
async fn a_rendered_vendor_is_written_once_and_repaired() {
    let state = tempfile::tempdir().unwrap();
    let fx = fleet(
        state.path(),
        "{fqdn: lb.example.eng, vendor: f5, address: 192.0.2.10, render: out/f5}",
    );
    reconcile(&fx.ctx).await.unwrap();
    let path = state.path().join("out/f5/as3.json");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("\"updateMode\": \"selective\""));
    let status = fx
        .ctx
        .store
        .status()
        .load_balancer
        .expect("a load balancer");
    assert_eq!(status.vendor, "f5");
    assert_eq!(status.farms.len(), 2);
    assert_eq!(status.farms[0].port, 7001);
    assert_eq!(status.farms[0].members[0].server, "app1");
    assert_eq!(
        status.farms[0].members[0].state, None,
        "steward does not reach an F5"
    );
    assert!(
        headline(&status.conditions).contains("Rendered"),
        "{}",
        headline(&status.conditions)
    );

    // Nothing changed: nothing written.
    reconcile(&fx.ctx).await.unwrap();
    assert_eq!(events(&fx, "Rendered"), 1);

    // Someone edits the file: the next periodic run puts it back.
    std::fs::write(&path, "{}").unwrap();
    reconcile(&fx.ctx).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(events(&fx, "Rendered"), 2);
}

#[tokio::test]
async fn no_vendor_no_load_balancer_status() {
    let state = tempfile::tempdir().unwrap();
    let fx = fleet(state.path(), "{fqdn: lb.example.eng}");
    reconcile(&fx.ctx).await.unwrap();
    assert!(fx.ctx.store.status().load_balancer.is_none());
    assert_eq!(
        std::fs::read_dir(state.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() == "lb")
            .count(),
        0
    );
}

#[tokio::test]
async fn an_unresolvable_member_is_a_condition_and_nothing_is_installed() {
    if steward_testkit::require_tool("haproxy", "haproxy").is_none() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // The fixture's servers (appN.example.eng) resolve nowhere.
    let fx = fleet(state.path(), "{fqdn: lb.example.eng, vendor: haproxy}");
    let err = reconcile(&fx.ctx).await.unwrap_err();
    assert_eq!(err.reason(), "Unresolvable", "{err}");
    LoadBalancers::error_policy(&LoadBalancerKey, &err, &fx.ctx);
    let status = fx
        .ctx
        .store
        .status()
        .load_balancer
        .expect("a load balancer");
    assert_eq!(status.vendor, "haproxy");
    assert!(
        headline(&status.conditions).contains("Unresolvable"),
        "{}",
        headline(&status.conditions)
    );
    assert!(!state.path().join("haproxy/haproxy.cfg").exists());
    // Members are listed, their state unknown: HAProxy was never reached.
    assert!(status
        .farms
        .iter()
        .all(|f| f.members.iter().all(|m| m.state.is_none())));
}

#[test]
fn the_member_series_follow_the_status() {
    let state = tempfile::tempdir().unwrap();
    let fx = fleet(state.path(), "{fqdn: lb.example.eng}");
    let member = |server: &str, state| FarmMemberStatus {
        server: server.into(),
        state,
    };
    fx.ctx.store.set_load_balancer(Some((
        "haproxy",
        vec![FarmStatus {
            kind: steward_model::ServiceKind::Psis,
            port: 7001,
            members: vec![
                member("app1", Some(LbMemberState::Up)),
                member("app2", Some(LbMemberState::Drain)),
            ],
        }],
    )));
    let up = |server: &str| {
        fx.gauge(
            "steward_lb_member_up",
            &[("kind", "PSIS"), ("server", server)],
        )
    };
    assert_eq!((up("app1").0, up("app2").0), (Some(1.0), Some(0.0)));
    // The load balancer goes: so do its series.
    fx.ctx.store.set_load_balancer(None);
    let text = fx.registry.text();
    assert!(!text.contains("steward_lb_member_up{"), "{text}");
}
