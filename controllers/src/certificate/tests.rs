use super::*;
use crate::fakes::{fixture, fixture_with, headline, Call};
use steward_agent::ClientError;
use steward_model::resource::CaMode;
use steward_runtime::ReconcileError;

/// One run as the runtime makes it: reconcile, then the error policy.
async fn reconcile(name: String, reason: Reason, ctx: Arc<Context>) -> Reconciled {
    crate::reconciler::reconcile_and_record::<Certificates>(name, reason, ctx).await
}

fn cert_reason(fx: &crate::fakes::Fixture) -> String {
    headline(&fx.ctx.store.status().servers[0].certificate.conditions)
}

#[tokio::test]
async fn generated_certificate_is_issued_once_and_renewed_when_old() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    assert!(!fx.ctx.store.cert_ready("app1"));
    let action = reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(fx.ctx.pace.short()));
    let agent = fx.agent("app1");
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    assert!(fx.ctx.store.cert_ready("app1"));
    let installed = agent.state().certificate.clone().unwrap();
    assert_eq!(installed.subject, "CN=app1.example.eng");
    let status = fx.ctx.store.status();
    assert_eq!(
        status.servers[0].certificate.thumbprint.as_deref(),
        Some(installed.thumbprint.as_str())
    );
    assert_eq!(
        fx.gauge(
            "steward_certificate_expiry_timestamp_seconds",
            &[("server", "app1")]
        ),
        Some(installed.not_after.unix_timestamp() as f64)
    );

    // Read back: in place, nothing installed.
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    assert_eq!(cert_reason(&fx), "CertificateInstalled");

    // Close to expiry: renewed.
    agent.state().certificate.as_mut().unwrap().not_after =
        OffsetDateTime::now_utc() + time::Duration::hours(1);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 2);

    // Replaced behind steward's back: drift, corrected.
    agent.state().certificate.as_mut().unwrap().thumbprint = "0".repeat(40);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 3);
    assert_eq!(
        fx.counter("steward_drift_corrected_total", &[("kind", "certificate")]),
        Some(1.0)
    );
}

/// After an HA takeover the new leader's memo lacks what the old leader issued (or holds
/// an older one, from its backup): the certificate on the server, from the same CA for
/// the same names, is kept, not issued again.
#[tokio::test]
async fn a_certificate_another_daemon_issued_from_this_ca_is_adopted_not_reissued() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    let agent = fx.agent("app1");
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    let installed = agent.state().certificate.clone().unwrap();
    let memo = fx.ctx.issued.get("app1").unwrap();

    // Not in this daemon's memo at all.
    fx.ctx.issued.forget("app1");
    reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    assert_eq!(cert_reason(&fx), "CertificateInstalled");
    assert_eq!(fx.ctx.issued.get("app1").as_ref(), Some(&memo));

    // An older certificate in the memo (a backup taken before the last issue).
    fx.ctx.issued.set(
        "app1",
        IssuedMemo {
            thumbprint: "AB".repeat(20),
            sans: memo.sans.clone(),
        },
    );
    reconcile("app1".into(), Reason::Resync, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    assert_eq!(fx.ctx.issued.get("app1").as_ref(), Some(&memo));
    assert_eq!(
        agent.state().certificate.as_ref().unwrap().thumbprint,
        installed.thumbprint
    );
    let status = fx.ctx.store.status();
    let issued = status
        .events
        .iter()
        .filter(|e| e.reason == "CertificateIssued");
    assert_eq!(issued.count(), 1);
}

