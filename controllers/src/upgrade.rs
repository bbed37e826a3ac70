//! The upgrade controller (one key): rolls a change of `Installation.release` through the
//! fleet server by server, as the `UpgradePolicy` says, and halts on the first failure.
//!
//! Preconditions before a batch: inside the windows (`steward_model::upgrade::window`,
//! judged on an injected [`Clock`]), the database reachable, every declared service
//! healthy (an HL7 standby: held stopped), and every current release allowed by `from` (else `UpgradePathRefused`).
//! Then per server ([`steps`]): drain from the load balancer, upgrade its services in
//! install order (PSIS, PSWS, the rest: the service controller installs each one only once
//! this controller releases it, see [`Upgrades::target`]), hold every service healthy for
//! `healthGate`, back into the load balancer, next server. The first failed install or
//! health gate halts everything: nothing else is touched, the failed server stays out of
//! the load balancer, its install log is kept, and nothing is retried until an operator
//! resumes (`steward upgrade resume`, `POST /api/v1/upgrade/resume`) or commits a new
//! release. The rollout is persisted ([`rollout`]) after every step.

mod drain;
pub(crate) mod rollout;
mod steps;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use steward_model::upgrade::{release_core, UpgradePolicy, Verdict};
use steward_model::{ServiceKind, Snapshot};
use steward_runtime::{Action, Reason};

use crate::context::Context;
use crate::error::ControllerError;
use crate::in_force::Accepted;
use crate::reconciler::{Reconciled, Singleton};
use crate::status::{EventType, ServerUpgradePhase, UpgradePhase, UpgradeStatus};
pub(crate) use drain::Drainer;
use rollout::{Rollout, ServerRollout};

/// How often a waiting upgrade looks at its windows and preconditions again.
const RECHECK: Duration = Duration::from_secs(30);

/// Wall-clock time for the windows; tests inject their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What the service controller may install for one service while an UpgradePolicy exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReleaseTarget {
    /// The release the desired state declares.
    Declared,
    /// Whatever release is installed now: a different declared release is not a reason
    /// to reinstall (the upgrade has not reached this service, or it halted).
    Hold,
}

/// What `resume` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeOutcome {
    Resumed,
    /// Nothing halted; the phase it is in.
    NotHalted(UpgradePhase),
    /// `from` refused the current release; only a new commit helps.
    Refused(String),
}

/// The upgrade's shared state: the rollout, its clock, the drainer, timers.
pub(crate) struct Upgrades {
    rollout: Mutex<Option<Rollout>>,
    state_dir: Option<PathBuf>,
    clock: Mutex<Arc<dyn Clock>>,
    drainer: Mutex<Option<Arc<dyn Drainer>>>,
    resume: AtomicBool,
    timers: Mutex<steps::Timers>,
}

