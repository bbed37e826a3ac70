//! The manager against a scripted driver: the parts a real process driver cannot easily
//! be made to do on demand (files that refuse removal, failing starts).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::driver::RunHandle;

#[derive(Default)]
struct FakeDriver {
    running: Mutex<HashMap<ServiceKind, u32>>,
    next_pid: Mutex<u32>,
    stuck_files: Mutex<bool>,
    fail_start: Mutex<bool>,
    calls: Mutex<Vec<String>>,
}

impl FakeDriver {
    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn listen_ports(&self, declared: &[u16]) -> Vec<u16> {
        declared
            .iter()
            .map(|p| if *p < 1024 { p + 10_000 } else { *p })
            .collect()
    }
    async fn install(&self, def: &ServiceDefinition) -> Result<(), DriverError> {
        self.log(format!("install {} {}", def.kind, def.release));
        Ok(())
    }
    async fn configure(&self, kind: ServiceKind, _: &ConnectionStrings) -> Result<(), DriverError> {
        self.log(format!("configure {kind}"));
        Ok(())
    }
    async fn start(&self, def: &ServiceDefinition) -> Result<RunHandle, DriverError> {
        self.log(format!("start {}", def.kind));
        if *self.fail_start.lock().unwrap() {
            return Err(DriverError::Spawn {
                program: "svc".into(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let mut next = self.next_pid.lock().unwrap();
        *next += 1;
        self.running.lock().unwrap().insert(def.kind, *next);
        Ok(RunHandle {
            pid: *next,
            argv: vec!["svc".into()],
        })
    }
    async fn adopt(&self, _: &ServiceDefinition, _: &RunHandle) -> bool {
        false
    }
    async fn stop(&self, kind: ServiceKind) -> Result<(), DriverError> {
        self.log(format!("stop {kind}"));
        self.running.lock().unwrap().remove(&kind);
        Ok(())
    }
    async fn reload(&self, kind: ServiceKind) -> Result<bool, DriverError> {
        Ok(self.running.lock().unwrap().contains_key(&kind))
    }
    async fn status(&self, kind: ServiceKind) -> RunStatus {
        match self.running.lock().unwrap().get(&kind) {
            Some(pid) => RunStatus::Running { pid: *pid },
            None => RunStatus::NotStarted,
        }
    }
    async fn uninstall(&self, kind: ServiceKind) -> Result<(), DriverError> {
        self.stop(kind).await?;
        if *self.stuck_files.lock().unwrap() {
            return Err(DriverError::Remove {
                path: self.install_path(kind),
                source: std::io::ErrorKind::PermissionDenied.into(),
            });
        }
        Ok(())
    }
    fn install_path(&self, kind: ServiceKind) -> PathBuf {
        PathBuf::from("/srv").join(kind.as_str())
    }
    async fn logs(&self, _: ServiceKind, _: u64) -> Result<(String, bool), DriverError> {
        Ok((String::new(), false))
    }
    async fn cleanup_remnants(&self, _: &[ServiceKind]) -> RemnantCleanup {
        RemnantCleanup::default()
    }
    async fn detach(&self, _: bool) {}
}

struct Fixture {
    _dir: tempfile::TempDir,
    driver: Arc<FakeDriver>,
    manager: ServiceManager,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let issued = ca.issue_agent("app1.example.eng", &[]).unwrap();
    let (cert, key) = issued
        .write_pair(&dir.path().join("agent"), "agent")
        .unwrap();
    let driver = Arc::new(FakeDriver::default());
    let manager = ServiceManager::open(
        Layout::new(dir.path().join("state")),
        driver.clone(),
        "app1.example.eng".into(),
        (&cert, &key),
    )
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        driver,
        manager,
    }
}

impl Fixture {
    /// Installs `kind` on `ports` at `release`, not held.
    async fn install(
        &self,
        kind: ServiceKind,
        ports: &[u16],
        release: &str,
    ) -> Result<InstallResponse, AgentError> {
        self.manager
            .install(kind, request(ports, release), false)
            .await
    }
}

fn request(ports: &[u16], release: &str) -> InstallRequest {
    InstallRequest {
        ports: ports.to_vec(),
        drive: "c:".into(),
        release: release.into(),
        installed_by: "steward".into(),
    }
}

#[tokio::test]
async fn install_is_idempotent_and_reinstalls_on_change() {
    let f = fixture().await;
    let first = f
        .install(ServiceKind::Psis, &[7001], "6.12.1")
        .await
        .unwrap();
    assert_eq!(first.outcome, InstallOutcome::Created);
    assert_eq!(first.service.status, ServiceStatus::Running);
    assert_eq!(first.service.drive, "C:");
    assert_eq!(
        first.service.link,
        "https://app1.example.eng:7001/identityserver"
    );
    assert!(first.service.tls_thumbprint.is_some());
    assert_eq!(
        f.driver.calls(),
        ["install PSIS 6.12.1", "configure PSIS", "start PSIS"]
    );

    let again = f
        .install(ServiceKind::Psis, &[7001], "6.12.1")
        .await
        .unwrap();
    assert_eq!(again.outcome, InstallOutcome::Unchanged);
    assert!(f.driver.calls().is_empty());

    let upgrade = f
        .install(ServiceKind::Psis, &[7001], "6.13.0")
        .await
        .unwrap();
    assert_eq!(upgrade.outcome, InstallOutcome::Reinstalled);
    assert_eq!(upgrade.service.release, "6.13.0");
    assert_eq!(
        f.driver.calls(),
        [
            "stop PSIS",
            "install PSIS 6.13.0",
            "configure PSIS",
            "start PSIS"
        ]
    );

    f.driver.stop(ServiceKind::Psis).await.unwrap();
    f.driver.calls();
    let started = f
        .install(ServiceKind::Psis, &[7001], "6.13.0")
        .await
        .unwrap();
    assert_eq!(started.outcome, InstallOutcome::Started);
    assert_eq!(f.driver.calls(), ["start PSIS"]);
}

#[tokio::test]
async fn requests_are_validated_against_the_catalog() {
    let f = fixture().await;
    let bad = [
        (ServiceKind::Psis, request(&[7001, 7002], "1")),
        (ServiceKind::Emergency, request(&[7005], "1")),
        (ServiceKind::Admin, request(&[8443, 80], "1")),
        (ServiceKind::Emergency, request(&[7005, 7005], "1")),
        (ServiceKind::Psis, request(&[0], "1")),
        (ServiceKind::Psis, request(&[7001], "6.12 beta")),
        (
            ServiceKind::Psis,
            InstallRequest {
                drive: "CC".into(),
                ..request(&[7001], "1")
            },
        ),
        (
            ServiceKind::Psis,
            InstallRequest {
                installed_by: " ".into(),
                ..request(&[7001], "1")
            },
        ),
    ];
    for (kind, req) in bad {
        let err = f
            .manager
            .install(kind, req.clone(), false)
            .await
            .unwrap_err();
        assert_eq!(
            err.metric_label(),
            "invalid_request",
            "{kind} {req:?}: {err}"
        );
    }
    let admin = f
        .install(ServiceKind::Admin, &[443, 80], "1")
        .await
        .unwrap();
    assert_eq!(admin.service.listen_ports, [10443, 10080]);
    assert_eq!(
        admin.service.link,
        "https://app1.example.eng:10443/AdminConsole"
    );
    let hl7 = f.install(ServiceKind::Hl7, &[2244], "1").await.unwrap();
    assert_eq!(hl7.service.link, "mllp://app1.example.eng:2244");
    assert_eq!(hl7.service.tls_thumbprint, None);
}

#[tokio::test]
async fn a_port_can_serve_only_one_service() {
    let f = fixture().await;
    f.install(ServiceKind::Psis, &[7001], "1").await.unwrap();
    let err = f
        .install(ServiceKind::Psws, &[7001], "1")
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "conflict");
    assert!(err.to_string().contains("PSIS"), "{err}");
    // Its own port is no conflict on reinstall.
    f.install(ServiceKind::Psis, &[7001], "2").await.unwrap();
}

#[tokio::test]
async fn force_forgets_a_service_whose_files_remain() {
    let f = fixture().await;
    f.install(ServiceKind::Job, &[7010], "1").await.unwrap();
    *f.driver.stuck_files.lock().unwrap() = true;

    let err = f
        .manager
        .uninstall(ServiceKind::Job, false)
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "files_remain");
    assert_eq!(err.status_code(), axum::http::StatusCode::CONFLICT);
    let still = f.manager.get(ServiceKind::Job).await.unwrap();
    assert_eq!(still.status, ServiceStatus::Failed);

    let forced = f.manager.uninstall(ServiceKind::Job, true).await.unwrap();
    assert_eq!(forced.outcome, UninstallOutcome::Forgotten);
    assert_eq!(forced.remnants, ["/srv/JOB"]);
    assert!(f.manager.list().await.is_empty());
    let err = f
        .manager
        .uninstall(ServiceKind::Job, true)
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "not_installed");
}

