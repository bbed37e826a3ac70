//! Against a real TDS server (iridium_server on loopback): connect, version, login failure,
//! database present and missing, verification from its sys views, provisioning refusals,
//! bounded results, and the pool after a restart.
//!
//! Run inside a private network namespace when other builds share the machine
//! (for example under `unshare -n`), so test ports never collide with other builds.

mod support;

use steward_database::grants::{Role, ServerPermission};
use steward_database::provision::{self, ProvisionError};
use steward_database::{server_version, verify, Connection, Error, Missing, Password, Pool, Stage};
use support::{connected, Iridium};

const SVC_PASSWORD: &str = "Svc-Sentinel-Pw-4711";

#[tokio::test]
async fn connects_and_reads_the_server_version() {
    let Some((_server, mut conn)) = connected("master").await else {
        return;
    };
    let version = server_version(&mut conn).await.unwrap();
    println!("iridium says: {version:?}");
    assert!(!version.version.is_empty());
    assert!(
        !version.version.contains('\n'),
        "only the first line of @@VERSION"
    );
    // A verification pass carries the same version.
    let v = verify(&mut conn, "master", "ImprivataPatientSecureServices_master")
        .await
        .unwrap();
    assert_eq!(v.version, version);
}

#[tokio::test]
async fn a_sys_view_the_server_lacks_is_reported_precisely() {
    let Some((_server, mut conn)) = connected("master").await else {
        return;
    };
    // `sa` exists, so its server permissions are read from sys.server_permissions, which
    // iridium does not have: a precise refusal, not a wrong verdict.
    let err = verify(&mut conn, "master", "sa").await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { code: 208, message, .. } if message.contains("server_permissions")),
        "{err:?}"
    );
    // A refused statement leaves the session usable.
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_login_failed_and_never_echoed() {
    let Some(server) = Iridium::start() else {
        return;
    };
    let mut config = server.config("master");
    let wrong = "Wrong-Sentinel-Pw-0815";
    config.password = Password::new(wrong);
    let err = Connection::open(&config)
        .await
        .err()
        .expect("login must fail");
    assert_eq!(err.label(), "login_failed", "{err}");
    assert!(matches!(&err, Error::LoginFailed { user, .. } if user == "sa"));
    for text in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(support::PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn the_database_is_present_or_missing_by_our_own_check() {
    let Some(server) = Iridium::start() else {
        return;
    };
    // iridium accepts a login naming any database, so only sys.databases can tell.
    let mut conn = Connection::open(&server.config("PatientSecure"))
        .await
        .unwrap();
    let present = verify(&mut conn, "master", "ImprivataPatientSecureServices_master")
        .await
        .unwrap();
    assert!(present.database_exists(), "{present:?}");
    let missing = verify(
        &mut conn,
        "PatientSecure",
        "ImprivataPatientSecureServices_PatientSecure",
    )
    .await
    .unwrap();
    assert!(!missing.database_exists());
    assert_eq!(missing.missing[0], Missing::Database);
}

#[tokio::test]
async fn verification_lists_each_missing_piece_from_the_sys_views() {
    let Some((_server, mut conn)) = connected("master").await else {
        return;
    };

    // No such login; the database exists but has no such user, no executor role, no
    // memberships: everything is listed, typed.
    let v = verify(&mut conn, "master", "ImprivataPatientSecureServices_master")
        .await
        .unwrap();
    let mut expected = vec![
        Missing::ServiceLogin,
        Missing::ServerPermission(ServerPermission::ConnectSql),
        Missing::ServerPermission(ServerPermission::ViewServerState),
        Missing::DatabaseUser,
        Missing::ViewDatabaseState,
        Missing::ExecutorRole,
        Missing::ExecutorExecute,
    ];
    expected.extend(Role::ALL.map(Missing::RoleMember));
    assert_eq!(v.missing, expected);

    // `guest` is a user in iridium's master (sys.database_principals) but not a login: the
    // user is found, and what it lacks is read from sys.database_role_members and
    // sys.database_permissions.
    let v = verify(&mut conn, "master", "guest").await.unwrap();
    assert!(
        !v.missing.contains(&Missing::DatabaseUser),
        "{:?}",
        v.missing
    );
    assert!(v.missing.contains(&Missing::ServiceLogin));
    assert!(v.missing.contains(&Missing::ViewDatabaseState));
    assert!(v.missing.contains(&Missing::RoleMember(Role::DbOwner)));
    let labels: Vec<_> = v.missing.iter().map(Missing::label).collect();
    println!("guest in master lacks: {labels:?}");
}

#[tokio::test]
async fn hostile_names_are_only_ever_parameters_or_quoted() {
    let Some((_server, mut conn)) = connected("master").await else {
        return;
    };
    for (db, login) in [
        ("x]; DROP DATABASE y; --", "svc'; DROP LOGIN sa; --"),
        ("Zürich 日本 😀", "Ñandú_サービス"),
        ("master'--", "sa]"),
    ] {
        let v = verify(&mut conn, db, login).await.unwrap();
        assert_eq!(v.missing[0], Missing::Database, "{db}");
        assert!(v.missing.contains(&Missing::ServiceLogin), "{login}");
    }
    // The session is intact and master is still there.
    conn.ping().await.unwrap();
    let v = verify(&mut conn, "master", "svc").await.unwrap();
    assert!(v.database_exists());
}

#[tokio::test]
async fn provisioning_reports_the_refused_step_without_the_password() {
    let Some(server) = Iridium::start() else {
        return;
    };
    let mut config = server.config("PatientSecure");
    config.service_login.password = Some(Password::new(SVC_PASSWORD));
    // iridium has no CREATE DATABASE/LOGIN: a real refusal by a real server.
    let err = provision::provision(&config).await.unwrap_err();
    println!("iridium refused: {err}");
    let ProvisionError::Failed { step, .. } = &err else {
        panic!("{err:?}")
    };
    // USE [master] ran; CREATE DATABASE is what iridium cannot do.
    assert_eq!(*step, provision::Step::CreateDatabase);
    assert_eq!(err.label(), "rejected");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(SVC_PASSWORD), "{text}");
        assert!(!text.contains(support::PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn a_huge_result_costs_one_bounded_read() {
    let Some((_server, mut conn)) = connected("master").await else {
        return;
    };
    conn.batch("CREATE TABLE dbo.many (n int NOT NULL)")
        .await
        .unwrap();
    let values: Vec<String> = (0..500).map(|n| format!("({n})")).collect();
    conn.batch(&format!(
        "INSERT INTO dbo.many (n) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    let err = conn
        .rows("SELECT n FROM dbo.many", &[], 64)
        .await
        .unwrap_err();
    assert_eq!(err.label(), "protocol", "{err}");
    assert!(err.to_string().contains("more than the 64 rows"), "{err}");
}

#[tokio::test]
async fn the_pool_recovers_after_the_server_restarts() {
    let Some(mut server) = Iridium::start() else {
        return;
    };
    let pool = Pool::new(server.config("master"));
    pool.verify().await.unwrap();
    assert_eq!(pool.size(), 1);

    server.stop();
    let err = pool.verify().await.unwrap_err();
    assert_eq!(err.label(), "unreachable", "{err}");

    server.restart();
    // The idle connection from before the restart fails its SELECT 1 and is replaced.
    let v = pool.verify().await.unwrap();
    assert!(v.database_exists());
    assert_eq!(pool.size(), 1);
}

/// iridium with a certificate from a throwaway CA (its TLS login).
fn tls_server(dir: &std::path::Path) -> Option<(Iridium, std::path::PathBuf)> {
    let ca = steward_pki::CertificateAuthority::init(dir.join("ca")).unwrap();
    let issued = ca.issue_agent("127.0.0.1", &[]).unwrap();
    let (cert, key) = issued.write_pair(dir, "sql").unwrap();
    let server = Iridium::start_with(vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ])?;
    Some((server, ca.cert_path()))
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_tls_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, _)) = tls_server(dir.path()) else {
        return;
    };
    let mut config = server.config("master");
    config.encrypt = true;
    let err = Connection::open(&config).await.err().expect("untrusted");
    assert_eq!(err.label(), "tls_untrusted", "{err}");
}

#[tokio::test]
async fn a_trust_file_makes_the_certificate_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, ca)) = tls_server(dir.path()) else {
        return;
    };
    let mut config = server.config("master");
    config.encrypt = true;
    config.trust = vec![ca];
    // The handshake verifies against the trust file. iridium's TLS then breaks after the
    // handshake with tiberius 0.13 (a known iridium quirk), which is not a trust problem.
    match Connection::open(&config).await {
        Ok(mut conn) => conn.ping().await.unwrap(),
        Err(err) => {
            println!("after a trusted handshake: {err}");
            assert_eq!(err.label(), "protocol", "{err}");
        }
    }
}

#[tokio::test]
async fn a_full_pool_waits_a_bounded_time() {
    let Some(server) = Iridium::start() else {
        return;
    };
    let mut config = server.config("master");
    config.pool_size = 1;
    config.timeouts.pool_wait = std::time::Duration::from_millis(200);
    let pool = Pool::new(config);
    let held = pool.get().await.unwrap();
    let err = pool.get().await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::Timeout {
                stage: Stage::PoolWait,
                ..
            }
        ),
        "{err}"
    );
    drop(held);
    let _again = pool.get().await.unwrap();
}
