//! Fencing over the real mTLS API: a change carrying an older leader epoch than one the
//! agent has obeyed is refused (and the agent remembers across a restart); reads pass.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use steward_agent::api::InstallRequest;
use steward_agent::{AgentClient, ClientError, EpochSource};
use steward_model::ServiceKind;
use support::*;

/// A daemon's view of its own leadership, as the test sets it (0: not leading).
struct Epoch(AtomicU64);

impl EpochSource for Epoch {
    fn acting_epoch(&self) -> Result<u64, String> {
        match self.0.load(Ordering::SeqCst) {
            0 => Err("b leads".into()),
            e => Ok(e),
        }
    }
}

fn fenced(pki: &Pki, addr: std::net::SocketAddr, epoch: u64) -> AgentClient {
    pki.client(addr)
        .with_epochs(Arc::new(Epoch(AtomicU64::new(epoch))))
}

fn request(port: u16) -> InstallRequest {
    InstallRequest {
        ports: vec![port],
        drive: "C:".into(),
        release: "6.12.1".into(),
        installed_by: "steward".into(),
    }
}

fn code(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Status { code, .. } => code.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn an_older_leader_is_refused_over_mtls_and_the_agent_remembers_the_newest() {
    let pki = Pki::new();
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let plain = pki.client(agent.addr);
    // Not in HA mode yet: a single daemon's calls carry no epoch and pass.
    assert!(!plain.fencing().await.unwrap().ha_mode);
    plain
        .install(ServiceKind::Psis, &request(17001))
        .await
        .unwrap();

    let old = fenced(&pki, agent.addr, 5);
    let new = fenced(&pki, agent.addr, 9);
    old.install(ServiceKind::Psws, &request(17002))
        .await
        .unwrap();
    let status = new.announce_epoch().await.unwrap();
    assert_eq!(status.highest_epoch, Some(9));
    assert!(status.ha_mode);

    // The paused ex-leader wakes up and tries to change things: refused, nothing done.
    let refused = old.uninstall(ServiceKind::Psws, false).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert_eq!(code(&refused), Some("stale_epoch"), "{refused}");
    assert!(refused.to_string().contains("no longer"), "{refused}");
    let refused = old.restart(ServiceKind::Psis).await.unwrap_err();
    assert_eq!(code(&refused), Some("stale_epoch"));
    // A call without an epoch is refused in HA mode, with its own code.
    let refused = plain.uninstall(ServiceKind::Psws, false).await.unwrap_err();
    assert_eq!(refused.status(), Some(428), "{refused}");
    assert_eq!(code(&refused), Some("epoch_required"));
    // Reads pass whoever asks.
    assert_eq!(old.services().await.unwrap().len(), 2);
    assert!(plain.service(ServiceKind::Psws).await.is_ok());

    // A daemon that does not lead sends nothing at all.
    let follower = fenced(&pki, agent.addr, 0);
    let unsent = follower.restart(ServiceKind::Psis).await.unwrap_err();
    assert!(
        matches!(unsent, ClientError::NotLeader(ref who) if who == "b leads"),
        "{unsent}"
    );
    assert_eq!(unsent.metric_label(), "not_leader");

    // The record survives a restart of the agent.
    agent.shutdown().await;
    let agent = RunningAgent::start(pki.config(false, true)).await;
    let old = fenced(&pki, agent.addr, 5);
    let refused = old.uninstall(ServiceKind::Psws, false).await.unwrap_err();
    assert_eq!(code(&refused), Some("stale_epoch"));
    let new = fenced(&pki, agent.addr, 9);
    new.uninstall(ServiceKind::Psws, false).await.unwrap();
    assert_eq!(new.services().await.unwrap().len(), 1);
    agent.shutdown().await;
}

#[tokio::test]
async fn an_agent_started_with_require_epoch_refuses_unfenced_changes_from_the_start() {
    let pki = Pki::new();
    let server = steward_agent::AgentServer::bind(pki.config(false, true))
        .await
        .unwrap()
        .require_epoch();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let plain = pki.client(addr);
    assert!(plain.fencing().await.unwrap().ha_mode);
    let refused = plain
        .install(ServiceKind::Psis, &request(17011))
        .await
        .unwrap_err();
    assert_eq!(code(&refused), Some("epoch_required"), "{refused}");
    fenced(&pki, addr, 1)
        .install(ServiceKind::Psis, &request(17011))
        .await
        .unwrap();
    // The guard stands in front of every route, even one that does not exist (yet): a
    // change without an epoch is refused before routing; with one, routing answers.
    let tls = std::sync::Arc::new(
        steward_pki::mtls_client_config(
            pki.ca.cert_pem(),
            &pki.daemon.cert_pem,
            pki.daemon.key_pem.expose(),
        )
        .unwrap(),
    );
    let raw = move |method: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let tls = tls.clone();
        tokio::task::spawn_blocking(move || {
            let addr = addr.to_string();
            steward_testkit::http::Request {
                method,
                addr: &addr,
                path: "/v1/a-route-added-later",
                json: None,
                headers,
                tls: Some((tls, "localhost")),
            }
            .send()
            .unwrap()
            .status
        })
    };
    assert_eq!(raw("POST", &[]).await.unwrap(), 428);
    assert_eq!(raw("PATCH", &[("steward-epoch", "0")]).await.unwrap(), 409);
    assert_eq!(raw("POST", &[("steward-epoch", "1")]).await.unwrap(), 404);
    assert_eq!(raw("POST", &[("steward-epoch", "x")]).await.unwrap(), 400);
    assert_eq!(raw("GET", &[]).await.unwrap(), 404);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
