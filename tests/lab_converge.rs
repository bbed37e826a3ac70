//! End-to-end: `steward run --lab` converges the example deployment from nothing, in the
//! documented order, and finishes after being stopped half-way.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::*;

const APP1: [&str; 5] = ["PSIS", "PSWS", "CLIENT", "REPORT", "ADMIN"];
const APP2: [&str; 6] = ["EMERGENCY", "HEALTH", "JOB", "HL7", "FHIR", "EMPI"];

fn kinds(list: &[serde_json::Value]) -> BTreeSet<String> {
    list.iter()
        .filter_map(|s| s["kind"].as_str().map(str::to_owned))
        .collect()
}

fn set(kinds: &[&str]) -> BTreeSet<String> {
    kinds.iter().map(|k| (*k).to_owned()).collect()
}

/// Agent log lines `service installed service=KIND ... outcome=Created`, as (time, KIND).
fn created_installs(agent_log: &str) -> Vec<(time::OffsetDateTime, String)> {
    agent_log
        .lines()
        .filter(|l| l.contains("service installed") && l.contains("outcome=Created"))
        .filter_map(|l| {
            let kind = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("service="))?
                .to_owned();
            Some((log_line_time(l)?, kind))
        })
        .collect()
}

#[test]
fn fresh_lab_converges_in_order_with_metrics() {
    let mut lab = Lab::start(121);
    let status = lab.wait_converged(1);

    // Every declared service on the right server, installed, running and healthy.
    for (name, expected) in [("app1", &APP1[..]), ("app2", &APP2[..])] {
        let srv = server(&status, name).unwrap_or_else(|| panic!("{name} in status"));
        assert_eq!(srv["agentUp"], true, "{name}: {srv}");
        assert_eq!(srv["hostname"], format!("{name}.example.eng"));
        let services = srv["services"].as_array().expect("services[]");
        assert_eq!(kinds(services), set(expected), "{name}'s services");
        for s in services {
            assert!(service_up(s), "{name}/{}: {s}", s["kind"]);
        }
        // The agent itself agrees: exactly these kinds, all running.
        let listed = lab.agent_services(name);
        assert_eq!(kinds(&listed), set(expected), "{name}'s agent lists");
        for s in &listed {
            assert_eq!(s["status"], "running", "{name}: {s}");
            assert!(s["pid"].as_i64().is_some_and(alive_pid), "{name}: {s}");
        }
    }
    let total: usize = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["services"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(total, 11, "eleven services in the example deployment");
    // Ports: catalog defaults, an explicit one, and the next free one for JOB.
    for (srv, kind, port) in [
        ("app1", "PSIS", 7001),
        ("app1", "PSWS", 7002),
        ("app1", "CLIENT", 7003),
        ("app2", "EMPI", 7019),
        ("app2", "HL7", 2244),
        ("app2", "JOB", 7000),
    ] {
        assert_eq!(
            service(&status, srv, kind).unwrap()["port"],
            port,
            "{srv}/{kind}"
        );
    }

    // Order, as the agents saw it (their own logs, one clock): PSIS created before PSWS,
    // PSWS before every other service.
    let mut created: Vec<(time::OffsetDateTime, String)> = created_installs(&lab.agent_log("app1"));
    created.extend(created_installs(&lab.agent_log("app2")));
    created.sort();
    let at: BTreeMap<&str, time::OffsetDateTime> =
        created.iter().map(|(t, k)| (k.as_str(), *t)).collect();
    assert_eq!(created.len(), 11, "one install per service: {created:?}");
    let psis = at["PSIS"];
    let psws = at["PSWS"];
    assert!(psis < psws, "PSIS before PSWS: {created:?}");
    for (t, k) in &created {
        if k != "PSIS" && k != "PSWS" {
            assert!(psws < *t, "PSWS before {k}: {created:?}");
        }
    }
    // The agents' API agrees (installedAt has whole-second resolution: not strict).
    let mut installed_at = BTreeMap::new();
    for name in ["app1", "app2"] {
        for s in lab.agent_services(name) {
            let at = s["installedAt"]
                .as_str()
                .and_then(parse_time)
                .expect("installedAt");
            installed_at.insert(s["kind"].as_str().unwrap().to_owned(), at);
        }
    }
    assert!(
        installed_at["PSIS"] <= installed_at["PSWS"],
        "{installed_at:?}"
    );
    for (k, t) in &installed_at {
        if k != "PSIS" && k != "PSWS" {
            assert!(
                installed_at["PSWS"] <= *t,
                "PSWS before {k}: {installed_at:?}"
            );
        }
    }
    // (That nothing is installed before PSWS is *healthy* is shown by
    // `nothing_is_installed_before_psws_is_healthy`.)

    assert!(lab.log().contains("converged in"), "converged in logged");
    let metrics = lab.metrics();
    for line in [
        "steward_agent_up{server=\"app1\"} 1",
        "steward_service_healthy{server=\"app2\",service=\"HL7\"} 1",
        "steward_desired_state_valid 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "metrics lack `{line}`:\n{metrics}"
        );
    }
    lab.stop();
}

fn alive_pid(pid: i64) -> bool {
    alive(pid as i32)
}

