//! From a new desired state to reconcile requests.
//!
//! The snapshot diff names what changed; each change wakes the controllers it concerns.
//! Keys of objects the new snapshot no longer declares are woken too (their controllers
//! report or prune them), and so is every service record the store holds, which includes
//! services agents reported that were never declared.

use std::collections::BTreeSet;

use steward_model::diff::SnapshotDiff;
use steward_runtime::Reason;

use crate::balancer::LoadBalancers;
use crate::certificate::Certificates;
use crate::config::Desired;
use crate::context::Context;
use crate::database::Databases;
use crate::directory::Directories;
use crate::server::Servers;
use crate::service::Services;
use crate::service_key::ServiceKey;
use crate::status::EventType;

/// What became of a new desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Now in force; the diff says what changed.
    Accepted(std::sync::Arc<SnapshotDiff>),
    /// The same generation again: nothing to do.
    Unchanged,
    /// Not applied; the previous state stays in force.
    Refused,
}

/// Put `desired` in force (or refuse it) and wake what it concerns.
pub(crate) fn apply(ctx: &Context, desired: Desired) -> Applied {
    let previous = ctx.desired.current();
    if previous
        .as_ref()
        .is_some_and(|p| p.generation() == desired.generation)
    {
        return Applied::Unchanged;
    }
    // Like Argo CD's allowEmpty=false: a commit that empties the fleet is far more often a
    // broken checkout or a wrong directory than a decision to stop managing every server.
    let managed = ctx.desired.known_servers();
    if desired.snapshot.servers.is_empty() && !managed.is_empty() {
        let message = format!(
            "it declares no servers while {} are managed ({}); nothing was changed. Declare the servers again, or remove them one commit at a time",
            managed.len(),
            managed.join(", ")
        );
        tracing::warn!(generation = desired.generation, "{message}");
        ctx.store
            .refuse(desired.generation, "EmptySnapshotRefused", &message);
        return Applied::Refused;
    }
    let accepted = ctx.desired.accept(desired);
    // Its reconciles may share any listing an agent sends from now on.
    ctx.agents.freshness.desired_changed();
    let changes = &accepted.diff;
    let generation = accepted.generation();
    let snapshot = &accepted.desired.snapshot;
    ctx.store.sync_desired(generation, snapshot);
    ctx.refresh_trust();
    if !changes.is_empty() {
        tracing::info!(generation, "desired state: {changes}");
        ctx.store.event(
            format!("installation/{}", snapshot.installation.name),
            EventType::Normal,
            "DesiredStateChanged",
            &format!("generation {generation}: {changes}"),
        );
    }

    let mut servers = BTreeSet::new();
    let mut certificates = BTreeSet::new();
    let mut services = BTreeSet::new();
    let old_servers: Vec<String> = previous
        .as_ref()
        .map(|p| p.desired.snapshot.servers.keys().cloned().collect())
        .unwrap_or_default();
    let everything = changes.initial || !changes.installation.is_empty();
    if everything {
        // Mode, prune, release, load balancer or CA changed: it concerns every object.
        servers.extend(ctx.desired.known_servers());
        certificates.extend(ctx.desired.known_servers());
        services.extend(ctx.store.service_keys());
    } else {
        for name in changes.servers.keys() {
            servers.insert(name.clone());
            certificates.insert(name.clone());
            services.extend(ctx.store.service_keys_on(name));
        }
        for service in changes
            .services
            .keys()
            .chain(&changes.connection_string_targets)
        {
            services.insert(ServiceKey::new(&service.server, service.kind));
        }
        if changes.connection_strings_changed {
            servers.extend(snapshot.servers.keys().cloned());
        }
        for kind in changes.health_checks.keys() {
            services.extend(
                ctx.store
                    .service_keys()
                    .into_iter()
                    .filter(|k| k.kind == *kind),
            );
        }
        // A server that left must be reported or pruned even if the diff folded it away.
        servers.extend(
            old_servers
                .into_iter()
                .filter(|n| !snapshot.servers.contains_key(n)),
        );
    }
    if everything {
        ctx.triggers.wake::<Databases>((), Reason::DesiredChanged);
    }
    for name in servers {
        ctx.triggers.wake::<Servers>(name, Reason::DesiredChanged);
    }
    for name in certificates {
        ctx.triggers
            .wake::<Certificates>(name, Reason::DesiredChanged);
    }
    for key in services {
        ctx.triggers.wake::<Services>(key, Reason::DesiredChanged);
    }
    crate::notifications::wake_changed(ctx, changes, snapshot);
    // The farms are drawn from the installation, the servers, their services and the
    // health checks: any change may change them (an unchanged rendering changes nothing).
    if !changes.is_empty() {
        ctx.triggers
            .wake::<LoadBalancers>((), Reason::DesiredChanged);
    }
    // One key, cheap: any change may move HL7's placement, preference or policy.
    ctx.triggers
        .wake::<crate::hl7_failover::Hl7Failovers>((), Reason::DesiredChanged);
    // A new release or policy is the upgrade's business; every generation is cheap to judge.
    crate::upgrade::wake(ctx, Reason::DesiredChanged);
    // Directories are few: any whose document (or the mode) changed runs again now.
    for (name, directory) in &snapshot.directories {
        let before = previous
            .as_ref()
            .and_then(|p| p.desired.snapshot.directories.get(name));
        if everything || before != Some(directory) {
            ctx.triggers
                .wake::<Directories>(name.clone(), Reason::DesiredChanged);
        }
    }
    Applied::Accepted(std::sync::Arc::clone(changes))
}
