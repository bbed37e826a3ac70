//! The HL7 failover controller (one key): exactly one HL7 listener runs; the others are
//! installed and stopped (held by their agents, so neither an agent restart nor a drift
//! repair starts them). The vendor's guide has a person re-route a failed listener; this
//! does it the way keepalived or a failover cluster would, with fencing first.
//!
//! Every run reads the active listener's state from its agent, and the others' from what
//! earlier runs saw (`view.rs`: a steady run asks one agent, not every HL7 server's), then:
//! 1. keeps the active one (the one kept before, else the one running, else `preferred`,
//!    else the first by name) and stops any other that runs;
//! 2. starts the active listener if it is held (a fresh installation, a failback);
//! 3. tests it (an MLLP round trip, every quarter of `failoverAfter`); failing (or its
//!    agent gone) for `failoverAfter`, with `failover: automatic`, it is fenced (stopped
//!    through its agent; when that agent does not answer, first taken out of the HL7
//!    backend), the standby is started, and once it answers the backend is pointed at it.
//!    `failover: manual` only reports (`FailoverNeeded`);
//! 4. returns to `preferred` with `failback: automatic` once it has been ready for ten times
//!    `failoverAfter` since the last move (so a listener that fails again at once does not
//!    make the traffic flap), with `manual` only when asked
//!    ([`crate::ControllersHandle::hl7_failback`]).
//!
//! Never two active at once: a listener is started only when every other one is stopped or
//! fenced out of the backend, and a move reads the standby it starts afresh right before
//! it fences anything. A standby that runs without steward (an agent restart re-adopted
//! it) is stopped within the server controller's period (`Pace::period` of the fleet,
//! the resync on a small one) plus one run: that controller lists every server each
//! period and wakes this one when a listener is not as last seen, and a view that old is
//! taken again in full anyway. A listener whose agent did not answer is asked at every
//! run, so a fenced one that kept running is stopped as soon as its agent is back. The
//! move is recorded as `lastFailover` (persisted, see `memory.rs`), the event
//! `HL7Failover` and `steward_hl7_failovers_total`.

mod backend;
mod memory;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::ServiceInfo;
use steward_model::resource::{Failback, Hl7Failover, Mode};
use steward_model::snapshot::{Hl7, Server};
use steward_model::ServiceKind;
use steward_runtime::{Action, Reason};
use tokio::time::Instant;

use crate::agent::AgentApi;
use crate::config::Desired;
use crate::context::Context;
use crate::error::ControllerError;
use crate::in_force::Accepted;
use crate::listing::Need;
use crate::reconciler::{Reconciled, Singleton};
use crate::status::{EventType, LastFailover, Phase};
use crate::store::Hl7Record;
use backend::Backend;
pub(crate) use memory::{Hl7State, Memory};
pub(crate) use view::listed;
use view::{Listener, Look, Seen};

/// A failback waits this many times `failoverAfter` after the last move.
const FAILBACK_HOLD: u32 = 10;
/// How long a started standby may take to answer before the backend is pointed at it
/// anyway (its checks then decide), at least.
const START_PATIENCE: Duration = Duration::from_secs(5);

/// What can go wrong besides agent calls (those are [`ControllerError::AgentCall`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Hl7FailoverError {
    #[error("cannot record the HL7 listener in {}: {detail}", path.display())]
    Memory {
        path: std::path::PathBuf,
        detail: String,
    },
    /// The active listener's agent does not answer and it cannot be taken out of the HL7
    /// backend: starting a standby could make two listeners active.
    #[error("{server}'s agent does not answer and its listener cannot be taken out of the HL7 backend ({detail}); the standby is not started")]
    CannotFence { server: String, detail: String },
}

impl Hl7FailoverError {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "StateNotWritten",
            Self::CannotFence { .. } => "CannotFence",
        }
    }

    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "hl7_state_not_written",
            Self::CannotFence { .. } => "hl7_cannot_fence",
        }
    }
}

pub(crate) struct Hl7Failovers;

impl Singleton for Hl7Failovers {
    const NAME: &'static str = "hl7_failover";

