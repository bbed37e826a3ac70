//! The lab's database: `steward run --lab` on the bundled desired state finds nothing on
//! the database's loopback address, starts a real TDS server there (iridium_server, with a
//! password it writes where the `file:` reference points), and the services install once
//! steward logs in and finds the database. Needs iridium-server (scripts/test-all.sh
//! installs it into target/peers/bin): fails under CI=true without it, else skipped.

mod support;

use std::path::Path;

use support::Lab;

fn iridium_installed() -> bool {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers/bin/iridium-server");
    if path.is_file() {
        return true;
    }
    steward_testkit::skip(
        "iridium-server is not installed (scripts/test-all.sh installs it into target/peers)",
    );
    false
}

#[test]
fn the_lab_serves_the_database_and_the_fleet_converges_on_it() {
    if !iridium_installed() {
        return;
    }
    let mut lab = Lab::start(160);
    let status = lab.wait_converged(1);
    let db = &status["database"];
    assert_eq!(db["server"], "127.0.160.10", "{db}");
    assert_eq!(db["name"], "iridium_sql");
    assert_eq!(db["up"], true, "{db}");
    assert!(
        db["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{db}"
    );
    assert_eq!(
        db["serviceLogin"],
        "ImprivataPatientSecureServices_iridium_sql"
    );
    // iridium has no logins or grants: every service-login piece is listed, Degraded, and
    // none of it held up the installs.
    let missing: Vec<&str> = db["missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(missing.contains(&"service_login"), "{db}");
    assert!(!missing.contains(&"database"), "{db}");
    assert!(db.get("note").is_none(), "{db}");
    let degraded = db["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "ServiceLoginIncomplete", "{db}");

    let metrics = lab.metrics();
    assert!(metrics.contains("\nsteward_database_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("steward_database_info{version=\""),
        "{metrics}"
    );

    // The lab wrote the password where the reference points, for the daemon alone.
    let file = lab.root().join(".steward/lab/database-password");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(password.len() >= 16);
    let everything = format!("{}{status}{metrics}", lab.log_all());
    assert!(!everything.contains(password.trim()), "the password leaked");

    // The database stops answering (SIGSTOP: its port still accepts, nothing answers):
    // steward reports it down within its command and login deadlines, and uninstalls
    // nothing; once it answers again the same daemon sees it up.
    let server = iridium_pid("127.0.160.10").expect("the lab's iridium-server process");
    let installed = installed_services(&status);
    signal(server, rustix::process::Signal::STOP);
    let down = lab.wait_status("the database reported down", |s| {
        s["database"]["up"] == false
    });
    assert_eq!(
        installed_services(&down),
        installed,
        "nothing was uninstalled"
    );
    assert!(lab.metrics().contains("\nsteward_database_up 0\n"));
    signal(server, rustix::process::Signal::CONT);
    let up = lab.wait_status("the database up again", |s| s["database"]["up"] == true);
    assert_eq!(installed_services(&up), installed);
    let events = up["events"].as_array().unwrap();
    assert!(
        !events.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Uninstall"))),
        "{events:?}"
    );
    lab.stop();
}

fn installed_services(status: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for server in status["servers"].as_array().unwrap() {
        for service in server["services"].as_array().unwrap() {
            if service["installed"] == true {
                out.push(format!("{}.{}", server["name"], service["kind"]));
            }
        }
    }
    out
}

/// The iridium-server the lab started on `host`.
fn iridium_pid(host: &str) -> Option<i32> {
    steward_testkit::processes::command_lines()
        .into_iter()
        .find_map(|(pid, args)| {
            let ours = args.first()?.ends_with("iridium-server")
                && args.windows(2).any(|w| w[0] == "--host" && w[1] == host);
            ours.then_some(pid)
        })
}

fn signal(pid: i32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a pid");
    rustix::process::kill_process(pid, signal).expect("signal iridium-server");
}
