//! The server against misbehaving clients on loopback, in real time: short deadlines, and
//! generous patience for what must eventually happen (nothing asserts on speed).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{ConnectionCounts, Connections, Limits, Server};

/// How long anything that must happen may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(600);

/// Nothing times out unless the test says so.
fn patient() -> Limits {
    Limits {
        max_connections: 64,
        handshake_timeout: LONG,
        header_read_timeout: LONG,
        idle_timeout: LONG,
        request_timeout: LONG,
        max_body_bytes: 1024,
        max_head_bytes: 8192,
        shutdown_grace: LONG,
    }
}

/// A body of this many 64 KiB chunks, made as it is read (like `/metrics`); 256 MiB is
/// more than loopback's socket buffers take in.
struct Chunks(u32);

impl hyper::body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

struct Running {
    addr: SocketAddr,
    connections: Connections,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server stops")
            .unwrap();
    }

    fn counts(&self) -> ConnectionCounts {
        self.connections.counts()
    }
}

/// `/held` waits for a permit of `gate`; `entered` counts the handlers that started.
#[derive(Clone)]
struct Held {
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
}

impl Held {
    fn new() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            entered: Arc::default(),
        }
    }

    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }
}

fn router(held: Held) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route(
            "/held",
            get(|| async move {
                held.entered.fetch_add(1, Ordering::SeqCst);
                let _ = held.gate.acquire().await;
                "released"
            }),
        )
        .route(
            "/large",
            get(|| async { axum::body::Body::new(Chunks(4096)) }),
        )
}

async fn start(limits: Limits, tls: Option<tokio_rustls::TlsAcceptor>) -> (Running, Held) {
    let held = Held::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut server = Server::new("test", listener, limits);
    if let Some(acceptor) = tls {
        server = server.with_tls(acceptor);
    }
    let addr = server.local_addr().unwrap();
    let connections = server.connections();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(router(held.clone()), stop.clone().cancelled_owned()));
    (
        Running {
            addr,
            connections,
            stop,
            task,
        },
        held,
    )
}

/// A plain-text server whose limits are `patient()` but for what `set` changes.
async fn start_plain(set: impl FnOnce(&mut Limits)) -> (Running, Held) {
    let mut limits = patient();
    set(&mut limits);
    start(limits, None).await
}

/// A kept-alive connection that has sent `head` and read nothing yet.
async fn sent(addr: SocketAddr, head: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head).await.unwrap();
    tcp
}

/// A request for `/held`, which answers once the test releases it.
const HELD: &str = "GET /held HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Status line and body of one request on a fresh connection.
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out))
        .await
        .expect("a response")
        .unwrap();
    parse(&out)
}

fn parse(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:.200}"));
    (status, body.to_owned())
}

