//! Printed figures for the notification goals, against a real aiosmtpd on loopback (run
//! inside a private network namespace, like the tests):
//! - event to mail accepted by the server (the 250 after the message), p50/p99/max;
//! - 1,000 events in a burst (50 objects, down/recover flapping, repeats) produce exactly
//!   the deduplicated set of mails.
//!
//! `cargo bench -p steward-notify --bench delivery`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_model::notifications::{NotificationEvent, SmtpTls};
use steward_notify::{Notice, Notifier, NotifyMetrics, RetryPolicy, SendResult};
use support::{notifications, python, ServerOptions, Smtpd};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

fn notice(event: NotificationEvent, object: &str) -> Notice {
    Notice {
        event,
        object: object.into(),
        reason: "HealthCheckFailing".into(),
        message: "probe failed".into(),
        time: OffsetDateTime::now_utc(),
        warning: true,
    }
}

fn notifier(port: u16) -> Notifier {
    let n = notifications(port, SmtpTls::None, None, None);
    let notifier = Notifier::new(
        NotifyMetrics::new(),
        None,
        RetryPolicy::default(),
        Arc::new(|u| panic!("undelivered: {}", u.error)),
        CancellationToken::new(),
    );
    notifier.apply(&n.name, Some(&n), Path::new("/"), "ps");
    notifier
}

async fn latency(python: &Path) {
    let server = Smtpd::start(python, ServerOptions::default());
    let notifier = notifier(server.port);
    let mut samples = Vec::new();
    for i in 0..300 {
        let start = Instant::now();
        assert_eq!(
            notifier.offer(&notice(
                NotificationEvent::ServiceDown,
                &format!("service/app{i}/PSIS")
            )),
            1
        );
        while notifier.metrics().sent(SendResult::Sent) < i + 1 {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "event -> mail accepted (300 mails, one kept connection): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= 1 s)",
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

async fn burst(python: &Path) {
    let server = Smtpd::start(python, ServerOptions::default());
    let notifier = notifier(server.port);
    // 1,000 events: 50 services each going down, down again, recovering, recovering again,
    // and 800 repeats of downs; plus the expected mails by the dedup rules.
    let mut events = Vec::new();
    for round in 0..20 {
        for s in 0..50 {
            let object = format!("service/app{s}/PSIS");
            let event = match round {
                5 | 6 => NotificationEvent::ServiceRecovered,
                _ => NotificationEvent::ServiceDown,
            };
            events.push(notice(event, &object));
        }
    }
    assert_eq!(events.len(), 1000);
    // One down per service (then rate-limited), one recovery after it (the second has no
    // down before it): 100 mails.
    let mut expected = BTreeSet::new();
    for s in 0..50 {
        expected.insert(format!("[PatientSecure] ServiceDown: service/app{s}/PSIS"));
        expected.insert(format!(
            "[PatientSecure] ServiceRecovered: service/app{s}/PSIS"
        ));
    }
    let start = Instant::now();
    let queued: usize = events.iter().map(|e| notifier.offer(e)).sum();
    let offered = start.elapsed();
    while notifier.metrics().sent(SendResult::Sent) < expected.len() as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delivered = start.elapsed();
    // Anything more would show up now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<String> = server
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), set.len(), "a mail was sent twice");
    assert_eq!(set, expected, "not exactly the deduplicated set");
    println!(
        "1,000 events in a burst: {queued} queued, {} mails received = the deduplicated set; offered in {:.1} ms, all accepted after {:.0} ms",
        got.len(),
        offered.as_secs_f64() * 1e3,
        delivered.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(python) = python() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        latency(&python).await;
        burst(&python).await;
    });
}
