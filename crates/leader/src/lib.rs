//! Leader election of steward daemons on etcd.
//!
//! Several daemons watch one fleet; only the leader changes anything. Each daemon
//! campaigns by creating one key (`PREFIX/leader`) bound to its own etcd lease, in a
//! transaction that succeeds only if the key does not exist. The winner's **epoch** is
//! the etcd revision of that transaction: every later winner's is higher, so agents can
//! refuse an older leader's calls (fencing). The leader renews its lease every
//! `renew_every`; it counts as leader only until the lease's local deadline (the time the
//! renewal was *sent* plus the TTL etcd granted), so a leader that cannot renew, or that
//! was paused, stops acting before etcd can let another win. Followers watch the key and
//! campaign the moment it is deleted; a leader that stops resigns (deletes the key and
//! revokes its lease) so a follower takes over without waiting for the lease to expire.
//!
//! [`Cluster`] also holds what all daemons must agree on besides the leader: the
//! fingerprint of the steward CA, published by the first daemon.

mod cluster;
mod config;
mod election;
mod error;
mod role;

pub use cluster::Cluster;
pub use config::{ClientIdentity, ElectionConfig, Endpoints, EtcdTls};
pub use election::Election;
pub use error::LeaderError;
pub use role::{LeaderInfo, Leadership, Role};
