//! One listing shared by the callers it is fresh enough for, and never one older than a
//! change made through the same client.

use std::sync::Arc;
use std::time::Duration;

use steward_agent::api::{InstallRequest, ServiceStatus};
use steward_agent::ClientError;
use steward_model::ServiceKind;
use tokio::time::Instant;

use super::{Need, SharedListing};
use crate::agent::AgentApi;
use crate::fakes::{Call, FakeAgent};

fn shared() -> (Arc<FakeAgent>, Arc<SharedListing>) {
    let agent = Arc::new(FakeAgent::new("app1.example.eng"));
    let listing = Arc::new(SharedListing::new(agent.clone() as Arc<dyn AgentApi>));
    (agent, listing)
}

fn request() -> InstallRequest {
    InstallRequest {
        ports: vec![7001],
        drive: "D:".into(),
        release: "6.12.1".into(),
        installed_by: "steward-test".into(),
    }
}

async fn kinds(listing: &SharedListing, need: Need) -> Vec<ServiceKind> {
    let listed = listing.services_fresh(need).await.unwrap();
    listed.into_iter().map(|s| s.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn a_kept_listing_answers_periodic_looks_within_its_age_only() {
    let (agent, listing) = shared();
    let start = Instant::now();
    listing.services().await.unwrap();
    assert_eq!(agent.calls(Call::Services), 1);

    // Ten looks that tolerate a listing sent since `start`: no new listing.
    for _ in 0..10 {
        listing
            .services_fresh(Need::SentSince(start))
            .await
            .unwrap();
    }
    assert_eq!(agent.calls(Call::Services), 1);

    // Older than a look tolerates: listed again.
    tokio::time::advance(Duration::from_secs(5)).await;
    let since = Instant::now() - Duration::from_secs(1);
    listing
        .services_fresh(Need::SentSince(since))
        .await
        .unwrap();
    assert_eq!(agent.calls(Call::Services), 2);
}

#[tokio::test(start_paused = true)]
async fn a_woken_look_never_takes_a_listing_sent_before_it() {
    let (agent, listing) = shared();
    listing
        .install(ServiceKind::Job, &request(), false)
        .await
        .unwrap();
    listing.services().await.unwrap();
    // Stopped behind steward's back, at the same instant of the (paused) clock.
    agent.set_status(ServiceKind::Job, ServiceStatus::Stopped);

    let listed = listing.services_fresh(Need::now()).await.unwrap();
    assert_eq!(agent.calls(Call::Services), 2);
    assert_eq!(listed[0].status, ServiceStatus::Stopped);
}

#[tokio::test(start_paused = true)]
async fn callers_overlapping_a_listing_in_flight_join_it() {
    let (agent, listing) = shared();
    agent.set_listing_delay(Duration::from_secs(1));
    let need = Need::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let listing = Arc::clone(&listing);
            tokio::spawn(async move { listing.services_fresh(need).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(agent.calls(Call::Services), 1);
}

#[tokio::test(start_paused = true)]
async fn a_change_discards_the_kept_listing_and_the_one_in_flight() {
    let (agent, listing) = shared();
    let start = Instant::now();
    listing.services().await.unwrap();

    // A change through the client: the kept listing (without JOB) answers nobody now.
    listing
        .install(ServiceKind::Job, &request(), false)
        .await
        .unwrap();
    assert_eq!(
        kinds(&listing, Need::SentSince(start)).await,
        [ServiceKind::Job]
    );
    assert_eq!(agent.calls(Call::Services), 2);

    // A listing in flight while a change is made is neither joined nor kept after it.
    agent.set_listing_delay(Duration::from_secs(1));
    let in_flight = {
        let listing = Arc::clone(&listing);
        tokio::spawn(async move { listing.services().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    listing.uninstall(ServiceKind::Job).await.unwrap();
    in_flight.await.unwrap().unwrap();
    assert!(kinds(&listing, Need::SentSince(start)).await.is_empty());
    assert_eq!(agent.calls(Call::Services), 4);
}

#[tokio::test(start_paused = true)]
async fn a_failed_listing_leaves_its_joiners_to_ask_for_themselves() {
    let (agent, listing) = shared();
    agent.set_listing_delay(Duration::from_secs(1));
    agent.fail_next(Call::Services, ClientError::ConnectRefused);
    let need = Need::now();
    let first = {
        let listing = Arc::clone(&listing);
        tokio::spawn(async move { listing.services_fresh(need).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let joined = listing.services_fresh(need).await;
    assert!(first.await.unwrap().is_err());
    assert!(joined.is_ok(), "{joined:?}");
    assert_eq!(agent.calls(Call::Services), 2);
}
