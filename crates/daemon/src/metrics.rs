//! The daemon's own metrics: the desired state's validity and generation. Controllers
//! register theirs in the same registry.

use prometheus::{IntGauge, Opts, Registry};
use steward_watch::WatchStatus;

#[derive(Debug, Clone)]
pub struct DesiredStateMetrics {
    valid: IntGauge,
    generation: IntGauge,
    last_attempted: IntGauge,
}

impl DesiredStateMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let valid = IntGauge::with_opts(Opts::new(
            "steward_desired_state_valid",
            "Whether the desired-state directory currently validates (1) or not (0).",
        ))?;
        let generation = IntGauge::with_opts(Opts::new(
            "steward_desired_state_generation",
            "Generation of the last valid desired state being applied.",
        ))?;
        let last_attempted = IntGauge::with_opts(Opts::new(
            "steward_desired_state_last_attempted_generation",
            "Generation number the last load attempt would have had.",
        ))?;
        registry.register(Box::new(valid.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(last_attempted.clone()))?;
        Ok(Self {
            valid,
            generation,
            last_attempted,
        })
    }

    pub fn observe(&self, status: &WatchStatus) {
        self.valid.set(i64::from(status.valid));
        self.generation
            .set(i64::try_from(status.last_applied_generation).unwrap_or(i64::MAX));
        self.last_attempted
            .set(i64::try_from(status.last_attempted_generation).unwrap_or(i64::MAX));
    }
}