#[tokio::test]
async fn pem_files_are_checked_before_install_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(ca_dir.path()).unwrap();
    let a = ca
        .issue_server(
            &["app1.example.eng".into()],
            &[],
            Duration::from_secs(86400),
        )
        .unwrap();
    let b = ca
        .issue_server(
            &["app1.example.eng".into()],
            &[],
            Duration::from_secs(86400),
        )
        .unwrap();
    std::fs::write(dir.path().join("app1.pem"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("app1.key"), b.key_pem.expose()).unwrap();
    let cert = "certificate: {certFile: app1.pem, keyFile: app1.key}";
    let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], cert, dir.path());

    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "KeyMismatch");
    assert!(!fx.ctx.store.cert_ready("app1"));
    let text = serde_json::to_string(&fx.ctx.store.status()).unwrap();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
        "{text}"
    );

    std::fs::write(dir.path().join("app1.key"), a.key_pem.expose()).unwrap();
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    let agent = fx.agent("app1");
    assert_eq!(
        agent.state().certificate.as_ref().unwrap().thumbprint,
        a.sha1_thumbprint
    );
    assert!(fx.ctx.store.cert_ready("app1"));
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(
        agent.calls(Call::InstallCertificate),
        1,
        "same thumbprint: left alone"
    );

    std::fs::remove_file(dir.path().join("app1.pem")).unwrap();
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(cert_reason(&fx), "FileUnreadable");
}

#[tokio::test]
async fn agent_errors_are_conditions_and_errors() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    fx.agent("app1")
        .fail_next(Call::Certificate, ClientError::ConnectRefused);
    let err = fx.run::<Certificates>("app1".into()).await.unwrap_err();
    assert_eq!(err.metric_label(), "agent_connect_refused");
    assert_eq!(cert_reason(&fx), "AgentConnectionRefused");
}

#[tokio::test]
async fn monitor_mode_installs_nothing() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    fx.set_mode(Mode::Monitor);
    let agent = fx.agent("app1");
    agent.forbid(Call::InstallCertificate);
    agent.state().certificate.as_mut().unwrap().thumbprint = "0".repeat(40);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    assert_eq!(cert_reason(&fx), "CertificateDrift");
    assert_eq!(
        fx.counter("steward_drift_detected_total", &[("kind", "certificate")]),
        Some(1.0)
    );
    assert_eq!(
        fx.counter("steward_drift_corrected_total", &[("kind", "certificate")]),
        Some(0.0)
    );
}

fn issue_pair(
    ca_dir: &std::path::Path,
    names: &[&str],
    lifetime: Duration,
) -> steward_pki::IssuedCertificate {
    let ca = steward_pki::CertificateAuthority::load(ca_dir)
        .or_else(|_| steward_pki::CertificateAuthority::init(ca_dir))
        .unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    ca.issue_server(&names, &[], lifetime).unwrap()
}

fn events(fx: &crate::fakes::Fixture, reason: &str) -> usize {
    fx.ctx
        .store
        .status()
        .events
        .iter()
        .filter(|e| e.object == "certificate/app1" && e.reason == reason)
        .count()
}

#[tokio::test]
async fn generated_certificates_follow_duration_and_renew_before() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    let mut s = fx.current();
    s.installation.certificate_authority.duration = Duration::from_secs(120);
    s.installation.certificate_authority.renew_before = Duration::from_secs(100);
    fx.apply(s);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    let agent = fx.agent("app1");
    let installed = agent.state().certificate.clone().unwrap();
    let left = installed.not_after - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::seconds(120) && left > time::Duration::seconds(110),
        "{left}"
    );
    assert_eq!(events(&fx, "CertificateIssued"), 1);
    let renewal = installed.not_after.unix_timestamp() - 100;
    assert_eq!(
        fx.gauge(
            "steward_certificate_renewal_timestamp_seconds",
            &[("server", "app1")]
        ),
        Some(renewal as f64)
    );

    // In place: woken again at the renewal point, not after a whole resync.
    let action = reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    let until =
        Duration::from_secs((renewal - OffsetDateTime::now_utc().unix_timestamp()).max(0) as u64);
    match action {
        Action::Requeue(after) => assert!(
            after <= fx.ctx.config.resync && after <= until + Duration::from_secs(1),
            "{after:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(agent.calls(Call::InstallCertificate), 1);

    // Past the renewal point: renewed, with its own event.
    agent.state().certificate.as_mut().unwrap().not_after =
        OffsetDateTime::now_utc() + time::Duration::seconds(90);
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 2);
    assert_eq!(events(&fx, "CertificateRenewed"), 1);
    assert_ne!(
        agent.state().certificate.as_ref().unwrap().thumbprint,
        installed.thumbprint
    );
}

