//! The queue between "a run was requested" and "a run starts".
//!
//! Requests arrive far more often than runs are useful: an agent reporting
//! every few seconds, a desired-state file saved twice, a requeue racing a
//! trigger. The scheduler folds them so that each key has at most one pending
//! run, and it decides when that run may start:
//!
//! * **One slot per key.** Scheduling a key that is already queued keeps the
//!   earliest requested time, and the reason given with that earliest request.
//! * **Never twice at once.** A request for a key that is running is held and
//!   becomes the key's next queued run when the current one
//!   [finishes](Scheduler::finish); any number of such requests coalesce into
//!   that one run.
//! * **Global limit.** At most `max_running` keys run at a time.
//! * **Group limit.** Keys may belong to a group (e.g. the server a service
//!   lives on); at most `per_group` keys of one group run at a time, so one
//!   server is not asked to converge dozens of services at once. A key held
//!   back by its group does not block due keys of other groups.
//!
//! The scheduler is a plain data structure: it never sleeps or spawns. The
//! caller passes `now` in and asks [`Scheduler::next_wakeup`] when to look
//! again. It uses [`tokio::time::Instant`] so that it follows a paused tokio
//! clock in tests.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::time::Instant;

use crate::key::{GroupKey, ObjectKey, Reason};

/// Maps a key to the group whose concurrency budget it uses (`None`: no group).
pub type GroupFn<K, G> = Arc<dyn Fn(&K) -> Option<G> + Send + Sync>;

/// Where one key is in its life cycle.
#[derive(Debug)]
enum Slot<G> {
    /// Waiting for `run_at`. `seq` identifies the live timer entry.
    Waiting {
        run_at: Instant,
        reason: Reason,
        seq: u64,
    },
    /// Due; waiting for global or group capacity.
    Due { run_at: Instant, reason: Reason },
    /// Running. A request arriving now is parked in `held`.
    Running {
        group: Option<G>,
        held: Option<(Instant, Reason)>,
    },
}

/// Timer-heap entry. Entries are never removed early: when a key is moved to
/// an earlier time a new entry is pushed and the old one is skipped when it
/// surfaces (its `seq` no longer matches the slot).
struct Timer<K> {
    run_at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Timer<K> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl<K> Eq for Timer<K> {}

impl<K> PartialOrd for Timer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Timer<K> {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest time
    /// first, and among equal times the first scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.run_at, other.seq).cmp(&(self.run_at, self.seq))
    }
}

/// Deduplicating, concurrency-limited delay queue of keys.
pub struct Scheduler<K, G = ()> {
    slots: HashMap<K, Slot<G>>,
    timers: BinaryHeap<Timer<K>>,
    /// Due keys in the order they became due.
    due: VecDeque<K>,
    /// Due keys set aside because their group was full, per group.
    parked: HashMap<G, VecDeque<K>>,
    group_running: HashMap<G, usize>,
    group_of: Option<GroupFn<K, G>>,
    max_running: usize,
    per_group: usize,
    running: usize,
    waiting: usize,
    due_count: usize,
    held: usize,
    next_seq: u64,
}

impl<K: ObjectKey> Scheduler<K, ()> {
    /// A scheduler with a global limit and no groups.
    pub fn new(max_running: NonZeroUsize) -> Self {
        Self::build(max_running, usize::MAX, None)
    }
}

impl<K: ObjectKey, G: GroupKey> Scheduler<K, G> {
    /// A scheduler with a global limit and a per-group limit; `group_of` says
    /// which group a key belongs to.
    pub fn grouped(
        max_running: NonZeroUsize,
        per_group: NonZeroUsize,
        group_of: GroupFn<K, G>,
    ) -> Self {
        Self::build(max_running, per_group.get(), Some(group_of))
    }

    pub(crate) fn build(
        max_running: NonZeroUsize,
        per_group: usize,
        group_of: Option<GroupFn<K, G>>,
    ) -> Self {
        Scheduler {
            slots: HashMap::new(),
            timers: BinaryHeap::new(),
            due: VecDeque::new(),
            parked: HashMap::new(),
            group_running: HashMap::new(),
            group_of,
            max_running: max_running.get(),
            per_group,
            running: 0,
            waiting: 0,
            due_count: 0,
            held: 0,
            next_seq: 0,
        }
    }

