//! One server's way through an upgrade: `Draining` (out of the load balancer, sessions
//! end or `drainTimeout`), `Upgrading` (its services one at a time in install order, each
//! released to the service controller only once the one before runs the new release and
//! passes its health test), `Gating` (all of them healthy for `healthGate`), then back
//! into the load balancer and `Done`. Any failed install or health test is `Failed`. An
//! HL7 standby has no health test to pass: at the new release and still held stopped, it
//! is done (the service controller reinstalls it held; only the HL7 failover starts it).
//!
//! Durations are measured on tokio's clock (paused in tests); they are not persisted, so
//! a daemon restart starts a drain wait or a health gate over, which only waits longer.

use std::collections::HashMap;
use std::time::Duration;

use steward_agent::api::ServiceStatus;
use steward_model::snapshot::Server;
use steward_model::upgrade::UpgradePolicy;
use steward_model::ServiceKind;
use steward_runtime::Reason;
use tokio::time::Instant;

use super::rollout::ServerRollout;
use super::Drainer;
use crate::context::Context;
use crate::error::ControllerError;
use crate::service_key::ServiceKey;
use crate::status::{EventType, ServerUpgradePhase};
use crate::store::ServiceView;

/// Bytes of a failed service's log kept with the halted upgrade.
const LOG_TAIL: u64 = 64 * 1024;

/// Since when each server has been drained, and healthy in its gate.
#[derive(Debug, Default)]
pub(super) struct Timers {
    drained: HashMap<String, Instant>,
    healthy: HashMap<String, Instant>,
}

pub(super) enum Step {
    Wait(Duration),
    Done,
    Failed {
        kind: Option<ServiceKind>,
        reason: String,
    },
}

/// How one service stands against the release being rolled out.
enum Judged {
    /// At the release, running and passing its health test, or a held standby.
    Done,
    Pending,
    Failed(String),
}

fn judge(kind: ServiceKind, view: &ServiceView, to: &str) -> Judged {
    let at_target = view.observed.as_ref().is_some_and(|o| o.release == to);
    if !at_target {
        // The service controller's install failed (its condition says why).
        return match &view.degraded {
            Some((reason, message)) if reason != "HealthCheckFailing" => {
                Judged::Failed(format!("installing {kind} failed ({reason}): {message}"))
            }
            _ => Judged::Pending,
        };
    }
    if view.standby {
        // A held HL7 standby at the new release: stopped on purpose, it has no health
        // verdict to wait for (a stale one from when it last ran says nothing), and only
        // the HL7 failover may start it.
        return Judged::Done;
    }
    let running = view
        .observed
        .as_ref()
        .is_some_and(|o| o.status == ServiceStatus::Running);
    match view.verdict {
        Some(false) => Judged::Failed(format!(
            "{kind} fails its health test after the upgrade{}",
            view.degraded
                .as_ref()
                .map(|(_, m)| format!(": {m}"))
                .unwrap_or_default()
        )),
        Some(true) if running => Judged::Done,
        _ => Judged::Pending,
    }
}