#[tokio::test]
async fn default_renewal_is_at_two_thirds_of_the_lifetime() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    let agent = fx.agent("app1");
    let not_after = agent.state().certificate.as_ref().unwrap().not_after;
    let renewal = fx.gauge(
        "steward_certificate_renewal_timestamp_seconds",
        &[("server", "app1")],
    );
    assert_eq!(
        renewal,
        Some((not_after - time::Duration::days(30)).unix_timestamp() as f64)
    );
    // 31 days left: in place; 29 days left: renewed.
    agent.state().certificate.as_mut().unwrap().not_after =
        OffsetDateTime::now_utc() + time::Duration::days(31);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 1);
    agent.state().certificate.as_mut().unwrap().not_after =
        OffsetDateTime::now_utc() + time::Duration::days(29);
    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert_eq!(agent.calls(Call::InstallCertificate), 2);
}

#[tokio::test]
async fn an_existing_ca_means_nothing_is_ever_issued() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    // Validation refuses this combination; the controller refuses it on its own too.
    let mut s = fx.current();
    s.installation.certificate_authority.mode = CaMode::Existing;
    fx.apply(s);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(fx.agent("app1").calls(Call::InstallCertificate), 0);
    assert_eq!(cert_reason(&fx), "NoCertificateAuthority");
    assert!(!fx.ctx.store.cert_ready("app1"));
}

#[tokio::test]
async fn replaced_files_are_reinstalled_and_due_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86_400);
    let first = issue_pair(ca_dir.path(), &["app1.example.eng"], 100 * day);
    first.write_pair(dir.path(), "app1").unwrap();
    let cert = "certificate: {certFile: app1.pem, keyFile: app1.key}";
    let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], cert, dir.path());
    let action = reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(fx.ctx.pace.short()));
    let action = reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    // Files are polled.
    assert_eq!(action, Action::requeue(fx.ctx.config.resync.min(FILE_POLL)));
    assert_eq!(cert_reason(&fx), "CertificateInstalled");
    assert_eq!(events(&fx, "CertificateInstalled"), 1);

    // Someone drops a new pair in place (no commit): installed at the next poll.
    let second = issue_pair(ca_dir.path(), &["app1.example.eng"], 20 * day);
    second.write_pair(dir.path(), "app1").unwrap();
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    let agent = fx.agent("app1");
    assert_eq!(
        agent.state().certificate.as_ref().unwrap().thumbprint,
        second.sha1_thumbprint
    );
    assert_eq!(events(&fx, "CertificateInstalled"), 2);
    // 20 days left, renewBefore 30d: steward cannot renew it, it says so.
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "RenewalDue");
    assert!(
        fx.ctx.store.cert_ready("app1"),
        "still serving: services go on"
    );

    // A half-written replacement (new certificate, old key) is refused and the
    // installed one stays.
    let third = issue_pair(ca_dir.path(), &["app1.example.eng"], 100 * day);
    std::fs::write(dir.path().join("app1.pem"), &third.cert_pem).unwrap();
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "KeyMismatch");
    assert_eq!(agent.calls(Call::InstallCertificate), 2);
    assert_eq!(
        agent.state().certificate.as_ref().unwrap().thumbprint,
        second.sha1_thumbprint
    );
}

