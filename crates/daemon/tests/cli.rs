//! The `steward` binary's validate / plan / schema commands: output format and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .output()
        .expect("run steward")
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bundled_state_validates_with_warnings_only() {
    let out = steward(&["validate", bundled().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().all(|l| l.contains(": warning[")), "{stdout}");
}

#[test]
fn invalid_state_exits_1_with_located_errors_and_json() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled(), dir.path());
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
    let out = steward(&["plan", bundled().to_str().unwrap()]);
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

    let out = steward(&["plan", bundled().to_str().unwrap(), "--json"]);
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
    copy_dir(&bundled(), dir.path());
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
        ["Installation", "Server", "ActiveDirectory", "HealthCheck"]
    );
    let server = &schema["oneOf"][1];
    assert_eq!(server["additionalProperties"], false);
    let rendered = out.stdout.len();
    assert!(
        rendered > 2000,
        "schema suspiciously small: {rendered} bytes"
    );
}
