//! The service controller (key: server + service kind; the server is the concurrency
//! group): install what is declared and missing, reinstall what differs, restart what
//! stopped, have the monitor probe what runs, and report or prune what runs undeclared.
//!
//! Every run starts from the agent's current list, never from what the previous run did.
//! Installs wait for the server's certificate and for every kind in `depends_on` to be
//! ready somewhere (so PSIS, then PSWS, then the rest); pruning goes the other way round.
//!
//! Probing is not done here: the monitor probes each running service on its own interval
//! and records the verdict in the store; a changed verdict wakes this controller, which
//! turns it into conditions (and the services that waited for it into installs).

use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::{
    FailureReason, InstallOutcome, InstallRequest, LastFailure, ServiceInfo, ServiceStatus,
};
use steward_model::resource::Mode;
use steward_model::snapshot::{HealthCheck, PlacedService, Server};
use steward_model::ServiceKind;
use steward_runtime::{Action, Reason};

use crate::agent::AgentApi;
use crate::config::Desired;
use crate::context::Context;
use crate::drift::DriftKind;
use crate::error::ControllerError;
use crate::prober::ProbeTarget;
use crate::reconciler::{OwnLoop, Reconciled, Reconciler, Request};
use crate::service_key::ServiceKey;
use crate::status::{EventType, Phase};
use crate::store::matches_spec;
use crate::upgrade::ReleaseTarget;

/// Longest pause between restarts of a service that keeps dying. Short, because a service
/// that is not running is not probed: this pause is how long it stays down after its
/// cause (say a port held by another process) went away.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);

/// A hung service restarted over and over waits `restartAfter` times this at most.
const MAX_LIVENESS_BACKOFF: u32 = 8;

/// The service controller (key: server + kind; the server is the concurrency group).
pub(crate) struct Services;

impl Reconciler for Services {
    type Key = ServiceKey;
    const NAME: &'static str = "service";

    async fn reconcile(request: Request<ServiceKey>, ctx: Arc<Context>) -> Reconciled {
        let (key, reason, accepted) = (request.key, request.reason, request.accepted);
        let desired = &accepted.desired;
        let Some((server, server_declared)) = ctx.desired.server(&accepted, &key.server) else {
            forget(&ctx, &key);
            return Ok(Action::await_change());
        };
        let placed = server
            .service(key.kind)
            .filter(|_| server_declared)
            .cloned();
        let generation = desired.generation;

        let unreachable = |e| {
            ControllerError::call(
                format!("asking the agent of {} what it runs", key.server),
                e,
            )
        };
        let fleet = fleet_size(desired);
        let agent = ctx.agents.get(&server).map_err(unreachable)?;
        // One listing of the server answers all of its services that run about now.
        let need = ctx
            .agents
            .freshness
            .need(reason, ctx.pace.listing_age(fleet));
        let listed = agent.services_fresh(need).await.map_err(unreachable)?;
        let observed = listed.into_iter().find(|s| s.kind == key.kind);
        let running = observed
            .as_ref()
            .is_some_and(|o| o.status == ServiceStatus::Running);
        if !running {
            // Nothing to probe until it runs again; then it starts from no verdict.
            ctx.probes.stop(&key);
        }
        ctx.store.with_service(&key, |r| {
            r.observed.clone_from(&observed);
            r.observed_generation = Some(generation);
        });

        // With an UpgradePolicy, a new release reaches a service only when the upgrade
        // controller releases it (server by server, in install order); until then, and after
        // a halt, the installed release is what is desired of it.
        let declared = &desired.snapshot.installation.release;
        let release = match ctx.upgrade.target(&desired.snapshot, &key.server, key.kind) {
            ReleaseTarget::Hold => observed
                .as_ref()
                .map_or_else(|| declared.clone(), |o| o.release.clone()),
            ReleaseTarget::Declared => declared.clone(),
        };
        let run = Run {
            ctx: &ctx,
            key: &key,
            desired,
            server: &server,
            agent: agent.as_ref(),
            release,
            fleet,
        };
        match (placed, observed) {
            (None, None) => {
                forget(&ctx, &key);
                Ok(Action::await_change())
            }
            (None, Some(observed)) => orphan(&run, &observed).await,
            (Some(placed), None) => missing(&run, &placed).await,
            (Some(placed), Some(observed)) => present(&run, &placed, &observed).await,
        }
    }

