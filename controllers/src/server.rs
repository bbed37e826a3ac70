//! The server controller (key: server name): is the agent there, what does it run, and
//! does it hold the service URLs the desired state implies?
//!
//! It is also the fleet's discovery loop: services an agent lists that the desired state
//! does not declare are handed to the service controller, which reports or prunes them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::{ConnectionStrings, ServiceInfo};
use steward_agent::ClientError;
use steward_model::resource::Mode;
use steward_model::snapshot::Server;
use steward_model::{ServiceKind, Snapshot};
use steward_runtime::{Action, BackoffConfig, Reason};

use crate::agent::AgentApi;
use crate::certificate::Certificates;
use crate::context::Context;
use crate::drift::DriftKind;
use crate::error::ControllerError;
use crate::reconciler::{OwnLoop, Reconciled, Reconciler, Request};
use crate::service::Services;
use crate::service_key::ServiceKey;
use crate::status::{EventType, Phase};

/// How long the host an agent reported (its name, OS, agent version) is taken as it is
/// while the agent keeps answering: it changes when the agent is reinstalled, and an
/// agent that went away is asked again once it answers.
const HOST_KEPT: Duration = Duration::from_secs(300);

/// The server controller (key: server name).
pub(crate) struct Servers;

impl Reconciler for Servers {
    type Key = String;
    const NAME: &'static str = "server";

    async fn reconcile(request: Request<String>, ctx: Arc<Context>) -> Reconciled {
        let (name, reason, accepted) = (request.key, request.reason, request.accepted);
        let Some((server, declared)) = ctx.desired.server(&accepted, &name) else {
            return Ok(Action::await_change());
        };
        let desired = &accepted.desired;
        let generation = desired.generation;

        // An agent not known to answer is asked who it is; one that answered the last
        // look is asked again only every HOST_KEPT (a changed agent URL gets a new
        // client, which keeps nothing).
        let known_up = ctx
            .store
            .with_server(&name, |r| r.agent_up == Some(true))
            .unwrap_or(false);
        // The listing the service controller's looks of the same cause share (a full
        // resync, a new desired state), or one at most a quarter period old for a
        // periodic look: a resync lists each server once, not once for it and once for
        // its services.
        let need = ctx
            .agents
            .freshness
            .need(reason, settled(&ctx, &desired.snapshot) / 4);
        let observed = async {
            let agent = ctx.agents.get(&server)?;
            let host = if known_up {
                agent.host_within(HOST_KEPT).await?
            } else {
                agent.host().await?
            };
            let listed = agent.services_fresh(need).await?;
            Ok::<_, ClientError>((agent, host, listed))
        }
        .await;
        let (agent, host, listed) = observed
            .map_err(|e| ControllerError::down(ctx.agents.endpoint(&server).base_url, e))?;

        let inventory: BTreeSet<ServiceKind> = listed.iter().map(|s| s.kind).collect();
        let (was_up, previous_inventory) = ctx
            .store
            .with_server(&name, |r| {
                let was_up = r.agent_up;
                r.agent_up = Some(true);
                r.host = Some(host.clone());
                r.observed_generation = Some(generation);
                (was_up, r.inventory.replace(inventory.clone()))
            })
            .unwrap_or((None, None));
        if was_up != Some(true) {
            tracing::info!(
                "{name}: agent answers at {} ({}, agent {})",
                ctx.agents.endpoint(&server).base_url,
                host.os,
                host.agent_version
            );
            // Whatever waited for this agent can go now, without waiting out its backoff.
            ctx.triggers
                .wake::<Certificates>(name.clone(), Reason::ObservedChanged);
            for key in ctx.store.service_keys_on(&name) {
                ctx.triggers.wake::<Services>(key, Reason::ObservedChanged);
            }
        }
        // Services nobody declared: the service controller reports or prunes them.
        for kind in &inventory {
            let declared_here = declared && server.service(*kind).is_some();
            let new = previous_inventory
                .as_ref()
                .is_none_or(|p| !p.contains(kind));
            if !declared_here && (new || was_up != Some(true)) {
                ctx.triggers
                    .wake::<Services>(ServiceKey::new(&name, *kind), Reason::ObservedChanged);
            }
        }

        if !declared {
            return Ok(
                undeclared(&ctx, &server, agent.as_ref(), &inventory, &desired.snapshot).await,
            );
        }
        wake_changed_services(&ctx, &server, &listed);
        crate::hl7_failover::listed(&ctx, &server, &listed);

        if !same_host(&host.hostname, &server.hostname) {
            let message = format!(
                "the agent at {} says it runs on {}, not {}: check the Server's agent URL",
                ctx.agents.endpoint(&server).base_url,
                host.hostname,
                server.hostname
            );
            set_conditions(&ctx, &name, Phase::Degraded, "HostnameMismatch", message);
            return Ok(Action::requeue(settled(&ctx, &desired.snapshot)));
        }

        let strings = sync_connection_strings(&ctx, &server, agent.as_ref(), &desired.snapshot)
            .await
            .map_err(|e| ControllerError::call("reading or setting the connection strings", e))?;
        let message = format!(
            "agent answers ({}, {} services installed); {strings}",
            host.os,
            inventory.len()
        );
        let phase = if strings.drifted() {
            Phase::Degraded
        } else {
            Phase::Ready
        };
        let reason = if strings.drifted() {
            "ConnectionStringsDrift"
        } else {
            "AgentReady"
        };
        set_conditions(&ctx, &name, phase, reason, message);
        Ok(Action::requeue(settled(&ctx, &desired.snapshot)))
    }