pub(super) async fn advance(
    ctx: &Context,
    policy: &UpgradePolicy,
    server: &Server,
    entry: &mut ServerRollout,
    to: &str,
    drainer: Option<&dyn Drainer>,
) -> Result<Step, ControllerError> {
    let name = server.name.as_str();
    if entry.phase == ServerUpgradePhase::Draining {
        if let Some(d) = drainer {
            let since = ctx
                .upgrade
                .timers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drained
                .get(name)
                .copied();
            let since = match since {
                Some(s) => s,
                None => {
                    d.set_drained(name, true).await?;
                    tracing::info!("upgrade: {name} drained from the load balancer");
                    let now = Instant::now();
                    ctx.upgrade
                        .timers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .drained
                        .insert(name.to_owned(), now);
                    now
                }
            };
            let sessions = d.sessions(name).await?;
            let waited = since.elapsed();
            if sessions > 0 && waited < policy.drain_timeout {
                return Ok(Step::Wait(
                    ctx.pace.wait().min(policy.drain_timeout - waited),
                ));
            }
        }
        entry.phase = ServerUpgradePhase::Upgrading;
        entry.admitted = 0;
    }
    let kinds: Vec<ServiceKind> = server.services.iter().map(|p| p.kind).collect();
    if entry.phase == ServerUpgradePhase::Upgrading {
        loop {
            if entry.admitted == 0 {
                entry.admitted = 1;
                release(ctx, name, kinds.first().copied(), to);
            }
            let Some(&kind) = kinds.get(entry.admitted - 1) else {
                entry.phase = ServerUpgradePhase::Gating;
                break;
            };
            match judge(kind, &ctx.store.service_view(name, kind), to) {
                Judged::Failed(reason) => {
                    return Ok(Step::Failed {
                        kind: Some(kind),
                        reason: format!("{name}: {reason}"),
                    })
                }
                Judged::Pending => return Ok(Step::Wait(ctx.pace.short())),
                Judged::Done if entry.admitted >= kinds.len() => {
                    entry.phase = ServerUpgradePhase::Gating;
                    break;
                }
                Judged::Done => {
                    entry.admitted += 1;
                    release(ctx, name, kinds.get(entry.admitted - 1).copied(), to);
                }
            }
        }
    }
    if entry.phase != ServerUpgradePhase::Gating {
        return Ok(Step::Done);
    }
    for &kind in &kinds {
        match judge(kind, &ctx.store.service_view(name, kind), to) {
            Judged::Failed(reason) => {
                return Ok(Step::Failed {
                    kind: Some(kind),
                    reason: format!("{name}: health gate: {reason}"),
                })
            }
            Judged::Pending => {
                // Healthy for `healthGate` without a break: a gap starts it over.
                ctx.upgrade
                    .timers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .healthy
                    .remove(name);
                return Ok(Step::Wait(ctx.pace.short()));
            }
            Judged::Done => {}
        }
    }
    let since = *ctx
        .upgrade
        .timers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .healthy
        .entry(name.to_owned())
        .or_insert_with(Instant::now);
    let held = since.elapsed();
    if held < policy.health_gate {
        return Ok(Step::Wait(ctx.pace.short().min(policy.health_gate - held)));
    }
    if let Some(d) = drainer {
        d.set_drained(name, false).await?;
        tracing::info!("upgrade: {name} back in the load balancer");
    }
    {
        let mut timers = ctx.upgrade.timers.lock().unwrap_or_else(|p| p.into_inner());
        timers.drained.remove(name);
        timers.healthy.remove(name);
    }
    entry.phase = ServerUpgradePhase::Done;
    tracing::info!("upgrade: {name} runs {to} and passed its health gate");
    Ok(Step::Done)
}

/// Let the service controller install `to` for `kind` on `server` now.
fn release(ctx: &Context, server: &str, kind: Option<ServiceKind>, to: &str) {
    let Some(kind) = kind else {
        return;
    };
    tracing::info!("upgrade: {server}: upgrading {kind} to {to}");
    ctx.store.event(
        format!("service/{}", ServiceKey::new(server, kind)),
        EventType::Normal,
        "Upgrading",
        &format!("{kind} is upgraded to {to}"),
    );
    ctx.triggers
        .wake::<crate::service::Services>(ServiceKey::new(server, kind), Reason::DesiredChanged);
}

/// The tail of a failed service's log, from its agent (an error says why not).
pub(super) async fn install_log(
    ctx: &Context,
    server: &str,
    kind: ServiceKind,
) -> Result<String, String> {
    let srv = ctx
        .desired
        .current()
        .and_then(|a| a.desired.snapshot.servers.get(server).cloned())
        .ok_or_else(|| format!("{server} is no longer declared"))?;
    let agent = ctx.agents.get(&srv).map_err(|e| e.to_string())?;
    let logs = agent
        .logs(kind, LOG_TAIL)
        .await
        .map_err(|e| e.to_string())?;
    Ok(logs.log)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn standby(release: &str, verdict: Option<bool>) -> ServiceView {
        ServiceView {
            observed: Some(crate::fakes::listed(
                ServiceKind::Hl7,
                2244,
                "C:",
                release,
                true,
            )),
            verdict,
            standby: true,
            degraded: None,
        }
    }

    #[test]
    fn a_standby_is_done_at_the_new_release_whatever_its_last_verdict() {
        let judged = |view: &ServiceView| judge(ServiceKind::Hl7, view, "6.13.0");
        assert!(matches!(judged(&standby("6.12.1", None)), Judged::Pending));
        for verdict in [None, Some(true), Some(false)] {
            assert!(
                matches!(judged(&standby("6.13.0", verdict)), Judged::Done),
                "{verdict:?}"
            );
        }
    }
}