    /// The failure is the service's condition; its probes go on (the monitor keeps
    /// probing at what was last known), and its shown health turns unknown while its
    /// agent does not answer.
    fn error_policy(key: &ServiceKey, error: &ControllerError, ctx: &Context) {
        let (reason, message) = (error.reason(), error.to_string());
        ctx.store
            .with_service(key, |r| r.conditions.set(Phase::Degraded, reason, message));
    }

    fn keys(ctx: &Context) -> Vec<ServiceKey> {
        ctx.store.service_keys()
    }

    fn configure(own: OwnLoop<ServiceKey>, _ctx: &Context) -> OwnLoop<ServiceKey> {
        own.per_server(|key| &key.server)
    }
}

/// What one run works with.
struct Run<'a> {
    ctx: &'a Context,
    key: &'a ServiceKey,
    desired: &'a Desired,
    server: &'a Server,
    agent: &'a dyn AgentApi,
    /// The release to install: the declared one, or (while an upgrade holds this
    /// service back) the one installed now.
    release: String,
    /// Services declared in the fleet: what the period of settled looks grows with.
    fleet: usize,
}

impl Run<'_> {
    fn monitor(&self) -> bool {
        self.desired.snapshot.installation.mode == Mode::Monitor
    }

    fn release(&self) -> &str {
        &self.release
    }

    fn object(&self) -> String {
        format!("service/{}", self.key)
    }

    /// How long a settled service rests: until its server's next slot.
    fn settled(&self) -> Duration {
        self.ctx.pace.settled(&self.key.server, self.fleet)
    }

    fn set(&self, phase: Phase, reason: &str, message: impl Into<String>) {
        let message = message.into();
        self.ctx
            .store
            .with_service(self.key, |r| r.conditions.set(phase, reason, message));
    }

    /// A failed agent call, for the error policy and the backoff.
    fn failed(&self, doing: &str, source: steward_agent::ClientError) -> ControllerError {
        ControllerError::call(doing, source)
    }
}

/// Declared, not installed.
async fn missing(run: &Run<'_>, placed: &PlacedService) -> Result<Action, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    let was_synced = synced(run, placed);
    if run.monitor() {
        note_drift(run, &[DriftKind::ServiceMissing]);
        run.set(
            Phase::Degraded,
            "NotInstalled",
            format!(
                "{} is not installed on {} (monitor mode: not installed)",
                key.kind, key.server
            ),
        );
        return Ok(Action::requeue(run.settled()));
    }
    note_drift(run, &[]);
    if let Some(wait) = gate(run) {
        return Ok(wait);
    }
    let action = install(
        run,
        placed,
        format!("installing {} on {}", key.kind, ports(&placed.ports)),
    )
    .await?;
    if was_synced {
        ctx.metrics.drift_detected(DriftKind::ServiceMissing);
        ctx.metrics.drift_corrected(DriftKind::ServiceMissing);
    }
    Ok(action)
}

