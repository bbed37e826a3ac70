//! `ha` in `/api/v1/status`: this daemon's part in the election and who leads.

use schemars::JsonSchema;
use serde::Serialize;
use steward_leader::{Leadership, Role};

/// Controller HA, as this daemon sees it (absent for a single daemon).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HaStatus {
    /// This daemon's `--ha-id`.
    pub id: String,
    /// `leader` (this daemon changes things), `follower` (it only looks),
    /// `unavailable` (etcd cannot be reached: nobody is known to lead, this daemon
    /// does not act) or `starting`.
    pub role: &'static str,
    /// Who leads, when known.
    pub leader: Option<LeaderView>,
    /// Why the election is unavailable.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    pub id: String,
    /// Where the leader's API answers (send changes there).
    pub api: String,
    /// Its fencing epoch: the etcd revision at which it won.
    pub epoch: u64,
}

impl HaStatus {
    pub fn of(leadership: &Leadership) -> Self {
        let (role, reason) = match leadership.role() {
            Role::Starting => ("starting", None),
            Role::Leader { .. } if leadership.acting_epoch().is_some() => ("leader", None),
            Role::Leader { .. } => (
                "unavailable",
                Some("the leader's lease could not be renewed before its deadline".to_owned()),
            ),
            Role::Follower { .. } => ("follower", None),
            Role::Unavailable { reason } => ("unavailable", Some(reason)),
        };
        Self {
            id: leadership.id().to_owned(),
            role,
            leader: leadership.leader().map(|l| LeaderView {
                id: l.id,
                api: l.api,
                epoch: l.epoch,
            }),
            reason,
        }
    }
}

/// Why this daemon does not act now, naming the leader when it is known.
pub fn not_leading(leadership: &Leadership) -> String {
    let status = HaStatus::of(leadership);
    match (&status.leader, status.reason) {
        (Some(l), _) => format!(
            "this daemon ({}) is a follower; {} leads (epoch {}, {})",
            status.id, l.id, l.epoch, l.api
        ),
        (None, Some(reason)) => format!("this daemon ({}) is not the leader: {reason}", status.id),
        (None, None) => format!(
            "this daemon ({}) is not the leader; no leader is known right now",
            status.id
        ),
    }
}
