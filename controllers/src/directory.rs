//! The directory controller (key: ActiveDirectory name): binds to the directory over TLS,
//! checks every role group (present / missing, the same group under two names), creates
//! missing groups when `createMissingGroups` allows, and manages the membership `members`
//! lists per `membersPolicy`. `mode: monitor` reports only.
//!
//! Every run connects afresh and re-reads everything, so a group deleted or a member
//! removed behind steward's back is found by the next run: at most one resync later. The
//! password is read from its reference at each run and lives only in the connection
//! configuration (which redacts it); a failure is the directory's condition, and the
//! runtime's backoff spaces the retries. A dead directory holds nothing else up: it has its
//! own loop, and every connect and operation is bounded in time.

mod pass;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use steward_directory::{DirectoryConfig, Password, Session};
use steward_model::resource::Mode;
use steward_model::snapshot::ActiveDirectory;
use steward_runtime::{Action, BackoffConfig};

use crate::context::Context;
use crate::drift::DriftKind;
use crate::error::ControllerError;
use crate::reconciler::{OwnLoop, Reconciled, Reconciler, Request};
use crate::status::{EventType, Phase};

use pass::Outcome;

/// The directory controller (key: ActiveDirectory name).
pub(crate) struct Directories;

/// The reason of a directory found as declared.
pub(crate) const RECONCILED: &str = "Reconciled";

impl Reconciler for Directories {
    type Key = String;
    const NAME: &'static str = "directory";

    async fn reconcile(request: Request<String>, ctx: Arc<Context>) -> Reconciled {
        let (name, accepted) = (request.key, request.accepted);
        let snapshot = &accepted.desired.snapshot;
        let Some(directory) = snapshot.directories.get(&name) else {
            // Left the desired state: the store dropped its record and series with it.
            return Ok(Action::await_change());
        };
        // A follower (controller HA) only looks, as in monitor mode.
        let monitor = snapshot.installation.mode == Mode::Monitor || !ctx.acting();
        let mut config = connection(&name, directory, &accepted.desired.dir)?;
        if let Some(lab) = ctx.directory_lab.get() {
            config.trust.extend(lab.trust.iter().cloned());
            config.connect_to = (lab.address)(&name);
        }
        let failed = |bound| {
            let name = name.clone();
            move |source| ControllerError::Directory {
                directory: name,
                bound,
                source,
            }
        };
        // Reconciled before, for this same generation: whatever differs now is drift.
        let generation = accepted.generation();
        let settled = ctx.store.directory_settled(&name, generation);
        let mut session = Session::connect(&config).await.map_err(failed(false))?;
        let outcome = pass::run(&mut session, directory, monitor).await;
        session.close().await;
        let outcome = outcome.map_err(failed(true))?;

        let object = format!("activedirectory/{name}");
        for group in &outcome.created {
            ctx.store.event(
                object.clone(),
                EventType::Normal,
                "GroupCreated",
                &format!("created role group {group} (createMissingGroups)"),
            );
        }
        for (group, changed) in &outcome.changed {
            ctx.store.event(
                object.clone(),
                EventType::Normal,
                "MembersChanged",
                &format!(
                    "{group}: {} ({})",
                    changes_text(changed),
                    policy_name(directory)
                ),
            );
        }
        if settled {
            count_drift(&ctx, &outcome);
        }
        let (phase, reason, message) = verdict(directory, &outcome, monitor);
        let was_up = ctx.store.with_directory(&name, |r| {
            let was_up = r.up;
            r.up = Some(true);
            r.groups = outcome.groups;
            r.observed_generation = Some(generation);
            r.conditions.set(phase, reason, message);
            was_up
        });
        if was_up.is_some_and(|up| up != Some(true)) {
            tracing::info!("directory {name}: bound to {}", directory.server);
        }
        Ok(Action::requeue(ctx.pace.resync))
    }

    fn error_policy(name: &String, error: &ControllerError, ctx: &Context) {
        let (bound, transient) = match error {
            ControllerError::Directory { bound, source, .. } => (*bound, source.is_transient()),
            _ => (false, false),
        };
        // Transient failures (unreachable, slow, garbled) may pass by themselves; the
        // others (trust, host name, password, configuration) need a person.
        let phase = if transient {
            Phase::Degraded
        } else {
            Phase::Stalled
        };
        let was_up = ctx.store.with_directory(name, |r| {
            let was_up = r.up;
            r.up = Some(bound);
            r.conditions.set(phase, error.reason(), error.to_string());
            was_up
        });
        if was_up.is_some_and(|up| up != Some(bound)) {
            tracing::warn!("{error}");
        }
    }

