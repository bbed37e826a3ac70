//! The prober against real lab services over TLS and against misbehaving peers, and the
//! monitor's schedule, rise/fall and lanes, all in real time on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_model::{ServiceKind, StatusRanges};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peers::{lab, peer, pki, status, target, Script, ALIAS};
use super::*;
use crate::service_key::ServiceKey;

const SHORT: Duration = Duration::from_millis(400);
/// How long a wait for a state may take: generous, it is a hang guard, not a speed goal
/// (those are in `benches/probing.rs`).
const PATIENCE: Duration = Duration::from_secs(30);

fn prober(ca_pem: &str) -> NetworkProber {
    NetworkProber::new(&[ca_pem.to_owned()]).unwrap()
}

fn failure(result: &ProbeResult) -> (&'static str, String) {
    let e = result.outcome.as_ref().expect_err("the probe should fail");
    (e.metric_label(), e.to_string())
}

#[tokio::test]
async fn https_checks_status_ranges_body_and_reports_the_certificate() {
    let pki = pki();
    let lab = lab(&pki, ServiceKind::Psws, None).await;
    let prober = prober(&pki.ca_pem);
    let port = lab.addrs[0].port();
    let t = target(ServiceKind::Psws, port, SHORT);

    let ok = prober.probe(&t).await;
    assert_eq!(ok.outcome, Ok(()));
    assert_eq!(ok.http_status, Some(200));
    assert_eq!(
        ok.cert_not_after.map(|t| t.unix_timestamp()),
        Some(pki.not_after.unix_timestamp())
    );

    let mut wrong_body = t.clone();
    wrong_body.check.response_match = Some("IdentityServer4".into());
    let r = prober.probe(&wrong_body).await;
    assert_eq!(
        failure(&r),
        (
            "body_mismatch",
            "body did not contain \"IdentityServer4\"".into()
        )
    );
    assert_eq!(r.http_status, Some(200));

    for (ranges, passes) in [
        ("201", false),
        ("200-204,301", true),
        ("100-199,300-599", false),
    ] {
        let mut strict = t.clone();
        strict.check.accept_status = Some(StatusRanges::parse(ranges).unwrap());
        let r = prober.probe(&strict).await;
        assert_eq!(r.success(), passes, "{ranges}: {r:?}");
        if !passes {
            let (label, text) = failure(&r);
            assert_eq!(label, "status");
            assert!(text.starts_with("status 200 (expected "), "{text}");
        }
    }

    let mut wrong_path = t.clone();
    wrong_path.check.path = Some("/nothing-here".into());
    let r = prober.probe(&wrong_path).await;
    assert_eq!(r.http_status, Some(404));
    assert_eq!(failure(&r).1, "status 404 (expected 200-302)");
}

#[tokio::test]
async fn connections_are_kept_alive_per_address_and_tls_name() {
    let pki = pki();
    let code = status(200);
    let server = peer(Script::Respond(code.clone(), "Success"), &pki.acceptor).await;
    let prober = prober(&pki.ca_pem);
    let t = target(ServiceKind::Psws, server.addr.port(), SHORT);
    for i in 0..5 {
        let r = prober.probe(&t).await;
        assert_eq!(r.outcome, Ok(()));
        assert_eq!(r.reused_connection, i > 0);
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "one connection");

    // Another TLS name is another connection (SNI and certificate check differ).
    let mut alias = t.clone();
    alias.hostname = ALIAS.into();
    assert!(prober.probe(&alias).await.success());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);

    // A failing status keeps the connection: the exchange itself was clean.
    code.store(503, Ordering::SeqCst);
    let r = prober.probe(&t).await;
    assert_eq!(
        failure(&r),
        ("status", "status 503 (expected 200-302)".into())
    );
    assert_eq!(r.http_status, Some(503));
    assert!(r.reused_connection);
    assert_eq!(prober.idle_connections(), 2);
}

#[tokio::test]
async fn a_kept_alive_connection_the_server_closed_is_dialled_again() {
    let pki = pki();
    let lab = lab(&pki, ServiceKind::Psis, Some(Duration::from_millis(150))).await;
    let prober = prober(&pki.ca_pem);
    let t = target(ServiceKind::Psis, lab.addrs[0].port(), SHORT);
    assert!(prober.probe(&t).await.success());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = prober.probe(&t).await;
    assert_eq!(r.outcome, Ok(()), "the server closed the idle connection");
    assert!(!r.reused_connection);
}

