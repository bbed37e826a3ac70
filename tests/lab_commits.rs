//! End-to-end: git commits to the watched desired-state directory are followed — a port
//! change, a broken commit (nothing torn down) and its fix, removals with and without
//! prune.

mod support;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const APP1: &str = "servers/app1.yaml";
const APP2: &str = "servers/app2.yaml";
const CLIENT_LINE: &str = "    - kind: CLIENT                 # 7003\n";

fn move_client_to(lab: &Lab, port: u16) {
    lab.commit_edit(
        APP1,
        CLIENT_LINE,
        &format!("    - kind: CLIENT\n      port: {port}\n"),
        &format!("CLIENT on port {port}"),
    );
}

#[test]
fn port_change_commit_reinstalls_on_the_new_port() {
    let mut lab = Lab::start(122);
    lab.wait_converged(1);
    let old = lab
        .agent_service("app1", "CLIENT")
        .expect("CLIENT installed");
    assert_eq!(old["ports"], serde_json::json!([7003]));

    move_client_to(&lab, 7103);
    let status = lab.wait_converged(2);
    let client = service(&status, "app1", "CLIENT").unwrap();
    assert_eq!(client["port"], 7103, "{client}");
    assert!(service_up(client), "{client}");

    // The agent reinstalled it: new ports, a new process.
    let new = lab
        .agent_service("app1", "CLIENT")
        .expect("CLIENT still installed");
    assert_eq!(new["ports"], serde_json::json!([7103]), "{new}");
    assert_eq!(new["status"], "running");
    assert_ne!(new["pid"], old["pid"], "reinstalled means restarted: {new}");
    assert_eq!(lab.service_processes("CLIENT").len(), 1);

    // And it really serves there, over TLS with the server's certificate from the CA.
    let ca = lab.ca_pem();
    let tls = Arc::new(steward_pki::client_config(&[ca]).expect("client config"));
    let ip = IpAddr::V4(lab.server_address("app1"));
    let (code, body) = https_get(tls, SocketAddr::new(ip, 7103), "app1.example.eng", "/")
        .expect("TLS GET / on the new port");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("UserInterface3"), "{body}");
    // Nothing listens on the old port any more.
    assert!(
        TcpStream::connect_timeout(&SocketAddr::new(ip, 7003), Duration::from_secs(2)).is_err(),
        "CLIENT still listens on 7003"
    );
    lab.stop();
}

/// A change of the service URLs (here CLIENT's port) is pushed to every service; the
/// others must take it without dying: the same processes keep running.
#[test]
fn connection_string_push_leaves_other_services_running() {
    let mut lab = Lab::start(123);
    lab.wait_converged(1);
    let before = lab.service_pids(&["app1", "app2"]);
    assert_eq!(before.len(), 11);

    let committed_at = now();
    move_client_to(&lab, 7103);
    lab.wait_converged(2);
    // Give a push-induced death time to show (the agent notices exits at once).
    std::thread::sleep(Duration::from_secs(3));
    let status = lab.wait_status("all healthy after the push", all_declared_healthy);
    assert_eq!(status["generation"], 2);
    let after = lab.service_pids(&["app1", "app2"]);
    let changed: Vec<String> = before
        .iter()
        .filter(|((_, kind), _)| kind != "CLIENT")
        .filter(|(key, pid)| after.get(*key) != Some(pid))
        .map(|((srv, kind), pid)| {
            format!(
                "{srv}/{kind}: {pid} -> {:?}",
                after.get(&(srv.clone(), kind.clone()))
            )
        })
        .collect();
    let restarts: Vec<String> = events(&lab.status())
        .into_iter()
        .filter(|e| e.1 == "Restarted" && e.2 > committed_at)
        .map(|e| format!("{} {}", e.0, e.3))
        .collect();
    assert!(
        changed.is_empty(),
        "services restarted by the connection-strings push: {changed:?}; events: {restarts:?}"
    );
    lab.stop();
}

#[test]
fn broken_commit_tears_nothing_down_and_a_fix_applies() {
    let mut lab = Lab::start(124);
    lab.wait_converged(1);
    let pids = lab.service_pids(&["app1", "app2"]);
    assert_eq!(pids.len(), 11);

    // 1. A YAML syntax error.
    lab.commit_edit(
        APP2,
        "  hostname: app2.example.eng\n",
        "  hostname: app2.example.eng: oops\n",
        "broken: YAML syntax",
    );
    let status = lab.wait_status("the broken commit reported", |s| s["valid"] == false);
    let errors: Vec<String> = serde_json::from_value(status["errors"].clone()).unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("servers/app2.yaml:8:") && e.contains("yaml-syntax")),
        "a located yaml-syntax error: {errors:?}"
    );
    let ds = &status["desiredState"];
    assert_eq!(status["generation"], 1);
    assert!(
        ds.get("lastAppliedGeneration").is_none(),
        "the live generation is stated once, as `generation`: {ds}"
    );
    assert!(
        ds["lastAttemptedGeneration"].as_u64() >= Some(1),
        "lastAttemptedGeneration: {ds}"
    );
    assert!(lab
        .metrics()
        .lines()
        .any(|l| l == "steward_desired_state_valid 0"));

    // 2. Replaced by another broken commit: an unknown field.
    lab.commit_edit(
        APP2,
        "  hostname: app2.example.eng: oops\n",
        "  hostname: app2.example.eng\n  colour: blue\n",
        "broken: unknown field",
    );
    let status = lab.wait_status("the unknown field reported", |s| {
        s["valid"] == false
            && s["errors"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e.as_str().is_some_and(|e| e.contains("unknown-field")))
            })
    });
    let errors: Vec<String> = serde_json::from_value(status["errors"].clone()).unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("servers/app2.yaml:9:3:") && e.contains("colour")),
        "a located unknown-field error: {errors:?}"
    );
    assert_eq!(status["generation"], 1);

    // Meanwhile nothing was torn down or touched: same processes, all healthy (over
    // several resync periods).
    std::thread::sleep(Duration::from_secs(5));
    let status = lab.status();
    assert_eq!(status["valid"], false);
    assert!(
        all_declared_healthy(&status),
        "{}",
        summarize_status(&status.to_string())
    );
    assert_eq!(
        lab.service_pids(&["app1", "app2"]),
        pids,
        "same pids while broken"
    );
    let procs = lab.processes();
    assert_eq!(
        procs.iter().filter(|p| p.service_kind().is_some()).count(),
        11
    );

    // 3. The fix (with a real change) applies as a new generation.
    lab.commit_edit(APP2, "  colour: blue\n", "", "fix the unknown field");
    lab.commit_edit(
        APP2,
        "    - kind: HEALTH                 # 7007\n",
        "    - kind: HEALTH\n      port: 7107\n",
        "HEALTH on 7107",
    );
    let status = lab.wait_converged(2);
    assert_eq!(status["valid"], true);
    assert_eq!(status["errors"], serde_json::json!([]));
    assert_eq!(status["generation"], 2);
    assert_eq!(service(&status, "app2", "HEALTH").unwrap()["port"], 7107);
    assert!(lab
        .metrics()
        .lines()
        .any(|l| l == "steward_desired_state_valid 1"));
    lab.stop();
}