/// Declared and installed: right spec? running? healthy?
async fn present(
    run: &Run<'_>,
    placed: &PlacedService,
    observed: &ServiceInfo,
) -> Result<Action, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    let was_synced = synced(run, placed);
    let spec_ok = matches_spec(observed, placed, run.release());
    let mut drifts = Vec::new();

    if !spec_ok {
        let why = spec_difference(observed, placed, run.release());
        if run.monitor() {
            drifts.push(DriftKind::ServiceSpec);
        } else {
            if let Some(wait) = gate(run) {
                return Ok(wait);
            }
            let action = install(run, placed, format!("reinstalling {} ({why})", key.kind)).await?;
            if was_synced {
                ctx.metrics.drift_detected(DriftKind::ServiceSpec);
                ctx.metrics.drift_corrected(DriftKind::ServiceSpec);
            }
            return Ok(action);
        }
    }

    match observed.status {
        ServiceStatus::Running => {}
        ServiceStatus::Installing => {
            run.set(
                Phase::Progressing,
                "Installing",
                format!("the agent is installing {}", key.kind),
            );
            return Ok(Action::requeue(ctx.pace.short()));
        }
        ServiceStatus::Stopped | ServiceStatus::Failed => {
            let state = observed.status.as_str();
            let detail = observed
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let failure = current_failure(run, observed);
            if let Some(failure) = failure {
                log_failure(run, failure);
            }
            if failover_managed(run) {
                note_drift(run, &drifts);
                if observed.held {
                    run.set(
                        Phase::Ready,
                        "Standby",
                        "HL7 standby: installed and stopped; the HL7 failover starts it when the active listener fails",
                    );
                } else {
                    run.set(
                        Phase::Degraded,
                        failure.map_or("NotRunning", |f| failure_reason(f.reason)),
                        format!(
                            "{} is {state}{detail}; the HL7 failover moves the listener or runs it again",
                            key.kind
                        ),
                    );
                }
                return Ok(Action::requeue(run.settled()));
            }
            if run.monitor() {
                drifts.push(DriftKind::ServiceStopped);
                note_drift(run, &drifts);
                run.set(
                    Phase::Degraded,
                    failure.map_or("NotRunning", |f| failure_reason(f.reason)),
                    format!(
                        "{} is {state}{detail} (monitor mode: not restarted)",
                        key.kind
                    ),
                );
                return Ok(Action::requeue(run.settled()));
            }
            note_drift(run, &drifts);
            return restart(run, was_synced, state, &detail, failure).await;
        }
    }

    note_drift(run, &drifts);
    let check = run.desired.snapshot.health_check(key.kind);
    let target = target(ctx, run.server, key.kind, observed, run.desired);
    let described = target.describe();
    ctx.probes.watch(key, target);
    let (verdict, last) = ctx.store.with_service(key, |r| {
        if r.verdict() == Some(true) {
            // Healthy again: the next failure starts from the shortest delay, and what
            // the agent last reported is history.
            r.restarts = 0;
            r.failure_cleared = observed.last_failure.as_ref().map(|f| f.at);
            r.failure_reported = None;
            if spec_ok {
                r.synced = Some((placed.clone(), run.release().to_owned()));
            }
        }
        (r.verdict(), r.last_probe.clone())
    });
    // No duration here: it is in lastProbe, and a message that changes with every probe
    // would make every probe a status change.
    let outcome = match last {
        None => format!("{described}: not probed yet"),
        Some(p) if p.success => match p.http_status {
            Some(status) => format!("{described}: {status}"),
            None => format!("{described}: ACK"),
        },
        Some(p) => format!("{described}: {}", p.error.unwrap_or_default()),
    };
    if !drifts.is_empty() {
        run.set(
            Phase::Degraded,
            "SpecDrift",
            format!(
                "{} differs from the desired state: {} (monitor mode: not reinstalled)",
                key.kind,
                spec_difference(observed, placed, run.release())
            ),
        );
    } else {
        match verdict {
            Some(true) => run.set(Phase::Ready, "Healthy", outcome),
            Some(false) => run.set(Phase::Degraded, "HealthCheckFailing", outcome),
            None => run.set(Phase::Progressing, "WaitingForHealthCheck", outcome),
        }
    }
    let failing_since = ctx.store.with_service(key, |r| {
        if verdict == Some(false) {
            Some(
                *r.failing_since
                    .get_or_insert_with(tokio::time::Instant::now),
            )
        } else {
            r.failing_since = None;
            None
        }
    });
    let mut next = match verdict {
        Some(_) => run.settled(),
        None => ctx.pace.steady(check.interval),
    };
    // A halted upgrade touches nothing on the failed server: no restart either.
    let halted = ctx.upgrade.halted_on(&key.server);
    let restartable = drifts.is_empty() && !run.monitor() && !failover_managed(run) && !halted;
    if let (Some(since), true) = (failing_since, restartable) {
        match liveness(run, &check, since).await? {
            Liveness::Restarted(action) => return Ok(action),
            Liveness::Wait(left) => next = next.min(left),
            Liveness::Off => {}
        }
    }
    // A changed verdict wakes this service; until the first one, look again now and then.
    Ok(Action::requeue(next))
}

