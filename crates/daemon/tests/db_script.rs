//! `steward db script [DIR]`: the DBA's provisioning T-SQL from the desired state.

use std::process::Output;
use steward_testkit::{bundled_desired_state, copy_dir, run, text};

fn steward(args: &[&str]) -> Output {
    // The script never resolves secrets: a value here must not show up anywhere.
    let secret = [("PS_DB_PASSWORD", "installer-S3cret-Value")];
    run(env!("CARGO_BIN_EXE_steward"), args, &secret)
}

#[test]
fn prints_the_provisioning_batches_for_the_bundled_database() {
    let out = steward(&["db", "script", bundled_desired_state().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The bundled (lab) desired state names a database iridium_server has.
    let svc = "ImprivataPatientSecureServices_iridium_sql";
    assert!(stdout.contains(
        "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'iridium_sql') CREATE DATABASE [iridium_sql];\nGO\n"
    ), "{stdout}");
    assert!(stdout.contains(&format!(
        "CREATE LOGIN [{svc}] WITH PASSWORD = N'$(ServicePassword)';\nGO\n"
    )));
    assert!(stdout.contains(&format!("ALTER ROLE [executor] ADD MEMBER [{svc}];\nGO\n")));
    assert_eq!(stdout.matches("\nGO\n").count(), 15, "{stdout}");
    for out in [&stdout, &text(&out.stderr)] {
        assert!(!out.contains("installer-S3cret-Value"));
        assert!(!out.contains("env:PS_DB_PASSWORD"));
        assert!(!out.contains("database-password"));
    }
}

#[test]
fn a_declared_service_login_name_is_the_one_created() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled_desired_state(), dir.path());
    let file = dir.path().join("installation.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap().replace(
        "    create: false\n",
        "    create: false\n    serviceLogin: {name: ps_services}\n",
    );
    std::fs::write(&file, yaml).unwrap();
    let out = steward(&["db", "script", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("CREATE LOGIN [ps_services] WITH PASSWORD = N'$(ServicePassword)';"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("ImprivataPatientSecureServices_"),
        "{stdout}"
    );
}

#[test]
fn hostile_database_names_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&bundled_desired_state(), dir.path());
    let file = dir.path().join("installation.yaml");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("name: iridium_sql", "name: \"x]; DROP DATABASE y; --\"");
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
    copy_dir(&bundled_desired_state(), dir.path());
    let file = dir.path().join("installation.yaml");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("user: sa ", "usr: sa ");
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
