//! From the store's event stream to the notifier, and from the notifier's undelivered
//! mails back to events. The notifier never calls into the store itself (its failures
//! arrive here over a channel), so the store's lock and the notifier's are never taken in
//! opposite orders.

use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use steward_notify::{Notice, Undelivered};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::status::{Event, EventType};

/// Reason of the event recorded for a mail that was not delivered.
pub(crate) const UNDELIVERED: &str = "NotificationUndelivered";

pub(crate) async fn run(
    ctx: Arc<Context>,
    mut undelivered: UnboundedReceiver<Undelivered>,
    shutdown: CancellationToken,
) {
    let mut events = ctx.store.events();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(event) => offer(&ctx, &event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!("notifications fell {missed} events behind; those were not considered for mail");
                }
                Err(RecvError::Closed) => return,
            },
            Some(u) = undelivered.next() => record(&ctx, &u),
        }
    }
}

fn offer(ctx: &Context, event: &Event) {
    // One sender even when several daemons run: only the leader mails.
    if !ctx.acting() {
        return;
    }
    if let Some(notice) = Notice::from_event(
        &event.object,
        event.event_type == EventType::Warning,
        &event.reason,
        &event.message,
        event.time,
    ) {
        ctx.notifier.offer(&notice);
    }
}

fn record(ctx: &Context, u: &Undelivered) {
    ctx.store.event(
        format!("notifications/{}", u.notification),
        EventType::Warning,
        UNDELIVERED,
        &format!(
            "mail about {} ({}) {}: {}",
            u.object,
            u.event,
            u.result.as_str(),
            u.error
        ),
    );
}
