//! End-to-end: hostile input and faults against `steward run --lab` with `prune: true`.
//! Each case asserts that nothing was uninstalled (the agents' own records), that the
//! daemon still answers `/healthz` and `/api/v1/status`, and that the next good commit
//! still applies (a new generation, converged).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rustix::process::Signal;
use support::*;

const CHECKS: &str = "health-checks.yaml";

/// CLIENT restarted after 10 s of failing (instead of the default 60 s), so a hung one
/// is restarted within the test's deadlines.
const CLIENT_LIVENESS: &str = "---\napiVersion: steward/v1\nkind: HealthCheck\nmetadata:\n  name: client\nspec:\n  service: CLIENT\n  interval: 2s\n  timeout: 1s\n  restartAfter: 10s\n";

/// A lab whose installation prunes, converged on generation 1.
fn pruning_lab(n: u8) -> Lab {
    let mut lab = Lab::new(n, Options::default());
    lab.edit("installation.yaml", "  prune: false", "  prune: true");
    let checks = lab.read(CHECKS);
    lab.write(CHECKS, &format!("{checks}{CLIENT_LIVENESS}"));
    lab.commit("prune: true; CLIENT restarted after 10s of failing");
    lab.spawn();
    lab.wait_converged(1);
    lab
}

/// What the agents themselves say they have installed: (server, kind).
fn installed(lab: &Lab) -> BTreeSet<(String, String)> {
    ["app1", "app2"]
        .into_iter()
        .flat_map(|server| {
            lab.agent_services(server).into_iter().map(move |s| {
                (
                    server.to_owned(),
                    s["kind"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

/// The daemon answers its health endpoint and its status.
fn answers(lab: &Lab) {
    let (code, body) = lab.get("/healthz");
    assert_eq!(code, 200, "/healthz: {body}");
    let (code, body) = lab.get("/api/v1/status");
    assert_eq!(code, 200, "/api/v1/status: {body}");
}

/// A good change after the hostile one: applied as `generation`, converged.
fn good_commit_applies(lab: &Lab, generation: u64) {
    lab.commit_edit(
        CHECKS,
        "  interval: 5s                    # everything else comes from the catalog\n",
        "  interval: 6s\n",
        "PSIS probed every 6s",
    );
    lab.wait_converged(generation);
}

#[test]
fn a_hung_service_is_restarted_after_restart_after() {
    let mut lab = pruning_lab(160);
    let before = installed(&lab);
    let client = lab
        .agent_service("app1", "CLIENT")
        .expect("CLIENT installed");
    let pid = client["pid"].as_i64().expect("running with a pid") as i32;
    let stopped_at = now();
    signal(pid, Signal::STOP);

    let new_pid = lab.wait_until("CLIENT restarted as a new process", DEADLINE, || {
        let s = lab.agent_service("app1", "CLIENT")?;
        let new = s["pid"].as_i64()? as i32;
        (s["status"] == "running" && new != pid).then_some(new)
    });
    assert!(alive(new_pid));
    let status = lab.wait_status("CLIENT healthy again", |s| {
        service(s, "app1", "CLIENT").is_some_and(service_up)
    });
    let restarted = events(&status)
        .into_iter()
        .any(|e| e.0 == "service/app1/CLIENT" && e.1 == "RestartedUnhealthy" && e.2 > stopped_at);
    assert!(restarted, "a RestartedUnhealthy event");
    lab.wait_log("the liveness restart logged", |l| {
        l.contains("restarting CLIENT") && l.contains("failing its health test")
    });
    answers(&lab);
    assert_eq!(installed(&lab), before, "nothing uninstalled");
    good_commit_applies(&lab, 2);
    lab.stop();
}

#[test]
fn a_fifo_named_like_a_manifest_neither_hangs_nor_uninstalls() {
    let mut lab = pruning_lab(161);
    let before = installed(&lab);
    let fifo = lab.desired.join("x.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let status = lab.wait_status("the FIFO reported", |s| {
        s["errors"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("x.yaml")))
        })
    });
    assert_eq!(status["generation"], 1);
    answers(&lab);
    assert_eq!(installed(&lab), before, "nothing uninstalled");
    std::fs::remove_file(&fifo).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    good_commit_applies(&lab, 2);
    lab.stop();
}

/// A hostile entry made by `make` is reported with an error naming `located`
/// (a path, or `path:line:col`), nothing is uninstalled, and once `undo` ran the next
/// good commit converges.
fn rejected_without_harm(n: u8, make: impl FnOnce(&Lab), located: &str, undo: impl FnOnce(&Lab)) {
    let mut lab = pruning_lab(n);
    let before = installed(&lab);
    make(&lab);
    let status = lab.wait_status(&format!("an error at {located}"), |s| {
        s["errors"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with(located)))
        })
    });
    assert_eq!(status["generation"], 1, "nothing applied");
    answers(&lab);
    assert_eq!(installed(&lab), before, "nothing uninstalled");
    undo(&lab);
    good_commit_applies(&lab, 2);
    lab.stop();
}