    fn error_policy(name: &String, error: &ControllerError, ctx: &Context) {
        match error {
            ControllerError::AgentDown { .. } => mark_down(ctx, name, error),
            ControllerError::AgentCall { .. }
            | ControllerError::Database(_)
            | ControllerError::Balancer(_)
            | ControllerError::Hl7(_)
            | ControllerError::Directory { .. }
            | ControllerError::Secret { .. } => set_conditions(
                ctx,
                name,
                Phase::Degraded,
                error.reason(),
                error.to_string(),
            ),
        }
    }

    fn keys(ctx: &Context) -> Vec<String> {
        ctx.desired.known_servers()
    }

    fn configure(own: OwnLoop<String>, ctx: &Context) -> OwnLoop<String> {
        // An agent that comes back must be noticed within half a minute, not after a
        // five-minute backoff; its services are woken by this controller then.
        own.backoff(BackoffConfig::capped_at(
            Duration::from_secs(30).max(ctx.pace.resync),
        ))
    }
}

/// The period of this controller's looks: the resync, longer on a large fleet.
fn settled(ctx: &Context, snapshot: &Snapshot) -> Duration {
    ctx.pace.period(snapshot.servers.len())
}

/// Like an informer's watch: a declared service whose listed state differs from what its
/// controller last saw (stopped, gone, restarted by its agent) is looked at now rather
/// than at its next periodic look, which on a large fleet is minutes away.
fn wake_changed_services(ctx: &Context, server: &Server, listed: &[ServiceInfo]) {
    for placed in &server.services {
        let key = ServiceKey::new(&server.name, placed.kind);
        let now = listed
            .iter()
            .find(|s| s.kind == placed.kind)
            .map(|s| (s.status, s.pid));
        let seen = ctx
            .store
            .with_service(&key, |r| r.observed.as_ref().map(|o| (o.status, o.pid)));
        if now != seen {
            ctx.triggers.wake::<Services>(key, Reason::ObservedChanged);
        }
    }
}

fn set_conditions(ctx: &Context, name: &str, phase: Phase, reason: &str, message: String) {
    ctx.store
        .with_server(name, |r| r.conditions.set(phase, reason, message));
}

fn mark_down(ctx: &Context, name: &str, error: &ControllerError) {
    let generation = ctx.desired.current().map(|a| a.generation());
    let was_up = ctx.store.with_server(name, |r| {
        let was = r.agent_up;
        r.agent_up = Some(false);
        if generation.is_some() {
            r.observed_generation = generation;
        }
        r.conditions
            .set(Phase::Degraded, error.reason(), error.to_string());
        was
    });
    if was_up.flatten() != Some(false) {
        tracing::warn!("{name}: {error}");
    }
}

