//! The connection table: which connections a server holds, what each is doing and since
//! when. Admission keeps the table within its budget by shedding a connection without a
//! request in progress: first those that never completed a request (a flood of new
//! connections, handshakes that never end), longest-waiting first; only then kept-alive
//! connections of clients that did (the daemon's pooled connection to an agent, a
//! Prometheus scrape). A request in progress is never cut to make room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limits::Limits;

/// How often, at most, a server under pressure says so in the log.
const PRESSURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// What a connection is doing; each phase has its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// TLS handshake.
    Handshake,
    /// Waiting for a request head to be complete: from the start of the connection (or of
    /// the handshake's end), or from the first byte of a later request.
    Head,
    /// Kept alive between requests, no byte of the next one yet.
    Idle,
    /// A request handed to the router, its response not yet sent.
    Exchange,
}

impl Phase {
    pub(crate) fn allowance(self, limits: &Limits) -> Duration {
        match self {
            Self::Handshake => limits.handshake_timeout,
            Self::Head => limits.header_read_timeout,
            Self::Idle => limits.idle_timeout,
            Self::Exchange => limits.request_timeout.saturating_mul(2),
        }
    }

    /// Bounded name, for logs and counters.
    pub(crate) fn timeout_label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake_timeout",
            Self::Head => "header_timeout",
            Self::Idle => "idle_timeout",
            Self::Exchange => "exchange_timeout",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct State {
    phase: Phase,
    since: Instant,
    /// Bytes of a next request arrived during an exchange (pipelining): when the exchange
    /// ends, the connection is reading a head, not idle.
    early_bytes: bool,
    /// At least one exchange completed on this connection.
    served: bool,
}

/// One held connection.
pub(crate) struct Slot {
    state: Mutex<State>,
    /// Cancelled when the connection is shed, or at the end of the shutdown grace.
    pub(crate) stop: CancellationToken,
    /// Told of every phase change: a later phase may have an earlier deadline.
    changed: Notify,
}

impl Slot {
    fn new(phase: Phase) -> Self {
        Self {
            state: Mutex::new(State {
                phase,
                since: Instant::now(),
                early_bytes: false,
                served: false,
            }),
            stop: CancellationToken::new(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn phase(&self) -> (Phase, Instant) {
        let state = self.lock();
        (state.phase, state.since)
    }

    /// How strongly the connection holds its place, weakest first; `None` while in an
    /// exchange (never shed).
    fn claim(&self) -> Option<(bool, Instant)> {
        let state = self.lock();
        (state.phase != Phase::Exchange).then_some((state.served, state.since))
    }

    /// Resolves at the next phase change after the last call to [`Self::phase`] (a change
    /// in between is remembered, so none is missed).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    pub(crate) fn enter(&self, phase: Phase) {
        let mut state = self.lock();
        state.phase = phase;
        state.since = Instant::now();
        state.early_bytes = false;
        self.changed.notify_one();
    }

    /// The client sent something: an idle connection starts reading a request head.
    pub(crate) fn bytes_read(&self) {
        let mut state = self.lock();
        match state.phase {
            Phase::Idle => {
                state.phase = Phase::Head;
                state.since = Instant::now();
                self.changed.notify_one();
            }
            Phase::Exchange => state.early_bytes = true,
            Phase::Handshake | Phase::Head => {}
        }
    }

    pub(crate) fn end_exchange(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Exchange {
            state.phase = if state.early_bytes {
                Phase::Head
            } else {
                Phase::Idle
            };
            state.since = Instant::now();
            state.early_bytes = false;
            state.served = true;
            self.changed.notify_one();
        }
    }
}

/// Counters of one server since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Held now (including connections being closed).
    pub open: usize,
    pub accepted: u64,
    /// Closed to make room for a new connection.
    pub shed: u64,
    /// Closed at once because every held connection had a request in progress.
    pub refused: u64,
    pub handshake_timeouts: u64,
    pub header_timeouts: u64,
    pub idle_timeouts: u64,
    /// Handler plus sending the response took more than twice the request timeout.
    pub exchange_timeouts: u64,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    shed: AtomicU64,
    refused: AtomicU64,
    timeouts: [AtomicU64; 4],
}

#[derive(Default)]
struct Table {
    slots: HashMap<u64, Arc<Slot>>,
    next_id: u64,
    /// Shed and refused since the last report, and when that was.
    unreported: (u64, u64),
    last_report: Option<Instant>,
}

/// What [`Admission::make_room`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    Free,
    Freeing,
    Full,
}

/// The table of one server.
pub(crate) struct Admission {
    name: &'static str,
    max: usize,
    table: Mutex<Table>,
    stats: Stats,
    /// Told whenever a connection leaves the table.
    released: Notify,
}

impl Admission {
    pub(crate) fn new(name: &'static str, max: usize) -> Arc<Self> {
        Arc::new(Self {
            name,
            max: max.max(1),
            table: Mutex::new(Table::default()),
            stats: Stats::default(),
            released: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make room for a connection just accepted: nothing to do, or too many connections
    /// are still being closed (wait for [`Self::released`]: a shed connection counts until
    /// its socket is closed), or every held connection is in an exchange.
    ///
    /// Up to `closing_slack` shed connections may be closing while new ones are admitted,
    /// so that a flood is shed at the pace connections arrive rather than one task wake-up
    /// at a time; the sockets held stay below `max + closing_slack + 1`.
    pub(crate) fn make_room(&self) -> Room {
        let mut table = self.lock();
        let closing = Self::closing(&table);
        if table.slots.len() - closing >= self.max {
            if !Self::shed_locked(&mut table) {
                return Room::Full;
            }
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            table.unreported.0 += 1;
            self.report_pressure(&mut table);
        }
        if table.slots.len() >= self.max + self.closing_slack() {
            Room::Freeing
        } else {
            Room::Free
        }
    }

    /// How many shed connections may still be closing while new ones are admitted.
    fn closing_slack(&self) -> usize {
        (self.max / 8).clamp(1, 64)
    }

    fn closing(table: &Table) -> usize {
        table
            .slots
            .values()
            .filter(|slot| slot.stop.is_cancelled())
            .count()
    }

    /// Resolves when a connection's socket has been closed (possibly one closed earlier:
    /// check [`Self::make_room`] again).
    pub(crate) async fn released(&self) {
        self.released.notified().await;
    }

    /// A slot for a new connection, once [`Self::make_room`] said there is room; `None` if
    /// the table is full all the same.
    pub(crate) fn admit(self: &Arc<Self>, first: Phase) -> Option<Ticket> {
        let mut table = self.lock();
        let live = table.slots.len() - Self::closing(&table);
        if live >= self.max || table.slots.len() >= self.max + self.closing_slack() {
            self.refused_locked(&mut table);
            return None;
        }
        let id = table.next_id;
        table.next_id += 1;
        let slot = Arc::new(Slot::new(first));
        table.slots.insert(id, Arc::clone(&slot));
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            id,
            slot,
            admission: Arc::clone(self),
        })
    }

    /// Count a connection refused because every held one was in an exchange.
    pub(crate) fn refused(&self) {
        self.refused_locked(&mut self.lock());
    }

    fn refused_locked(&self, table: &mut Table) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        table.unreported.1 += 1;
        self.report_pressure(table);
    }

