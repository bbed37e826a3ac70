//! The database controller against a real TDS server (iridium_server, started on loopback
//! per test; `scripts/test-all.sh` installs it into `target/peers/bin`). Without it a test
//! fails under CI=true and is otherwise skipped with a reason.

use steward_agent::api::ServiceStatus;
use steward_model::{SecretRef, ServiceKind};
use steward_runtime::ReconcileError;
use steward_testkit::iridium::Iridium;

use super::*;
use crate::fakes::{fixture, headline, Call, Fixture};
use crate::reconciler::reconcile_and_record;
use crate::service_key::ServiceKey;

const PASSWORD: &str = "Iridium-Ctl-Pw1!";

/// Points the fixture's installation at `server`'s database `name`, the password read
/// from a file, and returns the directory holding that file.
fn point_at(fx: &Fixture, server: &Iridium, name: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut s = fx.current();
    let db = &mut s.installation.database;
    db.server = "127.0.0.1".into();
    db.port = server.port;
    db.name = name.into();
    db.user = "sa".into();
    db.password_ref = SecretRef::parse(&format!("file:{}", file.display())).unwrap();
    db.encrypt = false;
    db.service_login.name = format!("ImprivataPatientSecureServices_{name}");
    fx.apply(s);
    dir
}

/// An iridium_server and a fixture fleet (`servers`) whose installation points at its
/// database `name` with `password`; the directory holding the password file. `None`
/// when iridium_server is not installed (and the test is skipped).
fn against(
    servers: &[(&str, &[&str])],
    name: &str,
    password: &str,
) -> Option<(Iridium, Fixture, tempfile::TempDir)> {
    let server = Iridium::start(PASSWORD)?;
    let fx = fixture(servers);
    let dir = point_at(&fx, &server, name, password);
    Some((server, fx, dir))
}

/// Asserts that `reason` heads the conditions and its message says `says`.
fn assert_headline(db: &crate::status::DatabaseStatus, reason: &str, says: &str) {
    assert_eq!(headline(&db.conditions), reason);
    let condition = db.conditions.iter().find(|c| c.reason == reason).unwrap();
    assert!(condition.message.contains(says), "{}", condition.message);
}

async fn check(fx: &Fixture) -> Result<Action, ControllerError> {
    reconcile_and_record::<Databases>((), Reason::Resync, fx.ctx.clone()).await
}

fn status(fx: &Fixture) -> crate::status::DatabaseStatus {
    fx.ctx.store.status().database.expect("a database status")
}

async fn install_psis(fx: &Fixture) -> String {
    fx.run::<crate::certificate::Certificates>("app1".into())
        .await
        .unwrap();
    let key = ServiceKey::new("app1", ServiceKind::Psis);
    fx.run::<Services>(key.clone()).await.unwrap();
    let status = fx
        .ctx
        .store
        .resource("service", &key.to_string())
        .expect("service status");
    headline(&status.conditions)
}

#[tokio::test]
async fn a_present_database_opens_the_gate_and_missing_login_pieces_only_degrade() {
    let Some((_server, fx, _dir)) =
        against(&[("app1", &["PSIS", "PSWS"])], "iridium_sql", PASSWORD)
    else {
        return;
    };
    assert!(!fx.ctx.store.database_ready(), "unknown until checked");

    check(&fx).await.unwrap();
    let db = status(&fx);
    assert_eq!(db.up, Some(true));
    assert!(
        db.version.as_deref().is_some_and(|v| !v.is_empty()),
        "{db:?}"
    );
    // iridium has no service login: every piece of it is listed, none blocks.
    assert!(db.missing.contains(&"service_login".to_owned()), "{db:?}");
    assert!(db.missing.contains(&"role_db_owner".to_owned()), "{db:?}");
    assert!(!db.missing.contains(&"database".to_owned()));
    assert_headline(&db, "ServiceLoginIncomplete", "membership of db_owner");

    assert_eq!(install_psis(&fx).await, "WaitingForHealthCheck");
    assert_eq!(fx.agent("app1").calls(Call::Install), 1);
    assert_eq!(fx.gauge("steward_database_up", &[]), Some(1.0));
    let version = db.version.unwrap();
    assert_eq!(
        fx.gauge("steward_database_info", &[("version", version.as_str())]),
        Some(1.0)
    );
}

#[tokio::test]
async fn services_are_not_installed_while_the_database_is_missing() {
    let Some((_server, fx, _dir)) =
        against(&[("app1", &["PSIS", "PSWS"])], "PatientSecure", PASSWORD)
    else {
        return;
    };

    check(&fx).await.unwrap();
    let db = status(&fx);
    assert_eq!(db.up, Some(false));
    assert_eq!(db.missing.first().map(String::as_str), Some("database"));
    assert_headline(&db, "DatabaseMissing", "steward db script");

    assert_eq!(install_psis(&fx).await, "WaitingForDatabase");
    assert_eq!(fx.agent("app1").calls(Call::Install), 0);
    assert_eq!(fx.gauge("steward_database_up", &[]), Some(0.0));
}

#[tokio::test]
async fn a_refused_login_is_login_failed_and_the_password_shows_nowhere() {
    let wrong = "Wr0ng-Pw-Marker-7731";
    let Some((_server, fx, _dir)) = against(&[("app1", &["PSIS"])], "iridium_sql", wrong) else {
        return;
    };

    let error = check(&fx).await.unwrap_err();
    assert_eq!(error.metric_label(), "database_login_failed");
    let db = status(&fx);
    assert_eq!(db.up, Some(false));
    assert_eq!(headline(&db.conditions), "LoginFailed");
    let status_json = serde_json::to_string(&fx.ctx.store.status()).unwrap();
    let metrics: Vec<u8> = fx.registry.encode().concat();
    for (what, text) in [
        ("error", error.to_string()),
        ("debug", format!("{error:?}")),
        ("status and events", status_json),
        ("metrics", String::from_utf8(metrics).unwrap()),
    ] {
        assert!(
            !text.contains(wrong),
            "the password is in the {what}: {text}"
        );
    }
    assert_eq!(install_psis(&fx).await, "WaitingForDatabase");

    // The reference is read at every pass: a corrected password file is picked up by the
    // next one, without a restart or a new generation.
    std::fs::write(_dir.path().join("db-password"), PASSWORD).unwrap();
    check(&fx).await.unwrap();
    assert_eq!(status(&fx).up, Some(true));
}