/// What the connection-strings step found or did, for the server's status message.
enum Strings {
    InSync,
    Pushed(usize),
    Drifted,
    /// The snapshot lacks a service whose URL every service must be given.
    Incomplete(&'static str),
}

impl Strings {
    fn drifted(&self) -> bool {
        matches!(self, Self::Drifted)
    }
}

impl std::fmt::Display for Strings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InSync => f.write_str("connection strings in sync"),
            Self::Pushed(n) => write!(f, "connection strings pushed to {n} services"),
            Self::Drifted => f.write_str(
                "connection strings differ from the desired state (monitor mode: not corrected)",
            ),
            Self::Incomplete(missing) => write!(
                f,
                "connection strings not pushed: no {missing} is declared, and every service needs its URL"
            ),
        }
    }
}

/// Every service needs PSIS's and PSWS's URLs; CLIENT's and REPORT's are given when the
/// installation has them.
fn desired_strings(snapshot: &Snapshot) -> Result<ConnectionStrings, &'static str> {
    let s = snapshot.connection_strings();
    Ok(ConnectionStrings {
        identity_server: s.identity_server.ok_or("PSIS")?,
        psws: s.psws.ok_or("PSWS")?,
        client: s.client,
        api: s.api,
    })
}

async fn sync_connection_strings(
    ctx: &Context,
    server: &Server,
    agent: &dyn AgentApi,
    snapshot: &Snapshot,
) -> Result<Strings, ClientError> {
    let wanted = match desired_strings(snapshot) {
        Ok(w) => w,
        Err(missing) => return Ok(Strings::Incomplete(missing)),
    };
    let current = agent.connection_strings().await?;
    let synced_before = ctx
        .store
        .with_server(&server.name, |r| r.strings_synced.clone())
        .flatten();
    if current.as_ref() == Some(&wanted) {
        ctx.store.with_server(&server.name, |r| {
            r.strings_synced = Some(wanted);
            r.drift.remove(&DriftKind::ConnectionStrings);
        });
        return Ok(Strings::InSync);
    }
    // Only a difference from what once was in place is drift; first delivery and a
    // changed desired state are rollout.
    let drift = current.is_some() && synced_before.as_ref() == Some(&wanted);
    if snapshot.installation.mode == Mode::Monitor {
        let newly = ctx
            .store
            .with_server(&server.name, |r| {
                r.drift.insert(DriftKind::ConnectionStrings)
            })
            .unwrap_or(false);
        if newly {
            ctx.metrics.drift_detected(DriftKind::ConnectionStrings);
            ctx.store.event(
                format!("server/{}", server.name),
                EventType::Warning,
                "DriftDetected",
                "the agent's connection strings differ from the desired state (monitor mode: not corrected)",
            );
        }
        return Ok(Strings::Drifted);
    }
    let update = agent.set_connection_strings(&wanted).await?;
    if drift {
        ctx.metrics.drift_detected(DriftKind::ConnectionStrings);
        ctx.metrics.drift_corrected(DriftKind::ConnectionStrings);
    }
    tracing::info!(
        "{}: pushed connection strings to {} services{}",
        server.name,
        update.pushed.len(),
        if drift { " (they had drifted)" } else { "" }
    );
    ctx.store.event(
        format!("server/{}", server.name),
        EventType::Normal,
        "ConnectionStringsPushed",
        &format!(
            "identity server {}, web services {}",
            wanted.identity_server, wanted.psws
        ),
    );
    ctx.store.with_server(&server.name, |r| {
        r.strings_synced = Some(wanted);
        r.drift.remove(&DriftKind::ConnectionStrings);
    });
    Ok(Strings::Pushed(update.pushed.len()))
}

