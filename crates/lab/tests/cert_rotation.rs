//! Certificate rotation without downtime, and refusal of bad replacements.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{args, CertFiles, Running, TestCa};
use hyper::StatusCode;
use steward_model::catalog::ServiceKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_changes_the_served_certificate() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf("old"), ca.leaf("new"));
    let files = CertFiles::new(&old);
    let mut running = Running::start(args(ServiceKind::Psis, Some(&files))).await;
    let addr = running.addrs[0];
    let client = Arc::new(ca.client());

    // A connection established before the rotation must survive it.
    let mut kept = client.connect(addr).await.unwrap();
    assert_eq!(kept.peer_cert, old.der);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, after_rotation) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (client, stop, ok, after) = (
            client.clone(),
            stop.clone(),
            ok.clone(),
            after_rotation.clone(),
        );
        let (old_der, new_der) = (old.der.clone(), new.der.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(addr, "/identityserver").await {
                    Ok(r) if r.status == StatusCode::OK && r.body.contains("IdentityServer4") => {
                        assert!(r.peer_cert == old_der || r.peer_cert == new_der);
                        ok.fetch_add(1, Ordering::Relaxed);
                        if r.peer_cert == new_der {
                            after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    // In place, certificate first: for a moment the files hold the new certificate and the
    // old key, which must be refused rather than served.
    files.overwrite(&new.cert_pem, &new.key_pem);
    running.wait_cert(|s| s.loaded >= 2).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while after_rotation.load(Ordering::Relaxed) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate never served: ok={} status={:?} load finished={}",
            ok.load(Ordering::Relaxed),
            running.service_status.as_ref().unwrap().borrow(),
            load.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok.load(Ordering::Relaxed) > 20);

    let again = kept.get("/identityserver").await.unwrap();
    assert_eq!(
        again.status,
        StatusCode::OK,
        "established connection survives"
    );

    // And a rename-over rotation back to the old pair.
    files.rename_over(&old.cert_pem, &old.key_pem);
    running.wait_cert(|s| s.loaded >= 3).await;
    let reply = client.get(addr, "/identityserver").await.unwrap();
    assert_eq!(reply.peer_cert, old.der);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn bad_replacements_keep_the_old_certificate() {
    let ca = TestCa::new();
    let (good, other, next) = (ca.leaf("good"), ca.leaf("other"), ca.leaf("next"));
    let files = CertFiles::new(&good);
    let mut running = Running::start(args(ServiceKind::Client, Some(&files))).await;
    let addr = running.addrs[0];
    let client = ca.client();

    // Unparsable certificate.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    running.wait_cert(|s| s.rejected >= 1).await;
    let reply = client.get(addr, "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.peer_cert, good.der);

    // A valid certificate with somebody else's key.
    let before = running.service_status.as_ref().unwrap().borrow().rejected;
    files.overwrite(&next.cert_pem, &other.key_pem);
    running
        .wait_cert(|s| {
            s.rejected > before
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("does not match"))
        })
        .await;
    let reply = client.get(addr, "/").await.unwrap();
    assert_eq!(reply.peer_cert, good.der);
    let doc: serde_json::Value =
        serde_json::from_str(&client.get(addr, "/steward/lab").await.unwrap().body).unwrap();
    assert!(doc["certificate"]["lastError"]
        .as_str()
        .unwrap()
        .contains("does not match"));

    // Fixing the key brings the new pair in.
    std::fs::write(&files.key, &next.key_pem).unwrap();
    running
        .wait_cert(|s| s.loaded >= 2 && s.last_error.is_none())
        .await;
    let reply = client.get(addr, "/").await.unwrap();
    assert_eq!(reply.peer_cert, next.der);
    running.stop().await.unwrap();
}

/// A returning client resumes its TLS session, as with Windows Schannel, so a probe that
/// dials again skips the certificate; a replaced certificate ends the sessions made under
/// the old one, so the next client to come back sees the new certificate.
#[tokio::test]
async fn clients_resume_their_session_until_the_certificate_is_replaced() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf("old"), ca.leaf("new"));
    let files = CertFiles::new(&old);
    let mut running = Running::start(args(ServiceKind::Psis, Some(&files))).await;
    let addr = running.addrs[0];
    let client = ca.client();

    let first = client.get(addr, "/identityserver").await.unwrap();
    let second = client.get(addr, "/identityserver").await.unwrap();
    assert_eq!((first.resumed, second.resumed), (false, true));
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.peer_cert, old.der);

    files.overwrite(&new.cert_pem, &new.key_pem);
    running.wait_cert(|s| s.loaded >= 2).await;
    let after = client.get(addr, "/identityserver").await.unwrap();
    assert!(
        !after.resumed,
        "a session of the old certificate is not resumed"
    );
    assert_eq!(after.peer_cert, new.der);
    running.stop().await.unwrap();
}
