//! Steward's controllers: the database, servers, certificates, services and Active
//! Directories, each reconciled by the runtime's loop (the database over TDS, directories
//! over LDAP, the rest through the agents), with the status document and Prometheus metrics the
//! daemon serves. Every controller has one shape ([`reconciler::Reconciler`]) and is
//! registered once ([`register`]).
//!
//! ```text
//! Desired (watch) ──> triggers ──> database controller    (login, database there? service login complete?)
//!                              ├─> server controller      (agent up? host, inventory, connection strings)
//!                              ├─> certificate controller (the server's TLS certificate)
//!                              ├─> service controller     (install / reinstall / restart / prune)
//!                              └─> directory controller   (bind, role groups, membership)
//!                                        │    ▲ verdict changed
//!                                        ▼    │
//!                                   probe monitor (every service on its own interval)
//!                                        │
//!                              Store (conditions, events, probes) + Metrics
//! ```
//!
//! Ordering across controllers goes through the store: a service installs only once the
//! database is up (installer login works, database exists), its server's certificate is
//! in place and every kind it depends on is ready somewhere; the
//! controller that makes a gate true wakes whoever waits on it.

mod agent;
mod balancer;
#[doc(hidden)]
pub mod bench;
mod certificate;
mod config;
mod context;
mod database;
mod directory;
mod drift;
mod error;
mod hl7;
mod hl7_failover;
mod in_force;
mod listing;
mod metrics;
mod notifications;
pub mod prober;
mod probes;
mod reconciler;
mod rfc3339;
mod schema;
mod server;
mod service;
mod service_key;
mod status;
mod store;
mod triggers;
mod trust;
mod upgrade;

#[cfg(test)]
mod fakes;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use steward_runtime::{ControllerObserver, RunSummary};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use balancer::BalancerSettings;
pub use config::{
    AgentEndpoint, ControllersConfig, Desired, DirectoryAddressFn, DirectoryLab, EndpointFn,
};
pub use in_force::{Accepted, DesiredInForce};
pub use metrics::{
    Counter, Family, Gauge, Histogram, LabelSet, MetricsError, MetricsRegistry, Value,
    DURATION_BUCKETS,
};
pub use service_key::ServiceKey;
pub use status::{
    CertificateSummary, Condition, ConditionStatus, ConditionType, DatabaseStatus, DeliveryStatus,
    DirectoryStatus, Event, EventType, FleetStatus, GroupStatus, Hl7Status, InstallationStatus,
    LastFailover, LastProbe, NotificationsStatus, ResourceDetail, ResourceStatus, ServerStatus,
    ServerUpgradePhase, ServiceHealth, ServiceKindStatus, UpgradePhase, UpgradeServerStatus,
    UpgradeStatus,
};
pub use store::{Compaction, DocumentError, FleetJson, Store};
pub use upgrade::{Clock, ResumeOutcome};

use crate::agent::{Agents, ClientConnector, Connector, Fence};
use crate::certificate::IssuedMemos;
use crate::context::{Context, Pace};
use crate::in_force::InForce;
use crate::metrics::Metrics;
use crate::prober::{Monitor, MonitorSettings, NetworkProber, ProbeSink, Prober};
use crate::probes::Probes;
use crate::reconciler::{Registered, Shared, TriggerBus};

/// Every controller, in start order. Adding a resource kind adds its line here (and its
/// module); nothing else in this crate lists controllers.
fn register(bus: &mut TriggerBus) -> Vec<Box<dyn Registered>> {
    vec![
        bus.register::<database::Databases>(),
        bus.register::<server::Servers>(),
        bus.register::<certificate::Certificates>(),
        bus.register::<service::Services>(),
        bus.register::<balancer::LoadBalancers>(),
        bus.register::<hl7_failover::Hl7Failovers>(),
        bus.register::<notifications::Notifications>(),
        bus.register::<upgrade::UpgradeController>(),
        bus.register::<directory::Directories>(),
    ]
}

