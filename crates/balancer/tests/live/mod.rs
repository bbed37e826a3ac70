//! A real HAProxy's surroundings: TLS members answering PSIS's health test, free ports,
//! a one-farm model. Shared by the live tests and the benchmark.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use steward_balancer::farm::{Check, CheckKind, Farm, Farms, Listener, Member};
use steward_model::resource::{Affinity, LbVendor};
use steward_model::{ServiceKind, StatusRanges};
use steward_testkit::read_request_head;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let leaf = ca
        .issue_server(
            &["localhost".to_owned()],
            &[Ipv4Addr::LOCALHOST.into()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let server = steward_pki::server_config(&leaf.cert_pem, leaf.key_pem.expose()).unwrap();
    let client = steward_pki::client_config(&[ca.cert_pem()]).unwrap();
    Pki {
        ca_pem: ca.cert_pem().to_owned(),
        _dir: dir,
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// A TLS listener answering every request with 200 and `IdentityServer4 <name>`. Aborting
/// the handle closes the listener: new connections are refused, like a killed service.
pub async fn member(pki: &Pki, name: &'static str) -> (u16, JoinHandle<()>) {
    // Both families: HAProxy resolves `localhost` (what the certificate names) to either.
    let listener = TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&pki.server));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_request_head(&mut tls).await.is_none() {
                    return;
                }
                let body = format!("IdentityServer4 {name}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, task)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn farms(front: u16, members: &[(&str, u16)], interval: Duration) -> Farms {
    Farms {
        vendor: LbVendor::Haproxy,
        fqdn: "localhost".into(),
        hl7_fqdn: "localhost".into(),
        address: None,
        affinity: Affinity::Client,
        idle_timeout: Duration::from_secs(1860),
        farms: vec![Farm {
            kind: ServiceKind::Psis,
            title: "PatientSecure Identity Server",
            listeners: vec![Listener {
                port: front,
                slot: 0,
                tls: true,
            }],
            members: members
                .iter()
                .map(|(name, port)| Member {
                    server: (*name).to_owned(),
                    hostname: "localhost".into(),
                    ports: vec![*port],
                    active: true,
                })
                .collect(),
            check: Check {
                kind: CheckKind::Https {
                    path: "/identityserver".into(),
                    accept: StatusRanges::parse("200-399").unwrap(),
                    response_match: Some("IdentityServer4".into()),
                },
                interval,
                timeout: Duration::from_millis(500),
                rise: 1,
                fall: 2,
            },
        }],
    }
}
