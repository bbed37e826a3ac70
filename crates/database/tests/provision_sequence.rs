//! The provisioning sequence, recorded call by call.
//!
//! `Recorder` implements `Execute` only to capture what would be sent, in order; it answers
//! nothing a server would (the real server checks are in `iridium.rs`, the grammar checks in
//! `tsql_parse.rs`).

use steward_database::grants::{Role, ServerPermission};
use steward_database::provision::{apply, plan, script, Execute, ProvisionError, Statement, Step};
use steward_database::Error;

#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    /// Fail the Nth call (1-based), like a server refusing that statement.
    fail_at: Option<usize>,
}

impl Execute for Recorder {
    async fn execute(&mut self, statement: &Statement) -> Result<(), Error> {
        self.calls.push(statement.to_string());
        if self.fail_at == Some(self.calls.len()) {
            return Err(Error::Rejected {
                address: "db:1433".into(),
                code: 15247,
                message: "User does not have permission to perform this action.".into(),
            });
        }
        Ok(())
    }
}

fn run(database: &str, login: &str) -> Vec<String> {
    let statements = plan(database, login).unwrap();
    let mut recorder = Recorder::default();
    let ran = block_on(apply(&mut recorder, &statements)).unwrap();
    assert_eq!(ran, statements.len());
    recorder.calls
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

const SVC: &str = "ImprivataPatientSecureServices_PatientSecure";

#[test]
fn provisioning_runs_the_vendor_setup_in_order() {
    let member = |role: &str| {
        format!(
            "IF NOT EXISTS (SELECT 1 FROM sys.database_role_members AS m \
             JOIN sys.database_principals AS r ON r.principal_id = m.role_principal_id \
             JOIN sys.database_principals AS u ON u.principal_id = m.member_principal_id \
             WHERE r.name = N'{role}' AND u.name = N'{SVC}') ALTER ROLE [{role}] ADD MEMBER [{SVC}];"
        )
    };
    let expected = vec![
        "USE [master];".to_owned(),
        "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'PatientSecure') CREATE DATABASE [PatientSecure];".into(),
        format!("IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'{SVC}') CREATE LOGIN [{SVC}] WITH PASSWORD = N'$(ServicePassword)';"),
        format!("GRANT CONNECT SQL TO [{SVC}];"),
        format!("GRANT VIEW SERVER STATE TO [{SVC}];"),
        "USE [PatientSecure];".into(),
        format!("IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'{SVC}') CREATE USER [{SVC}] FOR LOGIN [{SVC}];"),
        format!("GRANT VIEW DATABASE STATE TO [{SVC}];"),
        "IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'executor' AND type = 'R') CREATE ROLE [executor];".into(),
        "GRANT EXECUTE TO [executor];".into(),
        member("db_datareader"),
        member("db_datawriter"),
        member("db_ddladmin"),
        member("db_owner"),
        member("executor"),
    ];
    assert_eq!(run("PatientSecure", SVC), expected);
}

#[test]
fn steps_name_every_vendor_piece_once() {
    let steps: Vec<Step> = plan("PS", "svc")
        .unwrap()
        .iter()
        .map(Statement::step)
        .collect();
    for permission in ServerPermission::ALL {
        assert_eq!(
            steps
                .iter()
                .filter(|s| **s == Step::GrantServer(permission))
                .count(),
            1
        );
    }
    for role in Role::ALL {
        assert_eq!(
            steps
                .iter()
                .filter(|s| **s == Step::AddRoleMember(role))
                .count(),
            1
        );
    }
    // The executor role exists and holds EXECUTE before anyone is added to it.
    let pos = |step| steps.iter().position(|s| *s == step).unwrap();
    assert!(pos(Step::CreateExecutorRole) < pos(Step::GrantExecuteToExecutor));
    assert!(pos(Step::GrantExecuteToExecutor) < pos(Step::AddRoleMember(Role::Executor)));
    // The login exists before its user, and server grants run in master.
    assert!(pos(Step::CreateLogin) < pos(Step::CreateUser));
    assert!(pos(Step::GrantServer(ServerPermission::ViewServerState)) < pos(Step::UseDatabase));
}

#[test]
fn every_statement_is_safe_to_run_again() {
    let first = run("PatientSecure", SVC);
    // A second run sends exactly the same statements: nothing depends on what ran before.
    assert_eq!(run("PatientSecure", SVC), first);
    for (statement, sql) in plan("PatientSecure", SVC).unwrap().iter().zip(&first) {
        let guarded = sql.starts_with("IF NOT EXISTS (SELECT 1 FROM sys.");
        match statement.step() {
            // Switching databases and granting a held permission change nothing.
            Step::UseMaster | Step::UseDatabase => assert!(sql.starts_with("USE ["), "{sql}"),
            Step::GrantServer(_) | Step::GrantViewDatabaseState | Step::GrantExecuteToExecutor => {
                assert!(sql.starts_with("GRANT "), "{sql}")
            }
            // Everything that creates or adds is skipped when already there.
            _ => assert!(guarded, "{sql}"),
        }
    }
}

#[test]
fn an_interrupted_run_names_its_step_and_a_rerun_finishes_it() {
    let statements = plan("PatientSecure", SVC).unwrap();
    let mut recorder = Recorder {
        fail_at: Some(4),
        ..Recorder::default()
    };
    let err = block_on(apply(&mut recorder, &statements)).unwrap_err();
    assert_eq!(recorder.calls.len(), 4, "nothing runs after a failure");
    match &err {
        ProvisionError::Failed { index, step, .. } => {
            assert_eq!(*index, 4);
            assert_eq!(*step, Step::GrantServer(ServerPermission::ConnectSql));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.label(), "rejected");
    assert!(err
        .to_string()
        .starts_with("step 4 (grant CONNECT SQL to the service login) failed"));
    // Re-running from the start is the recovery: the same full sequence.
    assert_eq!(run("PatientSecure", SVC).len(), statements.len());
}

#[test]
fn hostile_names_stay_one_quoted_name() {
    let db = "x]; DROP DATABASE y; --";
    let login = "svc'; DROP LOGIN sa; --";
    let calls = run(db, login);
    assert_eq!(
        calls[1],
        "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'x]; DROP DATABASE y; --') CREATE DATABASE [x]]; DROP DATABASE y; --];"
    );
    assert_eq!(
        calls[2],
        "IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'svc''; DROP LOGIN sa; --') CREATE LOGIN [svc'; DROP LOGIN sa; --] WITH PASSWORD = N'$(ServicePassword)';"
    );
    assert_eq!(calls[5], "USE [x]]; DROP DATABASE y; --];");
}

#[test]
fn unusable_names_are_refused_before_anything_runs() {
    assert!(matches!(
        plan("", "svc"),
        Err(ProvisionError::InvalidName { .. })
    ));
    assert!(matches!(
        plan("PS", &"s".repeat(129)),
        Err(ProvisionError::InvalidName { .. })
    ));
    assert!(matches!(
        plan("PS\nGO", "svc"),
        Err(ProvisionError::InvalidName { .. })
    ));
    // sqlcmd would substitute `$(...)` even inside brackets: the script refuses such names.
    let err = script("PS$(ServicePassword)", "svc").unwrap_err();
    assert_eq!(err.label(), "sqlcmd_variable");
    // The statements themselves are fine for a direct connection.
    assert!(plan("PS$(ServicePassword)", "svc").is_ok());
}

#[test]
fn the_script_is_the_plan_in_go_batches_with_a_sqlcmd_variable() {
    let text = script("PatientSecure", SVC).unwrap();
    let statements: Vec<String> = plan("PatientSecure", SVC)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let batches: Vec<String> = text
        .split("\nGO\n")
        .map(|b| {
            b.lines()
                .filter(|l| !l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|b| !b.is_empty())
        .collect();
    assert_eq!(batches, statements);
    assert!(text.contains("N'$(ServicePassword)'"));
    assert!(text.ends_with("GO\n"));
}