/// A server that left the desired state: reported while it runs services; once empty,
/// cleaned (with prune) and forgotten.
async fn undeclared(
    ctx: &Context,
    server: &Server,
    agent: &dyn AgentApi,
    inventory: &BTreeSet<ServiceKind>,
    snapshot: &Snapshot,
) -> Action {
    let name = &server.name;
    let prune = snapshot.installation.prune;
    if !inventory.is_empty() {
        let kinds: Vec<&str> = inventory.iter().map(|k| k.as_str()).collect();
        let (phase, reason, message) = if prune && snapshot.installation.mode == Mode::AutoCorrect {
            (
                Phase::Progressing,
                "Pruning",
                format!("no longer declared; uninstalling {}", kinds.join(", ")),
            )
        } else {
            (
                Phase::Stalled,
                "Orphaned",
                format!(
                    "no longer declared but still runs {}; they are left alone (set prune: true to uninstall them)",
                    kinds.join(", ")
                ),
            )
        };
        set_conditions(ctx, name, phase, reason, message);
        return Action::requeue(ctx.pace.resync);
    }
    if prune && snapshot.installation.mode == Mode::AutoCorrect {
        match agent.cleanup_remnants().await {
            Ok(report) if report.failed.is_empty() => {}
            Ok(report) => tracing::warn!(
                "{name}: {} remnant paths could not be removed",
                report.failed.len()
            ),
            Err(e) => tracing::warn!("{name}: remnant cleanup failed: {e}"),
        }
    }
    tracing::info!("{name}: no longer declared and runs nothing; no longer managed");
    ctx.store.event(
        format!("server/{name}"),
        EventType::Normal,
        "Removed",
        "no longer declared and runs no services",
    );
    ctx.forget_server(name);
    Action::await_change()
}

