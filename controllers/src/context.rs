//! What every reconcile gets, kube-runtime style: a container of the parts, each with one
//! job. The desired state in force ([`InForce`]), the agents, the store, the metrics, the
//! probes ([`Probes`]), the trigger bus through which one controller wakes another, the
//! pace of requeues ([`Pace`]), what was issued ([`IssuedMemos`]) and the CAs probes
//! trust ([`TrustRoots`]).

use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agents;
use crate::certificate::IssuedMemos;
use crate::config::ControllersConfig;
use crate::database::DatabasePool;
use crate::in_force::InForce;
use crate::metrics::Metrics;
use crate::probes::Probes;
use crate::reconciler::TriggerBus;
use crate::store::Store;
use crate::trust::TrustRoots;

/// Follow-up after an action (install, restart): soon, but give the service a moment.
const SHORT: Duration = Duration::from_millis(500);
/// Re-check of a gate (dependency, certificate) in case no trigger arrives.
const WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Context {
    pub config: ControllersConfig,
    pub desired: InForce,
    pub agents: Agents,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub probes: Probes,
    pub triggers: TriggerBus,
    pub pace: Pace,
    pub issued: IssuedMemos,
    /// Which HL7 listener is active and the last failover (persisted).
    pub hl7: crate::hl7_failover::Memory,
    pub trust: TrustRoots,
    /// The connection pool of the database in force.
    pub database: DatabasePool,
    /// Mail notifications: every Notifications object's outbox and the dedup state.
    pub notifier: Arc<steward_notify::Notifier>,
    /// Mails the notifier could not deliver, for the feed to record (taken by `run`).
    pub undelivered: std::sync::Mutex<
        Option<futures::channel::mpsc::UnboundedReceiver<steward_notify::Undelivered>>,
    >,
    /// Stops the notifier's outboxes.
    pub notify_shutdown: tokio_util::sync::CancellationToken,
    /// Where the lab's stand-in directories are, and the CA they are trusted by; unset
    /// outside the lab.
    pub directory_lab: std::sync::OnceLock<crate::config::DirectoryLab>,
    /// How the load balancer runs here (bind address, low ports, binary) and which
    /// HAProxy binary passed the version check.
    pub balancer: crate::balancer::BalancerState,
    /// Controller HA: the leader's epoch; unset for a single daemon, which always acts.
    pub fence: crate::agent::Fence,
    /// The rolling upgrade (persisted rollout, clock, what the service controller may
    /// install).
    pub upgrade: crate::upgrade::Upgrades,
}

impl Context {
    /// Whether this daemon may change anything now (it leads, or runs alone). Agent
    /// changes are fenced by the client itself; this gates what agents cannot fence:
    /// provisioning the database, writing to directories, sending mail.
    pub(crate) fn acting(&self) -> bool {
        self.fence
            .get()
            .is_none_or(|leader| leader.acting_epoch().is_ok())
    }

    /// Stop managing a server that left the desired state and runs nothing any more.
    pub(crate) fn forget_server(&self, name: &str) {
        self.desired.forget_server(name);
        self.agents.forget(name);
        self.probes.stop_server(name);
        self.store.forget_server(name);
        self.issued.forget(name);
    }

    /// Re-read the trusted CA files of the generation in force.
    pub(crate) fn refresh_trust(&self) {
        if let Some(accepted) = self.desired.current() {
            self.trust
                .refresh(&accepted, self.probes.monitor.prober().as_ref());
        }
    }
}

/// How soon objects are looked at again; never later than the resync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub resync: Duration,
}

impl Pace {
    /// After an action, to read back what it did.
    pub(crate) fn short(&self) -> Duration {
        self.resync.min(SHORT)
    }

    /// While a gate is closed, in case nobody wakes the object.
    pub(crate) fn wait(&self) -> Duration {
        self.resync.min(WAIT)
    }

    /// How long a settled object rests before it is checked again.
    pub(crate) fn steady(&self, interval: Duration) -> Duration {
        self.resync.min(interval)
    }
}
