//! `steward plan --live` against a running lab daemon: nothing to do once converged, and a
//! port change in a candidate directory shows as exactly one reinstall.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use steward_testkit::copy_dir;
use steward_testkit::lab::LabDaemon;

/// The lab's number: its API is on 127.0.201.1:9464.
const LAB_NUMBER: u8 = 201;

fn steward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_steward"))
}

#[test]
fn live_plan_is_empty_when_converged_and_shows_a_pending_port_change() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = LabDaemon::start(Path::new(env!("CARGO_BIN_EXE_steward")), LAB_NUMBER);
    let live_dir = lab.desired.clone();
    let url = format!("http://{}", lab.api);
    // Poll until the live plan has nothing left to do (the fleet converged).
    let plan = |dir: &Path| {
        steward()
            .args(["plan", "--live", "--url", &url])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = lab.wait_until("an empty live plan", Duration::from_secs(90), || {
        let out = plan(&live_dir);
        (out.status.code() == Some(0)).then_some(out)
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Plan: 0 to add, 0 to change, 0 to remove."),
        "{text}"
    );

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