/// HL7 on several servers: which listener runs is the HL7 failover's decision
/// (`crate::hl7_failover`), so this controller installs HL7 stopped (held) there and
/// never starts or restarts it; a stopped active listener is the failover's to handle.
fn failover_managed(run: &Run<'_>) -> bool {
    run.key.kind == ServiceKind::Hl7
        && run
            .desired
            .snapshot
            .servers_with(ServiceKind::Hl7)
            .nth(1)
            .is_some()
}

/// What the liveness rule decided for a running service that fails its health test.
enum Liveness {
    /// `restartAfter: 0`.
    Off,
    /// Not failing long enough yet: look again after this.
    Wait(Duration),
    Restarted(Action),
}

/// A running service that has failed its health test for `restartAfter` is hung or
/// broken in a way only a restart mends (like a Kubernetes liveness probe: a stopped
/// process answers nothing, yet the agent sees it running). Each restart that does not
/// bring it back doubles the wait, up to `MAX_LIVENESS_BACKOFF` times `restartAfter`.
async fn liveness(
    run: &Run<'_>,
    check: &HealthCheck,
    since: tokio::time::Instant,
) -> Result<Liveness, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    if check.restart_after.is_zero() {
        return Ok(Liveness::Off);
    }
    let restarts = ctx.store.with_service(key, |r| r.restarts);
    let factor = (1u32 << restarts.min(3)).min(MAX_LIVENESS_BACKOFF);
    let wait = check.restart_after.saturating_mul(factor);
    let failing_for = since.elapsed();
    if failing_for < wait {
        return Ok(Liveness::Wait(wait - failing_for));
    }
    let failing = format!(
        "failing its health test for {}s (restartAfter {}s)",
        failing_for.as_secs(),
        check.restart_after.as_secs()
    );
    tracing::warn!("{}: restarting {}: {failing}", key.server, key.kind);
    let restarted = run
        .agent
        .restart(key.kind)
        .await
        .map_err(|e| run.failed(&format!("restarting {}", key.kind), e))?;
    ctx.probes.reprobe(key);
    let restarts = ctx.store.with_service(key, |r| {
        r.observed = Some(restarted);
        r.failing_since = None;
        r.restarts = r.restarts.saturating_add(1);
        r.restarts
    });
    ctx.store.event(
        run.object(),
        EventType::Warning,
        "RestartedUnhealthy",
        &format!("{} was {failing}; restarted", key.kind),
    );
    // The event says what was done; the condition what is awaited now.
    run.set(
        Phase::Progressing,
        "WaitingForHealthCheck",
        format!("restarted after {failing}; {restarts} restart(s) since it was last healthy"),
    );
    Ok(Liveness::Restarted(Action::requeue(ctx.pace.short())))
}

/// The condition reason for the agent's cause of a failure.
fn failure_reason(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::PortInUse => "PortInUse",
        FailureReason::Exited => "ExitedWithError",
        FailureReason::StartFailed => "StartFailed",
    }
}