#[test]
fn a_symlink_loop_is_a_located_error() {
    rejected_without_harm(
        162,
        |lab| std::os::unix::fs::symlink("loop.yaml", lab.desired.join("loop.yaml")).unwrap(),
        "loop.yaml",
        |lab| std::fs::remove_file(lab.desired.join("loop.yaml")).unwrap(),
    );
}

#[test]
fn a_dangling_link_replacing_a_server_file_is_a_located_error() {
    let file = "servers/app2.yaml";
    rejected_without_harm(
        163,
        |lab| {
            std::fs::rename(lab.desired.join(file), lab.root().join("app2.yaml")).unwrap();
            std::os::unix::fs::symlink("/nonexistent/app2.yaml", lab.desired.join(file)).unwrap();
        },
        file,
        |lab| {
            std::fs::remove_file(lab.desired.join(file)).unwrap();
            std::fs::rename(lab.root().join("app2.yaml"), lab.desired.join(file)).unwrap();
        },
    );
}

#[test]
fn control_characters_in_a_value_are_a_located_error() {
    let file = "servers/app1.yaml";
    rejected_without_harm(
        164,
        |lab| {
            lab.edit(
                file,
                "  hostname: app1.example.eng       # FQDN",
                "  hostname: \"app1\\e[31m.example.eng\\u0007\"  # FQDN",
            )
        },
        &format!("{file}:"),
        |lab| {
            lab.edit(
                file,
                "  hostname: \"app1\\e[31m.example.eng\\u0007\"  # FQDN",
                "  hostname: app1.example.eng       # FQDN",
            )
        },
    );
}

#[test]
fn a_socket_named_like_a_manifest_is_a_located_error() {
    rejected_without_harm(
        165,
        |lab| drop(std::os::unix::net::UnixListener::bind(lab.desired.join("s.yaml")).unwrap()),
        "s.yaml",
        |lab| std::fs::remove_file(lab.desired.join("s.yaml")).unwrap(),
    );
}

#[test]
fn a_link_out_of_the_tree_is_a_located_error() {
    rejected_without_harm(
        166,
        |lab| {
            let outside = lab.root().join("outside.yaml");
            std::fs::write(&outside, lab.read("servers/app2.yaml")).unwrap();
            std::os::unix::fs::symlink(&outside, lab.desired.join("servers/extra.yaml")).unwrap();
        },
        "servers/extra.yaml",
        |lab| std::fs::remove_file(lab.desired.join("servers/extra.yaml")).unwrap(),
    );
}

#[test]
fn a_fifty_megabyte_value_is_a_located_error() {
    rejected_without_harm(
        167,
        |lab| {
            let huge = "x".repeat(50 * 1024 * 1024);
            lab.write(
                "big.yaml",
                &format!("apiVersion: steward/v1\nkind: HealthCheck\nmetadata: {{name: big}}\nspec:\n  service: HEALTH\n  path: /{huge}\n"),
            );
        },
        "big.yaml",
        |lab| std::fs::remove_file(lab.desired.join("big.yaml")).unwrap(),
    );
}

#[test]
fn a_deleted_state_directory_gets_its_certificates_back_and_uninstalls_nothing() {
    let mut lab = pruning_lab(168);
    // Also takes the test's client certificate from the CA before the CA's files go.
    let before = installed(&lab);
    let cert = |server: &str| {
        lab.state
            .join("lab")
            .join(server)
            .join("state/tls/server.pem")
    };
    assert!(cert("app1").is_file() && cert("app2").is_file());
    std::fs::remove_dir_all(&lab.state).expect("delete the state directory");

    // The agents say their certificates are gone; steward installs them again.
    lab.wait_until("both certificates installed again", DEADLINE, || {
        (cert("app1").is_file() && cert("app2").is_file()).then_some(())
    });
    // A service restarted now starts with a certificate (it crash-looped on a missing one).
    let client = lab
        .agent_service("app1", "CLIENT")
        .expect("CLIENT installed");
    let pid = client["pid"].as_i64().expect("running with a pid") as i32;
    signal(pid, Signal::KILL);
    lab.wait_until("CLIENT running again as a new process", DEADLINE, || {
        let s = lab.agent_service("app1", "CLIENT")?;
        let new = s["pid"].as_i64()? as i32;
        (s["status"] == "running" && new != pid && alive(new)).then_some(())
    });
    lab.wait_status("every service healthy again", all_declared_healthy);
    answers(&lab);
    assert_eq!(installed(&lab), before, "nothing uninstalled");
    good_commit_applies(&lab, 2);
    lab.stop();
}
