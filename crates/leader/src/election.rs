//! The campaign loop: win the leader key or watch it, lead while the lease is renewed,
//! resign when told to stop.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::error::LeaderError;
use crate::role::{LeaderInfo, Leadership, Role};

/// What the leader key holds (the epoch is the key's create revision).
#[derive(Serialize, Deserialize)]
struct Candidate {
    id: String,
    api: String,
}

/// One daemon's campaign. [`Election::run`] until told to stop; read it through the
/// [`Leadership`] returned by [`Election::new`].
pub struct Election {
    cluster: Cluster,
    role: watch::Sender<Role>,
}

impl Election {
    pub fn new(cluster: Cluster) -> (Self, Leadership) {
        let (role, rx) = watch::channel(Role::Starting);
        let leadership = Leadership {
            id: cluster.config.id.clone(),
            api: cluster.config.api.clone(),
            role: rx,
        };
        (Self { cluster, role }, leadership)
    }

    /// Campaign until `stop`; a leader then resigns, so another daemon takes over at
    /// once instead of when the lease expires.
    pub async fn run(self, stop: CancellationToken) {
        let mut last_error = String::new();
        while !stop.is_cancelled() {
            match self.campaign(&stop).await {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    let reason = e.to_string();
                    if reason != last_error {
                        tracing::warn!(error = %reason, "leader election: etcd unavailable; not acting");
                        last_error = reason.clone();
                    }
                    self.publish(Role::Unavailable { reason });
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(self.cluster.config.retry_every) => {}
                    }
                }
            }
        }
        self.publish(Role::Follower { leader: None });
    }

    fn publish(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }

    /// One round: a new lease, then the leader key if nobody holds it.
    async fn campaign(&self, stop: &CancellationToken) -> Result<(), LeaderError> {
        let config = &self.cluster.config;
        let key = config.leader_key();
        let mut leases = self.cluster.client.lease_client();
        let sent = Instant::now();
        let grant = self
            .cluster
            .call(
                "granting a lease",
                leases.grant(config.ttl.as_secs() as i64, None),
            )
            .await?;
        let lease = grant.id();
        let deadline = sent + secs(grant.ttl());
        let value = serde_json::to_string(&Candidate {
            id: config.id.clone(),
            api: config.api.clone(),
        })
        .expect("a candidate serializes");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.cluster.client.kv_client();
        let response = match self.cluster.call("campaigning", kv.txn(txn)).await {
            Ok(r) => r,
            Err(e) => {
                self.revoke(lease).await;
                return Err(e);
            }
        };
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return self.lead(lease, revision as u64, deadline, stop).await;
        }
        self.revoke(lease).await;
        let holder = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| {
                let candidate: Option<Candidate> = serde_json::from_slice(kv.value()).ok();
                LeaderInfo {
                    id: candidate.as_ref().map_or("?".into(), |c| c.id.clone()),
                    api: candidate.map_or_else(String::new, |c| c.api),
                    epoch: kv.create_revision() as u64,
                }
            }),
            _ => None,
        });
        let Some(holder) = holder else {
            // Released between the compare and the read: campaign again.
            return Ok(());
        };
        tracing::info!(leader = %holder.id, epoch = holder.epoch, "following");
        self.publish(Role::Follower {
            leader: Some(holder),
        });
        self.follow(revision, stop).await
    }

    /// Wait until the leader key is deleted (resigned, or its lease expired).
    async fn follow(&self, revision: i64, stop: &CancellationToken) -> Result<(), LeaderError> {
        let key = self.cluster.config.leader_key();
        let mut watches = self.cluster.client.watch_client();
        let options = WatchOptions::new().with_start_revision(revision + 1);
        let mut stream = self
            .cluster
            .call("watching the leader key", watches.watch(key, Some(options)))
            .await?;
        tokio::select! {
            () = stop.cancelled() => Ok(()),
            deleted = next_delete(&mut stream) => {
                deleted.map_err(|e| self.watch_failed(e))?;
                self.publish(Role::Follower { leader: None });
                Ok(())
            }
        }
    }

    fn watch_failed(&self, e: WatchFailure) -> LeaderError {
        match e {
            WatchFailure::Etcd(source) => LeaderError::Etcd {
                endpoints: self.cluster.config.endpoints.to_string(),
                doing: "watching the leader key",
                source,
            },
            WatchFailure::Ended(why) => self.cluster.unexpected(why),
        }
    }

    /// Lead while the lease is renewed in time; resign on `stop`.
    async fn lead(
        &self,
        lease: i64,
        epoch: u64,
        mut deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), LeaderError> {
        let config = &self.cluster.config;
        tracing::info!(epoch, id = %config.id, "elected leader");
        self.publish(Role::Leader {
            epoch,
            deadline: deadline.into_std(),
        });
        // The key can also go by hand (`etcdctl del`) or with a revoked lease.
        let mut watches = self.cluster.client.watch_client();
        let mut own_key = watches
            .watch(
                config.leader_key(),
                Some(WatchOptions::new().with_start_revision(epoch as i64 + 1)),
            )
            .await
            .ok();
        let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut next = Instant::now() + config.renew_every;
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    self.resign(lease, epoch).await;
                    return Ok(());
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(epoch, "leadership lost: the lease could not be renewed before its deadline; not acting");
                    self.publish(Role::Unavailable {
                        reason: "the leader's lease could not be renewed before its deadline".into(),
                    });
                    return Ok(());
                }
                deleted = async {
                    match own_key.as_mut() {
                        Some(stream) => next_delete(stream).await,
                        None => std::future::pending().await,
                    }
                } => {
                    match deleted {
                        Ok(()) => {
                            tracing::warn!(epoch, "leadership lost: the leader key was deleted; not acting");
                            self.publish(Role::Follower { leader: None });
                            self.revoke(lease).await;
                            return Ok(());
                        }
                        // The lease still decides; the key watch was only a shortcut.
                        Err(_) => own_key = None,
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let sent = Instant::now();
                    match self.renew(&mut keeper, lease, deadline).await {
                        Ok(ttl) if ttl > 0 => {
                            deadline = sent + secs(ttl);
                            next = sent + config.renew_every;
                            self.publish(Role::Leader { epoch, deadline: deadline.into_std() });
                        }
                        Ok(_) => {
                            tracing::warn!(epoch, "leadership lost: etcd says the lease expired; not acting");
                            self.publish(Role::Follower { leader: None });
                            return Ok(());
                        }
                        Err(e) => {
                            // A response to this request may still come; never take it
                            // for a later one.
                            keeper = None;
                            tracing::warn!(error = %e, epoch, "cannot renew the leader's lease; retrying until its deadline");
                            next = Instant::now() + config.retry_every;
                        }
                    }
                }
            }
        }
    }

    /// One keep-alive round trip, bounded by the lease's deadline.
    async fn renew(
        &self,
        keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
        lease: i64,
        deadline: Instant,
    ) -> Result<i64, LeaderError> {
        let round = async {
            if keeper.is_none() {
                let mut leases = self.cluster.client.lease_client();
                *keeper = Some(
                    self.cluster
                        .call("renewing the lease", leases.keep_alive(lease))
                        .await?,
                );
            }
            let (sender, responses) = keeper.as_mut().expect("set above");
            self.cluster
                .call("renewing the lease", sender.keep_alive())
                .await?;
            match self
                .cluster
                .call("renewing the lease", responses.message())
                .await?
            {
                Some(response) => Ok(response.ttl()),
                None => Err(self.cluster.unexpected("the lease keep-alive stream ended")),
            }
        };
        match tokio::time::timeout_at(deadline, round).await {
            Ok(result) => result,
            Err(_) => Err(LeaderError::Timeout {
                endpoints: self.cluster.config.endpoints.to_string(),
                doing: "renewing the lease",
                after: self.cluster.config.ttl,
            }),
        }
    }

    /// Hand leadership over now: delete the key if it is still ours, revoke the lease.
    async fn resign(&self, lease: i64, epoch: u64) {
        let key = self.cluster.config.leader_key();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                epoch as i64,
            )])
            .and_then([TxnOp::delete(key, None)]);
        let mut kv = self.cluster.client.kv_client();
        match self.cluster.call("resigning", kv.txn(txn)).await {
            Ok(_) => tracing::info!(epoch, "resigned the leadership"),
            Err(e) => tracing::warn!(error = %e, epoch, "could not resign; the lease will expire"),
        }
        self.publish(Role::Follower { leader: None });
        self.revoke(lease).await;
    }

    async fn revoke(&self, lease: i64) {
        let mut leases = self.cluster.client.lease_client();
        if let Err(e) = self
            .cluster
            .call("revoking a lease", leases.revoke(lease))
            .await
        {
            tracing::debug!(error = %e, "lease not revoked; it expires by itself");
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

enum WatchFailure {
    Etcd(etcd_client::Error),
    Ended(String),
}

/// Resolves when the watched key is deleted.
async fn next_delete(stream: &mut WatchStream) -> Result<(), WatchFailure> {
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                if response.canceled() {
                    return Err(WatchFailure::Ended(format!(
                        "the watch of the leader key was cancelled: {}",
                        response.cancel_reason()
                    )));
                }
                if response
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return Ok(());
                }
            }
            Ok(None) => {
                return Err(WatchFailure::Ended(
                    "the watch of the leader key ended".into(),
                ))
            }
            Err(e) => return Err(WatchFailure::Etcd(e)),
        }
    }
}
