//! The one shape every controller has, after kube-runtime's `Controller`: a key type, a
//! name, `reconcile(request, ctx) -> Result<Action, ControllerError>` (the request: a key,
//! why it runs, the desired state in force), and an `error_policy` that turns a failed run
//! into the object's condition. A controller of one object ([`Singleton`]: the database,
//! the load balancer ...) writes only its name, its pass and its error policy. The runtime
//! around it measures each run (the one duration there is), retries failures with per-key
//! backoff and never runs one key twice at once; what a controller sets of its own loop
//! is [`OwnLoop`] (backoff, per-server grouping), and no controller names a group type.
//!
//! A controller is registered once, in [`crate::Controllers`]; registration gives it a
//! trigger channel ([`TriggerBus`]) through which the others wake it, a place in a full
//! resync, its metric labels, and its loop.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::future::BoxFuture;
use std::num::NonZeroUsize;
use std::time::Duration;

use steward_runtime::{
    Action, BackoffConfig, CancellationToken, ControllerConfig, ControllerObserver, GroupKey,
    ObjectKey, Reason, RunSummary,
};

use crate::context::Context;
use crate::error::ControllerError;
use crate::in_force::Accepted;

/// A request to reconcile one key.
pub(crate) type Trigger<K> = (K, Reason);

/// What a reconcile ends with: when to look again, or why it failed.
pub(crate) type Reconciled = Result<Action, ControllerError>;

/// One run's question: reconcile `key` (woken for `reason`) towards `accepted`, the
/// desired state in force. Before the controllers accepted one, nothing runs.
pub(crate) struct Request<K> {
    pub key: K,
    pub reason: Reason,
    pub accepted: Arc<Accepted>,
}

pub(crate) trait Reconciler: Send + Sync + 'static {
    /// What one reconcile is about (a server name, a service on a server ...).
    type Key: ObjectKey + Sync;
    /// The `controller` label and span field.
    const NAME: &'static str;

    /// Drive one object towards the desired state in force; always re-reads what is
    /// observed, never trusts what an earlier run did.
    fn reconcile(
        request: Request<Self::Key>,
        ctx: Arc<Context>,
    ) -> impl Future<Output = Reconciled> + Send;

    /// A run failed: say so on the object. The retry itself is the runtime's backoff.
    fn error_policy(key: &Self::Key, error: &ControllerError, ctx: &Context);

    /// Every key the controller knows now: what a full resync runs.
    fn keys(ctx: &Context) -> Vec<Self::Key>;

    /// What this controller sets of its own loop (default: nothing); limits, shutdown
    /// grace and metrics are shared by all.
    fn configure(own: OwnLoop<Self::Key>, _ctx: &Context) -> OwnLoop<Self::Key> {
        own
    }
}

/// A controller of the installation's one object of its kind (its database, load
/// balancer, HL7 listener group, rollout). Its key is `()`, so it writes only its name,
/// its pass and what a failed pass says; the [`Reconciler`] is derived.
pub(crate) trait Singleton: Send + Sync + 'static {
    /// The `controller` label and span field.
    const NAME: &'static str;

    /// One pass over the object, as [`Reconciler::reconcile`].
    fn reconcile(accepted: Arc<Accepted>, ctx: &Context)
        -> impl Future<Output = Reconciled> + Send;

    /// A pass failed: say so on the object, as [`Reconciler::error_policy`].
    fn error_policy(error: &ControllerError, ctx: &Context);
}

impl<S: Singleton> Reconciler for S {
    type Key = ();
    const NAME: &'static str = S::NAME;

    async fn reconcile(request: Request<()>, ctx: Arc<Context>) -> Reconciled {
        S::reconcile(request.accepted, &ctx).await
    }

    fn error_policy((): &(), error: &ControllerError, ctx: &Context) {
        S::error_policy(error, ctx);
    }

    /// Before a desired state is in force there is nothing to look at.
    fn keys(ctx: &Context) -> Vec<()> {
        if ctx.desired.current().is_some() {
            vec![()]
        } else {
            Vec::new()
        }
    }
}

/// What a controller sets of its own loop. Kept apart from the runtime's
/// `ControllerConfig<K, G>` so that no controller names a group type: the one grouping
/// there is, is by server.
pub(crate) struct OwnLoop<K> {
    backoff: Option<BackoffConfig>,
    server_of: Option<fn(&K) -> &str>,
}

impl<K> Default for OwnLoop<K> {
    fn default() -> Self {
        Self {
            backoff: None,
            server_of: None,
        }
    }
}

impl<K> OwnLoop<K> {
    /// Backoff after failures, instead of the runtime's default.
    pub(crate) fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Keys on one server (named by `server_of`) share the per-server limit
    /// (`ControllersConfig::per_server`), so one slow agent holds up only its own keys.
    pub(crate) fn per_server(mut self, server_of: fn(&K) -> &str) -> Self {
        self.server_of = Some(server_of);
        self
    }
}

