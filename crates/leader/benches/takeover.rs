//! How long a follower waits to act after the leader goes, with a 3 s lease (renewed
//! every 1 s), against a real etcd on loopback:
//!
//! - "leader killed -> follower acting": the leader's task is aborted as by `kill -9`
//!   (no resignation), so the follower waits for the lease to expire. Goal: <= 5 s.
//! - "leader resigned -> follower acting": the leader stops as on SIGTERM.
//!
//! `cargo bench -p steward-leader --bench takeover` (etcd from Debian `etcd-server`).

use std::time::{Duration, Instant};

use steward_leader::{ElectionConfig, Endpoints};
use steward_testkit::etcd::EtcdCluster;

const ROUNDS: usize = 5;

#[path = "../tests/support/daemon.rs"]
mod daemon;
use daemon::{campaign_with, Daemon};

async fn campaign(etcd: &EtcdCluster, id: &str, prefix: &str) -> Daemon {
    let mut config = ElectionConfig::new(
        Endpoints::parse(&etcd.endpoints()).unwrap(),
        id,
        format!("http://{id}:9464"),
    );
    config.ttl = Duration::from_secs(3);
    config.renew_every = Duration::from_secs(1);
    config.retry_every = Duration::from_millis(250);
    config.prefix = prefix.to_owned();
    campaign_with(config).await
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One round: `a` leads, `b` follows; `a` goes (killed or resigning); how long until `b`
/// may act.
async fn round(etcd: &EtcdCluster, n: usize, kill: bool) -> Duration {
    let prefix = format!("/bench{n}{}", if kill { "k" } else { "r" });
    let a = campaign(etcd, "a", &prefix).await;
    until("a to lead", || a.leadership.acting_epoch().is_some()).await;
    let b = campaign(etcd, "b", &prefix).await;
    until("b to follow", || b.leadership.leader().is_some()).await;
    // Mid-lease, as a real failure would land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    if kill {
        a.task.abort();
    } else {
        a.stop.cancel();
    }
    until("b to act", || b.leadership.acting_epoch().is_some()).await;
    let took = started.elapsed();
    b.stop.cancel();
    let _ = b.task.await;
    if !kill {
        let _ = a.task.await;
    }
    took
}

fn summary(label: &str, mut runs: Vec<Duration>) {
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} rounds (3 s lease, renewed every 1 s)",
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1]),
        runs.len()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(etcd) = EtcdCluster::start(3) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut killed = Vec::new();
        let mut resigned = Vec::new();
        for n in 0..ROUNDS {
            killed.push(round(&etcd, n, true).await);
            resigned.push(round(&etcd, n, false).await);
        }
        summary("leader killed -> follower acting", killed);
        summary("leader resigned -> follower acting", resigned);
    });
}
