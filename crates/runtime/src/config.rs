//! Settings of one controller loop.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::key::{GroupKey, ObjectKey};
use crate::observer::{ControllerObserver, NoopObserver};
use crate::scheduler::{GroupFn, Scheduler};

/// Default global concurrency: enough to overlap agent round-trips without
/// flooding the fleet.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;
/// Default time in-flight reconciles get to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Settings of one controller loop, built with chained setters.
///
/// `G` is the group type used by the per-group limit; it stays `()` until
/// [`ControllerConfig::group_limit`] is called.
pub struct ControllerConfig<K, G = ()> {
    pub(crate) name: Arc<str>,
    pub(crate) max_concurrent: NonZeroUsize,
    pub(crate) groups: Option<(NonZeroUsize, GroupFn<K, G>)>,
    pub(crate) backoff: BackoffConfig,
    pub(crate) shutdown_grace: Duration,
    pub(crate) observer: Arc<dyn ControllerObserver>,
    pub(crate) jitter_seed: Option<u64>,
}

impl<K: ObjectKey> ControllerConfig<K, ()> {
    /// Defaults: 16 concurrent reconciles, no group limit, default backoff
    /// (1 s doubling to 5 min, full jitter), 30 s shutdown grace, no observer.
    ///
    /// `name` labels the tracing span and observer calls, so it should be a
    /// short fixed string such as `"service"`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        ControllerConfig {
            name: name.into(),
            max_concurrent: NonZeroUsize::new(DEFAULT_MAX_CONCURRENT).unwrap_or(NonZeroUsize::MIN),
            groups: None,
            backoff: BackoffConfig::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            observer: Arc::new(NoopObserver),
            jitter_seed: None,
        }
    }
}

impl<K: ObjectKey, G: GroupKey> ControllerConfig<K, G> {
    /// At most `n` reconciles run at once.
    pub fn max_concurrent(mut self, n: NonZeroUsize) -> Self {
        self.max_concurrent = n;
        self
    }

    /// At most `per_group` reconciles run at once for keys of the same
    /// group; `group_of` returns a key's group, or `None` for keys that only
    /// count against the global limit.
    pub fn group_limit<G2, F>(self, per_group: NonZeroUsize, group_of: F) -> ControllerConfig<K, G2>
    where
        G2: GroupKey,
        F: Fn(&K) -> Option<G2> + Send + Sync + 'static,
    {
        ControllerConfig {
            name: self.name,
            max_concurrent: self.max_concurrent,
            groups: Some((per_group, Arc::new(group_of))),
            backoff: self.backoff,
            shutdown_grace: self.shutdown_grace,
            observer: self.observer,
            jitter_seed: self.jitter_seed,
        }
    }

    /// Backoff applied to keys whose reconcile failed.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long in-flight reconciles may run on after shutdown is requested
    /// before they are abandoned.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Receiver of metric events.
    pub fn observer(mut self, observer: Arc<dyn ControllerObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Seeds the backoff jitter, making retry delays reproducible (tests).
    /// Without it the generator is seeded from the OS.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn scheduler(&self) -> Scheduler<K, G> {
        match &self.groups {
            Some((per_group, group_of)) => {
                Scheduler::grouped(self.max_concurrent, *per_group, Arc::clone(group_of))
            }
            None => Scheduler::build(self.max_concurrent, usize::MAX, None),
        }
    }
}

impl<K, G> fmt::Debug for ControllerConfig<K, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerConfig")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("per_group", &self.groups.as_ref().map(|(n, _)| n))
            .field("backoff", &self.backoff)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("jitter_seed", &self.jitter_seed)
            .finish_non_exhaustive()
    }
}