/// Why the controllers cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ControllersError {
    #[error("cannot register the controllers' metrics: {0}")]
    Metrics(#[from] MetricsError),
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

/// What each controller loop did, by controller name, when they stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport(BTreeMap<&'static str, RunSummary>);

impl RunReport {
    pub fn get(&self, controller: &str) -> Option<&RunSummary> {
        self.0.get(controller)
    }
}

impl std::ops::Index<&str> for RunReport {
    type Output = RunSummary;

    fn index(&self, controller: &str) -> &RunSummary {
        self.0
            .get(controller)
            .unwrap_or_else(|| panic!("no controller named {controller}"))
    }
}

/// `server: 12 ok, 1 failed; service: ...` — for the shutdown log.
impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, s)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {} ok, {} failed", s.succeeded, s.failed)?;
            if s.abandoned > 0 {
                write!(f, ", {} abandoned", s.abandoned)?;
            }
            if s.not_started > 0 {
                write!(f, ", {} not started", s.not_started)?;
            }
        }
        Ok(())
    }
}

/// The controllers, ready to run.
pub struct Controllers {
    ctx: Arc<Context>,
    registered: Vec<Box<dyn Registered>>,
}

impl std::fmt::Debug for Controllers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controllers")
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

/// What the daemon's API may ask of running controllers. Cheap to clone.
#[derive(Clone)]
pub struct ControllersHandle {
    ctx: Arc<Context>,
}

impl fmt::Debug for ControllersHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllersHandle").finish_non_exhaustive()
    }
}

impl ControllersHandle {
    /// Reconcile every object of every controller now (an operator's "reconcile"): each
    /// re-reads what its agent reports, whether or not the desired state changed.
    pub fn resync_all(&self) {
        // The HL7 failover reads every listener again, not only the active one.
        self.ctx.hl7.look_again_in_full();
        self.ctx.triggers.resync_all(&self.ctx);
    }

    /// The desired state the controllers accepted (not merely what the watcher loaded).
    pub fn desired(&self) -> DesiredInForce {
        self.ctx.desired.reader()
    }

    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.ctx.store)
    }

    /// Move the HL7 listener back to `hl7.preferred` (with `failback: manual`, only an
    /// operator's request does), if the preferred server's listener can take over.
    pub fn hl7_failback(&self) {
        self.ctx.hl7.request_failback();
        self.ctx
            .triggers
            .wake::<hl7_failover::Hl7Failovers>((), steward_runtime::Reason::Manual);
    }

    /// Controller HA, on winning the election: tell every agent of the desired state in
    /// force this leader's epoch (so a predecessor is refused there even where nothing is
    /// left to change), then reconcile everything now, whatever backoff a follower's
    /// refused attempts had built up. An agent that cannot be told now learns the epoch
    /// with this leader's first change.
    pub async fn take_over(&self) {
        if let Some(accepted) = self.ctx.desired.current() {
            let announcements = accepted.desired.snapshot.servers.values().map(|server| {
                let ctx = Arc::clone(&self.ctx);
                let server = server.clone();
                async move {
                    let told = match ctx.agents.get(&server) {
                        Ok(agent) => agent.announce_epoch().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = told {
                        tracing::warn!(server = %server.name, error = %e, "could not tell the agent the new leader's epoch");
                    }
                }
            });
            futures::future::join_all(announcements).await;
        }
        self.resync_all();
    }

    /// An operator's resume of a halted upgrade (`POST /api/v1/upgrade/resume`): the
    /// failed server is upgraded again from its start; nothing else changes.
    pub fn resume_upgrade(&self) -> ResumeOutcome {
        let outcome = self.ctx.upgrade.request_resume();
        if outcome == ResumeOutcome::Resumed {
            upgrade::wake(&self.ctx, steward_runtime::Reason::Manual);
        }
        outcome
    }

    /// Read the windows on this clock instead of the system's.
    pub fn set_upgrade_clock(&self, clock: Arc<dyn Clock>) {
        self.ctx.upgrade.set_clock(clock);
    }

    /// The desired-state files were found invalid (the last good state stays in force):
    /// an event on the installation, which mail notifications turn into
    /// `DesiredStateInvalid`.
    pub fn desired_state_invalid(&self, message: &str) {
        let object = self.ctx.desired.current().map_or_else(
            || "installation".to_owned(),
            |a| format!("installation/{}", a.desired.snapshot.installation.name),
        );
        self.ctx
            .store
            .event(object, EventType::Warning, "DesiredStateInvalid", message);
    }
}

