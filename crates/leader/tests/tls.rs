//! The election over TLS to a real etcd whose client port demands a client certificate
//! (`--client-cert-auth`), as a hospital's etcd would be run.

use std::time::Duration;

use steward_leader::{ClientIdentity, Cluster, Election, ElectionConfig, Endpoints, EtcdTls};
use steward_pki::CertificateAuthority;
use steward_testkit::etcd::{EtcdCluster, EtcdTlsFiles};
use steward_testkit::eventually_async;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// A CA, the members' certificate for 127.0.0.1, and a daemon's client certificate.
struct Pki {
    _dir: TempDir,
    ca: CertificateAuthority,
    files: EtcdTlsFiles,
    client: ClientIdentity,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let server = ca.issue_agent("127.0.0.1", &[]).unwrap();
    let (server_cert, server_key) = server.write_pair(dir.path(), "etcd").unwrap();
    let client = ca.issue_client("steward-a").unwrap();
    let (client_cert, client_key) = client.write_pair(dir.path(), "client").unwrap();
    Pki {
        files: EtcdTlsFiles {
            ca: ca.cert_path(),
            server_cert,
            server_key,
            client: Some((client_cert, client_key)),
        },
        client: ClientIdentity::new(client.cert_pem.clone(), client.key_pem.expose().to_owned()),
        ca,
        _dir: dir,
    }
}

fn config(etcd: &EtcdCluster, trust_pem: &str, client: Option<ClientIdentity>) -> ElectionConfig {
    let endpoints = Endpoints::parse(&etcd.endpoints()).unwrap();
    assert!(endpoints.tls(), "{endpoints}");
    let mut config = ElectionConfig::new(endpoints, "a", "http://a.example.eng:9464");
    config.ttl = Duration::from_secs(2);
    config.renew_every = Duration::from_millis(500);
    config.retry_every = Duration::from_millis(200);
    config.tls = Some(EtcdTls {
        trust_pem: trust_pem.to_owned(),
        client,
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_the_right_ca_and_client_certificate_leads_over_tls() {
    let pki = pki();
    let Some(etcd) = EtcdCluster::start_tls(1, pki.files.clone()) else {
        return;
    };
    let cluster = Cluster::connect(config(&etcd, pki.ca.cert_pem(), Some(pki.client.clone())))
        .await
        .unwrap();
    cluster.agree_on_ca("AB:CD").await.unwrap();
    assert_eq!(
        cluster.published_ca().await.unwrap().as_deref(),
        Some("AB:CD")
    );
    let (election, leadership) = Election::new(cluster);
    let stop = CancellationToken::new();
    let task = tokio::spawn(election.run(stop.clone()));
    let epoch = eventually_async(
        "the daemon to lead over TLS",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || std::future::ready(leadership.acting_epoch()),
    )
    .await;
    assert!(epoch > 0);
    // etcd itself, asked over TLS, holds this daemon's leader key.
    let keys = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/steward/"]);
    assert!(keys.contains("/steward/leader"), "{keys}");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_or_another_ca_is_refused_with_an_error() {
    let pki = pki();
    let Some(etcd) = EtcdCluster::start_tls(1, pki.files.clone()) else {
        return;
    };
    // etcd demands a client certificate: without one, nothing is read or written.
    let anonymous = Cluster::connect(config(&etcd, pki.ca.cert_pem(), None)).await;
    let refused = match anonymous {
        Ok(cluster) => cluster.agree_on_ca("AB:CD").await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(refused.metric_label(), "etcd" | "timeout"),
        "{refused}"
    );
    // The members' certificate is not signed by the CA this daemon trusts.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::init(elsewhere.path()).unwrap();
    let mistrusted =
        Cluster::connect(config(&etcd, other.cert_pem(), Some(pki.client.clone()))).await;
    let refused = match mistrusted {
        Ok(cluster) => cluster.published_ca().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(refused.metric_label(), "etcd" | "timeout"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("etcds://127.0.0.1:"),
        "{refused}"
    );
    // Neither attempt wrote anything.
    let keys = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/steward/"]);
    assert!(keys.trim().is_empty(), "{keys}");
}
