//! The load-balancer controller on a fixture fleet: rendered files written once and
//! repaired, HAProxy failures as conditions.

use std::path::Path;

use steward_model::Snapshot;

use super::*;
use crate::fakes::{compiled, fixture_in_state_dir, headline, Fixture};

/// Two servers running PSIS and PSWS behind the load balancer `lb` (a YAML flow map).
fn snapshot(lb: &str) -> Snapshot {
    let both: &[&str] = &["PSIS", "PSWS"];
    compiled(
        &steward_testkit::Fixture::installation()
            .load_balancer_flow(lb)
            .servers([("app1", both), ("app2", both)])
            .documents(),
    )
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

fn lb_status(fx: &Fixture) -> crate::status::LoadBalancerStatus {
    fx.ctx
        .store
        .status()
        .load_balancer
        .expect("a load balancer")
}

/// Asserts that the load balancer's headline condition mentions `what`.
fn assert_headline_has(status: &crate::status::LoadBalancerStatus, what: &str) {
    let headline = headline(&status.conditions);
    assert!(headline.contains(what), "{headline}");
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
    fx.run::<LoadBalancers>(()).await.unwrap();
    let path = state.path().join("out/f5/as3.json");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("\"updateMode\": \"selective\""));
    let status = lb_status(&fx);
    assert_eq!(status.vendor, "f5");
    assert_eq!(status.farms.len(), 2);
    assert_eq!(status.farms[0].port, 7001);
    assert_eq!(status.farms[0].members[0].server, "app1");
    assert_eq!(
        status.farms[0].members[0].state, None,
        "steward does not reach an F5"
    );
    assert_headline_has(&status, "Rendered");

    // Nothing changed: nothing written.
    fx.run::<LoadBalancers>(()).await.unwrap();
    assert_eq!(events(&fx, "Rendered"), 1);

    // Someone edits the file: the next periodic run puts it back.
    std::fs::write(&path, "{}").unwrap();
    fx.run::<LoadBalancers>(()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(events(&fx, "Rendered"), 2);
}

#[tokio::test]
async fn no_vendor_no_load_balancer_status() {
    let state = tempfile::tempdir().unwrap();
    let fx = fleet(state.path(), "{fqdn: lb.example.eng}");
    fx.run::<LoadBalancers>(()).await.unwrap();
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
    let err = fx.run::<LoadBalancers>(()).await.unwrap_err();
    assert_eq!(err.reason(), "Unresolvable", "{err}");
    let status = lb_status(&fx);
    assert_eq!(status.vendor, "haproxy");
    assert_headline_has(&status, "Unresolvable");
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
                member("app3", None),
            ],
            listeners: vec![],
        }],
    )));
    let up = |server: &str| {
        fx.gauge(
            "steward_lb_member_up",
            &[("kind", "PSIS"), ("server", server)],
        )
    };
    assert_eq!((up("app1").0, up("app2").0), (Some(1.0), Some(0.0)));
    // Unknown (HAProxy not reached yet, or a rendered vendor): no series, not a 0.
    assert_eq!(up("app3").0, None);
    // The load balancer goes: so do its series.
    fx.ctx.store.set_load_balancer(None);
    let text = fx.registry.text();
    assert!(!text.contains("steward_lb_member_up{"), "{text}");
}

/// A stand-in `haproxy` that reports `version` to `-vv` and answers `-c` with `check`
/// (a shell snippet), so each failure of the binary itself can be shown without one.
fn fake_haproxy(dir: &Path, version: &str, check: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("haproxy");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  -vv) echo '{version}'; exit 0;;\n  -c) {check};;\nesac\nexit 64\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A stand-in for a supported HAProxy (2.6) that answers `-c` with `check`.
fn haproxy_26(dir: &Path, check: &str) -> std::path::PathBuf {
    fake_haproxy(dir, "HAProxy version 2.6.12-1+deb12u4 2026/10/17", check)
}

fn haproxy_fleet(state_dir: &Path, bin: std::path::PathBuf) -> Fixture {
    let fx = fleet(state_dir, "{fqdn: lb.example.eng, vendor: haproxy}");
    fx.ctx
        .balancer
        .settings
        .set(BalancerSettings {
            haproxy: Some(bin),
            ..Default::default()
        })
        .unwrap();
    fx
}

/// Runs one reconcile expected to fail, as the runtime would: the error becomes the
/// load balancer's condition. Returns its reason and message.
async fn failed_run(fx: &Fixture) -> (ControllerError, String) {
    let err = fx.run::<LoadBalancers>(()).await.unwrap_err();
    let status = lb_status(fx);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.condition_type == crate::status::ConditionType::Ready)
        .expect("a Ready condition");
    assert_eq!(ready.status, crate::status::ConditionStatus::False);
    (err, format!("{}: {}", ready.reason, ready.message))
}