#[tokio::test]
async fn pfx_password_problems_are_conditions_without_the_password() {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let issued = issue_pair(
        ca_dir.path(),
        &["app1.example.eng"],
        Duration::from_secs(86_400),
    );
    let der = |text: &str| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
            .next()
            .map(|c| c.unwrap().to_vec())
    };
    let key_der =
        rustls::pki_types::pem::PemObject::from_pem_slice(issued.key_pem.expose().as_bytes())
            .map(|k: rustls::pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
            .unwrap();
    let chain = PrivateKeyChain::new(
        b"1".as_slice(),
        PrivateKey::from_der(&key_der).unwrap(),
        [Certificate::from_der(&der(&issued.cert_pem).unwrap()).unwrap()],
    );
    let mut store = KeyStore::new();
    store.add_entry("app1", KeyStoreEntry::PrivateKeyChain(chain));
    let password = "Pfx-Pa55word-4-test";
    std::fs::write(
        dir.path().join("app1.pfx"),
        store.writer(password).write().unwrap(),
    )
    .unwrap();
    let secret = dir.path().join("pfx-password");
    std::fs::write(&secret, "not the password\n").unwrap();
    let cert = format!(
        "certificate: {{pfxFile: app1.pfx, passwordRef: \"file:{}\"}}",
        secret.display()
    );
    let fx = fixture_with(&[("app1", &["PSIS", "PSWS"])], &cert, dir.path());
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "PfxPasswordWrong");

    std::fs::remove_file(&secret).unwrap();
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "SecretUnresolved");
    assert_eq!(fx.agent("app1").calls(Call::InstallCertificate), 0);

    std::fs::write(&secret, format!("{password}\n")).unwrap();
    reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        fx.agent("app1")
            .state()
            .certificate
            .as_ref()
            .unwrap()
            .thumbprint,
        issued.sha1_thumbprint
    );
    let text = serde_json::to_string(&fx.ctx.store.status()).unwrap();
    assert!(
        !text.contains(password) && !text.contains("PRIVATE"),
        "{text}"
    );
    assert!(
        text.contains("PfxPasswordWrong"),
        "the failure is an event: {text}"
    );
    let metrics = fx.registry.text();
    assert!(!metrics.contains(password));
}

#[tokio::test]
async fn a_certificate_gone_from_the_server_is_not_ready_and_installed_again() {
    let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
    let agent = fx.agent("app1");
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "CertificateInstalled");

    // Its files deleted: the agent reports none. Until it is back, not Ready.
    agent.state().certificate = None;
    agent.fail_next(Call::InstallCertificate, ClientError::ConnectRefused);
    let _ = fx.run::<Certificates>("app1".into()).await;
    assert!(!fx.ctx.store.cert_ready("app1"));
    assert_ne!(cert_reason(&fx), "CertificateInstalled");

    fx.run::<Certificates>("app1".into()).await.unwrap();
    assert!(fx.ctx.store.cert_ready("app1"));
    assert_eq!(cert_reason(&fx), "CertificateInstalled");
    assert_eq!(agent.calls(Call::InstallCertificate), 3);
    let events = fx.ctx.store.status().events;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "CertificateIssued" && e.message.contains("is gone")),
        "{events:?}"
    );
    assert_eq!(
        fx.counter("steward_drift_corrected_total", &[("kind", "certificate")]),
        Some(1.0)
    );
}

/// On a large fleet a certificate in place is not asked for every resync (1,000 servers
/// at 2 s were 500 agent calls a second): its look is paced to the fleet like the others.
#[tokio::test]
async fn a_generated_certificates_poll_is_paced_to_the_fleet() {
    let names: Vec<String> = (1..=400).map(|n| format!("app{n}")).collect();
    let servers: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let fx = fixture(&servers);
    reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
        .await
        .unwrap();
    let action = reconcile("app1".into(), Reason::Requeue, fx.ctx.clone())
        .await
        .unwrap();
    assert_eq!(cert_reason(&fx), "CertificateInstalled");
    // 400 servers at 100 looks a second: every 4 s, not every 2 s resync.
    assert_eq!(action, Action::requeue(Duration::from_secs(4)));
}
