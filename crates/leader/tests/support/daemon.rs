//! One daemon's part in an election: what the election tests and the takeover benchmark
//! start (included by `#[path]` in the benchmark).

use steward_leader::{Cluster, Election, ElectionConfig, Leadership};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Daemon {
    pub leadership: Leadership,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

/// Connects with `config` and runs the election until `stop` (or the task is aborted).
pub async fn campaign_with(config: ElectionConfig) -> Daemon {
    let (election, leadership) = Election::new(Cluster::connect(config).await.unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn(election.run(stop.clone()));
    Daemon {
        leadership,
        stop,
        task,
    }
}
