//! Steward's controllers: servers, certificates and services, each reconciled by the
//! runtime's loop through the agents, with the status document and Prometheus metrics the
//! daemon serves.
//!
//! ```text
//! Desired (watch) ──> triggers ──> server controller      (agent up? host, inventory, connection strings)
//!                              ├─> certificate controller (the server's TLS certificate)
//!                              └─> service controller     (install / reinstall / restart / prune)
//!                                        │    ▲ verdict changed
//!                                        ▼    │
//!                                   probe monitor (every service on its own interval)
//!                                        │
//!                              Store (conditions, events, probes) + Metrics
//! ```
//!
//! Ordering across controllers goes through the store: a service installs only once its
//! server's certificate is in place and every kind it depends on is ready somewhere; the
//! controller that makes a gate true wakes whoever waits on it.

mod agent;
#[doc(hidden)]
pub mod bench;
mod certificate;
mod config;
mod context;
mod drift;
mod metrics;
pub mod prober;
mod rfc3339;
mod schema;
mod server;
mod service;
mod status;
mod store;
mod triggers;

#[cfg(test)]
mod fakes;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use steward_runtime::{BackoffConfig, ControllerConfig, ControllerObserver, Jitter, RunSummary};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{AgentEndpoint, ControllersConfig, Desired, EndpointFn};
pub use metrics::encode as encode_metrics;
pub use status::{
    CertificateSummary, Condition, ConditionStatus, ConditionType, DatabaseStatus, DirectoryStatus,
    Event, EventType, FleetStatus, GroupStatus, Hl7Status, InstallationStatus, LastProbe,
    ResourceDetail, ResourceStatus, ServerStatus, ServiceHealth, ServiceKindStatus,
};
pub use store::{ServiceKey, Store};

use crate::agent::{Agents, ClientConnector, Connector};
use crate::context::{Context, TriggerStreams};
use crate::metrics::Metrics;
use crate::prober::{MonitorSettings, NetworkProber, ProbeSink, Prober};

/// Why the controllers cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ControllersError {
    #[error("cannot register the controllers' metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the CAs trusted for probing services are unusable: {0}")]
    ProbeRoots(#[source] steward_pki::PkiError),
    #[error("{0} must be at least 1")]
    Limit(&'static str),
}

impl ControllersError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Metrics(_) => "metrics",
            Self::ProbeRoots(_) => "probe_roots",
            Self::Limit(_) => "limit",
        }
    }
}

/// What each controller loop did, when they stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub servers: RunSummary,
    pub certificates: RunSummary,
    pub services: RunSummary,
}

/// The server, certificate and service controllers, ready to run.
pub struct Controllers {
    ctx: Arc<Context>,
    streams: TriggerStreams,
}

impl std::fmt::Debug for Controllers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controllers")
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

impl Controllers {
    /// Build the controllers and register their metrics into `registry` (once: a second
    /// set on the same registry is refused).
    pub fn new(
        config: ControllersConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, ControllersError> {
        let prober =
            NetworkProber::new(&config.probe_roots).map_err(ControllersError::ProbeRoots)?;
        let connector = ClientConnector {
            tls: config.agent_tls.clone(),
            timeout: config.agent_timeout,
        };
        Self::with_parts(config, registry, Arc::new(connector), Arc::new(prober))
    }

    pub(crate) fn with_parts(
        config: ControllersConfig,
        registry: &prometheus::Registry,
        connector: Arc<dyn Connector>,
        prober: Arc<dyn Prober>,
    ) -> Result<Self, ControllersError> {
        if config.max_concurrent == 0 {
            return Err(ControllersError::Limit("max_concurrent"));
        }
        if config.per_server == 0 {
            return Err(ControllersError::Limit("per_server"));
        }
        let metrics = Metrics::register(registry)?;
        let agents = Agents::new(connector, config.endpoints.clone());
        let (ctx, streams) =
            Context::new(config, metrics, agents, prober, MonitorSettings::default());
        Ok(Self {
            ctx: Arc::new(ctx),
            streams,
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.ctx.store.clone()
    }

    /// Run until `shutdown`: every new value of `desired` is put in force (or refused),
    /// and the fleet is driven towards it. In-flight reconciles get the agent timeout to
    /// finish after shutdown.
    pub async fn run(
        self,
        desired: watch::Receiver<Option<Desired>>,
        shutdown: CancellationToken,
    ) -> RunReport {
        let Self { ctx, streams } = self;
        let config = &ctx.config;
        let max = NonZeroUsize::new(config.max_concurrent).unwrap_or(NonZeroUsize::MIN);
        let per_server = NonZeroUsize::new(config.per_server).unwrap_or(NonZeroUsize::MIN);
        let grace = config.agent_timeout + Duration::from_secs(1);
        let observer: Arc<dyn ControllerObserver> = Arc::new(ctx.metrics.clone());
        // An agent that comes back must be noticed within half a minute, not after a
        // five-minute backoff; its services are woken by the server controller then.
        let agent_backoff = BackoffConfig::new(
            Duration::from_secs(1),
            2.0,
            Duration::from_secs(30).max(config.resync),
            Jitter::Full,
        )
        .unwrap_or_default();
        let servers = ControllerConfig::new(server::CONTROLLER)
            .max_concurrent(max)
            .backoff(agent_backoff)
            .shutdown_grace(grace)
            .observer(observer.clone());
        let certificates = ControllerConfig::new(certificate::CONTROLLER)
            .max_concurrent(max)
            .shutdown_grace(grace)
            .observer(observer.clone());
        let services = ControllerConfig::new(service::CONTROLLER)
            .max_concurrent(max)
            .shutdown_grace(grace)
            .observer(observer)
            .group_limit(per_server, |key: &ServiceKey| Some(key.server.clone()));
        let sink: Arc<dyn ProbeSink> = ctx.clone();
        let (servers, certificates, services, (), ()) = tokio::join!(
            steward_runtime::run(
                server::reconcile,
                ctx.clone(),
                streams.servers,
                shutdown.clone(),
                servers
            ),
            steward_runtime::run(
                certificate::reconcile,
                ctx.clone(),
                streams.certificates,
                shutdown.clone(),
                certificates
            ),
            steward_runtime::run(
                service::reconcile,
                ctx.clone(),
                streams.services,
                shutdown.clone(),
                services
            ),
            watch_desired(ctx.clone(), desired, shutdown.clone()),
            ctx.monitor.run(sink, shutdown.clone()),
        );
        RunReport {
            servers,
            certificates,
            services,
        }
    }
}

async fn watch_desired(
    ctx: Arc<Context>,
    mut desired: watch::Receiver<Option<Desired>>,
    shutdown: CancellationToken,
) {
    loop {
        let current = desired.borrow_and_update().clone();
        if let Some(current) = current {
            triggers::apply(&ctx, current);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = desired.changed() => {
                if changed.is_err() {
                    // The daemon dropped the sender: keep the last state until shutdown.
                    shutdown.cancelled().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;
