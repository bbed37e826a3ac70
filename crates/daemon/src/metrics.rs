//! The daemon's own metrics: the desired state's validity and generation, and how its
//! loads go (how long they take, when the last one finished, what they found, whether one
//! is stuck). Controllers register theirs in the same registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use steward_controllers::{
    Counter, Gauge, Histogram, LabelSet, MetricsError, MetricsRegistry, Value, DURATION_BUCKETS,
};
use steward_watch::{LoadOutcome, WatchStatus};

/// `outcome`: what a load found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutcomeLabel(LoadOutcome);

impl Ord for OutcomeLabel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl PartialOrd for OutcomeLabel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl LabelSet for OutcomeLabel {
    const NAMES: &'static [&'static str] = &["outcome"];
    fn values(&self) -> Vec<&str> {
        vec![self.0.as_str()]
    }
}

#[derive(Clone)]
pub struct DesiredStateMetrics {
    valid: Gauge<()>,
    generation: Gauge<()>,
    last_attempted: Gauge<()>,
    errors: Gauge<()>,
    load_duration: Histogram<()>,
    last_load: Gauge<()>,
    loads: Counter<OutcomeLabel>,
    stalled: Gauge<()>,
    /// Loads already counted: the status channel keeps only the latest status, so one
    /// observation may stand for several loads.
    counted: Arc<AtomicU64>,
}

impl DesiredStateMetrics {
    pub fn register(registry: &MetricsRegistry) -> Result<Self, MetricsError> {
        let metrics = Self {
            valid: Gauge::new(
                "steward_desired_state_valid",
                "Whether the desired-state directory currently validates (1) or not (0).",
            ),
            generation: Gauge::new(
                "steward_desired_state_generation",
                "Generation of the last valid desired state being applied.",
            ),
            last_attempted: Gauge::new(
                "steward_desired_state_last_attempted_generation",
                "Generation number the last load attempt would have had.",
            ),
            errors: Gauge::new(
                "steward_desired_state_errors",
                "Errors found in the desired-state directory by the last load that judged it.",
            ),
            load_duration: Histogram::new(
                "steward_desired_state_load_duration_seconds",
                "How long loads of the desired-state directory (read, validate, compare) took.",
                DURATION_BUCKETS,
            ),
            last_load: Gauge::new(
                "steward_desired_state_last_load_timestamp_seconds",
                "When the last load of the desired-state directory finished (Unix time).",
            ),
            loads: Counter::new(
                "steward_desired_state_loads_total",
                "Loads of the desired-state directory by outcome (applied, unchanged, invalid, failed, deferred).",
            ),
            stalled: Gauge::new(
                "steward_desired_state_load_stalled",
                "1 while a load of the desired-state directory has run longer than the slow-load bound (5 s).",
            ),
            counted: Arc::new(AtomicU64::new(0)),
        };
        // Every series exists from start-up, as it did before the first load.
        for gauge in [
            &metrics.valid,
            &metrics.generation,
            &metrics.last_attempted,
            &metrics.errors,
            &metrics.last_load,
            &metrics.stalled,
        ] {
            gauge.set(&(), 0);
        }
        metrics.load_duration.start_at_zero(&());
        for outcome in LoadOutcome::ALL {
            metrics.loads.start_at_zero(&OutcomeLabel(outcome));
        }
        registry.register(metrics.valid.clone())?;
        registry.register(metrics.generation.clone())?;
        registry.register(metrics.last_attempted.clone())?;
        registry.register(metrics.errors.clone())?;
        registry.register(metrics.load_duration.clone())?;
        registry.register(metrics.last_load.clone())?;
        registry.register(metrics.loads.clone())?;
        registry.register(metrics.stalled.clone())?;
        Ok(metrics)
    }

    pub fn observe(&self, status: &WatchStatus) {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.valid.set(&(), status.valid);
        self.generation
            .set(&(), count(status.last_applied_generation));
        self.last_attempted
            .set(&(), count(status.last_attempted_generation));
        self.errors
            .set(&(), i64::try_from(status.error_count).unwrap_or(i64::MAX));
        self.stalled.set(&(), status.loading_since.is_some());
        let before = self.counted.swap(status.attempts, Ordering::SeqCst);
        if status.attempts > before {
            self.load_duration
                .observe(&(), status.last_load_duration.as_secs_f64());
            if let Some(outcome) = status.last_outcome {
                self.loads
                    .inc_by(&OutcomeLabel(outcome), status.attempts - before);
            }
            if let Some(at) = status.last_loaded_at {
                self.last_load.set(
                    &(),
                    Value::Float(at.unix_timestamp_nanos() as f64 / 1_000_000_000.0),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;

    fn text(registry: &MetricsRegistry) -> String {
        registry.text()
    }

    #[test]
    fn each_load_is_counted_once_with_its_duration_and_time() {
        let registry = MetricsRegistry::default();
        let m = DesiredStateMetrics::register(&registry).unwrap();
        let mut s = WatchStatus::new("/d".into());
        m.observe(&s);
        let out = text(&registry);
        assert!(out.contains("steward_desired_state_loads_total{outcome=\"deferred\"} 0"));
        assert!(out.contains("steward_desired_state_load_duration_seconds_count 0"));

        s.attempts = 1;
        s.valid = true;
        s.last_outcome = Some(LoadOutcome::Applied);
        s.last_load_duration = Duration::from_millis(20);
        s.last_loaded_at = Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        m.observe(&s);
        // The same status seen again (another field changed): not another load.
        m.observe(&s);
        s.loading_since = Some(OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap());
        m.observe(&s);
        let out = text(&registry);
        assert!(
            out.contains("steward_desired_state_loads_total{outcome=\"applied\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("steward_desired_state_load_duration_seconds_count 1"),
            "{out}"
        );
        assert!(
            out.contains("steward_desired_state_last_load_timestamp_seconds 1700000000"),
            "{out}"
        );
        assert!(
            out.contains("steward_desired_state_load_stalled 1"),
            "{out}"
        );
        assert!(out.contains("steward_desired_state_valid 1"), "{out}");
    }
}
