//! The `steward` binary's validate / plan / schema commands: output format and exit codes.

use std::path::Path;
use std::process::{Command, Output};
use steward_testkit::{bundled_desired_state, copy_dir, run, text};

fn steward(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_steward"), args, &[])
}

#[test]
fn bundled_state_validates_with_warnings_only() {
    let out = steward(&["validate", bundled_desired_state().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().all(|l| l.contains(": warning[")), "{stdout}");
}

/// `examples/ha`: valid, every kind on both servers behind HAProxy, HL7 failover on.
#[test]
fn the_ha_example_validates_and_plans_both_servers() {
    let dir = steward_testkit::workspace_root().join("examples/ha");
    let out = steward(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().all(|l| l.contains(": warning[")), "{stdout}");
    let out = steward(&["plan", dir.to_str().unwrap(), "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let installs: Vec<(String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "install")
        .map(|s| {
            (
                s["server"].as_str().unwrap_or_default().to_owned(),
                s["service"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(installs.len(), 22, "{plan:#}");
    for server in ["app1", "app2"] {
        assert_eq!(installs.iter().filter(|(s, _)| s == server).count(), 11);
    }
    let installation = std::fs::read_to_string(dir.join("installation.yaml")).unwrap();
    assert!(installation.contains("vendor: haproxy"));
    assert!(installation.contains("failover: automatic"));
}

#[test]
fn invalid_state_exits_1_with_located_errors_and_json() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled_desired_state(), dir.path());
    let app2 = dir.path().join("servers/app2.yaml");
    let broken = std::fs::read_to_string(&app2)
        .unwrap()
        .replace("port: 7019", "port: 7443")
        .replace("kind: JOB", "kind: JOBS");
    std::fs::write(&app2, broken).unwrap();
    // A non-YAML file and a dot-directory are ignored.
    std::fs::write(dir.path().join("NOTES.txt"), "kind: [").unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/x.yaml"), "kind: [").unwrap();

    let out = steward(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("servers/app2.yaml:14:13: error[unknown-service-kind]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("servers/app2.yaml:18:13: error[duplicate-port]: port 7443"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("NOTES") && !stdout.contains(".git"),
        "{stdout}"
    );

    let out = steward(&["validate", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"], 2);
    let first = &doc["diagnostics"][0];
    assert_eq!(first["file"], "servers/app2.yaml");
    assert!(first["line"].as_u64().unwrap() > 0 && first["column"].as_u64().unwrap() > 0);
    assert_eq!(first["severity"], "error");
}

#[test]
fn missing_directory_is_a_usage_error() {
    let out = steward(&["validate", "/nonexistent/desired-state"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/desired-state"));
    let out = steward(&["validate", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}

#[test]
fn plan_of_a_fresh_fleet_exits_2_and_orders_installs() {
    let out = steward(&["plan", bundled_desired_state().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let pos = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in\n{stdout}"))
    };
    assert!(pos("create the steward certificate authority") < pos("app1: issue a certificate"));
    assert!(pos("install PSIS") < pos("install PSWS"));
    assert!(pos("install PSWS") < pos("install CLIENT"));
    assert!(pos("install PSWS") < pos("install HL7"));
    assert!(stdout.contains("app2: install JOB (Job Scheduler) on port 7000"));
    assert!(stdout.contains("https://app1.example.eng:7001/identityserver"));
    assert!(stdout.contains("Plan: 14 to add, 0 to change, 0 to remove."));

    let out = steward(&["plan", bundled_desired_state().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let installs: Vec<&serde_json::Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "install")
        .collect();
    assert_eq!(installs.len(), 11);
    assert_eq!(installs[0]["service"], "PSIS");
    assert_eq!(installs[1]["service"], "PSWS");
    let empi = installs.iter().find(|s| s["service"] == "EMPI").unwrap();
    assert_eq!(empi["ports"], serde_json::json!([7019]));
    assert_eq!(empi["drive"], "D:");
}

#[test]
fn plan_of_invalid_state_exits_1_and_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled_desired_state(), dir.path());
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: steward/v1\nkind: Server\n",
    )
    .unwrap();
    let out = steward(&["plan", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial plan on stdout");
    assert!(text(&out.stderr).contains("bad.yaml:"));
}

#[test]
fn schema_is_json_schema_covering_every_kind() {
    let out = steward(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Installation",
            "Server",
            "ActiveDirectory",
            "HealthCheck",
            "Notifications",
            "UpgradePolicy"
        ]
    );
    let server = &schema["oneOf"][1];
    assert_eq!(server["additionalProperties"], false);
    let rendered = out.stdout.len();
    assert!(
        rendered > 2000,
        "schema suspiciously small: {rendered} bytes"
    );
}

// ---------------------------------------------------------------------------------------
// Output, exit codes and logs: broken pipes, `steward status` against a real lab daemon,
// log colours and formats. The daemon tests bind 127.0.202.x-127.0.204.x; run them in a
// network namespace of their own (`unshare -n`) when others share the machine.
mod output_and_logs {
    use super::{bundled_desired_state, copy_dir, steward, text};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::Duration;
    use steward_testkit::within;

    /// 128 + SIGPIPE, what a shell reports for `yes | head -1`.
    const BROKEN_PIPE: i32 = 141;

    /// Run steward with stdout a pipe whose reader is already gone, as in
    /// `steward status | head -0`: the first write fails with EPIPE.
    fn steward_into_closed_pipe(args: &[&str]) -> Output {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run steward")
    }

    fn assert_quiet_broken_pipe(out: &Output, what: &str) {
        assert_eq!(
            out.status.code(),
            Some(BROKEN_PIPE),
            "{what}: {}",
            text(&out.stderr)
        );
        // Diagnostics written before the pipe broke may be there; no panic, no complaint.
        let stderr = text(&out.stderr);
        for noise in ["panicked", "Broken pipe", "os error 32", "backtrace"] {
            assert!(!stderr.contains(noise), "{what}: {stderr}");
        }
    }

    #[test]
    fn a_closed_pipe_ends_validate_plan_schema_and_ca_quietly() {
        let dir = bundled_desired_state();
        let dir = dir.to_str().unwrap();
        for args in [
            vec!["validate", dir],
            vec!["validate", dir, "--format", "json"],
            vec!["plan", dir],
            vec!["plan", dir, "--json"],
            vec!["schema"],
        ] {
            let out = steward_into_closed_pipe(&args);
            assert_quiet_broken_pipe(&out, &args.join(" "));
        }
        let ca = tempfile::tempdir().unwrap();
        let ca_dir = ca.path().join("ca");
        let ca_dir = ca_dir.to_str().unwrap();
        let init = steward(&["ca", "init", "--dir", ca_dir]);
        assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
        let out = steward_into_closed_pipe(&["ca", "export", "--dir", ca_dir]);
        assert_quiet_broken_pipe(&out, "ca export");
    }

    #[test]
    fn status_exits_1_when_the_daemon_cannot_be_reached() {
        // Port 9 (discard) on loopback: nothing listens there.
        let out = steward(&["status", "--url", "http://127.0.0.1:9"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("cannot connect"),
            "{}",
            text(&out.stderr)
        );
        let help = steward(&["status", "--help"]);
        assert!(
            text(&help.stdout).contains("Exit status: 0"),
            "{}",
            text(&help.stdout)
        );
    }

    /// `steward run` with its stderr in a file; SIGTERM on drop.
    struct Daemon {
        child: Child,
        log: PathBuf,
    }

    impl Daemon {
        fn start(dir: &Path, tmp: &Path, extra: &[&str]) -> Self {
            let log = tmp.join("daemon.log");
            let child = Command::new(env!("CARGO_BIN_EXE_steward"))
                .arg("run")
                .args(extra)
                .arg("--desired-state")
                .arg(dir)
                .arg("--state-dir")
                .arg(tmp.join("state"))
                .env_remove("NO_COLOR")
                .env_remove("STEWARD_LOG_FORMAT")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start steward run");
            Self { child, log }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        fn wait_log(&self, needle: &str) {
            let found = within(Duration::from_secs(60), Duration::from_millis(100), || {
                self.log().contains(needle)
            });
            assert!(found.is_some(), "no {needle:?} in the log:\n{}", self.log());
        }

        /// SIGTERM, then the exit code.
        fn stop(&mut self) -> Option<i32> {
            let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            self.child.wait().ok()?.code()
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                self.stop();
            }
        }
    }

    /// A copy of the bundled desired state whose database (which the lab serves with a
    /// TDS server) is on `database`: labs running side by side must not share one.
    fn lab_desired_state(tmp: &Path, database: &str) -> PathBuf {
        let dir = tmp.join("desired-state");
        std::fs::create_dir_all(&dir).unwrap();
        copy_dir(&bundled_desired_state(), &dir);
        let file = dir.join("installation.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.replacen("server: 127.0.0.1 ", &format!("server: {database} "), 1);
        std::fs::write(&file, text).unwrap();
        dir
    }

    /// Run `steward status` until `done` accepts its output, or fail after two minutes.
    fn status_until(url: &str, daemon: &Daemon, done: impl Fn(&Output) -> bool) -> Output {
        let mut last = None;
        let found = within(Duration::from_secs(120), Duration::from_millis(250), || {
            let out = steward(&["status", "--url", url]);
            if done(&out) {
                return Some(out);
            }
            last = Some(out);
            None
        });
        found.unwrap_or_else(|| {
            let out = last.expect("steward status ran");
            panic!(
                "steward status never got there; last exit {:?}:\n{}{}\ndaemon log:\n{}",
                out.status.code(),
                text(&out.stdout),
                text(&out.stderr),
                daemon.log()
            )
        })
    }
    #[test]
    fn status_of_a_lab_daemon_shows_every_port_and_exits_3_when_degraded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = lab_desired_state(tmp.path(), "127.0.202.10");
        let api = "127.0.202.1:9464";
        let url = format!("http://{api}");
        let daemon = Daemon::start(
            &dir,
            tmp.path(),
            &[
                "--lab",
                "--listen",
                api,
                "--lab-first-address",
                "127.0.202.11",
            ],
        );

        // Converged: exit 0, every port of every service, aligned columns.
        let out = status_until(&url, &daemon, |o| o.status.code() == Some(0));
        let stdout = text(&out.stdout);
        let line = |kind: &str| {
            stdout
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(kind))
                .unwrap_or_else(|| panic!("no {kind} row in\n{stdout}"))
        };
        let admin = line("ADMIN");
        assert!(
            admin.contains("443, 80") && admin.contains("10443, 10080"),
            "{stdout}"
        );
        assert!(line("EMERGENCY").contains("7005, 7006"), "{stdout}");
        let header = stdout
            .lines()
            .find(|l| l.starts_with("SERVER") && l.contains("SERVICE"))
            .unwrap();
        let healthy = header.find("HEALTHY").unwrap();
        for kind in ["PSIS", "ADMIN", "EMERGENCY", "HL7"] {
            assert_eq!(line(kind).get(healthy..), Some("yes"), "{stdout}");
        }
        assert!(
            stdout.ends_with("all 11 services installed and healthy\n"),
            "{stdout}"
        );

        // `steward status | head -0`: quiet, 141.
        let out = steward_into_closed_pipe(&["status", "--url", &url]);
        assert_quiet_broken_pipe(&out, "status");

        // A broken commit: the daemon keeps the last good generation, status says so and
        // exits 3 (text and JSON alike).
        std::fs::write(
            dir.join("broken.yaml"),
            "apiVersion: steward/v1\nkind: Server\n",
        )
        .unwrap();
        let out = status_until(&url, &daemon, |o| o.status.code() == Some(3));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("1 problem:\n  desired state invalid"),
            "{stdout}"
        );
        let json = steward(&["status", "--url", &url, "--json"]);
        assert_eq!(json.status.code(), Some(3));
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(doc["valid"], false);
    }

    #[test]
    fn daemon_logs_to_a_file_without_colour_and_ends_with_a_readable_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start(
            &bundled_desired_state().canonicalize().unwrap(),
            tmp.path(),
            &["--listen", "127.0.203.1:9464"],
        );
        daemon.wait_log("API and dashboard on");
        assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
        let log = daemon.log();
        assert!(
            !log.contains('\u{1b}'),
            "ANSI escapes in a log file:\n{log}"
        );
        assert!(log.contains("controllers stopped"), "{log}");
        assert!(
            log.lines()
                .any(|l| l.contains("controller stopped:") && l.contains("reconciles succeeded")),
            "{log}"
        );
        for debug in ["RunReport {", "RunSummary {", "Shutdown }"] {
            assert!(
                !log.contains(debug),
                "Rust Debug output {debug:?} in\n{log}"
            );
        }
    }

    /// Every line of the daemon, its lab agents and their lab services is one JSON object.
    #[test]
    fn json_log_format_covers_the_daemon_and_everything_the_lab_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let api = "127.0.204.1:9464";
        let mut daemon = Daemon::start(
            &lab_desired_state(tmp.path(), "127.0.204.10"),
            tmp.path(),
            &[
                "--log-format",
                "json",
                "--lab",
                "--listen",
                api,
                "--lab-first-address",
                "127.0.204.11",
            ],
        );
        status_until(&format!("http://{api}"), &daemon, |o| {
            o.status.code() == Some(0)
        });
        assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

        let mut logs = vec![(daemon.log.clone(), daemon.log())];
        let lab = tmp.path().join("state/lab");
        for server in std::fs::read_dir(&lab).unwrap() {
            let server = server.unwrap().path();
            let agent = server.join("agent.log");
            logs.push((agent.clone(), std::fs::read_to_string(&agent).unwrap()));
            for service in std::fs::read_dir(server.join("state/services")).unwrap() {
                let path = service.unwrap().path().join("service.log");
                // The agent's own notes about the process ([steward-agent ...]) are the
                // service's install log, not log lines of a steward process.
                let lines: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.starts_with("[steward-agent "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                logs.push((path, lines));
            }
        }
        assert!(logs.len() > 3, "no lab logs found under {}", lab.display());
        for (path, content) in logs {
            assert!(!content.is_empty(), "{} is empty", path.display());
            for line in content.lines() {
                let doc: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", path.display()));
                assert!(
                    doc["level"].is_string() && doc["message"].is_string(),
                    "{}: {line}",
                    path.display()
                );
            }
        }
    }
}

// ----- lab options (`steward run --lab`): refused before anything starts -----

#[test]
fn run_refuses_a_resync_below_100ms() {
    for resync in ["0s", "50ms"] {
        let out = steward(&["run", "--lab", "--resync", resync]);
        assert_eq!(out.status.code(), Some(2), "--resync {resync}");
        let err = text(&out.stderr);
        assert!(err.contains("use at least 100ms"), "{err}");
    }
}

#[test]
fn run_refuses_a_lab_address_off_loopback() {
    let out = steward(&["run", "--lab", "--lab-first-address", "10.1.2.3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("10.1.2.3 is not a loopback address"), "{err}");
    let out = steward(&["run", "--lab", "--lab-first-address", "127.0.5.255"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ends in .0 or .255"));
}

#[test]
fn lab_kill_needs_a_lab_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let out = steward(&["lab", "kill", "../x", "HEALTH", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(2));
    let out = steward(&["lab", "kill", "app2", "HEALTH", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no lab server app2"),
        "{}",
        text(&out.stderr)
    );
}

/// Binds a loopback port: run it in a network namespace of its own (see the README).
#[test]
fn run_fails_fast_when_the_listen_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let out = steward(&[
        "run",
        "--lab",
        "--listen",
        &addr,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--desired-state",
        bundled_desired_state().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr) + &text(&out.stdout);
    assert!(said.contains(&format!("cannot listen on {addr}")), "{said}");
    let created: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        created.is_empty(),
        "nothing (CA, lab) is created before the address is known to be free: {created:?}"
    );
}

/// `steward validate DIR`, failing the test (instead of hanging it) if it does not exit.
/// The bound is a hang guard, not a speed goal.
fn validate_exits(dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["validate", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steward");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("steward validate {} did not exit", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn validate_reports_hostile_entries_as_located_errors_and_exits() {
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
        assert!(status.success());
    }

    // (what, how to make it, the error line expected on stdout)
    type Make = fn(&Path);
    let cases: [(&str, Make, &str); 8] = [
        (
            "a FIFO",
            |d| mkfifo(&d.join("servers/app3.yaml")),
            "servers/app3.yaml:1:1: error[unreadable]: is a FIFO",
        ),
        (
            "a socket",
            |d| {
                let l = std::os::unix::net::UnixListener::bind(d.join("servers/app3.yaml"));
                std::mem::forget(l.unwrap());
            },
            "servers/app3.yaml:1:1: error[unreadable]: is a socket",
        ),
        (
            "a link loop",
            |d| symlink(".", d.join("servers/loop")).unwrap(),
            "servers/loop:1:1: error[symlink]: symbolic link to a directory",
        ),
        (
            "a dangling link",
            |d| symlink("gone.yaml", d.join("servers/app3.yaml")).unwrap(),
            "servers/app3.yaml:1:1: error[unreadable]: dangling symbolic link",
        ),
        (
            "a link out of the directory",
            |d| symlink("/etc/passwd", d.join("passwd.yaml")).unwrap(),
            "passwd.yaml:1:1: error[symlink]: symbolic link leads outside",
        ),
        (
            "a symlinked directory",
            |d| symlink("servers", d.join("more")).unwrap(),
            "more:1:1: error[symlink]: symbolic link to a directory",
        ),
        (
            "a 50 MB value",
            |d| {
                let name = "n".repeat(50 << 20);
                let text = format!("apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {name}}}\n");
                std::fs::write(d.join("servers/app3.yaml"), text).unwrap();
            },
            "servers/app3.yaml:1:1: error[too-long]: file is 50 MiB",
        ),
        (
            "control characters",
            |d| {
                let text = "apiVersion: steward/v1\nkind: Server\nmetadata: {name: \"x\\nservers/app1.yaml:1:1: error[fake]: \\e[2J\"}\nspec:\n  hostname: app3.example.eng\n  certificate: {generate: true}\n";
                std::fs::write(d.join("servers/app3.yaml"), text).unwrap();
            },
            "servers/app3.yaml:3:18: error[invalid-name]: name `x\\nservers/app1.yaml:1:1: error[fake]: \\u{1b}[2J`",
        ),
    ];
    for (what, make, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&bundled_desired_state(), dir.path());
        make(dir.path());
        let out = validate_exits(dir.path());
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains(expected),
            "{what}: expected {expected:?} in\n{stdout}"
        );
        assert!(
            stdout
                .lines()
                .all(|l| l.contains(": error[") || l.contains(": warning[")),
            "{what}: a line that is not a diagnostic:\n{stdout}"
        );
        assert!(
            !stdout.contains('\u{1b}'),
            "{what}: terminal codes:\n{stdout:?}"
        );
        assert!(stdout.len() < 8 * 1024, "{what}: {} bytes", stdout.len());
    }
}

#[cfg(unix)]
#[test]
fn validate_reports_an_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        eprintln!("skipped: root reads a file whatever its mode (see the dangling-link case)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled_desired_state(), dir.path());
    let file = dir.path().join("servers/app2.yaml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = validate_exits(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("servers/app2.yaml:1:1: error[unreadable]: cannot open"),
        "{stdout}"
    );
}
