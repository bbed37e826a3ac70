//! End-to-end: a rolling upgrade of the two-server lab, with real agents and lab services.
//! A release upgrades app1 then app2; a release marked `lab-fail-HEALTH-at-<app2's
//! address>` halts on app2 with app1 done, app2's failed service left as it is (not
//! reinstalled nor restarted) and its log kept; a new commit of another release resumes.
//! On four servers, a failure on the second leaves the third and fourth untouched (their
//! agents' own records), retries nothing for a minute, and a resume (CLI, then API) after
//! the operator's repair finishes it.

mod support;

use std::time::Duration;

use serde_json::Value;
use steward_testkit::http::Request;
use steward_testkit::Fixture;
use support::haproxy;
use support::*;

const INSTALLATION: &str = "installation.yaml";

fn upgrade(status: &Value) -> &Value {
    &status["upgrade"]
}

fn phase(status: &Value) -> &str {
    upgrade(status)["phase"].as_str().unwrap_or("")
}

fn releases(lab: &Lab, server: &str) -> Vec<(String, String)> {
    lab.agent_services(server)
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or("").to_owned(),
                s["release"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Services are upgraded one at a time, each up within a fraction of a second of its
/// install, but a failing one is judged down only after `fall` tests 10 s apart (the
/// lab's interval), on a loaded machine: minutes, longer than a status wait.
fn wait_upgrade(lab: &Lab, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    lab.wait_until(what, Duration::from_secs(420), || {
        let (code, body) = lab.try_get("/api/v1/status").ok()?;
        let doc: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && pred(&doc)).then_some(doc)
    })
}

fn set_release(lab: &Lab, from: &str, to: &str) {
    lab.commit_edit(
        INSTALLATION,
        &format!("release: \"{from}\""),
        &format!("release: \"{to}\""),
        &format!("release {to}"),
    );
}

#[test]
fn two_servers_upgrade_then_halt_on_app2_and_resume_by_a_new_commit() {
    let mut lab = Lab::start(140);
    lab.wait_converged(1);
    lab.write(
        "upgrade-policy.yaml",
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  healthGate: 1s\n  from: [\"6.*\"]\n",
    );
    lab.commit("an upgrade policy");
    lab.wait_status("the upgrade policy in force", |s| phase(s) == "Idle");

    // Success: every service of both servers ends on 6.13.0.
    set_release(&lab, "6.12.1", "6.13.0");
    let status = wait_upgrade(&lab, "the upgrade to 6.13.0 to complete", |s| {
        phase(s) == "Complete" && upgrade(s)["to"] == "6.13.0"
    });
    assert_eq!(
        upgrade(&status)["servers"],
        serde_json::json!([{"name": "app1", "phase": "Done"}, {"name": "app2", "phase": "Done"}])
    );
    for server in ["app1", "app2"] {
        for (kind, release) in releases(&lab, server) {
            assert_eq!(release, "6.13.0", "{kind} on {server}");
        }
    }
    let metrics = lab.metrics();
    assert!(
        metrics.contains(
            "steward_service_release_info{server=\"app2\",service=\"HEALTH\",release=\"6.13.0\"} 1"
        ),
        "{metrics}"
    );

    // Failure on app2 only: HEALTH of this release fails its health test there.
    let app2 = lab.server_address("app2").to_string().replace('.', "-");
    let failing = format!("6.14.0+lab-fail-HEALTH-at-{app2}");
    set_release(&lab, "6.13.0", &failing);
    let status = wait_upgrade(&lab, "the upgrade to halt on app2", |s| {
        phase(s) == "Halted"
    });
    let up = upgrade(&status);
    assert_eq!(
        up["servers"],
        serde_json::json!([{"name": "app1", "phase": "Done"}, {"name": "app2", "phase": "Failed"}]),
        "{up}"
    );
    let reason = up["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("app2") && reason.contains("HEALTH"),
        "{reason}"
    );
    assert_eq!(
        up["logs"],
        serde_json::json!(["upgrade-logs/app2-HEALTH.log"])
    );
    assert!(lab.state.join("upgrade-logs/app2-HEALTH.log").is_file());
    for (kind, release) in releases(&lab, "app1") {
        assert_eq!(release, failing, "{kind} on app1");
    }
    // app2: EMERGENCY (before HEALTH in install order) and HEALTH run the new release,
    // the kinds after HEALTH were never touched.
    let app2_now = releases(&lab, "app2");
    let health = lab.agent_service("app2", "HEALTH").expect("HEALTH on app2");
    assert_eq!(health["release"], failing.as_str());
    assert!(
        app2_now.iter().any(|(_, r)| r == "6.13.0"),
        "every service of app2 was upgraded after the failure: {app2_now:?}"
    );
    // Nothing is retried: the failed service's record stays the same a while later.
    std::thread::sleep(Duration::from_secs(10));
    let later = lab.agent_service("app2", "HEALTH").expect("HEALTH on app2");
    assert_eq!(
        later["pid"], health["pid"],
        "HEALTH was restarted or reinstalled"
    );
    assert_eq!(later["installedAt"], health["installedAt"]);
    assert_eq!(releases(&lab, "app2"), app2_now);
    assert_eq!(phase(&lab.status()), "Halted");

    // A new commit is a new upgrade, from what runs now.
    set_release(&lab, &failing, "6.14.1");
    wait_upgrade(&lab, "the upgrade to 6.14.1 to complete", |s| {
        phase(s) == "Complete" && upgrade(s)["to"] == "6.14.1"
    });
    for server in ["app1", "app2"] {
        for (kind, release) in releases(&lab, server) {
            assert_eq!(release, "6.14.1", "{kind} on {server}");
        }
    }
    lab.stop();
}

const TOKEN: &str = "upgrade-token-5c81d0";

/// The bundled deployment on four servers: app1 as it is, app2's kinds spread over app2,
/// app3 and app4 (no load balancer, so each kind on one server).
fn four_servers(lab: &Lab) {
    for (name, kinds) in [
        ("app2", ["EMERGENCY", "HEALTH"]),
        ("app3", ["JOB", "HL7"]),
        ("app4", ["FHIR", "EMPI"]),
    ] {
        lab.write(
            &format!("servers/{name}.yaml"),
            &Fixture::server(name).services(kinds).yaml(),
        );
    }
}

/// What an agent did: its "service installed" and "service restarted" log lines.
fn agent_changes(lab: &Lab, server: &str) -> usize {
    lab.agent_log(server)
        .lines()
        .filter(|l| l.contains("service installed") || l.contains("service restarted"))
        .count()
}

/// Each service's (kind, release, installedAt, pid) from the agent's own records.
fn records(lab: &Lab, server: &str) -> Vec<(String, String, String, String)> {
    lab.agent_services(server)
        .iter()
        .map(|s| {
            (
                s["kind"].to_string(),
                s["release"].to_string(),
                s["installedAt"].to_string(),
                s["pid"].to_string(),
            )
        })
        .collect()
}

fn server_phases(status: &Value) -> Vec<String> {
    upgrade(status)["servers"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s["name"].as_str().unwrap_or(""),
                        s["phase"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn steward(lab: &Lab, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .arg("--url")
        .arg(format!("http://{}", lab.api))
        .env("STEWARD_RECONCILE_TOKEN", TOKEN)
        .output()
        .expect("run steward")
}

#[test]
fn four_servers_halt_on_the_second_leave_the_rest_and_resume_after_a_repair() {
    let mut lab = Lab::new(
        141,
        Options {
            env: vec![("STEWARD_RECONCILE_TOKEN", TOKEN)],
            ..Options::default()
        },
    );
    four_servers(&lab);
    lab.write(
        "upgrade-policy.yaml",
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  healthGate: 1s\n  from: [\"6.*\"]\n",
    );
    lab.commit("four servers and an upgrade policy");
    lab.spawn();
    lab.wait_converged(1);
    lab.wait_status("the upgrade policy in force", |s| phase(s) == "Idle");
    let servers = ["app1", "app2", "app3", "app4"];

    // Success end to end, one server after the other.
    set_release(&lab, "6.12.1", "6.13.0");
    let status = wait_upgrade(&lab, "the upgrade to 6.13.0 to complete", |s| {
        phase(s) == "Complete" && upgrade(s)["to"] == "6.13.0"
    });
    assert_eq!(
        server_phases(&status),
        ["app1 Done", "app2 Done", "app3 Done", "app4 Done"]
    );
    for server in servers {
        for (kind, release) in releases(&lab, server) {
            assert_eq!(release, "6.13.0", "{kind} on {server}");
        }
    }

    // HEALTH of the next release fails on app2, the second of four.
    let before: Vec<_> = ["app3", "app4"]
        .map(|s| (records(&lab, s), agent_changes(&lab, s)))
        .into();
    let app2 = lab.server_address("app2").to_string().replace('.', "-");
    let failing = format!("6.14.0+lab-fail-HEALTH-at-{app2}");
    set_release(&lab, "6.13.0", &failing);
    let status = wait_upgrade(&lab, "the upgrade to halt on app2", |s| {
        phase(s) == "Halted"
    });
    assert_eq!(
        server_phases(&status),
        ["app1 Done", "app2 Failed", "app3 Pending", "app4 Pending"]
    );
    let reason = upgrade(&status)["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("app2") && reason.contains("HEALTH"),
        "{reason}"
    );
    assert_eq!(
        upgrade(&status)["logs"],
        serde_json::json!(["upgrade-logs/app2-HEALTH.log"])
    );
    assert!(lab.state.join("upgrade-logs/app2-HEALTH.log").is_file());
    assert_eq!(
        lab.agent_service("app2", "HEALTH").expect("HEALTH on app2")["release"],
        failing.as_str()
    );

    // No retry: a minute later no agent installed or restarted anything more, and the
    // servers after app2 still run what they ran, untouched.
    let halted: Vec<usize> = servers.iter().map(|s| agent_changes(&lab, s)).collect();
    std::thread::sleep(Duration::from_secs(60));
    let later: Vec<usize> = servers.iter().map(|s| agent_changes(&lab, s)).collect();
    assert_eq!(
        later, halted,
        "installs/restarts per agent over 60 s after the halt"
    );
    let after: Vec<_> = ["app3", "app4"]
        .map(|s| (records(&lab, s), agent_changes(&lab, s)))
        .into();
    assert_eq!(after, before, "app3 and app4 untouched");
    assert_eq!(phase(&lab.status()), "Halted");

    // A resume without a repair is judged afresh and halts again on app2.
    let out = steward(&lab, &["upgrade", "resume"]);
    assert!(out.status.success(), "steward upgrade resume: {out:?}");
    wait_upgrade(&lab, "the resumed upgrade under way", |s| {
        phase(s) == "Progressing"
    });
    wait_upgrade(&lab, "the resumed upgrade to halt again", |s| {
        phase(s) == "Halted"
    });

    // The operator repairs HEALTH on app2 (the lab's repair file in its directory) and
    // resumes through the API: app2 passes its gate, then app3 and app4 follow.
    let pid = lab.agent_service("app2", "HEALTH").expect("HEALTH on app2")["pid"]
        .as_i64()
        .expect("a pid");
    let dir = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("its directory");
    std::fs::write(dir.join("lab-repaired"), "").expect("the repair file");
    let api = lab.api.to_string();
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("Authorization", bearer.as_str())];
    let resp = Request {
        method: "POST",
        path: "/api/v1/upgrade/resume",
        headers: &headers,
        ..Request::get(&api, "")
    }
    .send()
    .expect("POST /api/v1/upgrade/resume");
    assert_eq!(resp.status, 202, "{}", resp.text());
    let status = wait_upgrade(&lab, "the resumed upgrade to complete", |s| {
        phase(s) == "Complete" && upgrade(s)["to"] == failing.as_str()
    });
    assert_eq!(
        server_phases(&status),
        ["app1 Done", "app2 Done", "app3 Done", "app4 Done"]
    );
    for server in servers {
        for (kind, release) in releases(&lab, server) {
            assert_eq!(release, failing, "{kind} on {server}");
        }
    }
    lab.stop();
}

/// HAProxy's administrative state of `server` in `backend` (`show servers state`,
/// column `srv_admin_state`: a bit mask, 0x08 drain, 0x01/0x02/0x04 maintenance).
fn admin_state(lab: &Lab, backend: &str, server: &str) -> Option<u32> {
    let answer = haproxy::command(lab, &format!("show servers state {backend}"))?;
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    let _version = lines.next()?;
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(' ').collect();
    let at = |name: &str| header.iter().position(|c| *c == name);
    let (name, admin) = (at("srv_name")?, at("srv_admin_state")?);
    lines.find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(name) == Some(&server))
            .then(|| f.get(admin).and_then(|s| s.parse().ok()))
            .flatten()
    })
}

/// Out of rotation: drained or in maintenance.
/// HL7 on `server` as its agent lists it: (release, status, held).
fn hl7_listener(lab: &Lab, server: &str) -> (String, String, bool) {
    let hl7 = lab
        .agent_service(server, "HL7")
        .unwrap_or_else(|| panic!("HL7 is not installed on {server}"));
    (
        hl7["release"].as_str().unwrap_or_default().to_owned(),
        hl7["status"].as_str().unwrap_or_default().to_owned(),
        hl7["held"] == true,
    )
}

fn out_of_rotation(state: u32) -> bool {
    state & (0x08 | 0x01 | 0x02 | 0x04) != 0
}

#[test]
fn haproxy_drains_the_server_being_upgraded_and_keeps_a_halted_one_out() {
    if steward_testkit::require_tool("haproxy", "haproxy").is_none() {
        return;
    }
    let mut lab = Lab::new(
        142,
        Options {
            resync: "1s",
            ..Options::default()
        },
    );
    // HL7 on both servers, as the example has it: app1's listener active, app2's a held
    // standby, which the upgrade reinstalls held and never starts.
    lab.use_example("examples/ha");
    lab.write(
        "upgrade-policy.yaml",
        "apiVersion: steward/v1\nkind: UpgradePolicy\nmetadata: {name: default}\nspec:\n  healthGate: 3s\n  drainTimeout: 5s\n  from: [\"6.*\"]\n",
    );
    lab.commit("an upgrade policy");
    lab.spawn();
    lab.wait_status("examples/ha converged behind HAProxy", |s| {
        haproxy::all_up(s) && phase(s) == "Idle"
    });

    // Sample PSIS's backend while the upgrade runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let app1 = admin_state(&lab, "psis", "app1");
                let app2 = admin_state(&lab, "psis", "app2");
                if let (Some(a), Some(b)) = (app1, app2) {
                    seen.push((out_of_rotation(a), out_of_rotation(b)));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        set_release(&lab, "6.12.1", "6.13.0");
        wait_upgrade(&lab, "the upgrade to 6.13.0 to complete", |s| {
            phase(s) == "Complete" && upgrade(s)["to"] == "6.13.0"
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        sampler.join().expect("the sampler")
    });
    assert!(samples.contains(&(true, false)), "app1 drained alone");
    assert!(samples.contains(&(false, true)), "app2 drained alone");
    assert!(
        !samples.contains(&(true, true)),
        "both out at once (maxUnavailable 1)"
    );
    assert_eq!(
        admin_state(&lab, "psis", "app1").map(out_of_rotation),
        Some(false)
    );
    assert_eq!(
        admin_state(&lab, "psis", "app2").map(out_of_rotation),
        Some(false)
    );
    // The standby was upgraded and is still held stopped; app1's listener stays active.
    assert_eq!(
        hl7_listener(&lab, "app2"),
        ("6.13.0".into(), "stopped".into(), true)
    );
    assert_eq!(
        hl7_listener(&lab, "app1"),
        ("6.13.0".into(), "running".into(), false)
    );
    let status = lab.wait_status("app1's listener active, app2's the standby", |s| {
        s["hl7"]["activeListener"] == "app1"
    });
    assert_eq!(status["hl7"]["standby"], serde_json::json!(["app2"]));
    assert!(status["hl7"]["lastFailover"].is_null(), "{}", status["hl7"]);

    // A failure on app2: it stays out of rotation, app1 serves.
    let app2 = lab.server_address("app2").to_string().replace('.', "-");
    set_release(&lab, "6.13.0", &format!("6.14.0+lab-fail-HEALTH-at-{app2}"));
    wait_upgrade(&lab, "the upgrade to halt on app2", |s| {
        phase(s) == "Halted"
    });
    for backend in ["psis", "psws", "health"] {
        assert_eq!(
            admin_state(&lab, backend, "app2").map(out_of_rotation),
            Some(true),
            "{backend}/app2"
        );
        assert_eq!(
            admin_state(&lab, backend, "app1").map(out_of_rotation),
            Some(false),
            "{backend}/app1"
        );
    }
    lab.wait_status("the halted server out in the status too", |s| {
        haproxy::members(s).iter().any(|(kind, server, state)| {
            kind == "PSIS" && server == "app2" && state.as_deref() == Some("drain")
        })
    });
    lab.stop();
}