/// SIGTERM as soon as PSIS is installed, start again on the same state directory: the
/// second run finishes the job without installing anything twice.
#[test]
fn daemon_restarted_mid_converge_finishes_without_duplicates() {
    let mut lab = Lab::start(128);
    // Poll fast: the whole converge takes a few seconds on a quiet machine.
    lab.wait_until("PSIS installed", DEADLINE, || {
        let (_, body) = lab.try_get("/api/v1/status").ok()?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        service(&doc, "app1", "PSIS")
            .is_some_and(|s| s["installed"] == true)
            .then_some(())
    });
    lab.stop();
    let first_run = lab.log_all();
    assert!(
        !first_run.contains("converged in"),
        "precondition: the first run was stopped before it converged"
    );
    let installed_before: Vec<_> = created_installs(&lab.agent_log("app1"))
        .into_iter()
        .chain(created_installs(&lab.agent_log("app2")))
        .map(|(_, k)| k)
        .collect();
    assert!(installed_before.contains(&"PSIS".to_owned()));
    assert!(
        installed_before.len() < 11,
        "precondition: not everything was installed yet: {installed_before:?}"
    );

    lab.spawn();
    let status = lab.wait_converged(1);
    assert!(all_declared_healthy(&status));

    // Each kind runs exactly once: one process per service, one entry per agent list.
    let procs = lab.processes();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    for p in &procs {
        if let Some(k) = p.service_kind() {
            *per_kind.entry(k.to_owned()).or_default() += 1;
        }
    }
    let all: BTreeSet<String> = set(&APP1).union(&set(&APP2)).cloned().collect();
    assert_eq!(
        per_kind.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "{procs:#?}"
    );
    assert!(
        per_kind.values().all(|n| *n == 1),
        "one process per service: {per_kind:?}"
    );
    assert_eq!(
        procs.iter().filter(|p| p.is_agent()).count(),
        2,
        "{procs:#?}"
    );
    for name in ["app1", "app2"] {
        let listed = lab.agent_services(name);
        assert_eq!(
            listed.len(),
            kinds(&listed).len(),
            "duplicates on {name}: {listed:?}"
        );
    }
    // No service was freshly installed twice across the two runs.
    let mut created = created_installs(&lab.agent_log("app1"));
    created.extend(created_installs(&lab.agent_log("app2")));
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (_, k) in &created {
        *count.entry(k.clone()).or_default() += 1;
    }
    assert!(
        count.values().all(|n| *n == 1),
        "installs per kind: {count:?}"
    );
    assert_eq!(count.len(), 11);
    lab.stop();
}

/// Relative `--state-dir`/`--desired-state`, as a newcomer types them: the lab must work
/// the same as with absolute paths.
#[test]
fn lab_with_relative_paths_converges() {
    let mut lab = Lab::new(
        130,
        Options {
            relative_paths: true,
            ..Options::default()
        },
    );
    lab.spawn();
    // Shorter than DEADLINE: a healthy lab converges in seconds.
    lab.wait_until(
        "converged with relative paths",
        Duration::from_secs(30),
        || lab.log().contains("converged in").then_some(()),
    );
    let status = lab.status();
    assert!(
        all_declared_healthy(&status),
        "{}",
        summarize_status(&status.to_string())
    );
    lab.stop();
}

/// The install order is gated on health, not just on installation: with PSWS failing its
/// health test nothing else is installed; once its test passes, the rest follows.
#[test]
fn nothing_is_installed_before_psws_is_healthy() {
    const MATCH: &str = "  responseMatch: Success          # the body must contain this\n";
    let mut lab = Lab::new(132, Options::default());
    lab.commit_edit(
        "health-checks.yaml",
        MATCH,
        "  responseMatch: NotInAnyBody\n",
        "PSWS health test that cannot pass",
    );
    lab.spawn();
    // Right after the spawn app1's agent may not listen yet: keep polling, do not fail.
    lab.wait_until("PSIS and PSWS running", DEADLINE, || {
        let kinds = kinds(&lab.try_agent_services("app1")?);
        (kinds.contains("PSIS") && kinds.contains("PSWS")).then_some(())
    });
    let status = lab.wait_status("PSWS failing its health test", |s| {
        service(s, "app1", "PSWS").is_some_and(|p| p["installed"] == true && p["healthy"] == false)
    });
    assert!(service_up(service(&status, "app1", "PSIS").unwrap()));
    // Several resync periods: still nothing but PSIS and PSWS.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(kinds(&lab.agent_services("app1")), set(&["PSIS", "PSWS"]));
    assert_eq!(kinds(&lab.agent_services("app2")), BTreeSet::new());
    let status = lab.status();
    for kind in APP2 {
        let s = service(&status, "app2", kind).unwrap();
        assert_eq!(s["installed"], false, "{s}");
        assert!(
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["status"] == "True" && c["reason"] == "WaitingForDependency"),
            "app2/{kind} says it waits for its dependencies: {s}"
        );
    }
    // The health test fixed: the rest follows.
    lab.commit_edit(
        "health-checks.yaml",
        "  responseMatch: NotInAnyBody\n",
        MATCH,
        "PSWS health test fixed",
    );
    let status = lab.wait_converged(2);
    assert!(all_declared_healthy(&status));
    lab.stop();
}

/// A wait on an agent that does not answer yet (here: no daemon, no CA, no agent) keeps
/// polling until its deadline instead of failing on the first refused connection.
#[test]
#[should_panic(expected = "timed out after 300ms waiting for app1's agent")]
fn waiting_for_an_agent_that_does_not_answer_yet_polls_until_the_deadline() {
    let lab = Lab::new(133, Options::default());
    lab.wait_until("app1's agent", Duration::from_millis(300), || {
        lab.try_agent_services("app1")
    });
}
