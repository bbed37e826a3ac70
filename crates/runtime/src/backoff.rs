//! Per-object exponential backoff for failed reconciles.
//!
//! A failing object must not be retried in a tight loop (it would hammer the
//! agent and flood the logs), nor must every failing object retry at the same
//! instant after a fleet-wide blip (a thundering herd). Exponential growth
//! handles the first, jitter the second. State is per object so one broken
//! server does not slow retries of healthy ones, and it is reset by a success
//! so a later, unrelated failure starts again from the initial delay.
//!
//! The random source is passed in, so tests can use a seeded generator and get
//! the same delays every run.

use std::time::Duration;

use rand::Rng;
use thiserror::Error;

/// How randomness is applied to the exponential delay.
///
/// Both jittered strategies are from the AWS Architecture Blog's
/// "Exponential Backoff And Jitter".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No randomness: `initial * factor^n`, capped. Predictable; use in tests.
    None,
    /// Uniform in `[0, min(max, initial * factor^n)]`. Spreads retries the
    /// most; a retry may come almost at once.
    #[default]
    Full,
    /// Uniform in `[initial, previous_delay * factor]`, capped at `max`.
    /// Never shorter than `initial`, and grows from the delay actually used.
    Decorrelated,
}

/// A backoff configuration was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// The growth factor was below 1, infinite or NaN.
    #[error("backoff factor must be a finite number >= 1, got {0}")]
    InvalidFactor(f64),
    /// The initial delay was zero, so the delay could never grow.
    #[error("initial backoff delay must be greater than zero")]
    ZeroInitial,
    /// The initial delay was larger than the cap.
    #[error("initial backoff delay {initial:?} exceeds the cap {max:?}")]
    InitialAboveMax {
        /// The requested initial delay.
        initial: Duration,
        /// The requested cap.
        max: Duration,
    },
}

/// Parameters of an exponential backoff; validated on construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: Jitter,
}

impl Default for BackoffConfig {
    /// 1 s initial, doubling, capped at 5 minutes, full jitter.
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(300),
            jitter: Jitter::Full,
        }
    }
}

impl BackoffConfig {
    /// Builds a configuration, rejecting ones that could not grow or would
    /// start above their own cap.
    pub fn new(
        initial: Duration,
        factor: f64,
        max: Duration,
        jitter: Jitter,
    ) -> Result<Self, ConfigError> {
        if !factor.is_finite() || factor < 1.0 {
            return Err(ConfigError::InvalidFactor(factor));
        }
        if initial.is_zero() {
            return Err(ConfigError::ZeroInitial);
        }
        if initial > max {
            return Err(ConfigError::InitialAboveMax { initial, max });
        }
        Ok(BackoffConfig {
            initial,
            factor,
            max,
            jitter,
        })
    }

    /// The default (1 s, doubling, full jitter) capped at `max` (at least the initial
    /// 1 s): for a peer whose return must be noticed within `max`, such as an agent or a
    /// domain controller, without hammering it while it is away.
    pub fn capped_at(max: Duration) -> Self {
        let default = BackoffConfig::default();
        BackoffConfig {
            max: max.max(default.initial),
            ..default
        }
    }

    /// The same configuration with another jitter strategy.
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        BackoffConfig { jitter, ..self }
    }

    /// Delay ceiling of the first retry.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// Growth factor between retries.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Largest delay ever returned.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Jitter strategy.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `d * factor`, capped at `max` (also guards against overflow).
    fn grow(&self, d: Duration) -> Duration {
        let secs = d.as_secs_f64() * self.factor;
        match Duration::try_from_secs_f64(secs) {
            Ok(grown) if grown < self.max => grown,
            _ => self.max,
        }
    }
}

/// Uniform sample in `[lo, hi]` (`lo` when the range is empty).
fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: Duration, hi: Duration) -> Duration {
    match hi.checked_sub(lo) {
        Some(span) if !span.is_zero() => {
            let offset = Duration::try_from_secs_f64(span.as_secs_f64() * rng.random::<f64>())
                .unwrap_or(span);
            lo.saturating_add(offset).min(hi)
        }
        _ => lo,
    }
}

/// Backoff state of one object.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// Failures since the last reset.
    failures: u32,
    /// Un-jittered delay for the next failure (`initial * factor^failures`).
    ceiling: Duration,
    /// Delay returned last time (drives decorrelated jitter).
    previous: Duration,
}