#[tokio::test]
async fn a_request_the_peer_closed_a_kept_alive_connection_under_is_sent_once_more() {
    let pki = pki();
    let heads = Arc::new(AtomicUsize::new(0));
    let script = Script::CloseUnder {
        heads: heads.clone(),
        only_first: false,
    };
    let server = peer(script, &pki.acceptor).await;
    let prober = prober(&pki.ca_pem);
    let t = target(ServiceKind::Psws, server.addr.port(), SHORT);
    assert!(prober.probe(&t).await.success());
    assert_eq!(prober.idle_connections(), 1);

    // The pooled connection is closed under the request: sent again on a fresh one.
    let r = prober.probe(&t).await;
    assert_eq!(r.outcome, Ok(()));
    assert!(!r.reused_connection, "answered on the fresh connection");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        heads.load(Ordering::SeqCst),
        3,
        "the second probe's request twice"
    );
}

#[tokio::test]
async fn a_request_is_retried_at_most_once() {
    let pki = pki();
    let heads = Arc::new(AtomicUsize::new(0));
    let script = Script::CloseUnder {
        heads: heads.clone(),
        only_first: true,
    };
    let server = peer(script, &pki.acceptor).await;
    let prober = prober(&pki.ca_pem);
    let t = target(ServiceKind::Psws, server.addr.port(), SHORT);
    assert!(prober.probe(&t).await.success());

    // Closed under the request on the pooled connection, then on the fresh one too: that
    // second close is the peer's failure, not a stale connection, and is not retried.
    let r = prober.probe(&t).await;
    let (label, text) = failure(&r);
    assert_eq!(label, "http", "{text}");
    assert!(!r.reused_connection);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2, "one retry");
    assert_eq!(heads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn tls_and_connection_failures_say_which() {
    let pki = pki();
    let lab = lab(&pki, ServiceKind::Psis, None).await;
    let port = lab.addrs[0].port();
    let t = target(ServiceKind::Psis, port, SHORT);

    let other = super::peers::pki();
    let untrusting = prober(&other.ca_pem);
    assert_eq!(
        failure(&untrusting.probe(&t).await),
        (
            "tls_unknown_issuer",
            "TLS: certificate issued by an untrusted CA".into()
        )
    );

    let prober = prober(&pki.ca_pem);
    let mut wrong_name = t.clone();
    wrong_name.hostname = "app2.example.eng".into();
    assert_eq!(
        failure(&prober.probe(&wrong_name).await),
        (
            "tls_name_mismatch",
            "TLS: certificate not valid for app2.example.eng".into()
        )
    );

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = free.local_addr().unwrap().port();
    drop(free);
    let refused = prober
        .probe(&target(ServiceKind::Psis, closed_port, SHORT))
        .await;
    assert_eq!(
        failure(&refused),
        ("connection_refused", "connection refused".into())
    );

    for (script, expected, says) in [
        (
            Script::Garbage,
            "tls_protocol",
            "TLS: the peer does not speak TLS",
        ),
        (
            Script::Hangup,
            "tls_closed",
            "TLS: the peer closed the connection during the handshake",
        ),
    ] {
        let server = peer(script, &pki.acceptor).await;
        let r = prober
            .probe(&target(ServiceKind::Psis, server.addr.port(), SHORT))
            .await;
        let (label, text) = failure(&r);
        assert_eq!(label, expected, "{text}");
        assert!(text.starts_with(says), "{text}");
    }
}

#[tokio::test]
async fn misbehaving_peers_cost_at_most_the_timeout() {
    let pki = pki();
    let prober = prober(&pki.ca_pem);
    for (script, label, text) in [
        (
            Script::Silent,
            "timeout",
            "timed out after 400ms during the TLS handshake",
        ),
        (
            Script::Slow(Duration::from_secs(30)),
            "timeout",
            "timed out after 400ms during waiting for the response",
        ),
        (
            Script::NeverEnds,
            "timeout",
            "timed out after 400ms during reading the body",
        ),
        (Script::TlsGarbage, "http", "HTTP: "),
    ] {
        let server = peer(script, &pki.acceptor).await;
        let t = target(ServiceKind::Psws, server.addr.port(), SHORT);
        let started = Instant::now();
        let r = prober.probe(&t).await;
        let took = started.elapsed();
        let (got_label, got_text) = failure(&r);
        assert_eq!(got_label, label, "{got_text}");
        assert!(got_text.starts_with(text), "{got_text}");
        assert!(r.duration <= took);
    }
    assert_eq!(
        prober.idle_connections(),
        0,
        "broken connections are not kept"
    );
}

#[tokio::test]
async fn hl7_is_an_mllp_round_trip_that_must_come_back_aa() {
    let pki = pki();
    let lab = lab(&pki, ServiceKind::Hl7, None).await;
    let prober = prober(&pki.ca_pem);
    let t = target(ServiceKind::Hl7, lab.addrs[0].port(), SHORT);
    assert_eq!(
        t.describe(),
        format!("MLLP app1.example.eng:{}", lab.addrs[0].port())
    );
    let r = prober.probe(&t).await;
    assert_eq!(r.outcome, Ok(()));
    assert_eq!((r.http_status, r.cert_not_after), (None, None));

    let rejecting = peer(
        Script::Mllp(
            "MSH|^~\\&|LIS|LIS|STEWARD|STEWARD|20250101||ACK|1|P|2.5.1\rMSA|AE|1|no such patient\r",
        ),
        &pki.acceptor,
    )
    .await;
    let r = prober
        .probe(&target(ServiceKind::Hl7, rejecting.addr.port(), SHORT))
        .await;
    let (label, text) = failure(&r);
    assert_eq!(label, "hl7_not_accepted");
    assert!(text.contains("MSA-1 = AE"), "{text}");

    let garbage = peer(Script::Mllp("this is not HL7"), &pki.acceptor).await;
    let r = prober
        .probe(&target(ServiceKind::Hl7, garbage.addr.port(), SHORT))
        .await;
    assert_eq!(failure(&r).0, "hl7_not_an_ack");

    // A silent peer ends in the probe's own timeout (the message says which phase), not in a
    // hang: that is what bounds a misbehaving service to one slot for one timeout.
    let silent = peer(Script::Silent, &pki.acceptor).await;
    let r = prober
        .probe(&target(ServiceKind::Hl7, silent.addr.port(), SHORT))
        .await;
    assert_eq!(
        failure(&r),
        (
            "timeout",
            "timed out after 400ms during the HL7 exchange".into()
        )
    );
}

/// One report of the monitor: the probe's outcome, the verdict after it, and
/// whether that verdict changed.
#[derive(Debug, Clone, Copy)]
struct Seen {
    success: bool,
    verdict: Option<bool>,
    changed: bool,
}

/// Every report the monitor hands out.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(ServiceKey, Seen)>>,
}