/// Agents report the machine's name, which may be the short name of the declared FQDN.
fn same_host(reported: &str, declared: &str) -> bool {
    let first = |s: &str| s.split('.').next().unwrap_or_default().to_ascii_lowercase();
    reported.eq_ignore_ascii_case(declared)
        || (!reported.contains('.') && first(reported) == first(declared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{fixture, Call};
    use crate::status::ConditionType;
    use steward_runtime::ReconcileError;

    /// One run as the runtime makes it: reconcile, then the error policy.
    async fn reconcile(name: String, reason: Reason, ctx: Arc<Context>) -> Reconciled {
        crate::reconciler::reconcile_and_record::<Servers>(name, reason, ctx).await
    }

    #[tokio::test]
    async fn reachable_agent_reports_host_and_gets_connection_strings() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS", "CLIENT", "REPORT", "ADMIN"])]);
        let action = reconcile("app1".into(), Reason::DesiredChanged, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(fx.ctx.config.resync));
        let status = fx.ctx.store.status();
        let app1 = &status.servers[0];
        assert_eq!(app1.agent_up, Some(true));
        assert_eq!(app1.host.as_ref().unwrap().hostname, "app1.example.eng");
        assert_eq!(app1.conditions[0].reason, "AgentReady");
        let agent = fx.agent("app1");
        let strings = agent.state().connection_strings.clone().unwrap();
        assert_eq!(
            strings.identity_server,
            "https://app1.example.eng:7001/identityserver"
        );
        assert_eq!(agent.calls(Call::SetConnectionStrings), 1);

        // In sync: not pushed again.
        fx.run::<Servers>("app1".into()).await.unwrap();
        assert_eq!(agent.calls(Call::SetConnectionStrings), 1);
        assert_eq!(
            fx.gauge("steward_agent_up", &[("server", "app1")]),
            Some(1.0)
        );

        // Someone changes them: drift, corrected.
        agent.state().connection_strings.as_mut().unwrap().psws = "https://evil:1/psws/api".into();
        fx.run::<Servers>("app1".into()).await.unwrap();
        assert_eq!(agent.calls(Call::SetConnectionStrings), 2);
        assert_eq!(
            fx.counter(
                "steward_drift_corrected_total",
                &[("kind", "connection_strings")]
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn unreachable_agents_degrade_their_server_with_a_clear_reason() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        let agent = fx.agent("app1");
        for (error, reason) in [
            (ClientError::ConnectRefused, "AgentConnectionRefused"),
            (
                ClientError::Tls("invalid peer certificate: UnknownIssuer".into()),
                "AgentTlsFailure",
            ),
            (
                ClientError::Timeout(std::time::Duration::from_secs(5)),
                "AgentTimeout",
            ),
            (
                ClientError::InvalidBody("expected value at line 1".into()),
                "AgentBadResponse",
            ),
            (
                ClientError::Status {
                    status: 503,
                    code: None,
                    message: "unavailable".into(),
                },
                "AgentError",
            ),
        ] {
            agent.fail_next(Call::Host, error);
            let err = fx.run::<Servers>("app1".into()).await.unwrap_err();
            assert!(err.metric_label().starts_with("agent_"));
            let status = fx.ctx.store.status();
            let app1 = &status.servers[0];
            assert_eq!(app1.agent_up, Some(false));
            let degraded = app1
                .conditions
                .iter()
                .find(|c| c.condition_type == ConditionType::Degraded)
                .unwrap();
            assert_eq!(degraded.reason, reason);
            assert_eq!(
                fx.gauge("steward_agent_up", &[("server", "app1")]),
                Some(0.0)
            );
        }
        // Back: up again, and its services are woken.
        reconcile("app1".into(), Reason::RetryAfterError, fx.ctx.clone())
            .await
            .unwrap();
        assert_eq!(fx.ctx.store.status().servers[0].agent_up, Some(true));
    }

    /// An agent that keeps answering is asked who it is every HOST_KEPT, not every look;
    /// one that went away is asked again when it answers.
    #[tokio::test(start_paused = true)]
    async fn a_known_agents_host_is_asked_for_again_only_when_old_or_after_an_outage() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        let agent = fx.agent("app1");
        for _ in 0..3 {
            fx.run::<Servers>("app1".into()).await.unwrap();
        }
        assert_eq!(agent.calls(Call::Host), 1);
        assert_eq!(agent.calls(Call::Services), 3, "every look lists");

        tokio::time::advance(HOST_KEPT + Duration::from_secs(1)).await;
        fx.run::<Servers>("app1".into()).await.unwrap();
        assert_eq!(agent.calls(Call::Host), 2);

        agent.set_down(true);
        fx.run::<Servers>("app1".into()).await.unwrap_err();
        agent.set_down(false);
        let host_calls = agent.calls(Call::Host);
        fx.run::<Servers>("app1".into()).await.unwrap();
        assert_eq!(agent.calls(Call::Host), host_calls + 1);
        assert_eq!(fx.ctx.store.status().servers[0].agent_up, Some(true));
    }

    #[tokio::test]
    async fn connection_strings_are_pushed_without_client_and_report() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS"])]);
        fx.run::<Servers>("app1".into()).await.unwrap();
        let agent = fx.agent("app1");
        assert_eq!(agent.calls(Call::SetConnectionStrings), 1);
        let pushed = agent.state().connection_strings.clone().unwrap();
        assert_eq!(pushed.psws, "https://app1.example.eng:7002/psws/api");
        assert_eq!((pushed.client, pushed.api), (None, None));
        let status = fx.ctx.store.status();
        assert_eq!(status.servers[0].conditions[0].reason, "AgentReady");
    }

    #[tokio::test]
    async fn monitor_mode_reports_connection_string_drift_only() {
        let fx = fixture(&[("app1", &["PSIS", "PSWS", "CLIENT", "REPORT", "ADMIN"])]);
        fx.set_mode(Mode::Monitor);
        fx.run::<Servers>("app1".into()).await.unwrap();
        fx.run::<Servers>("app1".into()).await.unwrap();
        assert_eq!(fx.agent("app1").calls(Call::SetConnectionStrings), 0);
        assert_eq!(
            fx.counter(
                "steward_drift_detected_total",
                &[("kind", "connection_strings")]
            ),
            Some(1.0),
            "counted once, not per resync"
        );
        let status = fx.ctx.store.status();
        assert_eq!(
            status.servers[0].conditions[0].reason,
            "ConnectionStringsDrift"
        );
    }

    #[test]
    fn short_names_match_their_fqdn() {
        assert!(same_host("app1.example.eng", "APP1.example.eng"));
        assert!(same_host("app1", "app1.example.eng"));
        assert!(!same_host("app2", "app1.example.eng"));
        assert!(!same_host("app1.other.eng", "app1.example.eng"));
    }
}
