//! One listing of a server's services answers every reconcile that can use it, like the
//! shared informer cache of kube controllers instead of one list per object.
//!
//! Every service reconcile starts from what the agent lists, and a server runs eleven
//! services: asking once per service made a resync of 1,000 servers 11,000 listings.
//! Here a caller says how fresh the listing must be ([`Need`]: sent after a given moment,
//! or not older than a given age) and gets either the last listing, if it is fresh
//! enough, or joins the listing in flight, or sends one that later callers may join.
//!
//! Freshness is what keeps drift visible: a reconcile woken by a change asks for a
//! listing sent after the change; every call that changes the agent (install, restart,
//! stop ...) made through [`SharedListing`] throws the cached listing away and keeps the
//! one in flight from being cached, so nobody reads a listing older than their own
//! change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use steward_agent::api::{
    CertificateStatus, ConnectionStrings, ConnectionStringsUpdate, HostInfo, InstallRequest,
    InstallResponse, RemnantCleanup, ServiceInfo, ServiceLogs, UninstallResponse,
};
use steward_agent::ClientError;
use steward_model::ServiceKind;
use steward_pki::PrivateKeyPem;
use steward_runtime::Reason;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agent::AgentApi;

/// A listing is dropped this long after it was sent, whoever might still have used it:
/// what is kept stays a small share of the fleet's listings.
const KEEP: Duration = Duration::from_secs(30);

/// Numbers the listings sent, in the order they were sent (across all agents): "sent
/// after" compares these, since two instants of a paused or coarse clock may be equal.
static SENT: AtomicU64 = AtomicU64::new(0);

/// How fresh a listing must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Sent after the moment that gave this number ([`Need::now`]).
    SentAfter(u64),
    /// Sent at or after this instant (a periodic look tolerates some age).
    SentSince(Instant),
}

impl Need {
    /// Only a listing sent from now on.
    pub(crate) fn now() -> Self {
        Need::SentAfter(SENT.load(Ordering::SeqCst))
    }

    fn met_by(self, ticket: u64, sent: Instant) -> bool {
        match self {
            Need::SentAfter(after) => ticket > after,
            Need::SentSince(since) => sent >= since,
        }
    }
}

/// What a listing in flight hands its joiners: `Some(None)` when it failed (each joiner
/// then asks for itself, so that its error is its own).
type Outcome = Option<Option<Arc<[ServiceInfo]>>>;

/// A listing in flight: when its request was sent, and where its result arrives.
struct Flight {
    ticket: u64,
    sent: Instant,
    done: watch::Receiver<Outcome>,
}

#[derive(Default)]
struct Slot {
    /// The last listing that completed, with its number and when it was sent.
    last: Option<(u64, Instant, Arc<[ServiceInfo]>)>,
    flight: Option<Flight>,
    /// Counts the changes made through this client: a listing sent before a change is
    /// not kept after it.
    changes: u64,
}

/// An agent client whose service listings are shared (see the module comment); every
/// other call goes straight through.
pub(crate) struct SharedListing {
    inner: Arc<dyn AgentApi>,
    slot: Mutex<Slot>,
    /// The last host the agent reported, and when it was asked for.
    host: Mutex<Option<(Instant, HostInfo)>>,
}