async fn get_ok(addr: SocketAddr) -> (u16, String) {
    request(
        addr,
        "GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// Wait until the server closes `tcp` (EOF or reset); what it sent before.
async fn closed_by_server(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server should have closed the connection");
    seen
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let poll = Duration::from_millis(20);
    steward_testkit::eventually_async(what, PATIENCE, poll, || std::future::ready(done())).await;
}

#[tokio::test]
async fn silent_and_slowloris_clients_are_closed_at_the_header_deadline() {
    let (server, _) = start_plain(|l| l.header_read_timeout = SHORT).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let trickle = async {
        // One byte at a time, never finishing the head, for longer than the deadline.
        for b in b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed_by_server(&mut slow).await
    };
    let (silent_saw, slow_saw) = tokio::join!(closed_by_server(&mut silent), trickle);
    assert!(
        silent_saw.is_empty() && slow_saw.is_empty(),
        "closed without a response"
    );
    assert_eq!(server.counts().header_timeouts, 2);
    // A client that sends its request at once is served meanwhile and after.
    assert_eq!(get_ok(server.addr).await, (200, "ok".into()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_without_requests_is_closed_at_the_idle_deadline() {
    let (server, _) = start_plain(|l| l.idle_timeout = SHORT).await;
    let mut tcp = sent(server.addr, b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let seen = closed_by_server(&mut tcp).await;
    assert_eq!(
        parse(&seen),
        (200, "ok".into()),
        "served, then closed when idle"
    );
    assert_eq!(server.counts().idle_timeouts, 1);
    assert_eq!(server.counts().header_timeouts, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn beyond_the_budget_the_longest_waiting_connections_are_shed() {
    let (server, _) = start_plain(|l| l.max_connections = 8).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    eventually("50 connections accepted", || server.counts().accepted == 50).await;
    // The first ones were shed to make room: the server closed them.
    for tcp in &mut idle[..10] {
        closed_by_server(tcp).await;
    }
    assert_eq!(get_ok(server.addr).await, (200, "ok".into()));
    let counts = server.counts();
    assert!(counts.open <= 8 + 1, "budget and one closing: {counts:?}");
    assert!(counts.shed >= 43, "{counts:?}");
    assert_eq!(counts.refused, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn when_every_connection_is_in_a_request_a_new_one_is_refused_with_503() {
    let (server, held) = start_plain(|l| l.max_connections = 8).await;
    let addr = server.addr;
    let requests: Vec<_> = (0..8).map(|_| tokio::spawn(request(addr, HELD))).collect();
    eventually("eight requests in progress", || held.entered() == 8).await;
    // A client that has not sent anything yet reads the whole refusal; one that has may
    // see a reset instead (closing a socket with unread input resets it).
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let (status, body) = parse(&closed_by_server(&mut refused).await);
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"error":"too many connections"}"#)
    );
    assert_eq!(server.counts().refused, 1);
    assert_eq!(
        server.counts().shed,
        0,
        "a request in progress is never cut"
    );
    held.gate.add_permits(8);
    for h in requests {
        assert_eq!(h.await.unwrap(), (200, "released".into()));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused_with_413() {
    let (server, _) = start_plain(|_| ()).await;
    let small =
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(request(server.addr, small).await, (200, "hello".into()));
    let declared =
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 4096\r\n\r\n";
    let (status, body) = request(server.addr, declared).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 1024 bytes"), "{body}");
    // Without a declared length, the body is cut while it is read.
    let chunk = "x".repeat(2000);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(request(server.addr, &chunked).await.0, 413);
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_past_the_request_deadline_answers_503_and_handlers_see_the_peer() {
    let (server, _) = start_plain(|l| l.request_timeout = SHORT).await;
    let (status, body) = request(server.addr, HELD).await;
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"error":"request timed out"}"#)
    );
    let (status, peer) = request(
        server.addr,
        "GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_response_is_cut_off() {
    let (server, _) = start_plain(|l| l.request_timeout = SHORT).await;
    let _unread = sent(server.addr, b"GET /large HTTP/1.1\r\nHost: t\r\n\r\n").await;
    eventually("the exchange cut off", || {
        server.counts().exchange_timeouts == 1
    })
    .await;
    assert_eq!(server.counts().open, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_requests_finish() {
    let (server, held) = start_plain(|_| ()).await;
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let in_progress = tokio::spawn(request(addr, HELD));
    eventually("a request in progress", || held.entered() == 1).await;
    eventually("both connections held", || server.counts().open == 2).await;
    server.stop.cancel();
    closed_by_server(&mut idle).await;
    assert!(
        !in_progress.is_finished(),
        "the request in progress is waited for"
    );
    held.gate.add_permits(1);
    assert_eq!(in_progress.await.unwrap(), (200, "released".into()));
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("stopped")
        .unwrap();
}

mod tls {
    use super::*;
    use rustls::pki_types::ServerName;
    use steward_pki::CertificateAuthority;

    fn acceptor_and_client(
        dir: &std::path::Path,
    ) -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
        let ca = CertificateAuthority::init(dir.join("ca")).unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        let server = ca.issue_agent("agent.test", &[ip]).unwrap();
        let client = ca.issue_client("client").unwrap();
        let mut config = steward_pki::mtls_server_config(
            ca.cert_pem(),
            &server.cert_pem,
            server.key_pem.expose(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = steward_pki::mtls_client_config(
            ca.cert_pem(),
            &client.cert_pem,
            client.key_pem.expose(),
        )
        .unwrap();
        (
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    #[tokio::test]
    async fn no_client_hello_and_slowloris_over_tls_are_closed_at_their_deadlines() {
        let dir = tempfile_dir();
        let (acceptor, connector) = acceptor_and_client(dir.path());
        let (server, _) = start(
            Limits {
                handshake_timeout: SHORT,
                header_read_timeout: SHORT,
                ..patient()
            },
            Some(acceptor),
        )
        .await;
        let name = ServerName::try_from("127.0.0.1").unwrap();

        let mut mute = TcpStream::connect(server.addr).await.unwrap();
        assert!(closed_by_server(&mut mute).await.is_empty());
        assert_eq!(server.counts().handshake_timeouts, 1);

        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut slow = connector.connect(name.clone(), tcp).await.unwrap();
        slow.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "closed");
        assert!(rest.is_empty());
        assert_eq!(server.counts().header_timeouts, 1);

        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut good = connector.connect(name, tcp).await.unwrap();
        good.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = good.read_to_end(&mut out).await;
        let (status, peer) = parse(&out);
        assert_eq!(status, 200);
        assert!(peer.starts_with("127.0.0.1:"), "{peer}");
        server.shutdown().await;
    }

    fn tempfile_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
