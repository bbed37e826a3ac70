//! Real TLS handshakes on 127.0.0.1 with the configurations this crate builds.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use steward_pki::{
    client_config, mtls_client_config, mtls_server_config, server_config, CertificateAuthority,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Outcome {
    server: Result<(), String>,
    client: Result<(), String>,
}

/// One connection: the client sends "ping", the server answers "pong".
async fn exchange(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
    name: &str,
) -> Outcome {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        // With TLS 1.3 the client's handshake finishes before the server has checked the
        // client certificate, so a rejection only shows up here.
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"pong");
        Ok(())
    }
    .await;
    let server = server_task.await.unwrap();
    Outcome { server, client }
}

fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(dir.path()).unwrap();
    (dir, ca)
}

#[tokio::test]
async fn issued_server_certificate_verifies_against_the_ca() {
    let (_d, ca) = new_ca();
    let (_o, other) = new_ca();
    let agent = ca.issue_agent("localhost", &[LOCALHOST]).unwrap();
    let server = || server_config(&agent.cert_pem, agent.key_pem.expose()).unwrap();

    let ok = exchange(
        server(),
        client_config(&[ca.cert_pem()]).unwrap(),
        "localhost",
    )
    .await;
    assert_eq!(ok.server, Ok(()));
    assert_eq!(ok.client, Ok(()));
    let by_ip = exchange(
        server(),
        client_config(&[ca.cert_pem()]).unwrap(),
        "127.0.0.1",
    )
    .await;
    assert_eq!(by_ip.client, Ok(()));

    // A bundle of several CAs works as long as one of them issued the certificate.
    let bundle = [other.cert_pem(), ca.cert_pem()];
    let ok = exchange(server(), client_config(&bundle).unwrap(), "localhost").await;
    assert_eq!(ok.client, Ok(()));

    let untrusted = exchange(
        server(),
        client_config(&[other.cert_pem()]).unwrap(),
        "localhost",
    )
    .await;
    let err = untrusted.client.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    let wrong_name = exchange(
        server(),
        client_config(&[ca.cert_pem()]).unwrap(),
        "app9.example.eng",
    )
    .await;
    assert!(wrong_name.client.is_err());
}

#[tokio::test]
async fn mtls_server_accepts_only_clients_certified_by_the_ca() {
    let (_d, ca) = new_ca();
    let (_o, other) = new_ca();
    let agent = ca.issue_agent("localhost", &[LOCALHOST]).unwrap();
    let server =
        || mtls_server_config(ca.cert_pem(), &agent.cert_pem, agent.key_pem.expose()).unwrap();

    let daemon = ca.issue_client("steward-daemon").unwrap();
    let good =
        mtls_client_config(ca.cert_pem(), &daemon.cert_pem, daemon.key_pem.expose()).unwrap();
    let ok = exchange(server(), good, "localhost").await;
    assert_eq!(ok.server, Ok(()));
    assert_eq!(ok.client, Ok(()));

    let no_cert = exchange(
        server(),
        client_config(&[ca.cert_pem()]).unwrap(),
        "localhost",
    )
    .await;
    let err = no_cert.server.unwrap_err();
    assert!(
        err.contains("NoCertificatesPresented") || err.contains("peer sent no certificates"),
        "{err}"
    );
    assert!(no_cert.client.is_err());

    let stranger = other.issue_client("steward-daemon").unwrap();
    let foreign =
        mtls_client_config(ca.cert_pem(), &stranger.cert_pem, stranger.key_pem.expose()).unwrap();
    let rejected = exchange(server(), foreign, "localhost").await;
    let err = rejected.server.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(rejected.client.is_err());

    // An agent's certificate is for serving only: it cannot authenticate as the daemon.
    let peer = ca.issue_agent("app2.example.eng", &[]).unwrap();
    let server_only =
        mtls_client_config(ca.cert_pem(), &peer.cert_pem, peer.key_pem.expose()).unwrap();
    let rejected = exchange(server(), server_only, "localhost").await;
    assert!(rejected.server.is_err());
}

#[tokio::test]
async fn mtls_client_refuses_a_server_from_another_ca() {
    let (_d, ca) = new_ca();
    let (_o, other) = new_ca();
    let impostor = other.issue_agent("localhost", &[LOCALHOST]).unwrap();
    let daemon = ca.issue_client("steward-daemon").unwrap();
    let server = mtls_server_config(
        other.cert_pem(),
        &impostor.cert_pem,
        impostor.key_pem.expose(),
    )
    .unwrap();
    let client =
        mtls_client_config(ca.cert_pem(), &daemon.cert_pem, daemon.key_pem.expose()).unwrap();
    let outcome = exchange(server, client, "localhost").await;
    assert!(outcome.client.unwrap_err().contains("UnknownIssuer"));
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn loaded_ca_issues_certificates_that_chain_to_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let original = CertificateAuthority::init(dir.path()).unwrap();
    let loaded = CertificateAuthority::load(dir.path()).unwrap();
    let agent = loaded.issue_agent("localhost", &[]).unwrap();
    let outcome = exchange(
        server_config(&agent.cert_pem, agent.key_pem.expose()).unwrap(),
        client_config(&[original.cert_pem()]).unwrap(),
        "localhost",
    )
    .await;
    assert_eq!(outcome.client, Ok(()));
}