/// The agent's `lastFailure`, unless a health pass came after it.
fn current_failure<'o>(run: &Run<'_>, observed: &'o ServiceInfo) -> Option<&'o LastFailure> {
    let failure = observed.last_failure.as_ref()?;
    let cleared = run.ctx.store.with_service(run.key, |r| r.failure_cleared);
    (cleared != Some(failure.at)).then_some(failure)
}

/// A log line when a failure cause first appears (not one per exit of a crash loop with
/// the same cause). Its event is the condition's change to the cause's reason.
fn log_failure(run: &Run<'_>, failure: &LastFailure) {
    let seen = (failure.reason, failure.port, failure.exit_code);
    let new = run
        .ctx
        .store
        .with_service(run.key, |r| r.failure_reported.replace(seen) != Some(seen));
    if !new {
        return;
    }
    tracing::warn!(
        "{}: {} failed: {}",
        run.key.server,
        run.key.kind,
        failure.message
    );
}

async fn restart(
    run: &Run<'_>,
    was_synced: bool,
    state: &str,
    detail: &str,
    failure: Option<&LastFailure>,
) -> Result<Action, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    let restarted = run
        .agent
        .restart(key.kind)
        .await
        .map_err(|e| run.failed(&format!("restarting {}", key.kind), e))?;
    if was_synced {
        ctx.metrics.drift_detected(DriftKind::ServiceStopped);
        ctx.metrics.drift_corrected(DriftKind::ServiceStopped);
    }
    ctx.probes.reprobe(key);
    let restarts = ctx.store.with_service(key, |r| {
        r.observed = Some(restarted);
        r.restarts = r.restarts.saturating_add(1);
        r.restarts
    });
    tracing::info!(
        "{}: restarted {} (was {state}{detail})",
        key.server,
        key.kind
    );
    ctx.store.event(
        run.object(),
        EventType::Warning,
        "Restarted",
        &format!("{} was {state}{detail}; restarted", key.kind),
    );
    match failure {
        // The cause stays the condition until the service is healthy again: a restart
        // does not free a port someone else holds.
        Some(f) => run.set(
            Phase::Degraded,
            failure_reason(f.reason),
            format!(
                "{}; restarted, {restarts} restart(s) since it was last healthy",
                f.message
            ),
        ),
        None => run.set(
            Phase::Progressing,
            "Restarted",
            format!(
                "restarted (was {state}{detail}); {restarts} restart(s) since it was last healthy"
            ),
        ),
    }
    // A service that dies again right away is restarted ever more slowly.
    let delay = ctx
        .pace
        .short()
        .saturating_mul(1 << restarts.saturating_sub(1).min(10))
        .min(MAX_RESTART_DELAY);
    Ok(Action::requeue(delay))
}

