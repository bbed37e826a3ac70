//! Kept-alive HTTPS connections, pooled per (address, TLS name): the next request to a
//! peer reuses the connection of the last one, so it costs one exchange instead of a TCP
//! and TLS handshake. Bounded in every direction: idle connections per key and in all,
//! idle time and age (a renewed certificate is seen within `max_age`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where a pooled connection goes: the address dialled and the TLS name (SNI) checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub addr: SocketAddr,
    pub name: String,
}

/// One HTTP/1.1 connection over TLS. Dropping it closes the socket, whatever state the
/// exchange was left in (a peer that never answers holds nothing after its timeout).
pub(crate) struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    /// notAfter of the leaf certificate the peer served on this connection.
    pub not_after: Option<OffsetDateTime>,
    created: Instant,
    driver: JoinHandle<()>,
}

impl Conn {
    pub(crate) fn new(
        sender: SendRequest<Full<Bytes>>,
        not_after: Option<OffsetDateTime>,
        driver: JoinHandle<()>,
    ) -> Self {
        Self {
            sender,
            not_after,
            created: Instant::now(),
            driver,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// How many idle connections are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub per_key: usize,
    /// Each idle connection is an open socket: keep this below the file limit.
    pub total: usize,
    /// Below the keep-alive timeout of common servers (IIS 120 s, the lab 60 s).
    pub max_idle: Duration,
    /// A connection is closed this old, and a TLS session is resumed only this long
    /// after its key's last full handshake: a renewed certificate is seen within it.
    pub max_age: Duration,
    /// (address, TLS name) keys whose TLS session is kept to resume (`sessions.rs`), about
    /// 1.2 KB each (most of it the server's certificate chain); 0 resumes nothing.
    pub sessions: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            per_key: 8,
            total: 2048,
            max_idle: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
            sessions: 1024,
        }
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
struct Slots {
    idle: HashMap<PoolKey, Vec<Idle>>,
    count: usize,
    checkins: u64,
}

pub(crate) struct Pool {
    limits: PoolLimits,
    slots: Mutex<Slots>,
}

/// Expired idle connections are swept every this many check-ins.
const SWEEP_EVERY: u64 = 512;

impl Pool {
    pub(crate) fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            slots: Mutex::new(Slots::default()),
        }
    }

    fn usable(&self, idle: &Idle, now: Instant) -> bool {
        now.duration_since(idle.since) < self.limits.max_idle
            && now.duration_since(idle.conn.created) < self.limits.max_age
            && !idle.conn.sender.is_closed()
    }

    /// Drop every idle connection (they were verified against CAs no longer trusted).
    pub(crate) fn clear(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.clear();
        slots.count = 0;
    }

    /// An idle connection to `key` that is still open, if there is one.
    pub(crate) fn checkout(&self, key: &PoolKey) -> Option<Conn> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Slots { idle, count, .. } = &mut *slots;
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(candidate) = list.pop() {
            *count -= 1;
            if self.usable(&candidate, now) && candidate.conn.sender.is_ready() {
                found = Some(candidate.conn);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keep `conn` for the next request to `key`, unless a limit says otherwise.
    pub(crate) fn checkin(&self, key: PoolKey, conn: Conn) {
        let now = Instant::now();
        let candidate = Idle { conn, since: now };
        if !self.usable(&candidate, now) {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.checkins = slots.checkins.wrapping_add(1);
        if slots.checkins % SWEEP_EVERY == 0 {
            self.sweep(&mut slots, now);
        }
        if slots.count >= self.limits.total {
            return;
        }
        let list = slots.idle.entry(key).or_default();
        if list.len() >= self.limits.per_key {
            return;
        }
        list.push(candidate);
        slots.count += 1;
    }

    fn sweep(&self, slots: &mut Slots, now: Instant) {
        let mut kept = 0;
        slots.idle.retain(|_, list| {
            list.retain(|i| self.usable(i, now));
            kept += list.len();
            !list.is_empty()
        });
        slots.count = kept;
    }

    /// Idle connections held now.
    pub(crate) fn idle(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).count
    }
}