    async fn reconcile(accepted: Arc<Accepted>, ctx: &Context) -> Reconciled {
        reconcile(&accepted, ctx).await
    }

    fn error_policy(error: &ControllerError, ctx: &Context) {
        ctx.store
            .hl7_condition(Phase::Degraded, error.reason(), &error.to_string());
    }
}

async fn reconcile(accepted: &Accepted, ctx: &Context) -> Reconciled {
    let desired = &accepted.desired;
    let snapshot = &desired.snapshot;
    let servers: Vec<&Server> = snapshot
        .servers_with(ServiceKind::Hl7)
        .map(|(s, _)| s)
        .collect();
    if servers.is_empty() {
        ctx.store.with_hl7(|r| *r = None);
        return Ok(Action::await_change());
    }
    let generation = desired.generation;
    let state = ctx.hl7.get();
    let active = state
        .active
        .as_deref()
        .filter(|a| servers.iter().any(|s| s.name == *a));
    let look = match active {
        Some(_) => view::look(ctx, generation, snapshot.servers.len()),
        // Nothing to keep: every listener decides which one runs.
        None => Look::Full(Need::now()),
    };
    let began = Instant::now();
    let listeners = view::listeners(ctx, &servers, active, &look).await;
    let mut pass = Pass {
        ctx,
        desired,
        servers: &servers,
        full: matches!(look, Look::Full(_) | Look::Sweep(_)).then_some(began),
        afresh: matches!(look, Look::Full(_)),
        policy: &snapshot.installation.hl7,
        // A daemon that does not lead (controller HA) only reports, like monitor mode: its
        // agent calls would be refused, but HAProxy's runtime API is not fenced.
        monitor: snapshot.installation.mode == Mode::Monitor || !ctx.acting(),
        backend: Backend::of(snapshot, ctx.config.state_dir.as_deref()),
        state,
        listeners,
    };
    let result = pass.run().await;
    let saved = ctx.hl7.set(pass.state.clone());
    view::keep(ctx, generation, &pass.listeners, pass.full);
    pass.publish();
    if result.is_err() || saved.is_err() {
        // The retry does not trust what this pass saw.
        ctx.hl7.look_again_in_full();
    }
    match (result, saved) {
        (Ok(verdict), Ok(())) => {
            ctx.store
                .hl7_condition(verdict.phase, verdict.reason, &verdict.message);
            Ok(Action::requeue(verdict.next))
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

/// What a run concluded: the HL7 condition and when to look again.
struct Verdict {
    phase: Phase,
    reason: &'static str,
    message: String,
    next: Duration,
}

struct Pass<'a> {
    ctx: &'a Context,
    desired: &'a Desired,
    servers: &'a [&'a Server],
    /// When this pass began to look at every listener, if it did.
    full: Option<Instant>,
    /// It looked at every listener in listings sent since it began (or since the change
    /// that woke it).
    afresh: bool,
    policy: &'a Hl7,
    monitor: bool,
    backend: Option<Backend>,
    state: Hl7State,
    listeners: Vec<Listener<'a>>,
}

impl<'a> Pass<'a> {
    /// How often the active listener is tested: a quarter of `failoverAfter`.
    fn every(&self) -> Duration {
        (self.policy.failover_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn verdict(&self, phase: Phase, reason: &'static str, message: String) -> Verdict {
        let next = match phase {
            Phase::Ready => self.every(),
            _ => self.every().min(self.ctx.pace.short()),
        };
        Verdict {
            phase,
            reason,
            message,
            next,
        }
    }

    fn listener(&self, name: &str) -> Option<&Listener<'_>> {
        self.listeners.iter().find(|l| l.name() == name)
    }

    fn names(&self) -> Vec<String> {
        self.listeners.iter().map(|l| l.name().to_owned()).collect()
    }

    /// The record the status and `steward_hl7_active_listener` show.
    fn publish(&self) {
        let active = self.state.active.clone();
        let standby = self
            .listeners
            .iter()
            .filter(|l| Some(l.name()) != active.as_deref() && l.standby())
            .map(|l| l.name().to_owned())
            .collect();
        let record = Hl7Record {
            active,
            answering: self.state.answering,
            standby,
            servers: self.names(),
            last_failover: self.state.last_failover.clone(),
            conditions: Default::default(),
        };
        self.ctx.store.with_hl7(|r| match r {
            Some(existing) => {
                let conditions = std::mem::take(&mut existing.conditions);
                *existing = Hl7Record {
                    conditions,
                    ..record
                };
            }
            None => *r = Some(record),
        });
    }

    /// The listener kept active: the one kept so far (unless it is down while another
    /// runs: that one takes traffic already), else one that runs (`preferred` first), else
    /// `preferred` or the first installed one whose agent answers.
    fn choose(&self) -> Option<String> {
        let running = |l: &Listener<'_>| matches!(l.seen, Seen::Running(_));
        let kept = self
            .state
            .active
            .as_ref()
            .and_then(|name| self.listener(name));
        if let Some(kept) = kept {
            if running(kept) || !self.listeners.iter().any(running) {
                return Some(kept.name().to_owned());
            }
        }
        let preferred = self.policy.preferred.as_deref();
        let by_preference = |pick: &dyn Fn(&Listener<'_>) -> bool| {
            self.listeners
                .iter()
                .filter(|l| pick(l))
                .min_by_key(|l| (Some(l.name()) != preferred, l.name().to_owned()))
                .map(|l| l.name().to_owned())
        };
        by_preference(&running).or_else(|| by_preference(&|l: &Listener<'_>| l.standby()))
    }

    async fn run(&mut self) -> Result<Verdict, ControllerError> {
        let Some(active) = self.choose() else {
            self.state.active = None;
            self.state.answering = false;
            return Ok(self.verdict(
                Phase::Progressing,
                "WaitingForListener",
                "no server has its HL7 listener installed with an agent that answers yet".into(),
            ));
        };
        self.state.active = Some(active.clone());
        if let Some(verdict) = self.stop_others(&active).await? {
            return Ok(verdict);
        }
        let failing = self.test_active(&active).await?;
        if let Some(verdict) = failing {
            return Ok(verdict);
        }
        self.point_backend(&active).await;
        if let Some(verdict) = self.failback(&active).await? {
            return Ok(verdict);
        }
        let standby: Vec<String> = self
            .listeners
            .iter()
            .filter(|l| l.name() != active && l.standby())
            .map(|l| l.name().to_owned())
            .collect();
        let message = if standby.is_empty() {
            format!("{active}'s HL7 listener answers; no standby")
        } else {
            format!(
                "{active}'s HL7 listener answers; standby: {}",
                standby.join(", ")
            )
        };
        Ok(self.verdict(Phase::Ready, "Active", message))
    }

    /// Exactly one listener: stop every other that runs (a leftover of an earlier
    /// placement, or a fenced listener whose agent came back).
    async fn stop_others(&mut self, active: &str) -> Result<Option<Verdict>, ControllerError> {
        let others: Vec<(String, Option<Arc<dyn AgentApi>>)> = self
            .listeners
            .iter()
            .filter(|l| l.name() != active && matches!(l.seen, Seen::Running(_)))
            .map(|l| (l.name().to_owned(), l.agent.clone()))
            .collect();
        if others.is_empty() {
            return Ok(None);
        }
        if self.monitor {
            let names: Vec<&str> = others.iter().map(|(n, _)| n.as_str()).collect();
            return Ok(Some(self.verdict(
                Phase::Degraded,
                "SeveralListeners",
                format!(
                    "HL7 listeners run on {active} and {} (monitor mode: not stopped)",
                    names.join(", ")
                ),
            )));
        }
        for (name, agent) in others {
            let Some(agent) = agent else { continue };
            tracing::warn!("{name}: stopping HL7: only {active}'s listener may be active");
            // Read back at the next pass, whatever the stop's outcome.
            self.ctx.hl7.views.mark_stale(&name);
            agent
                .stop(ServiceKind::Hl7)
                .await
                .map_err(|e| ControllerError::call(format!("stopping HL7 on {name}"), e))?;
            self.ctx.store.event(
                format!("service/{name}/HL7"),
                EventType::Warning,
                "Stopped",
                &format!("HL7 stopped on {name}: {active}'s listener is the active one"),
            );
            if let Some(backend) = &self.backend {
                if let Err(e) = backend.fence(&name).await {
                    tracing::warn!("{name}: cannot take HL7 out of the backend: {e}");
                }
            }
        }
        Ok(None)
    }

    /// Start the active listener if it is held, test it if it runs; fail over when it has
    /// failed for `failoverAfter`. `None`: it answers.
    async fn test_active(&mut self, active: &str) -> Result<Option<Verdict>, ControllerError> {
        let listener = self
            .listener(active)
            .expect("the active listener is placed");
        let failure: &'static str = match &listener.seen {
            Seen::Running(info) => match self.answers(listener.server, info).await {
                Ok(()) => {
                    self.state.failing = None;
                    self.state.answering = true;
                    return Ok(None);
                }
                Err(_) => "ListenerFailing",
            },
            Seen::Stopped(_) if listener.held() && listener.agent.is_some() => {
                if self.monitor {
                    "ListenerStopped"
                } else {
                    let agent = listener.agent.clone().expect("checked");
                    let name = active.to_owned();
                    self.start(&name, agent.as_ref()).await?;
                    self.state.answering = false;
                    return Ok(Some(self.verdict(
                        Phase::Progressing,
                        "Starting",
                        format!("started {name}'s HL7 listener"),
                    )));
                }
            }
            Seen::Installing => {
                self.state.answering = false;
                return Ok(Some(self.verdict(
                    Phase::Progressing,
                    "Installing",
                    format!("{active}'s HL7 listener is being installed"),
                )));
            }
            Seen::Stopped(_) => "ListenerStopped",
            Seen::NotInstalled => "ListenerMissing",
            Seen::Unreachable => "AgentUnreachable",
        };
        self.state.answering = false;
        let (since, _) = *self.state.failing.get_or_insert((Instant::now(), failure));
        let failing_for = since.elapsed();
        let after = self.policy.failover_after;
        // No duration in the message: one that changed with every test would make every
        // test a status change.
        let what = format!("{active}'s HL7 listener fails ({failure})");
        if failing_for < after || self.listeners.len() == 1 {
            // Alone, there is nothing to fail over to: the service controller repairs it.
            let mut verdict = self.verdict(Phase::Degraded, failure, what);
            if let Some(left) = after.checked_sub(failing_for) {
                verdict.next = verdict.next.min(left);
            }
            return Ok(Some(verdict));
        }
        if self.monitor {
            return Ok(Some(self.verdict(
                Phase::Degraded,
                "FailoverNeeded",
                format!("{what} (monitor mode: no failover)"),
            )));
        }
        if self.policy.failover == Hl7Failover::Manual {
            return Ok(Some(self.verdict(
                Phase::Degraded,
                "FailoverNeeded",
                format!("{what}; failover: manual, so steward does not move it"),
            )));
        }
        if !self.afresh {
            self.look_again(active).await;
        }
        let Some(standby) = self.standby_for(active) else {
            return Ok(Some(self.verdict(
                Phase::Degraded,
                "NoStandby",
                format!(
                    "{what}, and no other server has a stopped HL7 listener whose agent answers"
                ),
            )));
        };
        if let Some(verdict) = self.confirm(&standby).await {
            return Ok(Some(verdict));
        }
        self.switch(active, &standby, failure, since).await?;
        Ok(Some(self.verdict(
            Phase::Progressing,
            "FailedOver",
            format!("{what}; {standby} took over"),
        )))
    }

    /// A move needs a standby: every listener but `active` read afresh (the view may be
    /// a period old).
    async fn look_again(&mut self, active: &str) {
        let others: Vec<&'a Server> = self
            .servers
            .iter()
            .copied()
            .filter(|s| s.name != active)
            .collect();
        let read = view::listeners(self.ctx, &others, None, &Look::Full(Need::now())).await;
        for listener in read {
            self.replace(listener);
        }
        self.afresh = true;
    }

    fn replace(&mut self, listener: Listener<'a>) {
        if let Some(l) = self
            .listeners
            .iter_mut()
            .find(|l| l.name() == listener.name())
        {
            *l = listener;
        }
    }

    /// Right before the move, `standby` as its agent lists it now: `None` while it can
    /// still take over; else it is kept as read, and the move waits for the next pass.
    async fn confirm(&mut self, standby: &str) -> Option<Verdict> {
        let server = *self.servers.iter().find(|s| s.name == standby)?;
        let now = view::observe(self.ctx, server, Need::now()).await;
        let ready = now.standby();
        self.replace(now);
        if ready {
            return None;
        }
        Some(self.verdict(
            Phase::Progressing,
            "StandbyChanged",
            format!("{standby}'s HL7 listener cannot take over any more; looking again"),
        ))
    }

    /// The standby to take over from `active`: `preferred` first, then by name.
    fn standby_for(&self, active: &str) -> Option<String> {
        let preferred = self.policy.preferred.as_deref();
        self.listeners
            .iter()
            .filter(|l| l.name() != active && l.standby())
            .min_by_key(|l| (Some(l.name()) != preferred, l.name().to_owned()))
            .map(|l| l.name().to_owned())
    }

    /// `failback`: back to `preferred` while the active listener answers.
    async fn failback(&mut self, active: &str) -> Result<Option<Verdict>, ControllerError> {
        let Some(preferred) = self.policy.preferred.clone() else {
            return Ok(None);
        };
        // A request is answered now or dropped: it must not move the listener later.
        let asked = self.ctx.hl7.take_failback_request();
        if preferred == active
            || self.monitor
            || !self.listener(&preferred).is_some_and(Listener::standby)
        {
            return Ok(None);
        }
        let due = match self.policy.failback {
            Failback::Manual => asked,
            Failback::Automatic => {
                let hold = self.policy.failover_after * FAILBACK_HOLD;
                asked
                    || self.state.last_failover.as_ref().is_none_or(|last| {
                        let since = time::OffsetDateTime::now_utc() - last.at;
                        since >= hold
                    })
            }
        };
        if !due {
            return Ok(None);
        }
        if let Some(verdict) = self.confirm(&preferred).await {
            return Ok(Some(verdict));
        }
        self.switch(active, &preferred, "Failback", Instant::now())
            .await?;
        Ok(Some(self.verdict(
            Phase::Progressing,
            "FailedBack",
            format!("HL7 moved back from {active} to the preferred {preferred}"),
        )))
    }

    /// Move the listener from `from` to `to`: fence `from`, designate and start `to`, wait
    /// until it answers, point the backend at it, record the move.
    async fn switch(
        &mut self,
        from: &str,
        to: &str,
        reason: &'static str,
        since: Instant,
    ) -> Result<(), ControllerError> {
        let old = self.listener(from).expect("placed");
        self.ctx.hl7.views.mark_stale(from);
        let mut stopped = false;
        if let Some(agent) = &old.agent {
            match agent.stop(ServiceKind::Hl7).await {
                Ok(_) => stopped = true,
                Err(e) => tracing::warn!("{from}: cannot stop HL7 through its agent: {e}"),
            }
        }
        // Out of the backend in any case; first of all when its agent does not answer
        // (its listener may still run and take traffic).
        let fenced = match &self.backend {
            Some(backend) => backend.fence(from).await,
            None => Ok(false),
        };
        if !stopped {
            let detail = match fenced {
                Ok(true) => None,
                Ok(false) => Some("this load balancer has no runtime API".to_owned()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(detail) = detail {
                return Err(Hl7FailoverError::CannotFence {
                    server: from.to_owned(),
                    detail,
                }
                .into());
            }
        } else if let Err(e) = fenced {
            // Stopped, so it cannot take traffic; the backend is pointed again below.
            tracing::warn!("{from}: cannot take HL7 out of the backend: {e}");
        }
        // Designated before it is started: should the start fail, the next run starts
        // it again rather than the fenced listener.
        self.state.active = Some(to.to_owned());
        self.state.failing = None;
        self.state.routed = None;
        self.ctx.hl7.set(self.state.clone())?;
        let new = self.listener(to).expect("placed");
        let agent = new.agent.clone().expect("a standby's agent answers");
        let server = new.server;
        let info = self.start(to, agent.as_ref()).await?;
        let answered = self.wait_until_answering(server, &info).await;
        self.point_backend(to).await;
        self.state.answering = answered;
        let seconds = since.elapsed().as_secs_f64();
        let last = LastFailover {
            at: time::OffsetDateTime::now_utc(),
            from: from.to_owned(),
            to: to.to_owned(),
            reason: reason.to_owned(),
            seconds,
        };
        tracing::warn!("HL7 failover: {from} -> {to} ({reason}) in {seconds:.2} s");
        self.ctx.store.event(
            "hl7".to_owned(),
            EventType::Warning,
            "HL7Failover",
            &format!("the HL7 listener moved from {from} to {to} ({reason}) in {seconds:.1} s"),
        );
        self.ctx.metrics.hl7_failover();
        self.state.last_failover = Some(last);
        self.ctx.hl7.set(self.state.clone())?;
        if matches!(self.backend, Some(Backend::Rendered)) {
            // The rendered file routes to the active listener.
            self.ctx
                .triggers
                .wake::<crate::balancer::LoadBalancers>((), Reason::Manual);
        }
        Ok(())
    }

    async fn start(
        &self,
        name: &str,
        agent: &dyn AgentApi,
    ) -> Result<ServiceInfo, ControllerError> {
        tracing::info!("{name}: starting the HL7 listener");
        self.ctx.hl7.views.mark_stale(name);
        let info = agent
            .start(ServiceKind::Hl7)
            .await
            .map_err(|e| ControllerError::call(format!("starting HL7 on {name}"), e))?;
        // The service controller shows it running (rather than standby) at once.
        self.ctx.triggers.wake::<crate::service::Services>(
            crate::service_key::ServiceKey::new(name, ServiceKind::Hl7),
            Reason::Manual,
        );
        Ok(info)
    }

    /// Poll the started listener until it answers (bounded).
    async fn wait_until_answering(&self, server: &Server, info: &ServiceInfo) -> bool {
        let patience = self.policy.failover_after.max(START_PATIENCE);
        let deadline = Instant::now() + patience;
        loop {
            if self.answers(server, info).await.is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "{}: the started HL7 listener does not answer after {} s",
                    server.name,
                    patience.as_secs()
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One MLLP round trip to `server`'s listener.
    async fn answers(&self, server: &Server, info: &ServiceInfo) -> Result<(), String> {
        let mut target =
            crate::service::target(self.ctx, server, ServiceKind::Hl7, info, self.desired);
        target.check.timeout = target
            .check
            .timeout
            .min((self.policy.failover_after / 2).max(Duration::from_millis(200)));
        let result = self.ctx.probes.monitor.prober().probe(&target).await;
        result.outcome.map_err(|e| e.to_string())
    }

    /// Point the HL7 backend at `active` once per process (and after every move): the
    /// runtime API's state outlives reloads through the server-state file.
    async fn point_backend(&mut self, active: &str) {
        if self.state.routed.as_deref() == Some(active) || self.monitor {
            return;
        }
        let Some(backend) = &self.backend else {
            return;
        };
        match backend.route(active, &self.names()).await {
            Ok(()) => self.state.routed = Some(active.to_owned()),
            // HAProxy not (yet) running: tried again at the next run.
            Err(e) => tracing::debug!("cannot point the HL7 backend at {active}: {e}"),
        }
    }
}

impl From<Hl7FailoverError> for ControllerError {
    fn from(e: Hl7FailoverError) -> Self {
        ControllerError::Hl7(e)
    }
}