impl Upgrades {
    /// Pick up the rollout a previous daemon persisted.
    pub(crate) fn load(state_dir: Option<&std::path::Path>) -> Self {
        let rollout = state_dir.and_then(|dir| match rollout::load(dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("upgrade: {e}; starting without the persisted rollout");
                None
            }
        });
        if let Some(r) = &rollout {
            tracing::info!(
                "upgrade {} -> {}: resuming in phase {}",
                r.from,
                r.to,
                r.phase.as_str()
            );
        }
        Self {
            rollout: Mutex::new(rollout),
            state_dir: state_dir.map(PathBuf::from),
            clock: Mutex::new(Arc::new(SystemClock)),
            drainer: Mutex::new(None),
            resume: AtomicBool::new(false),
            timers: Mutex::new(steps::Timers::default()),
        }
    }

    pub(crate) fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    /// Drain through this instead of the snapshot's load balancer (tests).
    #[cfg(test)]
    pub(crate) fn set_drainer(&self, drainer: Arc<dyn Drainer>) {
        *self.drainer.lock().unwrap_or_else(|p| p.into_inner()) = Some(drainer);
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).now()
    }

    fn current(&self) -> Option<Rollout> {
        self.rollout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keep `rollout` in force and on disk.
    fn store(&self, rollout: Option<Rollout>) {
        let mut slot = self.rollout.lock().unwrap_or_else(|p| p.into_inner());
        if *slot == rollout {
            return;
        }
        if let Some(dir) = &self.state_dir {
            if let Err(e) = rollout::save(dir, rollout.as_ref()) {
                tracing::error!("upgrade: {e}");
            }
        }
        *slot = rollout;
    }

    /// Whether the service controller may install the declared release of `kind` on
    /// `server`, or must keep what is installed.
    pub(crate) fn target(
        &self,
        snapshot: &Snapshot,
        server: &str,
        kind: ServiceKind,
    ) -> ReleaseTarget {
        if snapshot.upgrade_policy.is_none() {
            return ReleaseTarget::Declared;
        }
        let slot = self.rollout.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = slot
            .as_ref()
            .filter(|r| r.to == snapshot.installation.release)
        else {
            return ReleaseTarget::Hold;
        };
        if r.phase == UpgradePhase::Complete {
            return ReleaseTarget::Declared;
        }
        let Some(s) = r.servers.iter().find(|s| s.name == server) else {
            return ReleaseTarget::Hold;
        };
        let released = match s.phase {
            ServerUpgradePhase::Done => true,
            ServerUpgradePhase::Upgrading | ServerUpgradePhase::Gating => snapshot
                .servers
                .get(server)
                .and_then(|srv| srv.services.iter().position(|p| p.kind == kind))
                .is_some_and(|i| i < s.admitted),
            _ => false,
        } && r.phase != UpgradePhase::Halted;
        if released {
            ReleaseTarget::Declared
        } else {
            ReleaseTarget::Hold
        }
    }

    /// Servers are being upgraded now.
    pub(crate) fn in_progress(&self) -> bool {
        let slot = self.rollout.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .is_some_and(|r| r.phase == UpgradePhase::Progressing)
    }

    /// A halted upgrade left `server` as it is: nothing there is restarted either.
    pub(crate) fn halted_on(&self, server: &str) -> bool {
        let slot = self.rollout.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().is_some_and(|r| {
            r.phase == UpgradePhase::Halted
                && r.servers
                    .iter()
                    .any(|s| s.name == server && s.phase == ServerUpgradePhase::Failed)
        })
    }

    /// An operator's resume: the failed server is upgraded again from its start.
    pub(crate) fn request_resume(&self) -> ResumeOutcome {
        let slot = self.rollout.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(r) if r.refused => ResumeOutcome::Refused(r.reason.clone().unwrap_or_default()),
            Some(r) if r.phase == UpgradePhase::Halted => {
                self.resume.store(true, Ordering::SeqCst);
                ResumeOutcome::Resumed
            }
            Some(r) => ResumeOutcome::NotHalted(r.phase),
            None => ResumeOutcome::NotHalted(UpgradePhase::Idle),
        }
    }
}

pub(crate) struct UpgradeController;

impl Singleton for UpgradeController {
    const NAME: &'static str = "upgrade";

