//! The desired state in force: the one generation the controllers accepted, with what it
//! changed and when it was accepted. Reconciles read it here; the daemon's API and its
//! convergence log read it through [`DesiredInForce`]. A generation the controllers refused
//! (an empty fleet) never appears here, whatever the watcher published.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use steward_model::diff::{diff, SnapshotDiff};
use steward_model::snapshot::Server;
use tokio::sync::watch;

use crate::config::Desired;

/// One accepted generation.
#[derive(Debug)]
pub struct Accepted {
    pub desired: Desired,
    /// What changed from the generation in force before it.
    pub diff: Arc<SnapshotDiff>,
    /// When the controllers accepted it: what "converged in N s" counts from.
    pub at: Instant,
}

impl Accepted {
    pub fn generation(&self) -> u64 {
        self.desired.generation
    }
}

/// A reader of the desired state in force. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DesiredInForce(watch::Receiver<Option<Arc<Accepted>>>);

impl DesiredInForce {
    /// The generation in force; `None` until one was accepted.
    pub fn current(&self) -> Option<Arc<Accepted>> {
        self.0.borrow().clone()
    }

    /// Wait for the next accepted generation; `Err` once the controllers are gone.
    pub async fn changed(&mut self) -> Result<Option<Arc<Accepted>>, watch::error::RecvError> {
        self.0.changed().await?;
        Ok(self.0.borrow_and_update().clone())
    }
}

pub(crate) struct InForce {
    current: watch::Sender<Option<Arc<Accepted>>>,
    /// Every server of an accepted snapshot not yet forgotten, including servers that
    /// left the desired state: their agents must still be reached to report or prune
    /// what they run.
    known: Mutex<BTreeMap<String, Server>>,
}

impl Default for InForce {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
            known: Mutex::new(BTreeMap::new()),
        }
    }
}

impl InForce {
    pub(crate) fn current(&self) -> Option<Arc<Accepted>> {
        self.current.borrow().clone()
    }

    pub(crate) fn reader(&self) -> DesiredInForce {
        DesiredInForce(self.current.subscribe())
    }

    /// Put `desired` in force. Its diff is the loader's when it was computed against the
    /// generation in force (the usual case), else computed here.
    pub(crate) fn accept(&self, desired: Desired) -> Arc<Accepted> {
        let previous = self.current();
        let diff = match (&desired.diff, &previous) {
            (Some(d), Some(p)) if p.generation() + 1 == desired.generation => Arc::clone(d),
            (Some(d), None) if d.initial => Arc::clone(d),
            _ => Arc::new(diff(
                previous.as_ref().map(|p| p.desired.snapshot.as_ref()),
                &desired.snapshot,
            )),
        };
        {
            let mut known = self.lock_known();
            for server in desired.snapshot.servers.values() {
                known.insert(server.name.clone(), server.clone());
            }
        }
        let accepted = Arc::new(Accepted {
            desired,
            diff,
            at: Instant::now(),
        });
        self.current.send_replace(Some(Arc::clone(&accepted)));
        accepted
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Server>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A server by name, and whether the desired state in force declares it.
    pub(crate) fn server(&self, accepted: &Accepted, name: &str) -> Option<(Server, bool)> {
        if let Some(server) = accepted.desired.snapshot.servers.get(name) {
            return Some((server.clone(), true));
        }
        self.lock_known().get(name).map(|s| (s.clone(), false))
    }

    pub(crate) fn known_servers(&self) -> Vec<String> {
        self.lock_known().keys().cloned().collect()
    }

    pub(crate) fn forget_server(&self, name: &str) {
        self.lock_known().remove(name);
    }
}