impl Controllers {
    /// Build the controllers and register their metrics into `registry` (once: a second
    /// set on the same registry is refused).
    pub fn new(
        config: ControllersConfig,
        registry: &MetricsRegistry,
    ) -> Result<Self, ControllersError> {
        let prober =
            NetworkProber::new(&config.probe_roots).map_err(ControllersError::ProbeRoots)?;
        let fence = Fence::default();
        let connector = ClientConnector::new(
            config.agent_tls.clone(),
            config.agent_timeout,
            Arc::clone(&fence),
        );
        Self::with_fenced_parts(
            config,
            registry,
            Arc::new(connector),
            Arc::new(prober),
            fence,
        )
    }

    #[cfg(test)]
    pub(crate) fn with_parts(
        config: ControllersConfig,
        registry: &MetricsRegistry,
        connector: Arc<dyn Connector>,
        prober: Arc<dyn Prober>,
    ) -> Result<Self, ControllersError> {
        Self::with_fenced_parts(config, registry, connector, prober, Fence::default())
    }

    fn with_fenced_parts(
        config: ControllersConfig,
        registry: &MetricsRegistry,
        connector: Arc<dyn Connector>,
        prober: Arc<dyn Prober>,
        fence: Fence,
    ) -> Result<Self, ControllersError> {
        if config.max_concurrent == 0 {
            return Err(ControllersError::Limit("max_concurrent"));
        }
        if config.per_server == 0 {
            return Err(ControllersError::Limit("per_server"));
        }
        let mut triggers = TriggerBus::default();
        let registered = register(&mut triggers);
        let names: Vec<&str> = registered.iter().map(|r| r.name()).collect();
        let metrics = Metrics::register(registry, &names)?;
        let store = Arc::new(Store::with_gauges(metrics.clone()));
        let (notifier, undelivered, notify_shutdown) =
            notifier(registry, config.state_dir.as_deref())?;
        store.set_notifier(Arc::clone(&notifier));
        let monitor = Monitor::new(prober, MonitorSettings::default());
        let ctx = Context {
            agents: Agents::new(connector, config.endpoints.clone()),
            desired: InForce::default(),
            probes: Probes::new(monitor, Arc::clone(&store)),
            store,
            metrics,
            triggers,
            pace: Pace::new(config.resync),
            issued: IssuedMemos::load(config.state_dir.as_deref()),
            hl7: hl7_failover::Memory::load(config.state_dir.as_deref()),
            trust: trust::TrustRoots::new(config.probe_roots.clone()),
            database: database::DatabasePool::default(),
            notifier,
            undelivered: std::sync::Mutex::new(Some(undelivered)),
            notify_shutdown,
            directory_lab: std::sync::OnceLock::new(),
            balancer: Default::default(),
            fence,
            upgrade: upgrade::Upgrades::load(config.state_dir.as_deref()),
            config,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            registered,
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.ctx.store.clone()
    }

    /// Controller HA: act only while `leader` gives an epoch. Every change to an agent
    /// carries it (and is not sent without one); the database and directories are only
    /// checked, as in `mode: monitor`, and no mail is sent. Call before `run`; only the
    /// first call counts.
    pub fn fence(&self, leader: Arc<dyn steward_agent::EpochSource>) {
        let _ = self.ctx.fence.set(leader);
    }

    /// Reach directories where the lab runs their stand-ins, trusting the lab's CA for
    /// them. Only the first call counts.
    pub fn lab_directories(&self, lab: DirectoryLab) {
        let _ = self.ctx.directory_lab.set(lab);
    }

    /// Where the load balancer steward runs listens (bind address, low ports mapped) and
    /// which `haproxy` runs it; unset: every address, declared ports, `haproxy` on PATH.
    /// Only the first call counts.
    pub fn balancer_settings(&self, settings: BalancerSettings) {
        let _ = self.ctx.balancer.settings.set(settings);
    }

    pub fn handle(&self) -> ControllersHandle {
        ControllersHandle {
            ctx: Arc::clone(&self.ctx),
        }
    }

    /// Run until `shutdown`: every new value of `desired` is put in force (or refused),
    /// and the fleet is driven towards it. In-flight reconciles get the agent timeout to
    /// finish after shutdown.
    pub async fn run(
        self,
        desired: watch::Receiver<Option<Desired>>,
        shutdown: CancellationToken,
    ) -> RunReport {
        let Self { ctx, registered } = self;
        let shared = Shared {
            max_concurrent: NonZeroUsize::new(ctx.config.max_concurrent)
                .unwrap_or(NonZeroUsize::MIN),
            shutdown_grace: ctx.config.agent_timeout + Duration::from_secs(1),
            observer: Arc::new(ctx.metrics.clone()) as Arc<dyn ControllerObserver>,
        };
        let loops = registered.into_iter().map(|r| {
            let name = r.name();
            let running = r.run(Arc::clone(&ctx), &shared, shutdown.clone());
            async move { (name, running.await) }
        });
        let sink: Arc<dyn ProbeSink> = ctx.clone();
        let undelivered = ctx
            .undelivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| futures::channel::mpsc::unbounded().1);
        // Outboxes stop with the controllers (what is still queued is counted as dropped).
        let notify_shutdown = ctx.notify_shutdown.clone();
        let stop_outboxes = shutdown.clone();
        tokio::spawn(async move {
            stop_outboxes.cancelled().await;
            notify_shutdown.cancel();
        });
        let (summaries, (), (), (), ()) = tokio::join!(
            futures::future::join_all(loops),
            watch_desired(ctx.clone(), desired, shutdown.clone()),
            ctx.probes.monitor.run(sink, shutdown.clone()),
            poll_trust(ctx.clone(), shutdown.clone()),
            notifications::feed::run(ctx.clone(), undelivered, shutdown.clone()),
        );
        RunReport(summaries.into_iter().collect())
    }

