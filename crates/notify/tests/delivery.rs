//! Delivery against real aiosmtpd servers on loopback: STARTTLS + AUTH on a server capped
//! at TLS 1.2, implicit TLS, plain; wrong password; refused recipient; a server that
//! closes idle connections or answers 421; a server stopped mid-queue and restarted.
//! Run each test binary in its own network namespace when several suites share a machine, like every
//! test that binds loopback ports.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_model::notifications::{NotificationEvent, Notifications, SmtpTls, TlsVersion};
use steward_notify::{
    render::render, DeliveryError, Mailer, Notice, Notifier, NotifyMetrics, RetryPolicy,
    SendResult, SmtpSettings, Undelivered,
};
use support::{notifications, python, Pki, ServerOptions, Smtpd, PASSWORD, USER};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

fn notice(event: NotificationEvent, object: &str) -> Notice {
    Notice {
        event,
        object: object.into(),
        reason: "HealthCheckFailing".into(),
        message: "GET /identityserver: 503 Service Unavailable".into(),
        time: OffsetDateTime::now_utc(),
        warning: true,
    }
}

fn mailer(n: &Notifications) -> Mailer {
    Mailer::new(SmtpSettings::read(n, Path::new("/")).unwrap())
}

async fn send_one(n: &Notifications) -> Result<(), DeliveryError> {
    let mail = render(
        n,
        &notice(NotificationEvent::ServiceDown, "service/app1/PSIS"),
        "ps",
    )
    .unwrap();
    mailer(n).send(&mail).await
}

/// A STARTTLS + AUTH server capped at TLS 1.2 and settings that reach it (their password
/// file is in `secrets`: keep it bound for the test's length).
struct Tls12Auth {
    server: Smtpd,
    /// Holds the CA file the settings trust.
    _pki: Pki,
    secrets: tempfile::TempDir,
    n: Notifications,
}

/// An aiosmtpd server with `options`; `None` when aiosmtpd is missing (the test is
/// skipped).
fn smtpd(options: ServerOptions) -> Option<Smtpd> {
    Some(Smtpd::start(&python()?, options))
}

/// `trusted`: the settings trust the server's CA (otherwise only the system's roots).
/// `None` when aiosmtpd is missing (the test is skipped).
fn tls12_auth(trusted: bool) -> Option<Tls12Auth> {
    let pki = Pki::new();
    let server = smtpd(ServerOptions {
        tls: Some(("starttls", pki.cert.clone(), pki.key.clone())),
        max_tls_12: true,
        auth: true,
        ..Default::default()
    })?;
    let secrets = tempfile::tempdir().unwrap();
    let trust = trusted.then_some(pki.ca.as_path());
    let n = notifications(server.port, SmtpTls::Starttls, Some(secrets.path()), trust);
    Some(Tls12Auth {
        server,
        _pki: pki,
        secrets,
        n,
    })
}