    async fn reconcile(accepted: Arc<Accepted>, ctx: &Context) -> Reconciled {
        let snapshot = &accepted.desired.snapshot;
        let installed = ctx.store.installed_releases();
        let up = &ctx.upgrade;
        ctx.store
            .set_upgrade_policy(snapshot.upgrade_policy.as_ref());
        let Some(policy) = &snapshot.upgrade_policy else {
            up.store(None);
            ctx.store.set_upgrade(None);
            return Ok(Action::requeue(ctx.pace.resync.max(RECHECK)));
        };
        if !ctx.acting() {
            // Controller HA: only the leader plans, drains (HAProxy's runtime API is not
            // behind a fenced agent), advances or saves a rollout.
            return Ok(Action::requeue(ctx.pace.short()));
        }
        let to = snapshot.installation.release.clone();
        let previous = up.current();
        let mut rollout = match previous.clone().filter(|r| r.to == to) {
            Some(r) => r,
            None => match plan(snapshot, policy, &installed) {
                Some(mut r) => {
                    carry_over_failed(previous.as_ref(), &mut r);
                    if r.refused {
                        tracing::warn!("upgrade to {to}: {}", r.reason.clone().unwrap_or_default());
                    } else {
                        tracing::info!("upgrade {} -> {to}: planned", r.from);
                    }
                    r
                }
                None => {
                    // Nothing to upgrade: every server runs the declared release (or none).
                    up.store(None);
                    ctx.store.set_upgrade(Some(idle(snapshot, &installed)));
                    return Ok(Action::requeue(ctx.pace.resync.max(RECHECK)));
                }
            },
        };
        if rollout.phase == UpgradePhase::Halted
            && !rollout.refused
            && up.resume.swap(false, Ordering::SeqCst)
        {
            for s in &mut rollout.servers {
                if s.phase == ServerUpgradePhase::Failed {
                    // The operator looked at it: that server starts over (still drained),
                    // judged on fresh health tests, not on the verdicts that halted it.
                    s.phase = ServerUpgradePhase::Draining;
                    s.admitted = 0;
                    for key in ctx.store.service_keys_on(&s.name) {
                        ctx.probes.reprobe(&key);
                    }
                }
            }
            rollout.phase = UpgradePhase::Progressing;
            rollout.reason = None;
            ctx.store.event(
                object(policy),
                EventType::Normal,
                "UpgradeResumed",
                &format!(
                    "upgrade {} -> {} resumed by an operator",
                    rollout.from, rollout.to
                ),
            );
            tracing::info!("upgrade {} -> {}: resumed", rollout.from, rollout.to);
        }
        let next = match rollout.phase {
            UpgradePhase::Halted | UpgradePhase::Complete | UpgradePhase::Idle => {
                Action::requeue(ctx.pace.resync.max(RECHECK))
            }
            UpgradePhase::Waiting | UpgradePhase::Progressing => {
                advance(ctx, snapshot, policy, &mut rollout).await?
            }
        };
        up.store(Some(rollout.clone()));
        // A refused path is no upgrade under way: servers on different releases are the
        // installation's `MixedReleases` then, as when idle.
        let mixed = if rollout.refused {
            mixed_releases(&installed)
        } else {
            Vec::new()
        };
        ctx.store.set_upgrade(Some(rollout.status(mixed)));
        Ok(next)
    }

    fn error_policy(error: &ControllerError, _ctx: &Context) {
        // The rollout stays where it was; the runtime retries the pass with backoff.
        tracing::warn!("upgrade: {error}");
    }
}

/// Wake it (a new desired state, a resume).
pub(crate) fn wake(ctx: &Context, reason: Reason) {
    ctx.triggers.wake::<UpgradeController>((), reason);
}

/// A new rollout to the declared release; `None` when no server needs one.
fn plan(
    snapshot: &Snapshot,
    policy: &UpgradePolicy,
    installed: &BTreeMap<crate::ServiceKey, String>,
) -> Option<Rollout> {
    let to = &snapshot.installation.release;
    let behind = |server: &str| {
        installed
            .iter()
            .any(|(k, release)| k.server == server && release != to)
    };
    let from: BTreeSet<&str> = installed
        .values()
        .filter(|r| *r != to)
        .map(String::as_str)
        .collect();
    if from.is_empty() {
        return None;
    }
    let refused: Vec<&str> = from
        .iter()
        .copied()
        .filter(|r| !policy.allows_from(r))
        .collect();
    let servers = snapshot
        .servers
        .values()
        .map(|s| ServerRollout {
            name: s.name.clone(),
            phase: if behind(&s.name) {
                ServerUpgradePhase::Pending
            } else {
                ServerUpgradePhase::Done
            },
            admitted: 0,
        })
        .collect();
    let from_list = from.iter().copied().collect::<Vec<_>>().join(", ");
    Some(if refused.is_empty() {
        Rollout {
            from: from_list,
            to: to.clone(),
            phase: UpgradePhase::Waiting,
            servers,
            reason: Some("checking preconditions".into()),
            next_window: None,
            logs: Vec::new(),
            refused: false,
        }
    } else {
        Rollout {
            from: from_list,
            to: to.clone(),
            phase: UpgradePhase::Halted,
            servers,
            reason: Some(format!(
                "UpgradePathRefused: the fleet runs {} and an upgrade to {} may only start from {} (upgrade to an allowed release first)",
                refused.join(", "),
                release_core(to),
                policy.allowed_from()
            )),
            next_window: None,
            logs: Vec::new(),
            refused: true,
        }
    })
}