impl SharedListing {
    pub(crate) fn new(inner: Arc<dyn AgentApi>) -> Self {
        Self {
            inner,
            slot: Mutex::new(Slot::default()),
            host: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change went to the agent: nothing listed before it may answer anyone now.
    fn changed(&self) {
        let mut slot = self.lock();
        slot.changes = slot.changes.wrapping_add(1);
        slot.last = None;
        slot.flight = None;
    }

    /// Run a call that changes the server: listings kept or sent before it, or while it
    /// ran, answer no one after it.
    async fn changing<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.changed();
        let result = call.await;
        self.changed();
        result
    }

    /// Drop a listing kept past [`KEEP`]; called by the owner now and then.
    pub(crate) fn expire(&self, now: Instant) {
        let mut slot = self.lock();
        if slot
            .last
            .as_ref()
            .is_some_and(|(_, sent, _)| now.saturating_duration_since(*sent) > KEEP)
        {
            slot.last = None;
        }
    }

    /// What a caller needing a listing as fresh as `need` does.
    fn plan(&self, need: Need) -> Plan {
        let mut slot = self.lock();
        if let Some((ticket, sent, list)) = &slot.last {
            if need.met_by(*ticket, *sent) {
                return Plan::Kept(list.to_vec());
            }
        }
        if let Some(flight) = slot
            .flight
            .as_ref()
            .filter(|f| need.met_by(f.ticket, f.sent))
        {
            return Plan::Join(flight.done.clone());
        }
        let ticket = SENT.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = Instant::now();
        let (tx, done) = watch::channel(None);
        slot.flight = Some(Flight { ticket, sent, done });
        Plan::Send {
            ticket,
            sent,
            tx,
            changes: slot.changes,
        }
    }

    async fn listing(&self, need: Need) -> Result<Vec<ServiceInfo>, ClientError> {
        let (ticket, sent, tx, changes) = match self.plan(need) {
            Plan::Kept(list) => return Ok(list),
            Plan::Join(mut done) => {
                let joined = match done.wait_for(Option::is_some).await {
                    Ok(outcome) => outcome.as_ref().and_then(Option::as_ref).cloned(),
                    Err(_) => None,
                };
                // A failed or abandoned listing: this caller asks for itself.
                return match joined {
                    Some(list) => Ok(list.to_vec()),
                    None => self.inner.services().await,
                };
            }
            Plan::Send {
                ticket,
                sent,
                tx,
                changes,
            } => (ticket, sent, tx, changes),
        };
        let result = self.inner.services().await;
        let shared: Option<Arc<[ServiceInfo]>> = result.as_ref().ok().map(|l| l.as_slice().into());
        {
            let mut slot = self.lock();
            if slot.flight.as_ref().is_some_and(|f| f.ticket == ticket) {
                slot.flight = None;
            }
            let newer = slot.last.as_ref().is_none_or(|(last, _, _)| *last < ticket);
            if let (Some(list), true, true) = (&shared, slot.changes == changes, newer) {
                slot.last = Some((ticket, sent, Arc::clone(list)));
            }
        }
        let _ = tx.send(Some(shared));
        result
    }
}

/// See [`SharedListing::plan`].
enum Plan {
    /// The last listing is fresh enough.
    Kept(Vec<ServiceInfo>),
    /// Wait for the listing in flight.
    Join(watch::Receiver<Outcome>),
    /// Send one (others may join it).
    Send {
        ticket: u64,
        sent: Instant,
        tx: watch::Sender<Outcome>,
        changes: u64,
    },
}

#[async_trait]
impl AgentApi for SharedListing {
    async fn host(&self) -> Result<HostInfo, ClientError> {
        let asked = Instant::now();
        let host = self.inner.host().await?;
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some((asked, host.clone()));
        Ok(host)
    }
    async fn host_within(&self, max_age: Duration) -> Result<HostInfo, ClientError> {
        let kept = self
            .host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(asked, _)| asked.elapsed() <= max_age)
            .map(|(_, host)| host.clone());
        match kept {
            Some(host) => Ok(host),
            None => self.host().await,
        }
    }
    /// A listing sent now (it may still answer later callers).
    async fn services(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        self.listing(Need::now()).await
    }
    async fn services_fresh(&self, need: Need) -> Result<Vec<ServiceInfo>, ClientError> {
        self.listing(need).await
    }
    async fn install(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
        held: bool,
    ) -> Result<InstallResponse, ClientError> {
        self.changing(self.inner.install(kind, request, held)).await
    }
    async fn uninstall(&self, kind: ServiceKind) -> Result<UninstallResponse, ClientError> {
        self.changing(self.inner.uninstall(kind)).await
    }
    async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.changing(self.inner.restart(kind)).await
    }
    async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.changing(self.inner.stop(kind)).await
    }
    async fn start(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.changing(self.inner.start(kind)).await
    }
    async fn certificate(&self) -> Result<Option<CertificateStatus>, ClientError> {
        self.inner.certificate().await
    }
    async fn install_certificate(
        &self,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
    ) -> Result<CertificateStatus, ClientError> {
        // Services may be restarted to take the new certificate.
        self.changed();
        let result = self.inner.install_certificate(cert_pem, key_pem).await;
        self.changed();
        result
    }
    async fn connection_strings(&self) -> Result<Option<ConnectionStrings>, ClientError> {
        self.inner.connection_strings().await
    }
    async fn set_connection_strings(
        &self,
        strings: &ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, ClientError> {
        self.changed();
        let result = self.inner.set_connection_strings(strings).await;
        self.changed();
        result
    }
    async fn cleanup_remnants(&self) -> Result<RemnantCleanup, ClientError> {
        self.changed();
        let result = self.inner.cleanup_remnants().await;
        self.changed();
        result
    }
    async fn announce_epoch(&self) -> Result<(), ClientError> {
        self.inner.announce_epoch().await
    }
    async fn logs(&self, kind: ServiceKind, tail_bytes: u64) -> Result<ServiceLogs, ClientError> {
        self.inner.logs(kind, tail_bytes).await
    }
}

/// How fresh the listing a service reconcile starts from must be, by why it runs: sent
/// after the change it reacts to, or, for a periodic look, not older than a share of
/// the resync period.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    marks: Mutex<Marks>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    /// When the desired state in force was last accepted.
    desired: Option<Need>,
    /// When an operator last asked for a full resync.
    manual: Option<Need>,
}

impl Freshness {
    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new desired state is in force: its reconciles share listings sent from now on.
    pub(crate) fn desired_changed(&self) {
        self.marks().desired = Some(Need::now());
    }

    /// A full resync was asked for: its reconciles share listings sent from now on.
    pub(crate) fn full_resync(&self) {
        self.marks().manual = Some(Need::now());
    }

    /// The listing a run for `reason` needs; `max_age` bounds a periodic look's.
    pub(crate) fn need(&self, reason: Reason, max_age: Duration) -> Need {
        let marks = *self.marks();
        match reason {
            Reason::Requeue => {
                let now = Instant::now();
                Need::SentSince(now.checked_sub(max_age).unwrap_or(now))
            }
            Reason::DesiredChanged => marks.desired.unwrap_or_else(Need::now),
            Reason::Manual => marks.manual.unwrap_or_else(Need::now),
            Reason::ObservedChanged | Reason::RetryAfterError | Reason::Resync => Need::now(),
        }
    }
}

#[cfg(test)]
mod tests;