/// Installed, not declared.
async fn orphan(run: &Run<'_>, observed: &ServiceInfo) -> Result<Action, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    let inst = &run.desired.snapshot.installation;
    if observed.status == ServiceStatus::Running {
        // Undeclared but running: its health is still worth showing.
        let target = target(ctx, run.server, key.kind, observed, run.desired);
        ctx.probes.watch(key, target);
    }
    if !inst.prune || run.monitor() {
        let why = if run.monitor() {
            "monitor mode"
        } else {
            "prune: false"
        };
        run.set(
            Phase::Stalled,
            "Orphaned",
            format!(
                "{} ({}) runs on {} but is not declared; left running ({why})",
                key.kind,
                observed.status.as_str(),
                key.server
            ),
        );
        return Ok(Action::requeue(run.settled()));
    }
    // Dependents go first, unless a declared replacement is ready to serve them.
    let blocking: Vec<String> = ServiceKind::ALL
        .into_iter()
        .filter(|k| k.spec().depends_on.contains(&key.kind))
        .flat_map(|k| {
            ctx.store
                .installed_anywhere(k)
                .into_iter()
                .map(move |s| format!("{k} on {s}"))
        })
        .collect();
    if !blocking.is_empty() && !ctx.store.ready_elsewhere(key.kind, key) {
        run.set(
            Phase::Progressing,
            "WaitingForDependents",
            format!(
                "{} is uninstalled after what depends on it: {}",
                key.kind,
                blocking.join(", ")
            ),
        );
        return Ok(Action::requeue(ctx.pace.wait()));
    }
    tracing::info!(
        "{}: uninstalling {} (no longer declared, prune: true)",
        key.server,
        key.kind
    );
    run.set(
        Phase::Progressing,
        "Uninstalling",
        format!("{} is no longer declared (prune: true)", key.kind),
    );
    let removed = run
        .agent
        .uninstall(key.kind)
        .await
        .map_err(|e| run.failed(&format!("uninstalling {}", key.kind), e))?;
    ctx.probes.stop(key);
    ctx.store.with_service(key, |r| r.observed = None);
    ctx.store.event(
        run.object(),
        EventType::Normal,
        "Uninstalled",
        &format!(
            "{} uninstalled (pruned){}",
            key.kind,
            if removed.remnants.is_empty() {
                String::new()
            } else {
                format!("; files left: {}", removed.remnants.join(", "))
            }
        ),
    );
    // Whatever waited for this one to go (PSWS, then PSIS) may go now.
    for other in ctx.store.service_keys() {
        if other != *key {
            ctx.triggers
                .wake::<Services>(other, Reason::ObservedChanged);
        }
    }
    Ok(Action::requeue(ctx.pace.short()))
}

/// Database, certificate and dependencies; `Some` is the wait. Whatever opens a gate
/// wakes the services behind it (the database and certificate controllers, a dependency's
/// first passing verdict), so the wait is only a backstop, paced to the fleet: 11,000
/// services re-checking every second kept a core busy during a cold converge.
fn gate(run: &Run<'_>) -> Option<Action> {
    let ctx = run.ctx;
    let key = run.key;
    // As the vendor's console does: the database first (reachable with the installer
    // login, and there). The database controller wakes the waiting services.
    if !ctx.store.database_ready() {
        run.set(
            Phase::Progressing,
            "WaitingForDatabase",
            "waiting for the database: reachable with the installer login, and existing",
        );
        return Some(Action::requeue(ctx.pace.gate(run.fleet)));
    }
    if !ctx.store.cert_ready(&key.server) {
        run.set(
            Phase::Progressing,
            "WaitingForCertificate",
            format!(
                "waiting for the certificate of {} to be in place",
                key.server
            ),
        );
        return Some(Action::requeue(ctx.pace.gate(run.fleet)));
    }
    let waiting: Vec<&str> = key
        .kind
        .spec()
        .depends_on
        .iter()
        .filter(|dep| !ctx.store.ready_somewhere(**dep))
        .map(|dep| dep.as_str())
        .collect();
    if !waiting.is_empty() {
        run.set(
            Phase::Progressing,
            "WaitingForDependency",
            format!(
                "waiting for {} to be installed and healthy",
                waiting.join(" and ")
            ),
        );
        return Some(Action::requeue(ctx.pace.gate(run.fleet)));
    }
    None
}

