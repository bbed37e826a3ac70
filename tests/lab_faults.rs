//! End-to-end: faults of the lab itself — a killed agent, a port held by a stranger, a
//! daemon killed with SIGKILL, secrets in the environment, a fleet too large for the
//! lab's addresses. After each: nothing was uninstalled, the daemon still answers, and
//! the next good commit is applied.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use rustix::process::Signal;
use support::*;

/// Every service each server's agent lists, as (server, kind).
fn installed(lab: &Lab) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for server in ["app1", "app2"] {
        for s in lab.agent_services(server) {
            out.push((server.to_owned(), s["kind"].as_str().unwrap().to_owned()));
        }
    }
    out.sort();
    out
}

/// The checks every fault ends with: nothing uninstalled, the daemon answers, and a
/// new commit (app1's CLIENT moved to 7103) is applied and healthy.
fn still_applies_the_next_commit(lab: &Lab, before: &[(String, String)]) {
    assert_eq!(installed(lab), before, "nothing was uninstalled");
    let status = lab.status();
    let uninstalls: Vec<_> = events(&status)
        .into_iter()
        .filter(|e| e.1.starts_with("Uninstall"))
        .collect();
    assert!(uninstalls.is_empty(), "{uninstalls:?}");
    let (code, _) = lab.get("/healthz");
    assert_eq!(code, 200);
    let generation = status["generation"].as_u64().expect("a generation") + 1;
    lab.commit_edit(
        "servers/app1.yaml",
        "    - kind: CLIENT                 # 7003\n",
        "    - kind: CLIENT\n      port: 7103\n",
        "CLIENT on 7103",
    );
    lab.wait_status("app1's CLIENT on 7103, everything healthy", |s| {
        s["generation"] == generation
            && service(s, "app1", "CLIENT").is_some_and(|c| c["port"] == 7103)
            && all_declared_healthy(s)
    });
    assert_eq!(installed(lab), before, "still nothing uninstalled");
}

fn agents(lab: &Lab) -> Vec<Proc> {
    lab.processes().into_iter().filter(Proc::is_agent).collect()
}

#[test]
fn killed_agent_is_restarted_and_its_services_repaired() {
    let mut lab = Lab::start(150);
    lab.wait_converged(1);
    let before = installed(&lab);
    let app2_services = lab.service_pids(&["app2"]);
    let agent = lab.agent_process("app2").expect("app2's agent");

    signal(agent.pid, Signal::KILL);
    let new_agent = lab.wait_until("a new agent for app2", DEADLINE, || {
        lab.agent_process("app2").filter(|p| p.pid != agent.pid)
    });
    lab.wait_log("the lab saying it restarted the agent", |l| {
        l.contains("restarting the lab agent") && l.contains("app2")
    });
    lab.wait_log("the new agent started", |l| {
        l.contains("lab agent started") && l.contains(&format!("pid={}", new_agent.pid))
    });
    // It re-adopted its services instead of starting them again.
    lab.wait_status("app2's agent up again", |s| {
        server(s, "app2").is_some_and(|a| a["agentUp"] == true)
    });
    assert_eq!(lab.service_pids(&["app2"]), app2_services);

    // And the daemon can repair through it: kill one of its services, this lab's only.
    let health = app2_services[&("app2".to_owned(), "HEALTH".to_owned())] as i32;
    let out = Command::new(binary())
        .args(["lab", "kill", "app2", "HEALTH", "--state-dir"])
        .arg(&lab.state)
        .output()
        .expect("steward lab kill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {health}")));
    lab.wait_until("HEALTH running again under a new pid", DEADLINE, || {
        let s = lab.agent_service("app2", "HEALTH")?;
        (s["status"] == "running" && s["pid"].as_i64()? as i32 != health).then_some(())
    });
    assert!(!alive(health));
    for ((srv, kind), pid) in &app2_services {
        if kind != "HEALTH" {
            assert!(alive(*pid as i32), "{srv}/{kind} untouched by lab kill");
        }
    }
    let status = lab.wait_status("HEALTH healthy after its repair", |s| {
        service(s, "app2", "HEALTH").is_some_and(service_up)
    });
    assert!(events(&status)
        .iter()
        .any(|e| e.0 == "service/app2/HEALTH" && e.1 == "Restarted"));
    assert_eq!(agents(&lab).len(), 2, "one agent per server");
    still_applies_the_next_commit(&lab, &before);
    lab.stop();
}

#[test]
fn port_held_by_another_process_is_reported_then_recovers_once_freed() {
    let mut lab = Lab::start(151);
    lab.wait_converged(1);
    let before = installed(&lab);
    // This test holds the port EMPI is about to move to.
    let addr = SocketAddr::new(lab.server_address("app2").into(), 7029);
    let holder = TcpListener::bind(addr).expect("hold the port");
    lab.commit_edit(
        "servers/app2.yaml",
        "port: 7019",
        "port: 7029",
        "EMPI on 7029",
    );
    let failure = lab.wait_until("EMPI's portInUse failure from the agent", DEADLINE, || {
        let s = lab.agent_service("app2", "EMPI")?;
        let f = s.get("lastFailure")?.clone();
        (f["reason"] == "portInUse").then_some(f)
    });
    assert_eq!(failure["port"], 7029, "{failure}");
    assert_eq!(failure["holderPid"], std::process::id(), "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("port 7029") && m.contains("in use")),
        "{failure}"
    );
    assert!(
        failure["logTail"]
            .as_str()
            .is_some_and(|t| t.contains("port-in-use")),
        "{failure}"
    );

    drop(holder);
    lab.wait_status("EMPI healthy on 7029 once the port is free", |s| {
        s["generation"] == 2
            && service(s, "app2", "EMPI").is_some_and(|e| e["port"] == 7029 && service_up(e))
    });
    still_applies_the_next_commit(&lab, &before);
    lab.stop();
}