#[test]
fn the_connection_follows_the_desired_state() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "installer-pw\n").unwrap();
    let mut spec = fx.current().installation.database;
    spec.server = "sql1.example.eng\\PS".into();
    spec.port = 14330;
    spec.password_ref = SecretRef::parse("file:pw").unwrap();
    spec.trust = vec!["certs/sql-ca.pem".into(), "/etc/ssl/corp.pem".into()];
    spec.service_login.name = "ps_services".into();
    let config = config(&spec, dir.path(), None).unwrap();
    assert_eq!(config.server.host, "sql1.example.eng");
    assert_eq!(config.server.instance.as_deref(), Some("PS"));
    assert_eq!(config.port, Some(14330));
    assert!(config.encrypt, "TLS unless the files say encrypt: false");
    assert_eq!(config.password.expose(), "installer-pw");
    assert_eq!(
        config.trust,
        [
            dir.path().join("certs/sql-ca.pem"),
            "/etc/ssl/corp.pem".into()
        ]
    );
    assert_eq!(config.service_login.name, "ps_services");
    assert!(
        config.service_login.password.is_none(),
        "verification never reads it"
    );
    assert!(!format!("{config:?}").contains("installer-pw"));
}

#[tokio::test]
async fn a_database_that_goes_down_degrades_uninstalls_nothing_and_comes_back() {
    let Some((mut server, fx, _dir)) = against(&[("app1", &["PSIS"])], "iridium_sql", PASSWORD)
    else {
        return;
    };
    check(&fx).await.unwrap();
    install_psis(&fx).await;
    assert_eq!(fx.agent("app1").calls(Call::Install), 1);

    server.stop();
    let error = check(&fx).await.unwrap_err();
    assert_eq!(error.reason(), "Unreachable");
    assert_eq!(status(&fx).up, Some(false));
    assert_eq!(headline(&status(&fx).conditions), "Unreachable");
    assert_eq!(fx.gauge("steward_database_up", &[]), Some(0.0));
    // The installed service stays: nothing is uninstalled or reinstalled for it.
    fx.agent("app1")
        .set_status(ServiceKind::Psis, ServiceStatus::Running);
    fx.run::<Services>(ServiceKey::new("app1", ServiceKind::Psis))
        .await
        .unwrap();
    assert_eq!(fx.agent("app1").calls(Call::Uninstall), 0);
    assert_eq!(fx.agent("app1").calls(Call::Install), 1);

    // Back on the same port: the same pool logs in again, no restart of anything.
    server.spawn();
    check(&fx).await.unwrap();
    assert_eq!(status(&fx).up, Some(true));
    assert_eq!(headline(&status(&fx).conditions), "ServiceLoginIncomplete");
    assert_eq!(fx.gauge("steward_database_up", &[]), Some(1.0));
}

#[tokio::test]
async fn create_true_provisions_what_is_missing_and_monitor_mode_never_does() {
    let Some((_server, fx, dir)) = against(&[("app1", &["PSIS"])], "PatientSecure", PASSWORD)
    else {
        return;
    };
    let service_password = "Svc-Pw-Marker-5521";
    let file = dir.path().join("svc-password");
    std::fs::write(&file, service_password).unwrap();
    let mut s = fx.current();
    s.installation.database.create = true;
    s.installation.database.service_login.password_ref =
        Some(SecretRef::parse(&format!("file:{}", file.display())).unwrap());
    fx.apply(s);

    // iridium has no CREATE DATABASE: the provisioning runs and its refusal is reported
    // by step, without the service password.
    let error = check(&fx).await.unwrap_err();
    assert_eq!(error.reason(), "ProvisioningFailed");
    assert_eq!(error.metric_label(), "database_provisioning");
    assert!(error.to_string().contains("create the database"), "{error}");
    let db = status(&fx);
    assert_eq!(headline(&db.conditions), "ProvisioningFailed");
    assert_eq!(db.missing.first().map(String::as_str), Some("database"));
    let everything = format!(
        "{error} {error:?} {}",
        serde_json::to_string(&fx.ctx.store.status()).unwrap()
    );
    assert!(!everything.contains(service_password), "{everything}");
    assert!(!everything.contains(PASSWORD), "{everything}");

    fx.set_mode(steward_model::resource::Mode::Monitor);
    check(&fx).await.unwrap();
    let db = status(&fx);
    assert_headline(&db, "DatabaseMissing", "mode: monitor creates nothing");
}

#[tokio::test]
async fn an_unset_password_reference_is_named_not_guessed() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    let mut s = fx.current();
    s.installation.database.password_ref =
        SecretRef::parse("env:STEWARD_TEST_UNSET_DB_PASSWORD").unwrap();
    fx.apply(s);
    let error = check(&fx).await.unwrap_err();
    assert_eq!(error.reason(), "SecretUnresolved");
    assert!(
        error.to_string().contains("STEWARD_TEST_UNSET_DB_PASSWORD"),
        "{error}"
    );
    assert_eq!(headline(&status(&fx).conditions), "SecretUnresolved");
    assert!(!fx.ctx.store.database_ready());
}