    /// The trigger receiver of controller `R`, taken out of its loop (tests watch who
    /// wakes whom).
    #[cfg(test)]
    pub(crate) fn triggers<R: reconciler::Reconciler>(
        &mut self,
    ) -> futures::channel::mpsc::UnboundedReceiver<reconciler::Trigger<R::Key>> {
        let at = self
            .registered
            .iter()
            .position(|r| r.name() == R::NAME)
            .unwrap_or_else(|| panic!("{} is not registered", R::NAME));
        self.registered
            .remove(at)
            .into_any()
            .downcast()
            .map(|rx| *rx)
            .unwrap_or_else(|_| panic!("{} has another key type", R::NAME))
    }
}

type Undeliverable = futures::channel::mpsc::UnboundedReceiver<steward_notify::Undelivered>;

/// The notifier, its metrics registered, and the channel its failures arrive on.
fn notifier(
    registry: &MetricsRegistry,
    state_dir: Option<&std::path::Path>,
) -> Result<
    (
        Arc<steward_notify::Notifier>,
        Undeliverable,
        CancellationToken,
    ),
    ControllersError,
> {
    let metrics = steward_notify::NotifyMetrics::new();
    registry.register(notifications::metrics::NotificationsFamily(metrics.clone()))?;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let shutdown = CancellationToken::new();
    let notifier = steward_notify::Notifier::new(
        metrics,
        state_dir,
        steward_notify::RetryPolicy::default(),
        Arc::new(move |u| {
            let _ = tx.unbounded_send(u);
        }),
        shutdown.clone(),
    );
    Ok((Arc::new(notifier), rx, shutdown))
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

/// Trusted CA files change without a commit: read them again now and then.
async fn poll_trust(ctx: Arc<Context>, shutdown: CancellationToken) {
    let every = ctx.pace.resync.min(certificate::FILE_POLL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => ctx.refresh_trust(),
        }
    }
}

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;