impl Backoff {
    /// Fresh state: the next delay is based on `config.initial()`.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
            ceiling: config.initial,
            previous: config.initial,
        }
    }

    /// Records a failure and returns how long to wait before retrying.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let cfg = self.config;
        let delay = match cfg.jitter {
            Jitter::None => self.ceiling,
            Jitter::Full => uniform(rng, Duration::ZERO, self.ceiling),
            Jitter::Decorrelated => {
                let hi = cfg.grow(self.previous).max(cfg.initial);
                uniform(rng, cfg.initial, hi).min(cfg.max)
            }
        };
        self.ceiling = cfg.grow(self.ceiling);
        self.previous = delay;
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Forgets past failures; called after a successful reconcile.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.config);
    }

    /// Failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn no_jitter() -> BackoffConfig {
        BackoffConfig::default().with_jitter(Jitter::None)
    }

    #[test]
    fn default_is_one_second_doubling_capped_at_five_minutes() {
        let cfg = BackoffConfig::default();
        assert_eq!(cfg.initial(), secs(1));
        assert_eq!(cfg.factor(), 2.0);
        assert_eq!(cfg.max(), secs(300));
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(no_jitter());
        let delays: Vec<u64> = (0..12).map(|_| b.next_delay(&mut rng).as_secs()).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300],
            "1 s doubling, capped at 300 s"
        );
        assert_eq!(b.failures(), 12);
    }

    #[test]
    fn capped_at_keeps_the_default_growth_under_the_given_cap() {
        let c = BackoffConfig::capped_at(secs(30));
        assert_eq!((c.initial(), c.factor(), c.max()), (secs(1), 2.0, secs(30)));
        assert_eq!(c.jitter(), Jitter::Full);
        let mut b = Backoff::new(c.with_jitter(Jitter::None));
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> = (0..7).map(|_| b.next_delay(&mut rng)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 30, 30].map(secs),
            "doubling, then the cap"
        );
        assert_eq!(BackoffConfig::capped_at(Duration::ZERO).max(), secs(1));
    }

    #[test]
    fn reset_starts_again_from_initial() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(no_jitter());
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.next_delay(&mut rng), secs(32));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(&mut rng), secs(1));
        assert_eq!(b.next_delay(&mut rng), secs(2));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = BackoffConfig::new(secs(1), 1000.0, Duration::MAX, Jitter::None).unwrap();
        let mut b = Backoff::new(cfg);
        let mut last = Duration::ZERO;
        for _ in 0..200 {
            let d = b.next_delay(&mut rng);
            assert!(d >= last);
            last = d;
        }
        assert_eq!(last, Duration::MAX);
    }

    #[test]
    fn full_jitter_stays_within_ceiling_and_is_spread() {
        let mut rng = StdRng::seed_from_u64(7);
        let cfg = BackoffConfig::default();
        let mut low_half = 0;
        let mut high_half = 0;
        for _ in 0..200 {
            let mut b = Backoff::new(cfg);
            let mut ceiling = secs(1);
            for _ in 0..12 {
                let d = b.next_delay(&mut rng);
                assert!(d <= ceiling, "{d:?} above ceiling {ceiling:?}");
                if d < ceiling / 2 {
                    low_half += 1;
                } else {
                    high_half += 1;
                }
                ceiling = (ceiling * 2).min(secs(300));
            }
        }
        // 2,400 samples of a uniform draw: both halves must be well used.
        assert!(
            low_half > 900 && high_half > 900,
            "{low_half} / {high_half}"
        );
    }

    #[test]
    fn decorrelated_jitter_stays_within_bounds() {
        let mut rng = StdRng::seed_from_u64(11);
        let cfg = BackoffConfig::default().with_jitter(Jitter::Decorrelated);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..100 {
            let mut b = Backoff::new(cfg);
            let mut previous = secs(1);
            for _ in 0..20 {
                let d = b.next_delay(&mut rng);
                assert!(d >= secs(1), "{d:?} below initial");
                assert!(d <= secs(300), "{d:?} above cap");
                assert!(d <= (previous * 2).min(secs(300)), "{d:?} vs {previous:?}");
                distinct.insert(d);
                previous = d;
            }
        }
        assert!(
            distinct.len() > 1000,
            "only {} distinct delays",
            distinct.len()
        );
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(BackoffConfig::default());
            (0..10).map(|_| b.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert_eq!(
            BackoffConfig::new(secs(1), 0.5, secs(10), Jitter::Full),
            Err(ConfigError::InvalidFactor(0.5))
        );
        assert!(matches!(
            BackoffConfig::new(secs(1), f64::NAN, secs(10), Jitter::Full),
            Err(ConfigError::InvalidFactor(_))
        ));
        assert_eq!(
            BackoffConfig::new(Duration::ZERO, 2.0, secs(10), Jitter::Full),
            Err(ConfigError::ZeroInitial)
        );
        assert_eq!(
            BackoffConfig::new(secs(20), 2.0, secs(10), Jitter::Full),
            Err(ConfigError::InitialAboveMax {
                initial: secs(20),
                max: secs(10)
            })
        );
        assert!(BackoffConfig::new(secs(1), 1.0, secs(1), Jitter::None).is_ok());
    }
}
