//! TLS session resumption when a connection is dialled again: per (address, TLS name),
//! bounded in keys and in time since the key's last full handshake, dropped with the trust.
//! The servers count the kinds of handshake they completed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HOST;
use hyper::Request;
use rustls::HandshakeKind;
use steward_https_client::{Exchange, HttpsClient, PoolLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

const HOST_NAME: &str = "app1.example.eng";
const ALIAS: &str = "alias.example.eng";

struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let issued = ca
        .issue_server(
            &[HOST_NAME.to_owned(), ALIAS.to_owned()],
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
    let config = steward_pki::server_config(&issued.cert_pem, issued.key_pem.expose()).unwrap();
    Pki {
        ca_pem: ca.cert_pem().to_owned(),
        config: Arc::new(config),
        _dir: dir,
    }
}

/// A TLS server answering `200 ok` to each request, with a session store of its own (as
/// each service on a server is a process of its own), recording each handshake's kind.
struct Server {
    addr: SocketAddr,
    kinds: Arc<Mutex<Vec<Option<HandshakeKind>>>>,
}

impl Server {
    async fn start(pki: &Pki) -> Self {
        let mut config = (*pki.config).clone();
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(64);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kinds = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let kinds = kinds.clone();
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, kinds) = (acceptor.clone(), kinds.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        kinds.lock().unwrap().push(tls.get_ref().1.handshake_kind());
                        let (mut head, mut chunk) = (Vec::new(), [0u8; 1024]);
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tls.write_all(reply).await.is_ok() && tls.flush().await.is_ok() {
                            // Until the client closes.
                            let _ = tls.read(&mut chunk).await;
                        }
                    });
                }
            }
        });
        Self { addr, kinds }
    }

    fn kinds(&self) -> Vec<Option<HandshakeKind>> {
        self.kinds.lock().unwrap().clone()
    }
}

const FULL: Option<HandshakeKind> = Some(HandshakeKind::Full);
const RESUMED: Option<HandshakeKind> = Some(HandshakeKind::Resumed);

/// No connection kept alive: every request dials.
fn client(pki: &Pki, sessions: usize, max_age: Duration) -> HttpsClient {
    let limits = PoolLimits {
        per_key: 0,
        total: 0,
        max_age,
        sessions,
        ..PoolLimits::default()
    };
    HttpsClient::trusting(&[&pki.ca_pem], limits).unwrap()
}

async fn get(client: &HttpsClient, server: &Server, name: &str) -> Exchange {
    let host = format!("{name}:{}", server.addr.port());
    let build = || {
        Ok(Request::get("/")
            .header(HOST, host.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (exchange, response) = client
        .send_to(&[server.addr], name, build, 1024, deadline)
        .await;
    assert_eq!(response.unwrap().body, "ok");
    assert!(!exchange.reused, "nothing is kept alive");
    exchange
}

const AGE: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_connection_dialled_again_resumes_its_tls_session() {
    let pki = pki();
    let server = Server::start(&pki).await;
    let client = client(&pki, 16, AGE);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(get(&client, &server, HOST_NAME).await.not_after);
    }
    assert_eq!(server.kinds(), [FULL, RESUMED, RESUMED]);
    assert!(seen[0].is_some());
    assert!(
        seen.iter().all(|n| *n == seen[0]),
        "a resumed connection reports the certificate of its full handshake: {seen:?}"
    );
    assert_eq!(client.kept_sessions(), 1);
}

#[tokio::test]
async fn sessions_are_kept_per_address_and_tls_name() {
    let pki = pki();
    // Two services of one server: one name, two ports, each resuming only what it issued.
    let (a, b) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = client(&pki, 16, AGE);
    for server in [&a, &b, &a, &b] {
        get(&client, server, HOST_NAME).await;
    }
    assert_eq!(a.kinds(), [FULL, RESUMED]);
    assert_eq!(b.kinds(), [FULL, RESUMED]);
    // Another name for the same address is another key.
    get(&client, &a, ALIAS).await;
    get(&client, &a, ALIAS).await;
    assert_eq!(a.kinds(), [FULL, RESUMED, FULL, RESUMED]);
    assert_eq!(client.kept_sessions(), 3);
}

#[tokio::test]
async fn the_session_store_is_bounded_and_keeps_the_newest_keys() {
    let pki = pki();
    let servers = [
        Server::start(&pki).await,
        Server::start(&pki).await,
        Server::start(&pki).await,
    ];
    let client = client(&pki, 2, AGE);
    for server in &servers {
        get(&client, server, HOST_NAME).await;
    }
    assert_eq!(client.kept_sessions(), 2);
    // The first key was dropped for the third; the third is still kept.
    get(&client, &servers[0], HOST_NAME).await;
    get(&client, &servers[2], HOST_NAME).await;
    assert_eq!(servers[0].kinds(), [FULL, FULL]);
    assert_eq!(servers[2].kinds(), [FULL, RESUMED]);
    assert_eq!(client.kept_sessions(), 2);

    let none = client_without_sessions(&pki);
    get(&none, &servers[1], HOST_NAME).await;
    get(&none, &servers[1], HOST_NAME).await;
    assert_eq!(servers[1].kinds(), [FULL, FULL, FULL]);
    assert_eq!(none.kept_sessions(), 0);
}

fn client_without_sessions(pki: &Pki) -> HttpsClient {
    client(pki, 0, AGE)
}

#[tokio::test]
async fn a_key_resumes_only_within_max_age_of_its_last_full_handshake() {
    let pki = pki();
    let server = Server::start(&pki).await;
    let max_age = Duration::from_millis(200);
    let client = client(&pki, 16, max_age);
    get(&client, &server, HOST_NAME).await;
    // Past the age, whatever ticket is held: a renewed certificate would be seen now.
    tokio::time::sleep(max_age + Duration::from_millis(50)).await;
    get(&client, &server, HOST_NAME).await;
    assert_eq!(server.kinds(), [FULL, FULL]);
}

#[tokio::test]
async fn new_trust_drops_the_sessions() {
    let pki = pki();
    let server = Server::start(&pki).await;
    let client = client(&pki, 16, AGE);
    get(&client, &server, HOST_NAME).await;
    assert_eq!(client.kept_sessions(), 1);
    client.set_tls(steward_pki::client_config(&[&pki.ca_pem]).unwrap());
    assert_eq!(client.kept_sessions(), 0);
    get(&client, &server, HOST_NAME).await;
    assert_eq!(server.kinds(), [FULL, FULL]);
}
