//! `steward_leader{id}` and `steward_leader_changes_total`.

use steward_controllers::{Counter, Gauge, LabelSet, MetricsError, MetricsRegistry};

/// `id`: this daemon's `--ha-id`, one fixed value per process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Id(String);

impl LabelSet for Id {
    const NAMES: &'static [&'static str] = &["id"];
    fn values(&self) -> Vec<&str> {
        vec![&self.0]
    }
}

#[derive(Clone)]
pub struct HaMetrics {
    id: Id,
    leader: Gauge<Id>,
    changes: Counter<()>,
}

impl HaMetrics {
    pub fn register(registry: &MetricsRegistry, id: &str) -> Result<Self, MetricsError> {
        let metrics = Self {
            id: Id(id.to_owned()),
            leader: Gauge::new(
                "steward_leader",
                "1 while this daemon (id) leads the controller HA election and may change things, 0 otherwise.",
            ),
            changes: Counter::new(
                "steward_leader_changes_total",
                "New leaders this daemon has seen elected (itself included).",
            ),
        };
        metrics.leader.set(&metrics.id, 0);
        metrics.changes.start_at_zero(&());
        registry.register(metrics.leader.clone())?;
        registry.register(metrics.changes.clone())?;
        Ok(metrics)
    }

    pub fn set_leading(&self, leading: bool) {
        self.leader.set(&self.id, leading);
    }

    pub fn leader_changed(&self) {
        self.changes.inc(&());
    }
}
