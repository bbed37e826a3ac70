//! SIGHUP reloads the certificate when no file event announces the change. In its own test
//! binary because the signal goes to the whole process.

mod common;

use std::time::Duration;

use common::{args, Running, TestCa};
use steward_model::catalog::ServiceKind;

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_a_certificate_changed_behind_a_symlink() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf("old"), ca.leaf("new"));
    // The service is given symlinks; the files they point to live in a directory it does
    // not watch, so only the signal can tell it about a change.
    let real = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let (real_cert, real_key) = (real.path().join("cert.pem"), real.path().join("key.pem"));
    std::fs::write(&real_cert, &old.cert_pem).unwrap();
    std::fs::write(&real_key, &old.key_pem).unwrap();
    let (cert, key) = (links.path().join("cert.pem"), links.path().join("key.pem"));
    std::os::unix::fs::symlink(&real_cert, &cert).unwrap();
    std::os::unix::fs::symlink(&real_key, &key).unwrap();

    let mut a = args(ServiceKind::Job, None);
    a.cert = Some(cert);
    a.key = Some(key);
    let mut running = Running::start(a).await;

    std::fs::write(&real_cert, &new.cert_pem).unwrap();
    std::fs::write(&real_key, &new.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running.service_status.as_ref().unwrap().borrow().loaded, 1);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    running.wait_cert(|s| s.loaded == 2).await;
    let reply = ca.client().get(running.addrs[0], "/api").await.unwrap();
    assert_eq!(reply.peer_cert, new.der);
    running.stop().await.unwrap();
}