    /// Requests a run of `key` at `run_at` (a time in the past means "now").
    ///
    /// If the key already has a pending run, the earlier of the two times is
    /// kept together with its reason; on a tie the first request wins.
    pub fn schedule(&mut self, key: K, run_at: Instant, reason: Reason) {
        match self.slots.entry(key) {
            Entry::Vacant(vacant) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.timers.push(Timer {
                    run_at,
                    seq,
                    key: vacant.key().clone(),
                });
                vacant.insert(Slot::Waiting {
                    run_at,
                    reason,
                    seq,
                });
                self.waiting += 1;
            }
            Entry::Occupied(mut occupied) => match occupied.get_mut() {
                Slot::Waiting {
                    run_at: queued_at,
                    reason: queued_reason,
                    seq,
                } => {
                    if run_at < *queued_at {
                        *queued_at = run_at;
                        *queued_reason = reason;
                        *seq = self.next_seq;
                        self.next_seq += 1;
                        self.timers.push(Timer {
                            run_at,
                            seq: *seq,
                            key: occupied.key().clone(),
                        });
                    }
                }
                // Already due: its position in the line stays, but an
                // earlier request still decides the reason.
                Slot::Due {
                    run_at: due_at,
                    reason: due_reason,
                } => {
                    if run_at < *due_at {
                        *due_at = run_at;
                        *due_reason = reason;
                    }
                }
                Slot::Running { held, .. } => match held {
                    None => {
                        *held = Some((run_at, reason));
                        self.held += 1;
                    }
                    Some((held_at, held_reason)) => {
                        if run_at < *held_at {
                            *held_at = run_at;
                            *held_reason = reason;
                        }
                    }
                },
            },
        }
        self.compact_timers();
    }

    /// Takes the next key that is due at `now` and fits the limits, marks it
    /// running and returns it with the reason of its run.
    ///
    /// Every returned key must later be passed to [`Scheduler::finish`].
    pub fn pop_ready(&mut self, now: Instant) -> Option<(K, Reason)> {
        self.promote_due(now);
        if self.running >= self.max_running {
            return None;
        }
        while let Some(key) = self.due.pop_front() {
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            let Slot::Due { reason, .. } = *slot else {
                continue;
            };
            let group = self.group_of.as_ref().and_then(|group_of| group_of(&key));
            if let Some(group) = &group {
                let running = self.group_running.entry(group.clone()).or_insert(0);
                if *running >= self.per_group {
                    self.parked.entry(group.clone()).or_default().push_back(key);
                    continue;
                }
                *running += 1;
            }
            *slot = Slot::Running { group, held: None };
            self.due_count -= 1;
            self.running += 1;
            return Some((key, reason));
        }
        None
    }

    /// Marks a run of `key` as finished. A request held while it ran becomes
    /// its next queued run. Keys that are not running are ignored.
    pub fn finish(&mut self, key: &K) {
        let Some(Slot::Running { group, held }) = self.slots.get_mut(key) else {
            return;
        };
        let group = group.take();
        let held = held.take();
        self.running -= 1;
        if let Some(group) = group {
            self.release_group_slot(group);
        }
        match held {
            Some((run_at, reason)) => {
                self.held -= 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.slots.insert(
                    key.clone(),
                    Slot::Waiting {
                        run_at,
                        reason,
                        seq,
                    },
                );
                self.timers.push(Timer {
                    run_at,
                    seq,
                    key: key.clone(),
                });
                self.waiting += 1;
            }
            None => {
                self.slots.remove(key);
            }
        }
    }

    /// When the earliest waiting key becomes due, if any key is waiting.
    ///
    /// Due keys blocked by a limit are not included: they become startable
    /// only when a running key finishes.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        while let Some(top) = self.timers.peek() {
            if self.is_live(top) {
                return Some(top.run_at);
            }
            self.timers.pop();
        }
        None
    }

    /// Keys waiting to run: queued, due, or held behind their own running
    /// reconcile.
    pub fn depth(&self) -> usize {
        self.waiting + self.due_count + self.held
    }

    /// Keys due now and not running: waiting for capacity, or held behind their own
    /// running reconcile. Unlike [`Scheduler::depth`], a key merely waiting for a later
    /// time (a requeue, a backoff retry) is not counted: it is not work yet.
    ///
    /// Exact right after [`Scheduler::pop_ready`], which moves every key whose time has
    /// come to "due".
    pub fn due(&self) -> usize {
        self.due_count + self.held
    }

    /// Keys running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether `key` is running now.
    pub fn is_running(&self, key: &K) -> bool {
        matches!(self.slots.get(key), Some(Slot::Running { .. }))
    }

    /// True when no key is queued, due, held or running.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty()
    }

    /// Moves every key whose time has come from the timer heap to `due`.
    fn promote_due(&mut self, now: Instant) {
        while let Some(top) = self.timers.peek_mut() {
            if top.run_at > now {
                break;
            }
            let Timer { seq, key, .. } = PeekMut::pop(top);
            if let Some(slot) = self.slots.get_mut(&key) {
                if let Slot::Waiting {
                    run_at,
                    reason,
                    seq: live,
                } = *slot
                {
                    if live == seq {
                        *slot = Slot::Due { run_at, reason };
                        self.waiting -= 1;
                        self.due_count += 1;
                        self.due.push_back(key);
                    }
                }
            }
        }
    }

    /// Frees one running slot of `group` and lets the longest-parked key of
    /// that group go first in line.
    fn release_group_slot(&mut self, group: G) {
        if let Entry::Occupied(mut running) = self.group_running.entry(group.clone()) {
            *running.get_mut() -= 1;
            if *running.get() == 0 {
                running.remove();
            }
        }
        if let Entry::Occupied(mut parked) = self.parked.entry(group) {
            if let Some(key) = parked.get_mut().pop_front() {
                self.due.push_front(key);
            }
            if parked.get().is_empty() {
                parked.remove();
            }
        }
    }

    fn is_live(&self, timer: &Timer<K>) -> bool {
        matches!(self.slots.get(&timer.key), Some(Slot::Waiting { seq, .. }) if *seq == timer.seq)
    }

    /// Drops superseded timer entries once they clearly outnumber live ones,
    /// so a key moved earlier again and again cannot grow the heap unbounded.
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.waiting + 1024 {
            let slots = &self.slots;
            self.timers.retain(|timer| {
                matches!(slots.get(&timer.key), Some(Slot::Waiting { seq, .. }) if *seq == timer.seq)
            });
        }
    }
}

