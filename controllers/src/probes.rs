//! Between the probe monitor and the rest: the verdict of a service lives in the monitor
//! (rise/fall), and this is the only code that mirrors it into the store, where the
//! status, the gates and the derived series read it. Controllers ask for probing,
//! re-probing and an end of probing here; they never write a verdict.
//!
//! Outcomes land through [`ProbeSink`]: the store (last probe, verdict), the probe series,
//! and a reconcile of the service when its verdict changed, plus of the services that
//! waited for it to become healthy.

use std::sync::Arc;

use steward_model::ServiceKind;
use steward_runtime::Reason;

use crate::context::Context;
use crate::prober::{Monitor, ProbeReport, ProbeResult, ProbeSink, ProbeTarget};
use crate::service::Services;
use crate::service_key::ServiceKey;
use crate::status::LastProbe;
use crate::store::Store;

pub(crate) struct Probes {
    pub(crate) monitor: Monitor,
    store: Arc<Store>,
}

impl Probes {
    pub(crate) fn new(monitor: Monitor, store: Arc<Store>) -> Self {
        Self { monitor, store }
    }

    /// Probe `key` at `target` on its own schedule (a changed target keeps the verdict).
    pub(crate) fn watch(&self, key: &ServiceKey, target: ProbeTarget) {
        self.monitor.watch(key, target);
    }

    /// The service was (re)installed or restarted: its old verdict means nothing.
    pub(crate) fn reprobe(&self, key: &ServiceKey) {
        self.monitor.reset_with(key, || self.forget_verdict(key));
    }

    /// Nothing to probe (not running, uninstalled); when it runs again it starts from no
    /// verdict.
    pub(crate) fn stop(&self, key: &ServiceKey) {
        self.monitor.unwatch_with(key, || self.forget_verdict(key));
    }

    pub(crate) fn stop_server(&self, server: &str) {
        self.monitor.unwatch_server(server);
    }

    fn forget_verdict(&self, key: &ServiceKey) {
        self.store.with_service(key, |r| r.verdict = None);
    }
}

impl ProbeSink for Context {
    fn observe(&self, key: &ServiceKey, report: &ProbeReport<'_>) {
        let result = report.result;
        if let Err(e) = &result.outcome {
            tracing::debug!(
                service = %key,
                target = %report.target.describe(),
                failure = e.metric_label(),
                "probe failed: {e}"
            );
        }
        self.metrics.probe(&key.server, key.kind, result);
        let last = last_probe(result);
        self.store.with_service(key, |r| {
            r.verdict = report.verdict;
            r.last_probe = Some(last);
        });
        if !report.changed {
            return;
        }
        let outcome = match &result.outcome {
            Ok(()) => "passes".to_owned(),
            Err(e) => format!("fails: {e}"),
        };
        let target = report.target.describe();
        match report.verdict {
            Some(true) => tracing::info!("{key}: healthy ({target} {outcome})"),
            Some(false) => tracing::warn!("{key}: unhealthy ({target} {outcome})"),
            None => {}
        }
        // The service's conditions follow its verdict; what waited for it may go on.
        self.triggers
            .wake::<Services>(key.clone(), Reason::ObservedChanged);
        // The gates ask for a dependency ready somewhere: only its first ready instance
        // opens them. Waking every dependent on every instance's verdict re-ran 10,000
        // services per verdict during a cold converge of 1,000 servers.
        if report.verdict == Some(true) && !self.store.ready_elsewhere(key.kind, key) {
            wake_dependents(self, key.kind);
        }
        if self.upgrade.in_progress() {
            // A rolling upgrade waits for this verdict to release the next service.
            crate::upgrade::wake(self, Reason::ObservedChanged);
        }
    }
}

/// Wake every declared service that depends on `kind` (it just became ready).
fn wake_dependents(ctx: &Context, kind: ServiceKind) {
    let Some(accepted) = ctx.desired.current() else {
        return;
    };
    for server in accepted.desired.snapshot.servers.values() {
        for placed in &server.services {
            if placed.kind.spec().depends_on.contains(&kind) {
                ctx.triggers.wake::<Services>(
                    ServiceKey::new(&server.name, placed.kind),
                    Reason::ObservedChanged,
                );
            }
        }
    }
}

pub(crate) fn last_probe(result: &ProbeResult) -> LastProbe {
    let error = result.outcome.as_ref().err();
    LastProbe {
        success: result.success(),
        duration_seconds: result.duration.as_secs_f64(),
        http_status: result.http_status,
        error: error.map(ToString::to_string),
        failure: error.map(|e| e.metric_label().to_owned()),
        certificate_not_after: result.cert_not_after,
        time: time::OffsetDateTime::now_utc(),
    }
}