    fn keys(ctx: &Context) -> Vec<String> {
        ctx.desired
            .current()
            .map(|a| a.desired.snapshot.directories.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn configure(own: OwnLoop<String>, ctx: &Context) -> OwnLoop<String> {
        // A directory that comes back is noticed within a minute (or one resync), without
        // hammering a dead domain controller meanwhile.
        own.backoff(BackoffConfig::capped_at(
            Duration::from_secs(60).max(ctx.pace.resync),
        ))
    }
}

/// `steward_drift_detected_total` (and `_corrected_total` for what this pass repaired).
fn count_drift(ctx: &Context, outcome: &Outcome) {
    let metrics = &ctx.metrics;
    for _ in &outcome.created {
        metrics.drift_detected(DriftKind::DirectoryGroup);
        metrics.drift_corrected(DriftKind::DirectoryGroup);
    }
    for _ in &outcome.missing {
        metrics.drift_detected(DriftKind::DirectoryGroup);
    }
    for _ in outcome.changed.keys() {
        metrics.drift_detected(DriftKind::DirectoryMembers);
        metrics.drift_corrected(DriftKind::DirectoryMembers);
    }
    for _ in outcome.pending.keys() {
        metrics.drift_detected(DriftKind::DirectoryMembers);
    }
}

/// How to reach and bind to `directory`: the password read now from its reference, trust
/// files resolved against the desired-state directory.
fn connection(
    name: &str,
    directory: &ActiveDirectory,
    base: &Path,
) -> Result<DirectoryConfig, ControllerError> {
    let secret =
        directory
            .password_ref
            .resolve(base)
            .map_err(|source| ControllerError::Secret {
                directory: name.to_owned(),
                reference: directory.password_ref.to_string(),
                source,
            })?;
    let mut config = DirectoryConfig::new(
        &directory.server,
        &directory.domain,
        &directory.account,
        Password::new(secret.expose()),
    );
    config.container.clone_from(&directory.container);
    config.trust = directory.trust.iter().map(|t| base.join(t)).collect();
    Ok(config)
}

/// The one condition that describes the directory after a pass; every problem found is in
/// its message, the most pressing one gives the reason.
fn verdict(
    directory: &ActiveDirectory,
    outcome: &Outcome,
    monitor: bool,
) -> (Phase, &'static str, String) {
    let mut problems: Vec<(Phase, &'static str, String)> = Vec::new();
    for names in &outcome.shared {
        problems.push((
            Phase::Stalled,
            "GroupInTwoRoles",
            format!(
                "{} are one group in the directory; a group may hold only one role",
                names.join(" and ")
            ),
        ));
    }
    if !outcome.missing.is_empty() {
        let why = if !directory.create_missing_groups {
            "createMissingGroups is false"
        } else {
            "mode is monitor"
        };
        problems.push((
            Phase::Degraded,
            "GroupMissing",
            format!(
                "missing role group(s): {} ({why})",
                outcome.missing.join(", ")
            ),
        ));
    }
    if !outcome.ambiguous.is_empty() {
        problems.push((
            Phase::Degraded,
            "GroupAmbiguous",
            format!(
                "several groups match: {}; give each a unique name or set container",
                outcome.ambiguous.join(", ")
            ),
        ));
    }
    for (group, members) in &outcome.unknown_members {
        problems.push((
            Phase::Degraded,
            "UnknownMember",
            format!(
                "{group}: no unique account for {} (nothing is removed from {group} until every listed member resolves)",
                members.join(", ")
            ),
        ));
    }
    if monitor {
        for (group, changed) in &outcome.pending {
            problems.push((
                Phase::Degraded,
                "MembersDiffer",
                format!("{group}: would {} (mode is monitor)", changes_text(changed)),
            ));
        }
    }
    if problems.is_empty() {
        let managed = directory.members.as_ref().map_or(0, |m| m.len());
        let message = format!(
            "bound to {}; {} role group(s) present{}",
            directory.server,
            outcome.groups.len(),
            if managed > 0 {
                format!(
                    ", members of {managed} group(s) managed ({})",
                    policy_name(directory)
                )
            } else {
                String::new()
            }
        );
        return (Phase::Ready, RECONCILED, message);
    }
    let rank = |p: &Phase| match p {
        Phase::Stalled => 0,
        _ => 1,
    };
    problems.sort_by_key(|(phase, _, _)| rank(phase));
    let (phase, reason, _) = problems[0];
    let message = problems
        .iter()
        .map(|(_, _, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    (phase, reason, message)
}

fn changes_text(changed: &pass::Changed) -> String {
    let mut parts = Vec::new();
    if !changed.added.is_empty() {
        parts.push(format!("add {}", changed.added.join(" | ")));
    }
    if !changed.removed.is_empty() {
        parts.push(format!("remove {}", changed.removed.join(" | ")));
    }
    parts.join(", ")
}

fn policy_name(directory: &ActiveDirectory) -> &'static str {
    match directory.members_policy {
        steward_model::resource::MembersPolicy::Additive => "additive",
        steward_model::resource::MembersPolicy::Exact => "exact",
    }
}

#[cfg(test)]
mod samba_tests;
#[cfg(test)]
mod tests;