    /// Close the weakest connection without a request in progress (the process is out of
    /// file descriptors and must get one back); whether there was one.
    pub(crate) fn shed_one(&self) -> bool {
        let mut table = self.lock();
        let shed = Self::shed_locked(&mut table);
        if shed {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            table.unreported.0 += 1;
        }
        shed
    }

    /// Tell the weakest connection to close; it stays in the table until it has.
    fn shed_locked(table: &mut Table) -> bool {
        let weakest = table
            .slots
            .iter()
            .filter(|(_, slot)| !slot.stop.is_cancelled())
            .filter_map(|(id, slot)| Some((slot.claim()?, *id)))
            .min();
        let Some((_, id)) = weakest else {
            return false;
        };
        if let Some(slot) = table.slots.get(&id) {
            slot.stop.cancel();
        }
        true
    }

    /// Warn about shed and refused connections, at most every [`PRESSURE_REPORT_EVERY`].
    fn report_pressure(&self, table: &mut Table) {
        let now = Instant::now();
        if table
            .last_report
            .is_some_and(|at| now.duration_since(at) < PRESSURE_REPORT_EVERY)
        {
            return;
        }
        let (shed, refused) = std::mem::take(&mut table.unreported);
        table.last_report = Some(now);
        tracing::warn!(
            server = self.name,
            limit = self.max,
            shed,
            refused,
            "connection limit reached: connections without a request in progress are closed to make room"
        );
    }

