//! The election against a real etcd (Debian `etcd-server`) on loopback.

use std::time::Duration;

use steward_leader::{Cluster, ElectionConfig, Endpoints, LeaderError, Role};
use steward_testkit::etcd::EtcdCluster;
use steward_testkit::eventually_async;
use support::daemon::{campaign_with, Daemon};

mod support {
    pub mod daemon;
}

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

fn config(etcd: &EtcdCluster, id: &str, ttl: u64) -> ElectionConfig {
    let mut config = ElectionConfig::new(
        Endpoints::parse(&etcd.endpoints()).unwrap(),
        id,
        format!("http://{id}.example.eng:9464"),
    );
    config.ttl = Duration::from_secs(ttl);
    config.renew_every = Duration::from_millis(500);
    config.retry_every = Duration::from_millis(200);
    config
}

async fn campaign(etcd: &EtcdCluster, id: &str, ttl: u64) -> Daemon {
    campaign_with(config(etcd, id, ttl)).await
}

/// The one daemon that acts, once exactly one does.
async fn sole_leader(daemons: &[&Daemon]) -> (usize, u64) {
    eventually_async("exactly one leader", DEADLINE, POLL, || {
        let acting: Vec<(usize, u64)> = daemons
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.leadership.acting_epoch().map(|e| (i, e)))
            .collect();
        std::future::ready((acting.len() == 1).then(|| acting[0]))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_resignation_hands_over_before_the_lease_could_expire() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    // A lease far longer than the test's deadline: a takeover within the deadline can
    // only come from the resignation.
    let daemons = [
        campaign(&etcd, "a", 600).await,
        campaign(&etcd, "b", 600).await,
        campaign(&etcd, "c", 600).await,
    ];
    let all: Vec<&Daemon> = daemons.iter().collect();
    let (first, epoch) = sole_leader(&all).await;
    // The followers know who leads, and where its API is.
    for (i, d) in daemons.iter().enumerate() {
        if i != first {
            let leader = eventually_async("followers to know the leader", DEADLINE, POLL, || {
                std::future::ready(d.leadership.leader())
            })
            .await;
            assert_eq!(leader.id, daemons[first].leadership.id());
            assert_eq!(leader.epoch, epoch);
            assert!(leader.api.ends_with(".example.eng:9464"), "{leader:?}");
        }
    }

    daemons[first].stop.cancel();
    let rest: Vec<&Daemon> = daemons
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, d)| d)
        .collect();
    let (_, next_epoch) = sole_leader(&rest).await;
    assert!(
        next_epoch > epoch,
        "epochs must grow: {epoch} then {next_epoch}"
    );
    assert_eq!(daemons[first].leadership.acting_epoch(), None);
    for d in daemons {
        d.stop.cancel();
        d.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_dies_without_resigning_is_replaced_when_its_lease_expires() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let a = campaign(&etcd, "a", 2).await;
    let (_, epoch) = sole_leader(&[&a]).await;
    let b = campaign(&etcd, "b", 2).await;
    eventually_async("b to follow a", DEADLINE, POLL, || {
        std::future::ready(b.leadership.leader().is_some_and(|l| l.id == "a"))
    })
    .await;
    // Like kill -9: the task is gone, nothing resigns, the lease is left to expire.
    a.task.abort();
    let (_, next) = sole_leader(&[&b]).await;
    assert!(next > epoch);
    b.stop.cancel();
    b.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_stops_acting_and_leads_again_when_it_is_back() {
    let Some(mut etcd) = EtcdCluster::start(1) else {
        return;
    };
    let a = campaign(&etcd, "a", 2).await;
    let (_, epoch) = sole_leader(&[&a]).await;
    etcd.stop_member(0);
    eventually_async("the cut-off leader to stop acting", DEADLINE, POLL, || {
        std::future::ready(a.leadership.acting_epoch().is_none())
    })
    .await;
    let reason = eventually_async("the reason to be reported", DEADLINE, POLL, || {
        std::future::ready(match a.leadership.role() {
            Role::Unavailable { reason } => Some(reason),
            _ => None,
        })
    })
    .await;
    assert!(
        reason.contains("etcd") || reason.contains("lease"),
        "{reason}"
    );
    etcd.start_member(0);
    etcd.wait_healthy();
    let (_, again) = sole_leader(&[&a]).await;
    assert!(
        again > epoch,
        "a new term, a new epoch: {epoch} then {again}"
    );
    a.stop.cancel();
    a.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_agree_on_one_ca_and_a_different_one_is_refused() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let a = Cluster::connect(config(&etcd, "a", 2)).await.unwrap();
    let b = Cluster::connect(config(&etcd, "b", 2)).await.unwrap();
    assert_eq!(a.published_ca().await.unwrap(), None);
    a.agree_on_ca("AB:CD").await.unwrap();
    b.agree_on_ca("AB:CD").await.unwrap();
    assert_eq!(b.published_ca().await.unwrap().as_deref(), Some("AB:CD"));
    let refused = b.agree_on_ca("EF:01").await.unwrap_err();
    assert!(
        matches!(&refused, LeaderError::CaMismatch { ours, theirs } if ours == "EF:01" && theirs == "AB:CD"),
        "{refused}"
    );
    assert!(refused.to_string().contains("steward restore"), "{refused}");
}