impl<K, G> fmt::Debug for Scheduler<K, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("waiting", &self.waiting)
            .field("due", &self.due_count)
            .field("held", &self.held)
            .field("running", &self.running)
            .field("max_running", &self.max_running)
            .field("per_group", &self.per_group)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn nothing_is_ready_before_its_time() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(4));
        s.schedule("a", at(t0, 5), Reason::Resync);
        assert_eq!(s.pop_ready(at(t0, 4)), None);
        assert_eq!(s.next_wakeup(), Some(at(t0, 5)));
        assert_eq!(s.pop_ready(at(t0, 5)), Some(("a", Reason::Resync)));
    }

    #[test]
    fn earliest_run_wins_with_its_reason() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(4));
        s.schedule("a", at(t0, 5), Reason::Resync);
        s.schedule("a", at(t0, 2), Reason::DesiredChanged);
        s.schedule("a", at(t0, 8), Reason::Manual);
        assert_eq!(s.depth(), 1, "one slot per key");
        assert_eq!(s.next_wakeup(), Some(at(t0, 2)));
        assert_eq!(s.pop_ready(at(t0, 1)), None);
        assert_eq!(s.pop_ready(at(t0, 2)), Some(("a", Reason::DesiredChanged)));
        s.finish(&"a");
        // The later requests were folded into the run at t=2.
        assert_eq!(s.pop_ready(at(t0, 100)), None);
        assert_eq!(s.next_wakeup(), None);
        assert!(s.is_idle());
    }

    #[test]
    fn tie_keeps_first_reason_and_later_request_is_ignored() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(4));
        s.schedule("a", at(t0, 3), Reason::ObservedChanged);
        s.schedule("a", at(t0, 3), Reason::Manual);
        s.schedule("a", at(t0, 9), Reason::Resync);
        assert_eq!(s.pop_ready(at(t0, 3)), Some(("a", Reason::ObservedChanged)));
    }

    #[test]
    fn earlier_request_for_due_key_updates_reason() {
        let t0 = Instant::now();
        let mut s = Scheduler::grouped(nz(4), nz(1), Arc::new(|_: &&str| Some(0)));
        s.schedule("a", at(t0, 2), Reason::Resync);
        s.schedule("b", at(t0, 2), Reason::Resync);
        assert_eq!(s.pop_ready(at(t0, 2)), Some(("a", Reason::Resync)));
        assert_eq!(
            s.pop_ready(at(t0, 2)),
            None,
            "b is due but its group is full"
        );
        s.schedule("b", at(t0, 1), Reason::DesiredChanged);
        s.schedule("b", at(t0, 5), Reason::Manual);
        s.finish(&"a");
        assert_eq!(s.pop_ready(at(t0, 3)), Some(("b", Reason::DesiredChanged)));
    }

    #[test]
    fn due_keys_come_out_in_time_order() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(10));
        s.schedule(3, at(t0, 3), Reason::Manual);
        s.schedule(1, at(t0, 1), Reason::Manual);
        s.schedule(2, at(t0, 2), Reason::Manual);
        let order: Vec<_> =
            std::iter::from_fn(|| s.pop_ready(at(t0, 10)).map(|(k, _)| k)).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn requests_while_running_are_held_and_coalesced() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(4));
        s.schedule("a", t0, Reason::Manual);
        assert_eq!(s.pop_ready(t0), Some(("a", Reason::Manual)));
        s.schedule("a", at(t0, 1), Reason::ObservedChanged);
        s.schedule("a", at(t0, 1), Reason::DesiredChanged);
        s.schedule("a", t0, Reason::Resync);
        assert!(s.is_running(&"a"));
        assert_eq!(s.depth(), 1, "held request counts as one queued run");
        assert_eq!(s.pop_ready(at(t0, 2)), None, "must not start while running");
        s.finish(&"a");
        assert!(!s.is_running(&"a"));
        assert_eq!(s.pop_ready(at(t0, 2)), Some(("a", Reason::Resync)));
        s.finish(&"a");
        assert_eq!(s.pop_ready(at(t0, 100)), None, "coalesced into one run");
        assert!(s.is_idle());
    }

    #[test]
    fn global_limit_is_honoured() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(2));
        for k in 0..5 {
            s.schedule(k, t0, Reason::Manual);
        }
        assert!(s.pop_ready(t0).is_some());
        assert!(s.pop_ready(t0).is_some());
        assert_eq!(s.pop_ready(t0), None);
        assert_eq!(s.running(), 2);
        assert_eq!(s.depth(), 3);
        s.finish(&0);
        assert_eq!(s.pop_ready(t0), Some((2, Reason::Manual)));
        assert_eq!(s.pop_ready(t0), None);
    }

    #[test]
    fn full_group_does_not_block_other_groups() {
        let t0 = Instant::now();
        // Keys are (server, service).
        let group_of: GroupFn<(u8, u8), u8> = Arc::new(|k: &(u8, u8)| Some(k.0));
        let mut s = Scheduler::grouped(nz(10), nz(1), group_of);
        s.schedule((1, 0), t0, Reason::Manual);
        s.schedule((1, 1), t0, Reason::Manual);
        s.schedule((1, 2), t0, Reason::Manual);
        s.schedule((2, 0), t0, Reason::Manual);
        assert_eq!(s.pop_ready(t0).map(|r| r.0), Some((1, 0)));
        assert_eq!(
            s.pop_ready(t0).map(|r| r.0),
            Some((2, 0)),
            "skips past full group 1"
        );
        assert_eq!(s.pop_ready(t0), None);
        s.finish(&(2, 0));
        assert_eq!(s.pop_ready(t0), None, "group 1 is still full");
        s.finish(&(1, 0));
        assert_eq!(
            s.pop_ready(t0).map(|r| r.0),
            Some((1, 1)),
            "parked key keeps its turn"
        );
        assert_eq!(s.pop_ready(t0), None);
        s.finish(&(1, 1));
        assert_eq!(s.pop_ready(t0).map(|r| r.0), Some((1, 2)));
        s.finish(&(1, 2));
        assert!(s.is_idle());
    }

    #[test]
    fn keys_without_group_ignore_group_limit() {
        let t0 = Instant::now();
        let group_of: GroupFn<u32, u32> = Arc::new(|k: &u32| (*k < 100).then_some(0));
        let mut s = Scheduler::grouped(nz(10), nz(1), group_of);
        for k in [1, 2, 100, 101] {
            s.schedule(k, t0, Reason::Manual);
        }
        let started: Vec<_> = std::iter::from_fn(|| s.pop_ready(t0).map(|(k, _)| k)).collect();
        assert_eq!(started, [1, 100, 101]);
    }

    #[test]
    fn rescheduling_earlier_many_times_keeps_heap_bounded() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(nz(1));
        for i in 0..10_000u64 {
            s.schedule("a", at(t0, 20_000 - i), Reason::Resync);
        }
        assert!(
            s.timers.len() <= 2 * s.waiting + 1025,
            "{} timers",
            s.timers.len()
        );
        assert_eq!(s.next_wakeup(), Some(at(t0, 10_001)));
        assert_eq!(s.pop_ready(at(t0, 10_001)), Some(("a", Reason::Resync)));
    }
}