impl ProbeSink for Recorder {
    fn observe(&self, key: &ServiceKey, report: &ProbeReport<'_>) {
        let seen = Seen {
            success: report.result.success(),
            verdict: report.verdict,
            changed: report.changed,
        };
        self.seen.lock().unwrap().push((key.clone(), seen));
    }
}

impl Recorder {
    fn of(&self, key: &ServiceKey) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| &s.0 == key)
            .map(|s| s.1)
            .collect()
    }

    fn verdict(&self, key: &ServiceKey) -> Option<bool> {
        self.of(key).last().and_then(|s| s.verdict)
    }
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let poll = Duration::from_millis(10);
    steward_testkit::eventually_async(what, limit, poll, || std::future::ready(done())).await;
}

#[tokio::test]
async fn the_monitor_probes_on_interval_and_applies_rise_and_fall() {
    let pki = pki();
    let code = status(200);
    let server = peer(Script::Respond(code.clone(), "Success"), &pki.acceptor).await;
    let monitor = Monitor::new(Arc::new(prober(&pki.ca_pem)), MonitorSettings::default());
    let recorder = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (monitor, sink, stop) = (monitor.clone(), recorder.clone(), stop.clone());
        async move { monitor.run(sink, stop).await }
    });
    let key = ServiceKey::new("app1", ServiceKind::Psws);
    let mut t = target(
        ServiceKind::Psws,
        server.addr.port(),
        Duration::from_millis(50),
    );
    t.check.interval = Duration::from_millis(60);
    t.check.rise = 2;
    t.check.fall = 3;
    monitor.watch(&key, t.clone());
    until("the first verdict", PATIENCE, || {
        recorder.verdict(&key) == Some(true)
    })
    .await;
    // It keeps probing on its own; the spacing of the probes is checked on a paused clock
    // (`schedule_tests.rs`), not here in real time.
    until("a few probes", PATIENCE, || recorder.of(&key).len() >= 5).await;

    code.store(503, Ordering::SeqCst);
    until("down", PATIENCE, || recorder.verdict(&key) == Some(false)).await;
    let seen = recorder.of(&key);
    let failures_before_down = seen.iter().rev().take_while(|s| !s.success).count();
    assert_eq!(failures_before_down, 3, "fall is 3");
    assert_eq!(
        seen.iter().filter(|s| s.changed).count(),
        2,
        "up, then down"
    );

    code.store(200, Ordering::SeqCst);
    until("up again", PATIENCE, || {
        recorder.verdict(&key) == Some(true)
    })
    .await;
    let seen = recorder.of(&key);
    assert_eq!(
        seen.iter().rev().take_while(|s| s.success).count(),
        2,
        "rise is 2"
    );

    // A reset forgets the verdict; unwatching stops the probes.
    monitor.reset(&key);
    assert_eq!(monitor.verdict(&key), None);
    monitor.unwatch(&key);
    let count = recorder.of(&key).len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        recorder.of(&key).len() <= count + 1,
        "one in flight at most"
    );
    assert!(monitor.is_empty());
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn failing_services_do_not_slow_the_probes_of_healthy_ones() {
    let pki = pki();
    let silent = peer(Script::Silent, &pki.acceptor).await;
    let healthy = peer(Script::Respond(status(200), "Success"), &pki.acceptor).await;
    let monitor = Monitor::new(
        Arc::new(prober(&pki.ca_pem)),
        MonitorSettings {
            healthy_slots: 256,
            failing_slots: 4,
        },
    );
    let recorder = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (monitor, sink, stop) = (monitor.clone(), recorder.clone(), stop.clone());
        async move { monitor.run(sink, stop).await }
    });
    // 200 services that hang until their timeout, probed as often as they can be.
    for i in 0..200 {
        let mut t = target(
            ServiceKind::Psws,
            silent.addr.port(),
            Duration::from_millis(300),
        );
        t.check.interval = Duration::from_millis(310);
        monitor.watch(&ServiceKey::new(format!("hung{i}"), ServiceKind::Psws), t);
    }
    until("every hung service to fail once", PATIENCE, || {
        recorder.seen.lock().unwrap().len() >= 200
    })
    .await;

    let key = ServiceKey::new("app1", ServiceKind::Psis);
    let mut t = target(
        ServiceKind::Psws,
        healthy.addr.port(),
        Duration::from_millis(300),
    );
    t.check.interval = Duration::from_millis(100);
    monitor.watch(&key, t);
    // How many in a second is a figure of `benches/probing.rs`; here: it is probed, again
    // and again, while the failing lane is full, and every probe passes.
    until("seven probes of the healthy service", PATIENCE, || {
        recorder.of(&key).len() >= 7
    })
    .await;
    let probes = recorder.of(&key);
    assert!(probes.iter().all(|p| p.success));
    stop.cancel();
    running.await.unwrap();
}

