//! The daemon's own metrics: the desired state's validity and generation, and how its
//! loads go (how long they take, when the last one finished, what they found, whether one
//! is stuck). Controllers register theirs in the same registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use steward_watch::{LoadOutcome, WatchStatus};

#[derive(Debug, Clone)]
pub struct DesiredStateMetrics {
    valid: IntGauge,
    generation: IntGauge,
    last_attempted: IntGauge,
    errors: IntGauge,
    load_duration: Histogram,
    last_load: Gauge,
    loads: IntCounterVec,
    stalled: IntGauge,
    /// Loads already counted: the status channel keeps only the latest status, so one
    /// observation may stand for several loads.
    counted: Arc<AtomicU64>,
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
        let errors = IntGauge::with_opts(Opts::new(
            "steward_desired_state_errors",
            "Errors found in the desired-state directory by the last load that judged it.",
        ))?;
        let load_duration = Histogram::with_opts(
            HistogramOpts::new(
                "steward_desired_state_load_duration_seconds",
                "How long loads of the desired-state directory (read, validate, compare) took.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let last_load = Gauge::with_opts(Opts::new(
            "steward_desired_state_last_load_timestamp_seconds",
            "When the last load of the desired-state directory finished (Unix time).",
        ))?;
        let loads = IntCounterVec::new(
            Opts::new(
                "steward_desired_state_loads_total",
                "Loads of the desired-state directory by outcome (applied, unchanged, invalid, failed, deferred).",
            ),
            &["outcome"],
        )?;
        let stalled = IntGauge::with_opts(Opts::new(
            "steward_desired_state_load_stalled",
            "1 while a load of the desired-state directory has run longer than the slow-load bound (5 s).",
        ))?;
        for outcome in LoadOutcome::ALL {
            loads.with_label_values(&[outcome.as_str()]);
        }
        registry.register(Box::new(valid.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(last_attempted.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(load_duration.clone()))?;
        registry.register(Box::new(last_load.clone()))?;
        registry.register(Box::new(loads.clone()))?;
        registry.register(Box::new(stalled.clone()))?;
        Ok(Self {
            valid,
            generation,
            last_attempted,
            errors,
            load_duration,
            last_load,
            loads,
            stalled,
            counted: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn observe(&self, status: &WatchStatus) {
        self.valid.set(i64::from(status.valid));
        self.generation
            .set(i64::try_from(status.last_applied_generation).unwrap_or(i64::MAX));
        self.last_attempted
            .set(i64::try_from(status.last_attempted_generation).unwrap_or(i64::MAX));
        self.errors
            .set(i64::try_from(status.error_count).unwrap_or(i64::MAX));
        self.stalled.set(i64::from(status.loading_since.is_some()));
        let before = self.counted.swap(status.attempts, Ordering::SeqCst);
        if status.attempts > before {
            self.load_duration
                .observe(status.last_load_duration.as_secs_f64());
            if let Some(outcome) = status.last_outcome {
                self.loads
                    .with_label_values(&[outcome.as_str()])
                    .inc_by(status.attempts - before);
            }
            if let Some(at) = status.last_loaded_at {
                self.last_load
                    .set(at.unix_timestamp_nanos() as f64 / 1_000_000_000.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::{Encoder, TextEncoder};
    use time::OffsetDateTime;

    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_load_is_counted_once_with_its_duration_and_time() {
        let registry = Registry::new();
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