#[tokio::test]
async fn a_missing_or_too_old_haproxy_is_a_condition_and_nothing_is_written() {
    let state = tempfile::tempdir().unwrap();
    let fx = haproxy_fleet(state.path(), state.path().join("nowhere/haproxy"));
    let (err, headline) = failed_run(&fx).await;
    assert_eq!(err.reason(), "HAProxyMissing", "{err}");
    assert!(headline.contains("HAProxyMissing"), "{headline}");
    assert!(!state.path().join("haproxy").exists());

    let bins = tempfile::tempdir().unwrap();
    let old = fake_haproxy(
        bins.path(),
        "HAProxy version 2.4.22-0+deb12u1 2023/02/14",
        "exit 0",
    );
    let state = tempfile::tempdir().unwrap();
    let fx = haproxy_fleet(state.path(), old);
    let (err, headline) = failed_run(&fx).await;
    assert_eq!(err.reason(), "HAProxyMissing", "{err}");
    assert!(
        err.to_string()
            .contains("2.4.22-0+deb12u1 is too old: 2.6 or later"),
        "{err}"
    );
    assert!(headline.contains("too old"), "{headline}");
    assert!(!state.path().join("haproxy/haproxy.cfg").exists());
}

#[tokio::test]
async fn a_rejected_configuration_leaves_the_installed_one_alone() {
    let bins = tempfile::tempdir().unwrap();
    let bin = haproxy_26(
        bins.path(),
        "echo \"[ALERT]    (1) : config : parsing [$3:9] : unknown keyword 'bogus'\" >&2; exit 1",
    );
    let state = tempfile::tempdir().unwrap();
    let installed = state.path().join("haproxy/haproxy.cfg");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::write(&installed, "# the last good configuration\n").unwrap();
    let fx = haproxy_fleet(state.path(), bin);
    let (err, headline) = failed_run(&fx).await;
    assert_eq!(err.reason(), "ConfigRejected", "{err}");
    assert!(err.to_string().contains("unknown keyword 'bogus'"), "{err}");
    assert!(headline.contains("ConfigRejected"), "{headline}");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        "# the last good configuration\n"
    );
    // No candidate left behind either.
    let names: Vec<String> = std::fs::read_dir(installed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("candidate")), "{names:?}");
}

#[tokio::test]
async fn a_socket_that_does_not_answer_is_a_condition() {
    let bins = tempfile::tempdir().unwrap();
    let bin = haproxy_26(bins.path(), "exit 0");
    let state = tempfile::tempdir().unwrap();
    let fx = haproxy_fleet(state.path(), bin);
    // A socket file nobody listens on: what a crashed HAProxy leaves behind.
    let socket = state.path().join("haproxy/admin.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let (err, headline) = failed_run(&fx).await;
    assert_eq!(err.reason(), "SocketUnresponsive", "{err}");
    assert!(headline.contains("admin.sock"), "{headline}");
    // The checked configuration is in place for the HAProxy that starts next, verifying
    // the members against the steward CA with their host names.
    let cfg = std::fs::read_to_string(state.path().join("haproxy/haproxy.cfg")).unwrap();
    let ca = state.path().join("haproxy/trusted-ca.pem");
    assert!(
        cfg.contains(&format!(
            "server app1 app1.example.eng:7001 check check-ssl verify required ca-file '{}' check-sni app1.example.eng verifyhost app1.example.eng",
            ca.display()
        )),
        "{cfg}"
    );
    assert!(!cfg.contains("verify none"), "{cfg}");
    assert!(cfg.contains("bind 0.0.0.0:7001"), "{cfg}");
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    // Again, with the file already in place: still the socket, named.
    let (err, _) = failed_run(&fx).await;
    assert_eq!(err.reason(), "SocketUnresponsive", "{err}");
}

#[test]
fn a_member_is_as_bad_as_its_worst_listener() {
    use LbMemberState::*;
    assert_eq!(worst([Some(Up), Some(Drain)].into_iter()), Some(Drain));
    assert_eq!(
        worst([Some(Maint), Some(Down), Some(Up)].into_iter()),
        Some(Down)
    );
    assert_eq!(worst([Some(Up), None].into_iter()), None);
    assert_eq!(worst([Some(Up)].into_iter()), Some(Up));
}

#[tokio::test]
async fn a_follower_writes_nothing_and_says_the_leader_does() {
    let state = tempfile::tempdir().unwrap();
    let fx = fleet(
        state.path(),
        "{fqdn: lb.example.eng, vendor: f5, address: 192.0.2.10, render: out/f5}",
    );
    let leading = fx.follow();
    fx.run::<LoadBalancers>(()).await.unwrap();
    let path = state.path().join("out/f5/as3.json");
    assert!(!path.exists(), "a follower rendered {}", path.display());
    let status = lb_status(&fx);
    assert_eq!(status.farms.len(), 2);
    assert_headline_has(&status, FOLLOWING);

    // It wins the election: now it writes.
    leading.win();
    fx.run::<LoadBalancers>(()).await.unwrap();
    assert!(path.exists());
    assert_eq!(events(&fx, "Rendered"), 1);
}

#[tokio::test]
async fn a_follower_neither_checks_nor_installs_an_haproxy_configuration() {
    let state = tempfile::tempdir().unwrap();
    // A binary that would be refused as too old: a follower never runs it.
    let bin = fake_haproxy(state.path(), "2.4.0", "exit 0");
    let fx = haproxy_fleet(state.path(), bin);
    fx.follow();
    fx.run::<LoadBalancers>(()).await.unwrap();
    let status = lb_status(&fx);
    assert_headline_has(&status, FOLLOWING);
    let written: Vec<_> = walk(state.path())
        .into_iter()
        .filter(|p| p.ends_with("haproxy.cfg") || p.ends_with("trusted-ca.pem"))
        .collect();
    assert!(written.is_empty(), "a follower wrote {written:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