/// Drop everything after `  services:` in a server file: no services declared.
fn no_services(text: &str) -> String {
    let at = text.find("  services:").expect("services:");
    format!("{}  services: []\n", &text[..at])
}

#[test]
fn removed_services_are_orphaned_until_prune_then_uninstalled_dependents_first() {
    let mut lab = Lab::start(125);
    lab.wait_converged(1);
    let fhir = lab.agent_service("app2", "FHIR").expect("FHIR installed");

    // prune: false — FHIR leaves the files but keeps running, reported as orphaned.
    lab.commit_edit(
        APP2,
        "    - kind: FHIR                   # optional; warns: meant for a third-party certificate\n",
        "",
        "drop FHIR",
    );
    let status = lab.wait_status("FHIR reported orphaned", |s| {
        s["generation"] == 2
            && service(s, "app2", "FHIR").is_some_and(|f| {
                f["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["status"] == "True" && c["reason"] == "Orphaned")
                })
            })
    });
    let entry = service(&status, "app2", "FHIR").unwrap();
    assert_eq!(entry["desired"], false, "{entry}");
    std::thread::sleep(Duration::from_secs(5)); // a few resync periods
    let still = lab
        .agent_service("app2", "FHIR")
        .expect("FHIR still installed (prune: false)");
    assert_eq!(still["status"], "running");
    assert_eq!(still["pid"], fhir["pid"], "FHIR untouched");
    assert_eq!(lab.service_processes("FHIR").len(), 1);

    // prune: true — now it goes.
    lab.commit_edit(
        "installation.yaml",
        "  prune: false\n",
        "  prune: true\n",
        "prune",
    );
    lab.wait_until("FHIR uninstalled", DEADLINE, || {
        lab.agent_service("app2", "FHIR").is_none().then_some(())
    });
    lab.wait_until("the FHIR process gone", DEADLINE, || {
        lab.service_processes("FHIR").is_empty().then_some(())
    });
    let status = lab.wait_converged(3);
    assert_eq!(status["generation"], 3);
    assert!(lab
        .agent_services("app2")
        .iter()
        .all(|s| s["kind"] != "FHIR"));

    // A whole dependent chain removed: everything else first, then PSWS, then PSIS.
    let started = now();
    lab.write(APP1, &no_services(&lab.read(APP1)));
    lab.write(APP2, &no_services(&lab.read(APP2)));
    lab.commit("no services");
    lab.wait_until("every service uninstalled", DEADLINE, || {
        (lab.agent_services("app1").is_empty() && lab.agent_services("app2").is_empty())
            .then_some(())
    });
    lab.wait_until("no lab-service process left", DEADLINE, || {
        lab.processes()
            .iter()
            .all(|p| p.service_kind().is_none())
            .then_some(())
    });
    let status = lab.wait_status("generation 4 applied", |s| s["generation"] == 4);
    let uninstalled: Vec<(String, time::OffsetDateTime)> = events(&status)
        .into_iter()
        .filter(|e| e.1 == "Uninstalled" && e.2 >= started)
        .map(|e| (e.0, e.2))
        .collect();
    let names: Vec<&str> = uninstalled.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(uninstalled.len(), 10, "ten uninstall events: {names:?}");
    let n = names.len();
    assert_eq!(names[n - 1], "service/app1/PSIS", "PSIS last: {names:?}");
    assert_eq!(
        names[n - 2],
        "service/app1/PSWS",
        "PSWS before PSIS: {names:?}"
    );
    // The agents' own logs agree on the order.
    let mut agent_order: Vec<(time::OffsetDateTime, String)> = ["app1", "app2"]
        .iter()
        .flat_map(|s| {
            lab.agent_log(s)
                .lines()
                .filter(|l| l.contains("service uninstalled"))
                .filter_map(|l| {
                    let kind = l
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("service="))?;
                    Some((log_line_time(l)?, kind.to_owned()))
                })
                .filter(|(t, _)| *t >= started)
                .collect::<Vec<_>>()
        })
        .collect();
    agent_order.sort();
    let kinds: Vec<&str> = agent_order.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds.len(), 10, "agents: {kinds:?}");
    assert_eq!(kinds[9], "PSIS", "agents: {kinds:?}");
    assert_eq!(kinds[8], "PSWS", "agents: {kinds:?}");
    lab.stop();
}