async fn install(
    run: &Run<'_>,
    placed: &PlacedService,
    what: String,
) -> Result<Action, ControllerError> {
    let ctx = run.ctx;
    let key = run.key;
    let request = InstallRequest {
        ports: placed.ports.clone(),
        drive: placed.drive.clone(),
        release: run.release().to_owned(),
        installed_by: ctx.config.installed_by.clone(),
    };
    tracing::info!("{}: {what}", key.server);
    run.set(Phase::Progressing, "Installing", what.clone());
    let response = run
        .agent
        .install(key.kind, &request, failover_managed(run))
        .await
        .map_err(|e| run.failed(&what, e))?;
    let (reason, verb) = match response.outcome {
        InstallOutcome::Created => ("Installed", "installed"),
        InstallOutcome::Reinstalled => ("Reinstalled", "reinstalled"),
        InstallOutcome::Started => ("Started", "started"),
        InstallOutcome::Unchanged => ("Unchanged", "already in place"),
    };
    ctx.probes.reprobe(key);
    ctx.store
        .with_service(key, |r| r.observed = Some(response.service.clone()));
    ctx.store.event(
        run.object(),
        EventType::Normal,
        reason,
        &format!(
            "{} {verb} on {}, release {}",
            key.kind,
            ports(&placed.ports),
            request.release
        ),
    );
    run.set(
        Phase::Progressing,
        "WaitingForHealthCheck",
        format!("{} {verb}; waiting for its first health check", key.kind),
    );
    Ok(Action::requeue(ctx.pace.short()))
}

pub(crate) fn target(
    ctx: &Context,
    server: &Server,
    kind: ServiceKind,
    observed: &ServiceInfo,
    desired: &Desired,
) -> ProbeTarget {
    let port = observed
        .listen_ports
        .first()
        .or(observed.ports.first())
        .copied()
        .unwrap_or_default();
    ProbeTarget {
        kind,
        hostname: server.hostname.clone(),
        connect_ip: ctx.agents.endpoint(server).connect_ip,
        port,
        check: desired.snapshot.health_check(kind),
    }
}

/// Whether the service last ran healthy with exactly what is declared now: only then is
/// a difference drift (rather than a rollout of a new desired state).
fn synced(run: &Run<'_>, placed: &PlacedService) -> bool {
    run.ctx.store.with_service(run.key, |r| {
        r.synced
            .as_ref()
            .is_some_and(|(spec, release)| spec == placed && release == run.release())
    })
}

/// Monitor mode: the drift found by this run; each kind is counted when it appears.
fn note_drift(run: &Run<'_>, now: &[DriftKind]) {
    let ctx = run.ctx;
    let newly: Vec<DriftKind> = ctx.store.with_service(run.key, |r| {
        let newly = now
            .iter()
            .filter(|k| !r.drift.contains(k))
            .copied()
            .collect();
        r.drift = now.iter().copied().collect();
        newly
    });
    for kind in newly {
        ctx.metrics.drift_detected(kind);
        ctx.store.event(
            run.object(),
            EventType::Warning,
            "DriftDetected",
            &format!("{} (monitor mode: not corrected)", kind.as_str()),
        );
    }
}

/// What differs, as "installed -> declared": `port 7019 -> 7029, release 6.12.1 -> 6.13.0`.
fn spec_difference(observed: &ServiceInfo, placed: &PlacedService, release: &str) -> String {
    let mut why = Vec::new();
    if observed.ports != placed.ports {
        let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let noun = if placed.ports.len() == 1 && observed.ports.len() == 1 {
            "port"
        } else {
            "ports"
        };
        why.push(format!(
            "{noun} {} -> {}",
            list(&observed.ports),
            list(&placed.ports)
        ));
    }
    if !observed.drive.eq_ignore_ascii_case(&placed.drive) {
        why.push(format!("drive {} -> {}", observed.drive, placed.drive));
    }
    if observed.release != release {
        why.push(format!("release {} -> {release}", observed.release));
    }
    why.join(", ")
}

fn ports(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    match list.len() {
        1 => format!("port {}", list[0]),
        _ => format!("ports {}", list.join(", ")),
    }
}

/// Services the desired state declares, on every server.
fn fleet_size(desired: &Desired) -> usize {
    desired
        .snapshot
        .servers
        .values()
        .map(|s| s.services.len())
        .sum()
}

fn forget(ctx: &Context, key: &ServiceKey) {
    ctx.probes.stop(key);
    ctx.store.forget_service(key);
}

#[cfg(test)]
mod tests;
