//! The one shape every controller has, after kube-runtime's `Controller`: a key type, a
//! name, `reconcile(key, reason, ctx) -> Result<Action, ControllerError>`, and an
//! `error_policy` that turns a failed run into the object's condition. The runtime around
//! it measures each run (the one duration there is), retries failures with per-key
//! backoff and never runs one key twice at once.
//!
//! A controller is registered once, in [`crate::Controllers`]; registration gives it a
//! trigger channel ([`TriggerBus`]) through which the others wake it, a place in a full
//! resync, its metric labels, and its loop.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::future::BoxFuture;
use std::num::NonZeroUsize;
use std::time::Duration;

use steward_runtime::{
    Action, CancellationToken, ControllerConfig, ControllerObserver, GroupKey, ObjectKey, Reason,
    RunSummary,
};

use crate::context::Context;
use crate::error::ControllerError;

/// A request to reconcile one key.
pub(crate) type Trigger<K> = (K, Reason);

pub(crate) trait Reconciler: Send + Sync + 'static {
    /// What one reconcile is about (a server name, a service on a server ...).
    type Key: ObjectKey + fmt::Display + Sync;
    /// Keys of one group share a concurrency budget (`()`: no groups).
    type Group: GroupKey;
    /// The `controller` label and span field.
    const NAME: &'static str;

    /// Drive one object towards the desired state in force; always re-reads what is
    /// observed, never trusts what an earlier run did.
    fn reconcile(
        key: Self::Key,
        reason: Reason,
        ctx: Arc<Context>,
    ) -> impl Future<Output = Result<Action, ControllerError>> + Send;

    /// A run failed: say so on the object. The retry itself is the runtime's backoff.
    fn error_policy(key: &Self::Key, error: &ControllerError, ctx: &Context);

    /// Every key the controller knows now: what a full resync runs.
    fn keys(ctx: &Context) -> Vec<Self::Key>;

    /// This controller's loop settings, from the shared ones (`base`).
    fn configure(
        base: ControllerConfig<Self::Key>,
        ctx: &Context,
    ) -> ControllerConfig<Self::Key, Self::Group>;
}

/// `reconcile`, then `error_policy` on failure: what the runtime runs for each key.
pub(crate) async fn reconcile_and_record<R: Reconciler>(
    key: R::Key,
    reason: Reason,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let result = R::reconcile(key.clone(), reason, Arc::clone(&ctx)).await;
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
        let config = R::configure(shared.config(R::NAME), &ctx);
        Box::pin(steward_runtime::run(
            reconcile_and_record::<R>,
            ctx,
            self.triggers,
            shutdown,
            config,
        ))
    }

    #[cfg(test)]
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.triggers)
    }
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
