use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Who leads, as written in the leader key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The leader's `--ha-id`.
    pub id: String,
    /// Where its API answers.
    pub api: String,
    /// The etcd revision at which it won: its fencing epoch.
    pub epoch: u64,
}

/// This daemon's part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not connected to etcd yet.
    Starting,
    /// This daemon leads until `deadline` unless it renews its lease first.
    Leader { epoch: u64, deadline: Instant },
    /// Another daemon leads (`None`: nobody right now, an election is under way).
    Follower { leader: Option<LeaderInfo> },
    /// etcd cannot be reached (or has no quorum): nobody can be known to lead, and this
    /// daemon does not act. `reason` says what failed.
    Unavailable { reason: String },
}

/// A read-only view of the election, cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    pub(crate) id: String,
    pub(crate) api: String,
    pub(crate) role: watch::Receiver<Role>,
}

impl Leadership {
    /// This daemon's `--ha-id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The epoch to fence agent calls with, `None` unless this daemon leads *now*: the
    /// deadline is checked on every call, so a leader that was paused or cut off from
    /// etcd stops acting at its deadline even before its election task notices.
    pub fn acting_epoch(&self) -> Option<u64> {
        match &*self.role.borrow() {
            Role::Leader { epoch, deadline } if Instant::now() < *deadline => Some(*epoch),
            _ => None,
        }
    }

    /// Who leads, as far as this daemon knows.
    pub fn leader(&self) -> Option<LeaderInfo> {
        match &*self.role.borrow() {
            Role::Leader { epoch, deadline } if Instant::now() < *deadline => Some(LeaderInfo {
                id: self.id.clone(),
                api: self.api.clone(),
                epoch: *epoch,
            }),
            Role::Follower { leader } => leader.clone(),
            _ => None,
        }
    }

    /// Wait for the next change of role (a renewal moves the deadline, which counts).
    /// `Err` once the election has stopped for good.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.role.changed().await
    }

    /// A leadership that never changes, for tests of what reads it.
    pub fn fixed(id: &str, role: Role) -> Self {
        // The value stays readable after the sender is gone.
        let (_, rx) = watch::channel(role);
        Self {
            id: id.to_owned(),
            api: String::new(),
            role: rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_leader_past_its_deadline_does_not_act() {
        let now = Instant::now();
        let live = Leadership::fixed(
            "a",
            Role::Leader {
                epoch: 7,
                deadline: now + Duration::from_secs(60),
            },
        );
        assert_eq!(live.acting_epoch(), Some(7));
        assert_eq!(live.leader().map(|l| l.id), Some("a".to_owned()));
        let lapsed = Leadership::fixed(
            "a",
            Role::Leader {
                epoch: 7,
                deadline: now,
            },
        );
        assert_eq!(lapsed.acting_epoch(), None);
        assert_eq!(lapsed.leader(), None);
        let follower = Leadership::fixed("b", Role::Follower { leader: None });
        assert_eq!(follower.acting_epoch(), None);
    }
}
