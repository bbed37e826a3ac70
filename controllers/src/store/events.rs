//! Events: a bounded ring for the status document, and the same events as a typed stream
//! for whoever reacts to them (notifications, tests) — one `record` feeds both, under
//! the store's lock, so the stream's order is the ring's.

use std::collections::VecDeque;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::status::{ConditionType, Conditions, Event, EventType};

/// Events kept for the status, newest first.
pub(super) const EVENT_CAPACITY: usize = 256;
/// Events of one object shown with it.
pub(super) const OBJECT_EVENTS: usize = 20;
/// Events a slow subscriber may fall behind by before it misses some (it is told how
/// many, by `RecvError::Lagged`).
pub(super) const STREAM_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct EventRing {
    events: VecDeque<Event>,
    stream: broadcast::Sender<Event>,
}

impl Default for EventRing {
    fn default() -> Self {
        Self {
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            stream: broadcast::Sender::new(STREAM_CAPACITY),
        }
    }
}

impl EventRing {
    pub(super) fn record(
        &mut self,
        object: String,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) {
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_back();
        }
        let event = Event {
            time: OffsetDateTime::now_utc(),
            object,
            event_type,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        // No subscriber is not an error: the ring still has it.
        let _ = self.stream.send(event.clone());
        self.events.push_front(event);
    }

    /// Records the headline change of an object's conditions as an event.
    pub(super) fn note_transition(
        &mut self,
        object: String,
        before: &Conditions,
        after: &Conditions,
    ) {
        let (t0, r0, _) = before.headline();
        let (t1, r1, message) = after.headline();
        if (t0, r0) != (t1, r1) {
            let event_type = match t1 {
                ConditionType::Degraded | ConditionType::Stalled => EventType::Warning,
                ConditionType::Ready | ConditionType::Progressing => EventType::Normal,
            };
            let (reason, message) = (r1.to_owned(), message.to_owned());
            self.record(object, event_type, &reason, &message);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.stream.subscribe()
    }
}