/// `reconcile` against the desired state in force (none yet: wait for one), then
/// `error_policy` on failure: what the runtime runs for each key.
pub(crate) async fn reconcile_and_record<R: Reconciler>(
    key: R::Key,
    reason: Reason,
    ctx: Arc<Context>,
) -> Reconciled {
    let Some(accepted) = ctx.desired.current() else {
        return Ok(Action::await_change());
    };
    let request = Request {
        key: key.clone(),
        reason,
        accepted,
    };
    let result = R::reconcile(request, Arc::clone(&ctx)).await;
    if let Err(error) = &result {
        R::error_policy(&key, error, &ctx);
    }
    result
}

/// What every controller loop shares: limits, shutdown grace, metrics.
pub(crate) struct Shared {
    pub max_concurrent: NonZeroUsize,
    pub shutdown_grace: Duration,
    pub observer: Arc<dyn ControllerObserver>,
}

impl Shared {
    fn config<K: ObjectKey>(&self, name: &'static str) -> ControllerConfig<K> {
        ControllerConfig::new(name)
            .max_concurrent(self.max_concurrent)
            .shutdown_grace(self.shutdown_grace)
            .observer(Arc::clone(&self.observer))
    }
}

/// A registered controller, ready to run.
pub(crate) trait Registered: Send {
    fn name(&self) -> &'static str;
    fn run(
        self: Box<Self>,
        ctx: Arc<Context>,
        shared: &Shared,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, RunSummary>;
    /// The trigger receiver, for tests that watch who wakes whom.
    #[cfg(test)]
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

struct Registration<R: Reconciler> {
    triggers: UnboundedReceiver<Trigger<R::Key>>,
}

impl<R: Reconciler> Registered for Registration<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn run(
        self: Box<Self>,
        ctx: Arc<Context>,
        shared: &Shared,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, RunSummary> {
        let own = R::configure(OwnLoop::default(), &ctx);
        let mut config = shared.config(R::NAME);
        if let Some(backoff) = own.backoff {
            config = config.backoff(backoff);
        }
        let Some(server_of) = own.server_of else {
            return run_loop::<R, ()>(ctx, self.triggers, shutdown, config);
        };
        let per_server = NonZeroUsize::new(ctx.config.per_server).unwrap_or(NonZeroUsize::MIN);
        let config = config.group_limit(per_server, move |key: &R::Key| {
            Some(server_of(key).to_owned())
        });
        run_loop::<R, String>(ctx, self.triggers, shutdown, config)
    }

    #[cfg(test)]
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.triggers)
    }
}

/// `R`'s loop, its keys grouped by `G` (`()`: not grouped).
fn run_loop<R: Reconciler, G: GroupKey>(
    ctx: Arc<Context>,
    triggers: UnboundedReceiver<Trigger<R::Key>>,
    shutdown: CancellationToken,
    config: ControllerConfig<R::Key, G>,
) -> BoxFuture<'static, RunSummary> {
    Box::pin(steward_runtime::run(
        reconcile_and_record::<R>,
        ctx,
        triggers,
        shutdown,
        config,
    ))
}

/// One trigger channel per registered controller, found by the controller's type: how
/// one controller wakes another (a certificate in place wakes that server's services)
/// without knowing more than its type.
#[derive(Default)]
pub(crate) struct TriggerBus {
    senders: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    resyncs: Vec<fn(&Context)>,
}

impl TriggerBus {
    /// Give `R` its channel and its place in a full resync.
    pub(crate) fn register<R: Reconciler>(&mut self) -> Box<dyn Registered> {
        let (tx, rx) = unbounded::<Trigger<R::Key>>();
        self.senders.insert(TypeId::of::<R>(), Box::new(tx));
        self.resyncs.push(resync::<R>);
        Box::new(Registration::<R> { triggers: rx })
    }

    /// Ask `R` to reconcile `key`. A send fails only when that controller stopped
    /// (shutdown): nothing is left to wake then.
    pub(crate) fn wake<R: Reconciler>(&self, key: R::Key, reason: Reason) {
        if let Some(tx) = self
            .senders
            .get(&TypeId::of::<R>())
            .and_then(|s| s.downcast_ref::<UnboundedSender<Trigger<R::Key>>>())
        {
            let _ = tx.unbounded_send((key, reason));
        }
    }

    /// Every key of every controller, now.
    pub(crate) fn resync_all(&self, ctx: &Context) {
        // Every service of a server is looked at from one listing sent from now on.
        ctx.agents.freshness.full_resync();
        for resync in &self.resyncs {
            resync(ctx);
        }
    }
}

fn resync<R: Reconciler>(ctx: &Context) {
    for key in R::keys(ctx) {
        ctx.triggers.wake::<R>(key, Reason::Manual);
    }
}
