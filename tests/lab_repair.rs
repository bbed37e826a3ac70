//! End-to-end: drift and failures in the fleet — a killed service is restarted, an
//! unreachable agent degrades only its own server. (A killed agent is restarted by the lab:
//! see lab_faults.rs.)

mod support;

use rustix::process::Signal;
use support::*;

#[test]
fn killed_service_is_restarted_and_healthy_again() {
    let mut lab = Lab::start(126);
    lab.wait_converged(1);
    // One HTTPS service and the MLLP one, on different servers, killed together.
    let victims = [("app1", "CLIENT"), ("app2", "HL7")];
    let mut old = Vec::new();
    for (srv, kind) in victims {
        let s = lab.agent_service(srv, kind).expect("installed");
        let pid = s["pid"].as_i64().expect("running with a pid") as i32;
        old.push(pid);
    }
    let killed_at = now();
    for pid in &old {
        signal(*pid, Signal::KILL);
    }
    for ((srv, kind), old_pid) in victims.iter().zip(&old) {
        let new_pid = lab.wait_until(&format!("{srv}/{kind} running again"), DEADLINE, || {
            let s = lab.agent_service(srv, kind)?;
            let pid = s["pid"].as_i64()? as i32;
            (s["status"] == "running" && pid != *old_pid).then_some(pid)
        });
        assert!(alive(new_pid));
        assert!(!alive(*old_pid));
        // Healthy again, judged after the kill (not the stale verdict from before it).
        let status = lab.wait_status(&format!("{srv}/{kind} healthy after the kill"), |s| {
            ready_since(s, srv, kind, killed_at)
        });
        let restarted = events(&status).into_iter().any(|e| {
            e.0 == format!("service/{srv}/{kind}") && e.1 == "Restarted" && e.2 > killed_at
        });
        assert!(restarted, "a Restarted event for {srv}/{kind}");
        assert_eq!(lab.service_processes(kind).len(), 1, "one {kind} process");
    }
    let status = lab.wait_status("everything healthy", all_declared_healthy);
    assert_eq!(status["generation"], 1);
    lab.stop();
}

#[test]
fn unreachable_agent_degrades_its_server_while_the_other_converges() {
    let mut lab = Lab::start(127);
    lab.wait_converged(1);
    let app2_pids = lab.service_pids(&["app2"]);
    assert_eq!(app2_pids.len(), 6);

    // Hung, not dead (a dead one is restarted by the lab at once): it holds its address
    // and answers nothing.
    let agent = lab.agent_process("app2").expect("app2's agent process");
    signal(agent.pid, Signal::STOP);

    let status = lab.wait_status("app2 marked down", |s| {
        server(s, "app2").is_some_and(|a| a["agentUp"] == false && condition_true(a, "Degraded"))
    });
    assert_eq!(server(&status, "app1").unwrap()["agentUp"], true);
    let metrics = lab.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "steward_agent_up{server=\"app2\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "steward_agent_up{server=\"app1\"} 1"),
        "{metrics}"
    );

    // A change on app1 is applied although app2 stays unreachable.
    lab.commit_edit(
        "servers/app1.yaml",
        "    - kind: CLIENT                 # 7003\n",
        "    - kind: CLIENT\n      port: 7103\n",
        "CLIENT on 7103",
    );
    let status = lab.wait_status("app1's CLIENT on 7103 and healthy", |s| {
        s["generation"] == 2
            && service(s, "app1", "CLIENT").is_some_and(|c| c["port"] == 7103 && service_up(c))
    });
    assert_eq!(
        server(&status, "app2").unwrap()["agentUp"],
        false,
        "app2 still down"
    );
    let client = lab.agent_service("app1", "CLIENT").expect("CLIENT");
    assert_eq!(client["ports"], serde_json::json!([7103]));
    for s in server(&status, "app1").unwrap()["services"]
        .as_array()
        .unwrap()
    {
        assert!(service_up(s), "app1/{}: {s}", s["kind"]);
    }
    // app2's services were never told anything: still the same processes.
    for ((_, kind), pid) in &app2_pids {
        assert!(alive(*pid as i32), "app2/{kind} ({pid}) still runs");
    }
    // And the daemon does not claim convergence while a server is unreachable.
    assert!(
        !lab.log()
            .lines()
            .any(|l| l.contains("converged in") && l.contains("generation=2")),
        "no `converged in` for generation 2 while app2 is unreachable"
    );

    // The agent comes back: app2 is seen again, nothing runs twice.
    signal(agent.pid, Signal::CONT);
    lab.commit_edit(
        "servers/app1.yaml",
        "    - kind: CLIENT\n      port: 7103\n",
        "    - kind: CLIENT                 # 7003\n",
        "CLIENT back on 7003",
    );
    let status = lab.wait_converged(3);
    assert_eq!(server(&status, "app2").unwrap()["agentUp"], true);
    for kind in ["EMERGENCY", "HEALTH", "JOB", "HL7", "FHIR", "EMPI"] {
        assert_eq!(lab.service_processes(kind).len(), 1, "one {kind} process");
    }
    lab.stop();
}

/// `steward run --lab` stops everything it started on SIGTERM — also the services of an
/// agent that died before (they outlive their agent, which is what lets a restarted
/// agent re-adopt them).
#[test]
fn services_of_a_dead_lab_agent_do_not_outlive_the_daemon() {
    let mut lab = Lab::start(131);
    lab.wait_converged(1);
    let agent = lab.agent_process("app2").expect("app2's agent process");
    signal(agent.pid, Signal::KILL);
    lab.wait_until("app2's agent dead", DEADLINE, || {
        (!alive(agent.pid)).then_some(())
    });
    // Stopped at once: whether or not the lab restarted the agent meanwhile (which then
    // re-adopts and stops them), the services must go with the daemon.
    lab.stop(); // asserts that nothing of the lab is left running
}
