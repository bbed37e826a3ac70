//! `steward sim` end to end: a daemon (`steward run`, no lab) converges a simulated fleet
//! of five servers over real mutual TLS, and faults injected through the sim's control
//! API show in the daemon's status and get repaired. Binds 127.1.9.x: when other test runs
//! share the machine, run it in a network namespace of its own (e.g. `unshare -n`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use steward_testkit::http::{get, http};
use steward_testkit::{eventually, iridium};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const FIRST: &str = "127.1.9.1";
const API: &str = "127.1.9.200:9464";
const SERVERS: usize = 5;
/// The catalog's first ten kinds: every one but HL7, whose standby listeners steward
/// keeps stopped (one active listener in the fleet), so every service here runs.
const KINDS: usize = 10;

/// A child process stopped with SIGTERM (and waited for) when the test ends, however.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn start(name: &'static str, args: &[&str], log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(STEWARD)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start steward {name}: {e}"));
        Self { name, child }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let ended =
            steward_testkit::within(Duration::from_secs(30), Duration::from_millis(100), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            });
        if ended.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if !std::thread::panicking() {
                panic!("steward {} did not stop on SIGTERM", self.name);
            }
        }
    }
}

fn control(server: usize) -> String {
    format!("127.1.9.{server}:7444")
}

fn status() -> Option<Value> {
    get(API, "/api/v1/status")
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.json())
}

fn service<'a>(status: &'a Value, server: &str, kind: &str) -> Option<&'a Value> {
    status["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == server)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == kind)
}

fn server<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

fn converged(status: &Value) -> bool {
    let Some(servers) = status["servers"].as_array() else {
        return false;
    };
    servers.len() == SERVERS
        && servers.iter().all(|s| {
            s["agentUp"] == true
                && s["services"].as_array().is_some_and(|services| {
                    services.len() == KINDS
                        && services
                            .iter()
                            .all(|v| v["installed"] == true && v["healthy"] == true)
                })
        })
}

fn post(addr: &str, path: &str) -> Value {
    let response = http("POST", addr, path, None).unwrap();
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

#[test]
fn a_daemon_converges_a_simulated_fleet_and_sees_its_faults() {
    if iridium::binary().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    let state = dir.path().join("state");
    let (fleet_arg, state_arg) = (fleet.to_str().unwrap(), state.to_str().unwrap());
    let servers = SERVERS.to_string();
    let generated = Command::new(STEWARD)
        .args([
            "sim",
            "generate",
            "--servers",
            &servers,
            "--first-address",
            FIRST,
        ])
        .args(["--services-per-server", &KINDS.to_string()])
        .args(["--probe-interval", "2s", "--out", fleet_arg])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");

    let _sim = Process::start(
        "sim",
        &[
            "sim",
            "--servers",
            &servers,
            "--first-address",
            FIRST,
            "--state-dir",
            state_arg,
            "--desired-state",
            fleet_arg,
        ],
        &dir.path().join("sim.log"),
    );
    let ready =
        steward_testkit::within(Duration::from_secs(120), Duration::from_millis(200), || {
            get(&control(SERVERS), "/sim").is_ok_and(|r| r.status == 200)
        });
    if ready.is_none() {
        panic!(
            "the sim never answered:\n{}",
            std::fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default()
        );
    }
    let _daemon = Process::start(
        "run",
        &[
            "run",
            "--desired-state",
            fleet_arg,
            "--state-dir",
            state_arg,
            "--listen",
            API,
        ],
        &dir.path().join("daemon.log"),
    );
    let settled =
        steward_testkit::within(Duration::from_secs(180), Duration::from_millis(500), || {
            status().is_some_and(|s| converged(&s))
        });
    if settled.is_none() {
        panic!(
            "no convergence; status: {:#}\ndaemon log:\n{}",
            status().unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
    }
    // The agents' own view agrees: every service of every server runs.
    for n in 1..=SERVERS {
        let view = get(&control(n), "/sim").unwrap().json();
        assert_eq!(view["agentReachable"], true);
        let services = view["services"].as_array().unwrap();
        assert_eq!(services.len(), KINDS, "{view}");
        assert!(services.iter().all(|s| s["running"] == true), "{view}");
    }

    // The compact status (the dashboard's at scale) leaves the healthy services out,
    // counted per server, except for the servers asked in detail.
    let compact = get(API, "/api/v1/status?compact=true&detail=sim0001")
        .unwrap()
        .json();
    for n in 2..=SERVERS {
        let name = format!("sim{n:04}");
        assert_eq!(
            compact["compact"]["healthyOmitted"][&name], KINDS,
            "{compact:#}"
        );
        assert_eq!(
            server(&compact, &name).unwrap()["services"],
            serde_json::json!([])
        );
    }
    assert!(compact["compact"]["healthyOmitted"]
        .get("sim0001")
        .is_none());
    assert_eq!(
        server(&compact, "sim0001").unwrap()["services"]
            .as_array()
            .unwrap()
            .len(),
        KINDS
    );

    // A service failing its health test shows as unhealthy, also in the compact status,
    // and healthy again once healed.
    post(&control(2), "/sim/services/CLIENT/fail-health");
    eventually(
        "sim0002 CLIENT unhealthy in the status",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            status().is_some_and(|s| {
                service(&s, "sim0002", "CLIENT").is_some_and(|v| v["healthy"] == false)
            })
        },
    );
    let compact = get(API, "/api/v1/status?compact=true").unwrap().json();
    assert_eq!(
        compact["compact"]["healthyOmitted"]["sim0002"],
        KINDS - 1,
        "{compact:#}"
    );
    let shown = &server(&compact, "sim0002").unwrap()["services"];
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown:#}");
    assert_eq!(shown[0]["kind"], "CLIENT");
    post(&control(2), "/sim/services/CLIENT/heal");

    // A killed service is restarted through the agent.
    let killed = post(&control(3), "/sim/services/PSWS/kill");
    assert!(
        killed["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "PSWS" && v["running"] == false),
        "{killed}"
    );
    eventually(
        "sim0003 PSWS running again",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            get(&control(3), "/sim").is_ok_and(|r| {
                r.json()["services"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|v| v["kind"] == "PSWS" && v["running"] == true)
                })
            })
        },
    );

    // An unreachable agent shows as down, and up again once it listens.
    post(&control(4), "/sim/agent/unreachable");
    eventually(
        "sim0004's agent down in the status",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || status().is_some_and(|s| server(&s, "sim0004").is_some_and(|v| v["agentUp"] == false)),
    );
    post(&control(4), "/sim/agent/reachable");
    eventually(
        "the fleet converged again",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || status().is_some_and(|s| converged(&s)),
    );
}
