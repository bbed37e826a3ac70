//! Steward out of file descriptors (or memory, or local ports) is not the service down: such
//! a failure has its own label, counts toward no `fall`, flips no verdict and reaches no
//! sink.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use steward_model::ServiceKind;

use super::peers::target;
use super::*;
use crate::service_key::ServiceKey;

#[test]
fn a_socket_refused_by_the_local_fd_limit_is_a_local_resources_failure() {
    for (errno, what) in [
        (24, "EMFILE"),
        (23, "ENFILE"),
        (105, "ENOBUFS"),
        (99, "EADDRNOTAVAIL"),
    ] {
        let e = ProbeError::connect(&io::Error::from_raw_os_error(errno));
        assert_eq!(e.metric_label(), "local_resources", "{what}");
        assert!(e.is_local(), "{what}");
        assert!(e.to_string().contains("the service was not probed"), "{e}");
    }
    let refused = ProbeError::connect(&io::Error::from_raw_os_error(111));
    assert_eq!(refused.metric_label(), "connection_refused");
    assert!(!refused.is_local());
    let hl7 = ProbeError::hl7(
        &steward_hl7::Hl7Error::Connect(io::Error::from_raw_os_error(24)),
        Duration::from_secs(5),
    );
    assert_eq!(hl7.metric_label(), "local_resources", "MLLP probes too");
}

/// Gives the queued outcomes, then passes.
struct Scripted(Mutex<VecDeque<Result<(), ProbeError>>>);

#[async_trait]
impl Prober for Scripted {
    async fn probe(&self, _: &ProbeTarget) -> ProbeResult {
        let outcome = self.0.lock().unwrap().pop_front().unwrap_or(Ok(()));
        ProbeResult {
            duration: Duration::ZERO,
            http_status: None,
            cert_not_after: None,
            reused_connection: false,
            outcome,
        }
    }
}

/// The verdicts handed to the sink.
#[derive(Default)]
struct Verdicts(Mutex<Vec<Option<bool>>>);

impl ProbeSink for Verdicts {
    fn observe(&self, _: &ServiceKey, report: &ProbeReport<'_>) {
        self.0.lock().unwrap().push(report.verdict);
    }
}

#[tokio::test]
async fn local_failures_neither_count_toward_fall_nor_reach_the_sink() {
    let emfile = || ProbeError::connect(&io::Error::from_raw_os_error(24));
    let mut script = VecDeque::from([Ok(())]);
    script.extend((0..5).map(|_| Err(emfile())));
    script.extend([
        Err(ProbeError::Https(HttpsError::ConnectionRefused)),
        Err(ProbeError::Https(HttpsError::ConnectionRefused)),
    ]);
    let monitor = Monitor::new(
        Arc::new(Scripted(Mutex::new(script))),
        MonitorSettings::default(),
    );
    let key = ServiceKey::new("app1", ServiceKind::Psis);
    let mut t = target(ServiceKind::Psis, 7001, Duration::from_secs(1));
    t.check.fall = 2;
    monitor.watch(&key, t);
    let sink = Verdicts::default();

    monitor.probe_now(&key, &sink).await.unwrap();
    assert_eq!(monitor.verdict(&key), Some(true));
    for _ in 0..5 {
        let r = monitor.probe_now(&key, &sink).await.unwrap();
        assert_eq!(r.outcome.unwrap_err().metric_label(), "local_resources");
        assert_eq!(
            monitor.verdict(&key),
            Some(true),
            "five local failures, fall is 2"
        );
    }
    assert_eq!(
        *sink.0.lock().unwrap(),
        [Some(true)],
        "only real probes are reported"
    );

    // Real failures count from zero: the first keeps the verdict, the second flips it.
    monitor.probe_now(&key, &sink).await.unwrap();
    assert_eq!(monitor.verdict(&key), Some(true));
    monitor.probe_now(&key, &sink).await.unwrap();
    assert_eq!(monitor.verdict(&key), Some(false));
}