/// A new commit after a halt: the servers the old upgrade failed on are out of service
/// already (still drained) and are what the commit is meant to fix, so they go first,
/// without waiting for the preconditions their own failure keeps false; the others follow,
/// each batch after its preconditions.
fn carry_over_failed(previous: Option<&Rollout>, next: &mut Rollout) {
    let Some(previous) = previous.filter(|p| p.phase == UpgradePhase::Halted && !p.refused) else {
        return;
    };
    for s in &mut next.servers {
        let failed = previous
            .servers
            .iter()
            .any(|p| p.name == s.name && p.phase == ServerUpgradePhase::Failed);
        if failed && s.phase == ServerUpgradePhase::Pending {
            s.phase = ServerUpgradePhase::Draining;
            next.phase = UpgradePhase::Progressing;
            next.reason = None;
        }
    }
}

/// No upgrade: the status says so, and names mixed releases.
fn idle(snapshot: &Snapshot, installed: &BTreeMap<crate::ServiceKey, String>) -> UpgradeStatus {
    UpgradeStatus {
        phase: UpgradePhase::Idle,
        from: None,
        to: Some(snapshot.installation.release.clone()),
        servers: Vec::new(),
        reason: None,
        next_window: None,
        logs: Vec::new(),
        mixed_releases: mixed_releases(installed),
    }
}