    pub(crate) fn timed_out(&self, phase: Phase) {
        self.stats.timeouts[phase.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Cut every connection (the shutdown grace is over).
    pub(crate) fn stop_all(&self) {
        for slot in self.lock().slots.values() {
            slot.stop.cancel();
        }
    }

    pub(crate) fn counts(&self) -> ConnectionCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let timeouts = &self.stats.timeouts;
        ConnectionCounts {
            open: self.lock().slots.len(),
            accepted: get(&self.stats.accepted),
            shed: get(&self.stats.shed),
            refused: get(&self.stats.refused),
            handshake_timeouts: get(&timeouts[Phase::Handshake.index()]),
            header_timeouts: get(&timeouts[Phase::Head.index()]),
            idle_timeouts: get(&timeouts[Phase::Idle.index()]),
            exchange_timeouts: get(&timeouts[Phase::Exchange.index()]),
        }
    }
}

/// A held connection's place in the table, given back when the connection ends.
pub(crate) struct Ticket {
    id: u64,
    slot: Arc<Slot>,
    admission: Arc<Admission>,
}

impl Ticket {
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().slots.remove(&self.id);
        self.admission.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admit a connection the way the accept loop does, the shed ones' tasks ending at once.
    fn admit(admission: &Arc<Admission>, held: &mut Vec<Ticket>, phase: Phase) -> Option<usize> {
        loop {
            match admission.make_room() {
                Room::Free => break,
                Room::Freeing => held.retain(|t| !t.slot().stop.is_cancelled()),
                Room::Full => return None,
            }
        }
        held.push(admission.admit(phase)?);
        Some(held.len() - 1)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_sheds_the_longest_waiting_connection_never_an_exchange() {
        // Budget 3, one shed connection may be closing at a time.
        let admission = Admission::new("test", 3);
        let busy = admission.admit(Phase::Head).unwrap();
        busy.slot().enter(Phase::Exchange);
        tokio::time::advance(Duration::from_secs(1)).await;
        let older = admission.admit(Phase::Head).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let newer = admission.admit(Phase::Head).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;

        assert_eq!(admission.make_room(), Room::Free);
        assert!(
            older.slot().stop.is_cancelled(),
            "the oldest waiting one goes"
        );
        assert!(
            !busy.slot().stop.is_cancelled(),
            "an exchange is never shed"
        );
        assert!(!newer.slot().stop.is_cancelled());
        let fourth = admission.admit(Phase::Head).unwrap();
        assert_eq!(
            admission.counts().open,
            4,
            "the shed one counts until it is closed"
        );

        // Another newcomer: `newer` is shed, but two closing at once is one too many.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(admission.make_room(), Room::Freeing);
        assert!(newer.slot().stop.is_cancelled());
        assert!(!fourth.slot().stop.is_cancelled());
        assert!(admission.admit(Phase::Head).is_none(), "no room yet");
        drop(older);
        assert_eq!(admission.make_room(), Room::Free, "nobody else shed");
        assert!(!fourth.slot().stop.is_cancelled());
        let fifth = admission.admit(Phase::Head).unwrap();
        drop(newer);
        assert_eq!(admission.counts().shed, 2);

        // Everyone in an exchange: the newcomer is refused, nobody is cut.
        fourth.slot().enter(Phase::Exchange);
        fifth.slot().enter(Phase::Exchange);
        assert_eq!(admission.make_room(), Room::Full);
        assert_eq!(admission.counts().open, 3);
        drop((busy, fourth, fifth));
        assert_eq!(admission.counts().open, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn clients_that_completed_a_request_are_shed_after_those_that_did_not() {
        let admission = Admission::new("test", 3);
        let mut held = Vec::new();
        // The daemon's pooled connection: served once, idle since long ago.
        admit(&admission, &mut held, Phase::Head).unwrap();
        let pooled = Arc::clone(held[0].slot());
        pooled.enter(Phase::Exchange);
        pooled.end_exchange();
        tokio::time::advance(Duration::from_secs(5)).await;
        // A flood of connections that never send anything.
        for _ in 0..10 {
            admit(&admission, &mut held, Phase::Handshake).unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert!(!pooled.stop.is_cancelled(), "kept while strangers can go");
        assert_eq!(admission.counts().shed, 8, "the oldest strangers went");
        // With nothing else left to shed, the served connection goes too.
        for t in &held[1..] {
            t.slot().enter(Phase::Exchange);
        }
        admit(&admission, &mut held, Phase::Handshake).unwrap();
        assert!(pooled.stop.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_during_an_exchange_make_the_next_phase_a_head() {
        let admission = Admission::new("test", 1);
        let ticket = admission.admit(Phase::Head).unwrap();
        let slot = ticket.slot();
        slot.enter(Phase::Exchange);
        slot.end_exchange();
        assert_eq!(slot.phase().0, Phase::Idle);
        slot.bytes_read();
        assert_eq!(slot.phase().0, Phase::Head);
        slot.enter(Phase::Exchange);
        slot.bytes_read();
        slot.end_exchange();
        assert_eq!(
            slot.phase().0,
            Phase::Head,
            "a pipelined request is waiting"
        );
    }
}
