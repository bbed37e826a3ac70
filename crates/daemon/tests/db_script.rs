//! `steward db script [DIR]`: the DBA's provisioning T-SQL from the desired state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use steward_testkit::copy_dir;

fn steward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        // The script never resolves secrets: a value here must not show up anywhere.
        .env("PS_DB_PASSWORD", "installer-S3cret-Value")
        .output()
        .expect("run steward")
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn prints_the_provisioning_batches_for_the_bundled_database() {
    let out = steward(&["db", "script", bundled().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let svc = "ImprivataPatientSecureServices_PatientSecure";
    assert!(stdout.contains(
        "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'PatientSecure') CREATE DATABASE [PatientSecure];\nGO\n"
    ), "{stdout}");
    assert!(stdout.contains(&format!(
        "CREATE LOGIN [{svc}] WITH PASSWORD = N'$(ServicePassword)';\nGO\n"
    )));
    assert!(stdout.contains(&format!("ALTER ROLE [executor] ADD MEMBER [{svc}];\nGO\n")));
    assert_eq!(stdout.matches("\nGO\n").count(), 15, "{stdout}");
    for out in [&stdout, &text(&out.stderr)] {
        assert!(!out.contains("installer-S3cret-Value"));
        assert!(!out.contains("env:PS_DB_PASSWORD"));
    }
}

#[test]
fn hostile_database_names_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled(), dir.path());
    let file = dir.path().join("installation.yaml");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("name: PatientSecure", "name: \"x]; DROP DATABASE y; --\"");
    std::fs::write(&file, yaml).unwrap();
    let out = steward(&["db", "script", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("CREATE DATABASE [x]]; DROP DATABASE y; --];\nGO\n"),
        "{stdout}"
    );
    assert!(stdout.contains("USE [x]]; DROP DATABASE y; --];\nGO\n"));
    assert!(
        stdout.contains("CREATE LOGIN [ImprivataPatientSecureServices_x]]; DROP DATABASE y; --]")
    );
}

#[test]
fn an_invalid_directory_prints_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled(), dir.path());
    let file = dir.path().join("installation.yaml");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("user: ps_installer", "usr: ps_installer");
    std::fs::write(&file, yaml).unwrap();
    let out = steward(&["db", "script", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("unknown-field"),
        "{}",
        text(&out.stderr)
    );
}
