//! The one registry `/metrics` is written from. Every subsystem registers its families
//! once, at start; a name registered twice is refused, since two writers of one family
//! would report each other's numbers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A set of series that writes itself in the text format.
pub trait Family: Send + Sync {
    /// The metric names it writes.
    fn names(&self) -> Vec<&'static str>;
    /// Its families, each header and its lines in one chunk; families without series
    /// are left out.
    fn encode(&self, chunks: &mut Vec<Vec<u8>>);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("metric {0} is registered already")]
    Duplicate(&'static str),
}

impl MetricsError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Duplicate(_) => "duplicate",
        }
    }
}

#[derive(Default)]
struct Registered {
    names: BTreeSet<&'static str>,
    families: Vec<Arc<dyn Family>>,
}

/// Shared by handle: the daemon and each subsystem hold clones of one registry.
#[derive(Clone, Default)]
pub struct MetricsRegistry(Arc<Mutex<Registered>>);

impl MetricsRegistry {
    fn lock(&self) -> MutexGuard<'_, Registered> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, family: impl Family + 'static) -> Result<(), MetricsError> {
        let mut registered = self.lock();
        let names = family.names();
        if let Some(taken) = names.iter().find(|n| registered.names.contains(*n)) {
            return Err(MetricsError::Duplicate(taken));
        }
        registered.names.extend(names);
        registered.families.push(Arc::new(family));
        Ok(())
    }

    /// Everything registered, in the text format (0.0.4), in chunks to be sent one after
    /// the other: at a thousand servers the text is megabytes, and joining it would cost
    /// as much again as writing it.
    pub fn encode(&self) -> Vec<Vec<u8>> {
        let families: Vec<Arc<dyn Family>> = self.lock().families.clone();
        let mut chunks = Vec::new();
        for family in families {
            family.encode(&mut chunks);
        }
        chunks
    }

    /// [`Self::encode`] joined, for tests and tools.
    pub fn text(&self) -> String {
        String::from_utf8(self.encode().concat()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{Counter, Gauge};

    #[test]
    fn a_name_is_registered_once_and_encoded_in_registration_order() {
        let registry = MetricsRegistry::default();
        let up = Gauge::<()>::new("steward_test_up", "Up.");
        let runs = Counter::<()>::new("steward_test_runs_total", "Runs.");
        registry.register(up.clone()).unwrap();
        registry.register(runs.clone()).unwrap();
        assert_eq!(
            registry.register(Gauge::<()>::new("steward_test_up", "Again.")),
            Err(MetricsError::Duplicate("steward_test_up"))
        );
        up.set(&(), 1);
        runs.inc(&());
        assert_eq!(
            registry.text(),
            "# HELP steward_test_up Up.\n# TYPE steward_test_up gauge\nsteward_test_up 1\n\
             # HELP steward_test_runs_total Runs.\n# TYPE steward_test_runs_total counter\nsteward_test_runs_total 1\n"
        );
    }
}