/// `RELEASE on SERVER, ...` for each release installed, when there is more than one.
fn mixed_releases(installed: &BTreeMap<crate::ServiceKey, String>) -> Vec<String> {
    let mut by_release: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, release) in installed {
        by_release
            .entry(release.as_str())
            .or_default()
            .insert(key.server.as_str());
    }
    if by_release.len() < 2 {
        return Vec::new();
    }
    by_release
        .iter()
        .map(|(release, servers)| {
            format!(
                "{release} on {}",
                servers.iter().copied().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

fn object(policy: &UpgradePolicy) -> String {
    format!("upgradepolicy/{}", policy.name)
}

/// One pass over a rollout that may move: preconditions, admission, every server's step.
async fn advance(
    ctx: &Context,
    snapshot: &Snapshot,
    policy: &UpgradePolicy,
    rollout: &mut Rollout,
) -> Result<Action, ControllerError> {
    let up = &ctx.upgrade;
    let in_flight = rollout.servers.iter().any(|s| s.phase.in_flight());
    if !in_flight {
        if let Some(wait) = preconditions(ctx, snapshot, policy, rollout) {
            return Ok(wait);
        }
        // Admit the next batch; the cap counts every server out of service.
        let out = rollout
            .servers
            .iter()
            .filter(|s| s.phase.out_of_service())
            .count();
        let room = (policy.max_unavailable as usize).saturating_sub(out);
        for s in rollout
            .servers
            .iter_mut()
            .filter(|s| s.phase == ServerUpgradePhase::Pending)
            .take(room)
        {
            s.phase = ServerUpgradePhase::Draining;
            s.admitted = 0;
            tracing::info!(
                "upgrade {} -> {}: {} starts",
                rollout.from,
                rollout.to,
                s.name
            );
        }
        rollout.phase = UpgradePhase::Progressing;
        rollout.reason = None;
        rollout.next_window = None;
    }
    let drainer = drainer(ctx, snapshot, policy);
    let mut next = ctx.pace.short();
    let names: Vec<String> = rollout
        .servers
        .iter()
        .filter(|s| s.phase.in_flight())
        .map(|s| s.name.clone())
        .collect();
    let to = rollout.to.clone();
    let mut finished = false;
    for name in names {
        let Some(server) = snapshot.servers.get(&name) else {
            continue;
        };
        let Some(entry) = rollout.server_mut(&name) else {
            continue;
        };
        let step = steps::advance(ctx, policy, server, entry, &to, drainer.as_deref()).await?;
        up.store(Some(rollout.clone()));
        match step {
            steps::Step::Wait(d) => next = next.min(d),
            steps::Step::Done => {
                finished = true;
                ctx.store.event(
                    format!("server/{name}"),
                    EventType::Normal,
                    "ServerUpgraded",
                    &format!("{name} runs {} and passed the health gate", rollout.to),
                );
            }
            steps::Step::Failed { kind, reason } => {
                halt(ctx, policy, rollout, &name, kind, reason).await;
                return Ok(Action::requeue(ctx.pace.resync.max(RECHECK)));
            }
        }
    }
    if rollout
        .servers
        .iter()
        .all(|s| s.phase == ServerUpgradePhase::Done)
    {
        rollout.phase = UpgradePhase::Complete;
        rollout.reason = None;
        let message = format!(
            "upgrade {} -> {} complete on {} servers",
            rollout.from,
            rollout.to,
            rollout.servers.len()
        );
        tracing::info!("{message}");
        ctx.store.event(
            object(policy),
            EventType::Normal,
            "UpgradeComplete",
            &message,
        );
        // Whatever the service controller held back may follow the declared release now.
        for key in ctx.store.service_keys() {
            ctx.triggers
                .wake::<crate::service::Services>(key, Reason::DesiredChanged);
        }
        return Ok(Action::requeue(ctx.pace.resync.max(RECHECK)));
    }
    if finished {
        // The next batch starts now, not a pace later.
        return Ok(Action::requeue(Duration::ZERO));
    }
    Ok(Action::requeue(next))
}

/// `Some(wait)` when the next batch may not start now; the rollout says why.
fn preconditions(
    ctx: &Context,
    snapshot: &Snapshot,
    policy: &UpgradePolicy,
    rollout: &mut Rollout,
) -> Option<Action> {
    let now = ctx.upgrade.now();
    let mut waiting = |reason: String, opens: Option<DateTime<Utc>>| {
        rollout.phase = UpgradePhase::Waiting;
        rollout.reason = Some(reason);
        rollout.next_window = opens.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let until = opens
            .and_then(|t| (t - now).to_std().ok())
            .unwrap_or(RECHECK)
            .clamp(ctx.pace.short(), RECHECK);
        Some(Action::requeue(until))
    };
    if let Verdict::Closed { reason, opens } = policy.windows.verdict(now) {
        return waiting(reason, opens);
    }
    if !ctx.store.database_ready() {
        return waiting("the database is not reachable".into(), None);
    }
    let unhealthy: Vec<String> = snapshot
        .servers
        .values()
        .flat_map(|s| s.services.iter().map(move |p| (s, p.kind)))
        .filter(|(s, kind)| {
            // A held HL7 standby never runs, so it has no verdict: stopped is as it should be.
            let v = ctx.store.service_view(&s.name, *kind);
            !(v.standby || v.verdict == Some(true) && v.observed.is_some())
        })
        .map(|(s, kind)| format!("{kind} on {}", s.name))
        .collect();
    if !unhealthy.is_empty() {
        return waiting(
            format!("not every service is healthy: {}", unhealthy.join(", ")),
            None,
        );
    }
    None
}

fn drainer(ctx: &Context, snapshot: &Snapshot, policy: &UpgradePolicy) -> Option<Arc<dyn Drainer>> {
    if !policy.drain {
        return None;
    }
    if let Some(d) = ctx
        .upgrade
        .drainer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        return Some(d);
    }
    let state_dir = ctx
        .config
        .state_dir
        .as_deref()
        .unwrap_or(std::path::Path::new("."));
    drain::HaproxyDrainer::of(snapshot, state_dir).map(|d| Arc::new(d) as Arc<dyn Drainer>)
}

/// The first failure: everything stops where it is; the failed server stays drained.
async fn halt(
    ctx: &Context,
    policy: &UpgradePolicy,
    rollout: &mut Rollout,
    server: &str,
    kind: Option<ServiceKind>,
    reason: String,
) {
    if let Some(entry) = rollout.server_mut(server) {
        entry.phase = ServerUpgradePhase::Failed;
    }
    rollout.phase = UpgradePhase::Halted;
    rollout.reason = Some(reason.clone());
    if let (Some(kind), Some(dir)) = (kind, ctx.config.state_dir.as_deref()) {
        match steps::install_log(ctx, server, kind).await {
            Ok(log) => match rollout::keep_log(dir, server, kind, &log) {
                Ok(path) => rollout.logs.push(path),
                Err(e) => tracing::error!("upgrade: {e}"),
            },
            Err(e) => tracing::warn!("upgrade: the install log of {kind} on {server}: {e}"),
        }
    }
    let message = format!(
        "upgrade {} -> {} halted on {server}: {reason}; nothing else is touched until `steward upgrade resume` or a new release",
        rollout.from, rollout.to
    );
    tracing::error!("{message}");
    ctx.store.event(
        object(policy),
        EventType::Warning,
        "UpgradeHalted",
        &message,
    );
    ctx.upgrade.store(Some(rollout.clone()));
}
