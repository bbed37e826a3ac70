//! What every reconcile gets: the desired state in force, clients, the probe monitor,
//! store, metrics and the trigger senders through which one controller wakes another (a
//! certificate in place wakes that server's services; a healthy PSIS wakes everything
//! waiting on it). The context is also where probe outcomes land ([`ProbeSink`]): store,
//! metrics, and a reconcile of the service whose verdict changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use steward_model::snapshot::Server;
use steward_model::ServiceKind;
use steward_runtime::Reason;

use crate::agent::Agents;
use crate::config::{ControllersConfig, Desired};
use crate::metrics::Metrics;
use crate::prober::{Monitor, MonitorSettings, ProbeReport, ProbeResult, ProbeSink, Prober};
use crate::status::LastProbe;
use crate::store::{ServiceKey, Store};

/// Follow-up after an action (install, restart): soon, but give the service a moment.
const SHORT: Duration = Duration::from_millis(500);
/// Re-check of a gate (dependency, certificate) in case no trigger arrives.
const WAIT: Duration = Duration::from_secs(1);

pub(crate) type Trigger<K> = (K, Reason);

pub(crate) struct TriggerStreams {
    pub servers: UnboundedReceiver<Trigger<String>>,
    pub certificates: UnboundedReceiver<Trigger<String>>,
    pub services: UnboundedReceiver<Trigger<ServiceKey>>,
}

struct TriggerSenders {
    servers: UnboundedSender<Trigger<String>>,
    certificates: UnboundedSender<Trigger<String>>,
    services: UnboundedSender<Trigger<ServiceKey>>,
}

pub(crate) struct Context {
    pub config: ControllersConfig,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub agents: Agents,
    /// Probes installed, running services on their own schedule.
    pub monitor: Monitor,
    desired: RwLock<Option<Arc<Desired>>>,
    /// Every server of an accepted snapshot not yet forgotten, including servers that
    /// left the desired state: their agents must still be reached to report or prune
    /// what they run.
    known: Mutex<BTreeMap<String, Server>>,
    triggers: TriggerSenders,
}

impl Context {
    pub(crate) fn new(
        config: ControllersConfig,
        metrics: Metrics,
        agents: Agents,
        prober: Arc<dyn Prober>,
        probing: MonitorSettings,
    ) -> (Self, TriggerStreams) {
        let (servers_tx, servers) = unbounded();
        let (certificates_tx, certificates) = unbounded();
        let (services_tx, services) = unbounded();
        let ctx = Self {
            config,
            store: Arc::new(Store::default()),
            metrics,
            agents,
            monitor: Monitor::new(prober, probing),
            desired: RwLock::new(None),
            known: Mutex::new(BTreeMap::new()),
            triggers: TriggerSenders {
                servers: servers_tx,
                certificates: certificates_tx,
                services: services_tx,
            },
        };
        (
            ctx,
            TriggerStreams {
                servers,
                certificates,
                services,
            },
        )
    }

    /// The desired state in force.
    pub(crate) fn desired(&self) -> Option<Arc<Desired>> {
        self.desired
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_desired(&self, desired: Arc<Desired>) {
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            for server in desired.snapshot.servers.values() {
                known.insert(server.name.clone(), server.clone());
            }
        }
        *self.desired.write().unwrap_or_else(|p| p.into_inner()) = Some(desired);
    }

    /// A server by name, and whether the desired state in force declares it.
    pub(crate) fn server(&self, desired: &Desired, name: &str) -> Option<(Server, bool)> {
        if let Some(server) = desired.snapshot.servers.get(name) {
            return Some((server.clone(), true));
        }
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|s| (s.clone(), false))
    }

    pub(crate) fn known_servers(&self) -> Vec<String> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Stop managing a server that left the desired state and runs nothing any more.
    pub(crate) fn forget_server(&self, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.agents.forget(name);
        self.monitor.unwatch_server(name);
        self.store.forget_server(name);
        self.metrics.forget_server(name);
    }

    // A send fails only when the controller stopped (shutdown): nothing left to wake.

    pub(crate) fn trigger_server(&self, name: &str, reason: Reason) {
        let _ = self
            .triggers
            .servers
            .unbounded_send((name.to_owned(), reason));
    }

    pub(crate) fn trigger_certificate(&self, name: &str, reason: Reason) {
        let _ = self
            .triggers
            .certificates
            .unbounded_send((name.to_owned(), reason));
    }

    pub(crate) fn trigger_service(&self, key: ServiceKey, reason: Reason) {
        let _ = self.triggers.services.unbounded_send((key, reason));
    }

    /// Wake every declared service that depends on `kind` (it just became ready).
    pub(crate) fn trigger_dependents(&self, kind: ServiceKind) {
        let Some(desired) = self.desired() else {
            return;
        };
        for server in desired.snapshot.servers.values() {
            for placed in &server.services {
                if placed.kind.spec().depends_on.contains(&kind) {
                    self.trigger_service(
                        ServiceKey::new(&server.name, placed.kind),
                        Reason::ObservedChanged,
                    );
                }
            }
        }
    }

    /// The kind-wide verdict (`minimumHealthy`) into its metric.
    pub(crate) fn refresh_kind(&self, kind: ServiceKind) {
        let status = self.store.service_kind(kind);
        self.metrics.service_kind(kind, status.map(|s| s.healthy));
    }

    /// Which server's HL7 listener is active, into its metric.
    pub(crate) fn refresh_hl7(&self) {
        let (active, all) = self.store.hl7_listeners();
        for server in all {
            self.metrics
                .hl7_active(&server, active.as_deref() == Some(server.as_str()));
        }
    }

    pub(crate) fn short(&self) -> Duration {
        self.config.resync.min(SHORT)
    }

    pub(crate) fn wait(&self) -> Duration {
        self.config.resync.min(WAIT)
    }

    /// How long a settled object rests before it is checked again.
    pub(crate) fn steady(&self, interval: Duration) -> Duration {
        self.config.resync.min(interval)
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
        let installed = self.store.with_service(key, |r| {
            r.verdict = report.verdict;
            r.last_probe = Some(last);
            r.observed.is_some()
        });
        let healthy = report.verdict == Some(true);
        self.metrics
            .service(&key.server, key.kind, installed, healthy);
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
        self.trigger_service(key.clone(), Reason::ObservedChanged);
        if healthy {
            self.trigger_dependents(key.kind);
        }
        self.refresh_kind(key.kind);
        if key.kind == ServiceKind::Hl7 {
            self.refresh_hl7();
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
