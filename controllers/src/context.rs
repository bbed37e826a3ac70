//! What every reconcile gets: the desired state in force, clients, prober, store, metrics
//! and the trigger senders through which one controller wakes another (a certificate in
//! place wakes that server's services; a healthy PSIS wakes everything waiting on it).

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
use crate::prober::Prober;
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
    pub prober: Arc<dyn Prober>,
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
    ) -> (Self, TriggerStreams) {
        let (servers_tx, servers) = unbounded();
        let (certificates_tx, certificates) = unbounded();
        let (services_tx, services) = unbounded();
        let ctx = Self {
            config,
            store: Arc::new(Store::default()),
            metrics,
            agents,
            prober,
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