/// Idle connections cost memory and a descriptor each: the prober keeps one per service
/// at most (a service is never probed twice at once by the monitor, so a second one would
/// sit unused), and `PROBE_POOL.total` in all, however many services it probes.
#[tokio::test]
async fn the_probe_pool_keeps_one_idle_connection_per_service_and_few_in_all() {
    let pki = pki();
    let code = status(200);
    let prober = Arc::new(prober(&pki.ca_pem));

    // Two probes of one service at once need two connections; one is kept.
    let server = peer(Script::Respond(code.clone(), "Success"), &pki.acceptor).await;
    let t = target(ServiceKind::Psws, server.addr.port(), PATIENCE);
    let (a, b) = tokio::join!(prober.probe(&t), prober.probe(&t));
    assert!(a.success() && b.success());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(prober.idle_connections(), 1);

    // More services than the pool keeps: every probe passes, the pool stops at its total.
    let mut peers = Vec::new();
    for _ in 0..PROBE_POOL.total {
        peers.push(peer(Script::Respond(code.clone(), "Success"), &pki.acceptor).await);
    }
    for p in &peers {
        let r = prober
            .probe(&target(ServiceKind::Psws, p.addr.port(), PATIENCE))
            .await;
        assert_eq!(r.outcome, Ok(()));
    }
    assert_eq!(prober.idle_connections(), PROBE_POOL.total);
}

/// A probe that finds no kept connection (the pool keeps few) dials again and resumes
/// the TLS session of that service, not one another port of the same name issued: the
/// services of a server share its name, and each (a process of its own) resumes only its
/// own sessions. The resumed probe reports the certificate of the full handshake.
#[tokio::test]
async fn a_probe_that_dials_again_resumes_its_own_services_tls_session() {
    let pki = pki();
    let code = status(200);
    let limits = PoolLimits {
        per_key: 0,
        total: 0,
        ..PROBE_POOL
    };
    let prober = NetworkProber::with_limits(std::slice::from_ref(&pki.ca_pem), limits).unwrap();
    let a = peer(
        Script::Respond(code.clone(), "Success"),
        &pki.separate_acceptor(),
    )
    .await;
    let b = peer(
        Script::Respond(code.clone(), "Success"),
        &pki.separate_acceptor(),
    )
    .await;
    let (ta, tb) = (
        target(ServiceKind::Psws, a.addr.port(), PATIENCE),
        target(ServiceKind::Psws, b.addr.port(), PATIENCE),
    );
    let mut seen = Vec::new();
    for t in [&ta, &tb, &ta, &tb] {
        let r = prober.probe(t).await;
        assert_eq!(r.outcome, Ok(()));
        assert!(!r.reused_connection);
        seen.push(r.cert_not_after);
    }
    for server in [&a, &b] {
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            server.resumed.load(Ordering::SeqCst),
            1,
            "the second resumed"
        );
    }
    let expected = Some(pki.not_after.unix_timestamp());
    assert!(seen
        .iter()
        .all(|n| n.map(|t| t.unix_timestamp()) == expected));
}
