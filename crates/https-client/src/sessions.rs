//! TLS sessions kept to resume, per (address, TLS name), as HAProxy keeps one per server
//! for its checks: a connection that is not kept alive (the prober keeps few) is dialled
//! again with an abbreviated handshake, which skips the server's certificate chain, its
//! signature and their verification.
//!
//! rustls' own cache is keyed by TLS name alone and holds 256 tickets, 8 per name: the
//! services of one server share its name on different ports, each port (a process of its
//! own on a real server) only resumes what it issued, and a fleet has thousands of them.
//! So each dial gets a view of this store scoped to its key ([`HttpsClient`]'s dial makes
//! one), and the store keeps the newest session per key, a bounded number of keys.
//!
//! A resumed session carries the certificate chain of the full handshake it came from,
//! so a key resumes only within `max_age` of its last full handshake: a renewed server
//! certificate is seen within that time, as with a kept-alive connection's age.
//!
//! [`HttpsClient`]: crate::HttpsClient

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::{HandshakeKind, NamedGroup};
use tokio::time::Instant;

use crate::pool::PoolKey;

/// What is kept for one key. About 1.2 KB with a 459-byte leaf, most of it the server's certificate chain that
/// a resumed connection reports as its peer's.
#[derive(Default)]
struct Session {
    /// The last full handshake to this key; none yet: nothing here is resumed.
    full_at: Option<Instant>,
    /// The newest ticket (each one is good for one resumption).
    tls13: Option<Tls13ClientSessionValue>,
    tls12: Option<Tls12ClientSessionValue>,
    /// The key exchange group the server took, offered first next time (no retry).
    kx_hint: Option<NamedGroup>,
}

#[derive(Default)]
struct Kept {
    sessions: HashMap<PoolKey, Session>,
    /// The keys in the order they were first kept; the oldest goes first when full.
    order: VecDeque<PoolKey>,
}

/// The sessions of one client: at most `capacity` keys.
pub(crate) struct Sessions {
    capacity: usize,
    max_age: Duration,
    kept: Mutex<Kept>,
}

impl Sessions {
    /// `capacity` 0 keeps nothing: every dial is a full handshake.
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity,
            max_age,
            kept: Mutex::new(Kept::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        // Every critical section leaves the maps consistent, so poisoning is harmless.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything is kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The store a dial to `key` hands rustls.
    pub(crate) fn scoped(self: &Arc<Self>, key: PoolKey) -> Arc<dyn ClientSessionStore> {
        Arc::new(Scoped {
            sessions: self.clone(),
            key,
        })
    }

    /// A dial to `key` completed its handshake: a full one restarts the key's age.
    pub(crate) fn handshake_done(&self, key: &PoolKey, kind: Option<HandshakeKind>) {
        if kind == Some(HandshakeKind::Resumed) {
            return;
        }
        let now = Instant::now();
        self.edit(key, |session| session.full_at = Some(now));
    }

    /// Forget every session (the trusted CAs changed).
    pub(crate) fn clear(&self) {
        let mut kept = self.lock();
        kept.sessions.clear();
        kept.order.clear();
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// `change` applied to the session of `key`, kept first if it is not (the oldest key
    /// leaves when the store is full).
    fn edit(&self, key: &PoolKey, change: impl FnOnce(&mut Session)) {
        if self.capacity == 0 {
            return;
        }
        let mut kept = self.lock();
        if let Some(session) = kept.sessions.get_mut(key) {
            change(session);
            return;
        }
        if kept.sessions.len() >= self.capacity {
            if let Some(oldest) = kept.order.pop_front() {
                kept.sessions.remove(&oldest);
            }
        }
        let mut session = Session::default();
        change(&mut session);
        kept.order.push_back(key.clone());
        kept.sessions.insert(key.clone(), session);
    }

    /// The session of `key` if it may still be resumed; one that may not is dropped.
    fn resumable<T>(
        &self,
        key: &PoolKey,
        read: impl FnOnce(&mut Session) -> Option<T>,
    ) -> Option<T> {
        let mut kept = self.lock();
        let session = kept.sessions.get_mut(key)?;
        let fresh = session
            .full_at
            .is_some_and(|at| at.elapsed() < self.max_age);
        if !fresh {
            session.tls13 = None;
            session.tls12 = None;
            return None;
        }
        read(session)
    }
}

/// The store as one dial sees it: rustls names the server, the dial knows the address.
struct Scoped {
    sessions: Arc<Sessions>,
    key: PoolKey,
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the sessions: they hold secrets.
        f.debug_struct("Scoped")
            .field("addr", &self.key.addr)
            .finish_non_exhaustive()
    }
}

impl ClientSessionStore for Scoped {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.sessions
            .edit(&self.key, |session| session.kx_hint = Some(group));
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        let kept = self.sessions.lock();
        kept.sessions.get(&self.key).and_then(|s| s.kx_hint)
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.sessions
            .edit(&self.key, |session| session.tls12 = Some(value));
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.sessions
            .resumable(&self.key, |session| session.tls12.clone())
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        let mut kept = self.sessions.lock();
        if let Some(session) = kept.sessions.get_mut(&self.key) {
            session.tls12 = None;
        }
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.sessions
            .edit(&self.key, |session| session.tls13 = Some(value));
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.sessions
            .resumable(&self.key, |session| session.tls13.take())
    }
}