#[tokio::test]
async fn a_failed_start_is_reported_and_retried_in_full() {
    let f = fixture().await;
    *f.driver.fail_start.lock().unwrap() = true;
    let err = f
        .install(ServiceKind::Psis, &[7001], "1")
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "driver");
    let failed = f.manager.get(ServiceKind::Psis).await.unwrap();
    assert_eq!(failed.status, ServiceStatus::Failed);
    assert!(failed.message.unwrap().contains("cannot start"));

    *f.driver.fail_start.lock().unwrap() = false;
    f.driver.calls();
    let retried = f.install(ServiceKind::Psis, &[7001], "1").await.unwrap();
    assert_eq!(retried.outcome, InstallOutcome::Reinstalled);
    assert_eq!(retried.service.status, ServiceStatus::Running);
    assert_eq!(retried.service.message, None);
}

#[tokio::test]
async fn connection_strings_are_validated_stored_and_pushed() {
    let f = fixture().await;
    assert_eq!(
        f.manager
            .get_connection_strings()
            .unwrap_err()
            .metric_label(),
        "not_set"
    );
    f.install(ServiceKind::Psis, &[7001], "1").await.unwrap();
    f.driver.calls();
    let strings = ConnectionStrings {
        identity_server: "https://app1:7001/identityserver".into(),
        psws: "https://app1:7002/psws/api".into(),
        client: Some("https://app1:7003".into()),
        api: Some("https://app1:7004/api".into()),
    };
    let update = f
        .manager
        .set_connection_strings(strings.clone())
        .await
        .unwrap();
    assert_eq!(update.pushed, [ServiceKind::Psis]);
    assert_eq!(f.driver.calls(), ["configure PSIS"]);
    assert_eq!(f.manager.get_connection_strings().unwrap(), strings);

    let bad = ConnectionStrings {
        api: Some("ftp://x".into()),
        ..strings
    };
    let err = f.manager.set_connection_strings(bad).await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_request");
}