#[test]
fn daemon_sigkill_then_restart_leaves_exactly_one_agent_per_server() {
    let mut lab = Lab::start(152);
    lab.wait_converged(1);
    let before = installed(&lab);
    let old: Vec<Proc> = agents(&lab);
    assert_eq!(old.len(), 2);

    lab.kill_daemon();
    // Its agents outlive it (own process groups) and keep their addresses.
    for a in &old {
        assert!(alive(a.pid), "agent {} survives the daemon", a.pid);
    }
    lab.respawn_after_crash();
    lab.wait_log("the leftover agents handled", |l| {
        l.contains("stopping the lab agent a previous daemon left running")
    });
    lab.wait_status("everything healthy under the new daemon", |s| {
        s["valid"] == true && all_declared_healthy(s)
    });
    // The status can be healthy (the services run on) a moment before the second agent's
    // start is logged: wait for both, then check there are no more.
    let started = || {
        lab.log()
            .lines()
            .filter(|l| l.contains("lab agent started"))
            .count()
    };
    lab.wait_until("both lab agents started", DEADLINE, || {
        (started() >= 2).then_some(())
    });
    for a in &old {
        assert!(
            !alive(a.pid),
            "the previous daemon's agent {} is gone",
            a.pid
        );
    }
    let now = agents(&lab);
    let mut addresses: Vec<String> = now.iter().filter_map(Proc::address).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [lab.address_of(1).to_string(), lab.address_of(2).to_string()],
        "exactly one agent per server: {now:?}"
    );
    for server in ["app1", "app2"] {
        let log = lab.agent_log(server);
        assert!(!log.contains("Address already in use"), "{server}: {log}");
    }
    assert_eq!(started(), 2, "one `started` per agent that did start");
    for kind in ["PSIS", "HEALTH", "HL7"] {
        assert_eq!(lab.service_processes(kind).len(), 1, "one {kind} process");
    }
    still_applies_the_next_commit(&lab, &before);
    lab.stop();
}

#[test]
fn no_secret_reaches_any_lab_process() {
    const SECRETS: [&str; 3] = [
        "db-secret-4f1d9c",
        "ad-secret-77b0e2",
        "reconcile-token-a93e55",
    ];
    let mut lab = Lab::new(
        153,
        Options {
            env: vec![
                ("PS_DB_PASSWORD", SECRETS[0]),
                ("PS_AD_PASSWORD", SECRETS[1]),
                ("STEWARD_RECONCILE_TOKEN", SECRETS[2]),
            ],
            ..Options::default()
        },
    );
    lab.spawn();
    lab.wait_converged(1);
    let before = installed(&lab);
    let environ = |pid: i32| std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let daemon = lab.daemon_pid().expect("daemon");
    // The control: the daemon has them, and this test can read them.
    let own = String::from_utf8_lossy(&environ(daemon)).into_owned();
    assert!(SECRETS.iter().all(|s| own.contains(s)));
    let procs: Vec<Proc> = lab
        .processes()
        .into_iter()
        .filter(|p| p.pid != daemon)
        .collect();
    assert_eq!(
        procs.iter().filter(|p| p.is_agent()).count(),
        2,
        "{procs:?}"
    );
    assert!(procs.iter().filter(|p| p.service_kind().is_some()).count() >= 11);
    for p in &procs {
        let env = String::from_utf8_lossy(&environ(p.pid)).into_owned();
        assert!(!env.is_empty(), "environ of {} readable", p.pid);
        for secret in SECRETS {
            assert!(!env.contains(secret), "{} {:?} has a secret", p.pid, p.args);
        }
    }
    still_applies_the_next_commit(&lab, &before);
    lab.stop();
}

#[test]
fn a_fleet_larger_than_the_lab_is_refused_at_start() {
    // Bound nothing of its own: the daemon refuses before starting any agent.
    let lab = Lab::new(154, Options::default());
    let log_path = lab.root().join("refused.log");
    let log_file = append_file(&log_path);
    let mut child = Command::new(binary())
        .env("NO_COLOR", "1")
        .args(["run", "--lab", "--desired-state"])
        .arg(&lab.desired)
        .arg("--state-dir")
        .arg(&lab.state)
        .args([
            "--listen",
            "127.0.154.1:9464",
            "--lab-first-address",
            "127.0.154.254",
        ])
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("steward run");
    let status = lab.wait_until("the daemon to refuse and exit", DEADLINE, || {
        child.try_wait().expect("wait")
    });
    assert_eq!(status.code(), Some(1));
    let log = strip_ansi(&std::fs::read_to_string(&log_path).unwrap());
    assert!(
        log.contains("the lab has room for 1 server(s) from 127.0.154.254")
            && log.contains("declares 2"),
        "{log}"
    );
    assert!(lab.processes().is_empty(), "no agent was started");
}
