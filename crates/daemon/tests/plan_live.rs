//! `steward plan --live` against a running lab daemon: nothing to do once converged, and a
//! port change in a candidate directory shows as exactly one reinstall.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use steward_testkit::copy_dir;

const API: &str = "127.0.201.1:9464";
const LAB: &str = "127.0.201.11";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM, so the daemon stops its lab agents and services too.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
    }
}

fn steward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_steward"))
}

#[test]
fn live_plan_is_empty_when_converged_and_shows_a_pending_port_change() {
    let tmp = tempfile::tempdir().unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state");
    let live_dir = tmp.path().join("live");
    copy_dir(&bundled, &live_dir);
    let log = std::fs::File::create(tmp.path().join("daemon.log")).unwrap();
    let _daemon = Daemon(
        steward()
            .args(["run", "--lab", "--listen", API, "--lab-first-address", LAB])
            .arg("--desired-state")
            .arg(&live_dir)
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{API}");
    // Poll until the live plan has nothing left to do (the fleet converged).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = steward()
            .args(["plan", "--live", "--url", &url])
            .arg(&live_dir)
            .output()
            .unwrap();
        if out.status.code() == Some(0) {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Plan: 0 to add, 0 to change, 0 to remove."),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never converged; last plan:\n{}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(tmp.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A candidate directory (not the live one) with EMPI moved: one reinstall, exit 2.
    let candidate = tmp.path().join("candidate");
    copy_dir(&live_dir, &candidate);
    let app2 = candidate.join("servers/app2.yaml");
    let text = std::fs::read_to_string(&app2)
        .unwrap()
        .replace("port: 7019", "port: 7029");
    std::fs::write(&app2, text).unwrap();
    let out = steward()
        .args(["plan", "--live", "--json", "--url", &url])
        .arg(&candidate)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes: Vec<&serde_json::Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            !matches!(
                s["action"].as_str(),
                Some("checkDatabase" | "checkDirectory")
            )
        })
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["action"], "reinstall");
    assert_eq!(changes[0]["service"], "EMPI");
    assert_eq!(changes[0]["ports"], serde_json::json!([7029]));

    // Without a daemon, --live is an error, not an empty plan.
    let out = steward()
        .args(["plan", "--live", "--url", "http://127.0.201.9:1"])
        .arg(&live_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