#[tokio::test]
async fn a_certificate_whose_files_are_gone_is_reported_missing_until_installed_again() {
    let f = fixture().await;
    let seeded = f.manager.certificate().unwrap();
    let layout = &f.manager.layout;
    std::fs::remove_dir_all(layout.server_cert().parent().unwrap()).unwrap();
    assert!(matches!(
        f.manager.certificate(),
        Err(AgentError::NotSet(_))
    ));

    let ca_dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(ca_dir.path().join("ca")).unwrap();
    let issued = ca
        .issue_server(
            &["app1.example.eng".into()],
            &[],
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
    f.manager
        .install_certificate(crate::api::CertificateRequest {
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
        })
        .await
        .unwrap();
    let now = f.manager.certificate().unwrap();
    assert_eq!(now.thumbprint, issued.sha1_thumbprint);
    assert_ne!(now.thumbprint, seeded.thumbprint);
}

#[tokio::test]
async fn a_held_service_is_reinstalled_without_being_started() {
    let f = fixture().await;
    let held = f
        .manager
        .install(ServiceKind::Hl7, request(&[2244], "1"), true)
        .await
        .unwrap();
    assert_eq!(held.outcome, InstallOutcome::Created);
    assert!(held.service.held);
    assert_eq!(f.driver.calls(), ["install HL7 1", "configure HL7"]);
    // A new release is laid down, and the hold outlives it.
    let upgraded = f.install(ServiceKind::Hl7, &[2244], "2").await.unwrap();
    assert_eq!(upgraded.outcome, InstallOutcome::Reinstalled);
    assert_eq!(
        (upgraded.service.status, upgraded.service.held),
        (ServiceStatus::Stopped, true)
    );
    assert_eq!(
        f.driver.calls(),
        ["stop HL7", "install HL7 2", "configure HL7"]
    );
    let err = f.manager.restart(ServiceKind::Hl7).await.unwrap_err();
    assert_eq!(err.metric_label(), "held");
    assert_eq!(err.status_code(), axum::http::StatusCode::CONFLICT);
    let started = f.manager.start_held(ServiceKind::Hl7).await.unwrap();
    assert_eq!(
        (started.status, started.held),
        (ServiceStatus::Running, false)
    );
    assert_eq!(f.driver.calls(), ["configure HL7", "start HL7"]);
    // Persisted: a restarted agent knows it is held.
    f.manager.stop(ServiceKind::Hl7).await.unwrap();
    let state = PersistedState::load(&f.manager.layout.state_file()).unwrap();
    assert!(state.services[&ServiceKind::Hl7].held);
}
