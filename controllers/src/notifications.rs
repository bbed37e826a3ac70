//! The Notifications controller: puts each `Notifications` object in force on the
//! notifier (its outbox and SMTP settings) and says on the object whether its settings
//! are usable (secrets resolve, trust files read). Mail itself is driven by the event
//! stream ([`feed`]): every recorded event that is a notification event is offered to the
//! notifier, which deduplicates and delivers it; a mail that could not be delivered comes
//! back as an event of the Notifications object (`NotificationUndelivered`).

pub(crate) mod feed;
pub(crate) mod metrics;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use steward_model::diff::SnapshotDiff;
use steward_model::Snapshot;
use steward_notify::SmtpSettings;
use steward_runtime::{Action, Reason};

use crate::context::Context;
use crate::error::ControllerError;
use crate::reconciler::{Reconciled, Reconciler, Request};
use crate::status::Phase;

/// Secrets and trust files change without a commit: look again this often.
const RECHECK: Duration = Duration::from_secs(60);

pub(crate) struct Notifications;

impl Reconciler for Notifications {
    type Key = String;
    const NAME: &'static str = "notifications";

    async fn reconcile(request: Request<String>, ctx: Arc<Context>) -> Reconciled {
        let (name, accepted) = (request.key, request.accepted);
        let desired = &accepted.desired;
        let snapshot = &desired.snapshot;
        let Some(n) = snapshot.notifications.get(&name) else {
            ctx.notifier
                .apply(&name, None, &desired.dir, &snapshot.installation.name);
            ctx.store.forget_notifications(&name);
            tracing::info!("notifications/{name}: no longer declared; its outbox is closed");
            return Ok(Action::await_change());
        };
        ctx.notifier
            .apply(&name, Some(n), &desired.dir, &snapshot.installation.name);
        // Reading the settings is what sending will do: a missing secret shows here first.
        let usable = SmtpSettings::read(n, &desired.dir);
        ctx.store.with_notifications(&name, |r| {
            r.observed_generation = Some(accepted.generation());
            r.server = format!("{}:{}", n.smtp.server, n.smtp.port);
            r.tls = n.smtp.tls.as_str();
            r.to = n.to.clone();
            r.events = n.events.iter().map(|e| e.as_str().to_owned()).collect();
            match &usable {
                Ok(_) => r.conditions.set(
                    Phase::Ready,
                    "Configured",
                    format!(
                        "mails {} events to {} recipients through {}:{} ({})",
                        n.events.len(),
                        n.to.len(),
                        n.smtp.server,
                        n.smtp.port,
                        n.smtp.tls.as_str()
                    ),
                ),
                Err(e) => r
                    .conditions
                    .set(Phase::Degraded, "SettingsUnusable", e.to_string()),
            };
        });
        Ok(Action::requeue(RECHECK))
    }

    fn error_policy(_name: &String, _error: &ControllerError, _ctx: &Context) {
        // `reconcile` reports on the object itself and never fails.
    }

    fn keys(ctx: &Context) -> Vec<String> {
        let mut keys: Vec<String> = ctx
            .desired
            .current()
            .map(|a| a.desired.snapshot.notifications.keys().cloned().collect())
            .unwrap_or_default();
        keys.extend(ctx.notifier.names());
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Wake the Notifications objects a new desired state concerns: those that changed, and
/// all of them when the installation did (its name is in every mail).
pub(crate) fn wake_changed(ctx: &Context, changes: &SnapshotDiff, snapshot: &Snapshot) {
    let all = changes.initial || !changes.installation.is_empty();
    let names: Vec<String> = if all {
        snapshot
            .notifications
            .keys()
            .chain(changes.notifications.removed.iter())
            .cloned()
            .collect()
    } else {
        changes.notifications.keys().cloned().collect()
    };
    for name in names {
        ctx.triggers
            .wake::<Notifications>(name, Reason::DesiredChanged);
    }
}