#[tokio::test]
async fn starttls_and_auth_on_a_server_capped_at_tls_1_2() {
    let Some(fx) = tls12_auth(true) else {
        return;
    };
    let (server, n) = (fx.server, fx.n);
    send_one(&n).await.unwrap();

    let got = server.wait_for(1);
    let mail = &got[0];
    assert_eq!(mail.from, "steward@example.eng");
    assert_eq!(mail.to, ["ps-admins@example.eng", "oncall@example.eng"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[PatientSecure] ServiceDown: service/app1/PSIS")
    );
    let body = mail.body();
    assert!(body.contains("ServiceDown on service/app1/PSIS"), "{body}");
    assert!(body.contains("Reason: HealthCheckFailing"), "{body}");
    assert!(body.contains("GET /identityserver: 503"), "{body}");
    assert!(body.contains("installation ps"), "{body}");
}

#[tokio::test]
async fn a_tls_1_3_minimum_fails_clearly_against_a_tls_1_2_server() {
    let Some(fx) = tls12_auth(true) else {
        return;
    };
    let (server, mut n) = (fx.server, fx.n);
    n.smtp.min_tls_version = TlsVersion::Tls13;
    let e = send_one(&n).await.unwrap_err();
    assert_eq!(e.label(), "tls_version", "{e}");
    assert!(e.to_string().contains("1.3"), "{e}");
    assert!(!e.is_transient());
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_certificate_error() {
    // No trust file: the test CA is not among the system's.
    let Some(fx) = tls12_auth(false) else {
        return;
    };
    let n = &fx.n;
    let e = send_one(n).await.unwrap_err();
    assert_eq!(e.label(), "certificate", "{e}");
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    let Some(server) = smtpd(ServerOptions::default()) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::Starttls, None, None);
    let e = send_one(&n).await.unwrap_err();
    assert_eq!(e, DeliveryError::StarttlsUnavailable);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let pki = Pki::new();
    let Some(server) = smtpd(ServerOptions {
        tls: Some(("implicit", pki.cert.clone(), pki.key.clone())),
        auth: true,
        ..Default::default()
    }) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let n = notifications(
        server.port,
        SmtpTls::Implicit,
        Some(secrets.path()),
        Some(&pki.ca),
    );
    send_one(&n).await.unwrap();
    let got = server.wait_for(1);
    assert_eq!(got[0].to, ["ps-admins@example.eng", "oncall@example.eng"]);
}

#[tokio::test]
async fn plain_smtp_delivers() {
    let Some(server) = smtpd(ServerOptions::default()) else {
        return;
    };
    let mut n = notifications(server.port, SmtpTls::None, None, None);
    n.subject = "{{ event }} / {{ kind }} / {{ name }}".into();
    n.body = "{{ message | upper }}".into();
    send_one(&n).await.unwrap();
    let got = server.wait_for(1);
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("ServiceDown / service / app1/PSIS")
    );
    assert!(
        got[0].body().contains("GET /IDENTITYSERVER: 503"),
        "{}",
        got[0].body()
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_names_no_secret() {
    let Some(fx) = tls12_auth(true) else {
        return;
    };
    let (server, secrets, n) = (&fx.server, &fx.secrets, &fx.n);
    std::fs::write(secrets.path().join("password"), "not-the-password").unwrap();
    let m = mailer(n);
    let debug = format!("{m:?}");
    let mail = render(
        n,
        &notice(NotificationEvent::AgentDown, "server/app1"),
        "ps",
    )
    .unwrap();
    let mut m = m;
    let e = m.send(&mail).await.unwrap_err();
    assert_eq!(e.label(), "auth", "{e}");
    assert!(!e.is_transient());
    for shown in [e.to_string(), format!("{e:?}"), debug] {
        assert!(!shown.contains("not-the-password"), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(server.received().is_empty());
    let _ = USER;
}

#[tokio::test]
async fn a_refused_recipient_is_named() {
    let Some(server) = smtpd(ServerOptions {
        refuse_rcpt: vec!["oncall@example.eng".into()],
        ..Default::default()
    }) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let e = send_one(&n).await.unwrap_err();
    assert_eq!(e.label(), "recipient_refused", "{e}");
    assert!(e.to_string().contains("oncall@example.eng"), "{e}");
    assert!(e.to_string().contains("550"), "{e}");
}

#[tokio::test]
async fn nothing_listening_is_a_tcp_error_and_an_unknown_name_a_dns_error() {
    let n = notifications(support::free_port(), SmtpTls::None, None, None);
    let e = send_one(&n).await.unwrap_err();
    assert_eq!(e.label(), "tcp", "{e}");
    let mut n = n;
    n.smtp.server = "no-such-host.invalid".into();
    let e = send_one(&n).await.unwrap_err();
    assert_eq!(e.label(), "dns", "{e}");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced() {
    let Some(server) = smtpd(ServerOptions {
        idle_timeout: Some(0.3),
        ..Default::default()
    }) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let mut m = mailer(&n);
    let first = render(
        &n,
        &notice(NotificationEvent::ServiceDown, "service/app1/PSIS"),
        "ps",
    )
    .unwrap();
    m.send(&first).await.unwrap();
    server.wait_for(1);
    // The server hangs up on the idle connection (lettre's pool would now fail, #743).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = render(
        &n,
        &notice(NotificationEvent::ServiceDown, "service/app2/PSIS"),
        "ps",
    )
    .unwrap();
    m.send(&second).await.unwrap();
    let got = server.wait_for(2);
    assert!(got[1]
        .header("Subject")
        .unwrap()
        .contains("service/app2/PSIS"));
}

#[tokio::test]
async fn a_421_on_a_kept_connection_reconnects_at_once() {
    let Some(server) = smtpd(ServerOptions {
        busy_at: vec![2],
        ..Default::default()
    }) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let mut m = mailer(&n);
    for object in [
        "service/app1/PSIS",
        "service/app2/PSIS",
        "service/app3/PSIS",
    ] {
        let mail = render(&n, &notice(NotificationEvent::ServiceDown, object), "ps").unwrap();
        m.send(&mail).await.unwrap();
    }
    assert_eq!(server.wait_for(3).len(), 3);
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 100,
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

fn notifier(sink: Arc<Mutex<Vec<Undelivered>>>) -> Notifier {
    Notifier::new(
        NotifyMetrics::new(),
        None,
        quick_retries(),
        Arc::new(move |u| sink.lock().unwrap().push(u)),
        CancellationToken::new(),
    )
}

// The outbox's task runs beside the test, which blocks while it waits for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_queue_and_restarted_loses_nothing() {
    let Some(mut server) = smtpd(ServerOptions::default()) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let notifier = notifier(Arc::clone(&failures));
    notifier.apply("admins", Some(&n), Path::new("/"), "ps");
    notifier.offer(&notice(NotificationEvent::ServiceDown, "service/app1/PSIS"));
    server.wait_for(1);
    server.stop();
    for i in 2..=6 {
        assert_eq!(
            notifier.offer(&notice(
                NotificationEvent::ServiceDown,
                &format!("service/app{i}/PSIS")
            )),
            1
        );
    }
    // Down: the outbox keeps them and retries (the failed attempts show as the last error).
    for _ in 0..300 {
        if notifier.status("admins").unwrap().last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = notifier.status("admins").unwrap();
    assert_eq!(waiting.last_error_reason, Some("tcp"), "{waiting:?}");
    assert_eq!(waiting.queued, 5);
    assert_eq!(server.received().len(), 1);
    server.restart();
    let got = server.wait_for(6);
    let mut subjects: Vec<String> = got.iter().map(|m| m.header("Subject").unwrap()).collect();
    subjects.sort();
    for i in 1..=6 {
        assert!(
            subjects
                .iter()
                .any(|s| s.ends_with(&format!("service/app{i}/PSIS"))),
            "app{i} missing from {subjects:?}"
        );
    }
    // In order, too: the queue is FIFO.
    assert!(got[5]
        .header("Subject")
        .unwrap()
        .ends_with("service/app6/PSIS"));
    for _ in 0..100 {
        if notifier.status("admins").unwrap().queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = notifier.status("admins").unwrap();
    assert_eq!((status.sent, status.failed, status.queued), (6, 0, 0));
    assert_eq!(notifier.metrics().sent(SendResult::Sent), 6);
    assert_eq!(notifier.metrics().queued(), 0);
    assert!(failures.lock().unwrap().is_empty());
}

// The outbox's task runs beside the test, which blocks while it waits for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_mail_is_reported_and_counted() {
    let Some(server) = smtpd(ServerOptions {
        refuse_rcpt: vec!["ps-admins@example.eng".into()],
        ..Default::default()
    }) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let notifier = notifier(Arc::clone(&failures));
    notifier.apply("admins", Some(&n), Path::new("/"), "ps");
    notifier.offer(&notice(NotificationEvent::AgentDown, "server/app1"));
    for _ in 0..200 {
        if !failures.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].result, SendResult::Failed);
    assert_eq!(failures[0].object, "server/app1");
    assert_eq!(failures[0].error.label(), "recipient_refused");
    assert_eq!(notifier.metrics().sent(SendResult::Failed), 1);
    let status = notifier.status("admins").unwrap();
    assert_eq!(status.last_error_reason, Some("recipient_refused"));
}

// The outbox's task runs beside the test, which blocks while it waits for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicated_and_recoveries_only_after_a_down() {
    let Some(server) = smtpd(ServerOptions::default()) else {
        return;
    };
    let n = notifications(server.port, SmtpTls::None, None, None);
    let notifier = notifier(Arc::default());
    notifier.apply("admins", Some(&n), Path::new("/"), "ps");
    let up = |o: &str| Notice {
        event: NotificationEvent::ServiceRecovered,
        ..notice(NotificationEvent::ServiceRecovered, o)
    };
    assert_eq!(
        notifier.offer(&up("service/app1/PSIS")),
        0,
        "no down mailed before"
    );
    assert_eq!(
        notifier.offer(&notice(NotificationEvent::ServiceDown, "service/app1/PSIS")),
        1
    );
    assert_eq!(
        notifier.offer(&notice(NotificationEvent::ServiceDown, "service/app1/PSIS")),
        0
    );
    assert_eq!(notifier.offer(&up("service/app1/PSIS")), 1);
    let got = server.wait_for(2);
    assert!(got[1]
        .header("Subject")
        .unwrap()
        .starts_with("[PatientSecure] ServiceRecovered"));
}
