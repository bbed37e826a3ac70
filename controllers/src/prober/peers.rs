//! Peers for the prober's tests: real lab services, and servers that misbehave on purpose
//! (garbage, silence, slowness, a body that never ends). Each listens on loopback and
//! counts the connections it accepted.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use steward_model::snapshot::HealthCheck;
use steward_model::ServiceKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ProbeTarget;

pub(super) const HOST: &str = "app1.example.eng";
/// Also on the peers' certificate: a second TLS name for the same address.
pub(super) const ALIAS: &str = "alias.example.eng";

/// A CA and a server certificate for `HOST` and `ALIAS` issued by it.
pub(super) struct Pki {
    _dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub not_after: time::OffsetDateTime,
    pub acceptor: TlsAcceptor,
}

pub(super) fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
    let issued = ca
        .issue_server(
            &[HOST.to_owned(), ALIAS.to_owned()],
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
    let (cert, key) = issued.write_pair(dir.path(), "server").unwrap();
    let config = steward_pki::server_config(&issued.cert_pem, issued.key_pem.expose()).unwrap();
    Pki {
        ca_pem: ca.cert_pem().to_owned(),
        cert,
        key,
        not_after: issued.not_after,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        _dir: dir,
    }
}

impl Pki {
    /// An acceptor with the same certificate and a session store of its own, as each
    /// service on a server is a process of its own that resumes only what it issued.
    pub fn separate_acceptor(&self) -> TlsAcceptor {
        let cert = std::fs::read_to_string(&self.cert).unwrap();
        let key = std::fs::read_to_string(&self.key).unwrap();
        TlsAcceptor::from(Arc::new(steward_pki::server_config(&cert, &key).unwrap()))
    }
}

/// A real lab service of `kind` (the `steward lab-service` code) on loopback.
pub(super) struct Lab {
    pub addrs: Vec<SocketAddr>,
    pub stop: tokio_util::sync::CancellationToken,
}

pub(super) async fn lab(pki: &Pki, kind: ServiceKind, idle: Option<Duration>) -> Lab {
    let args = steward_lab::LabServiceArgs {
        kind,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: vec![0; kind.port_count()],
        cert: Some(pki.cert.clone()),
        key: Some(pki.key.clone()),
        connection_strings: None,
        release: Some("6.12.1".into()),
    };
    let mut service = steward_lab::LabService::bind(args).await.unwrap();
    if let Some(idle) = idle {
        service = service.with_timeouts(steward_lab::Timeouts {
            idle,
            ..steward_lab::Timeouts::default()
        });
    }
    let addrs = service.local_addrs();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(service.serve(stop.clone().cancelled_owned()));
    Lab { addrs, stop }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a scripted peer does with each connection.
#[derive(Clone)]
pub(super) enum Script {
    /// HTTP/1.1 over TLS, kept alive, answering every request with the status held in
    /// the cell (changeable while running) and this body.
    Respond(Arc<AtomicU16>, &'static str),
    /// Closes the connection right after accepting it.
    Hangup,
    /// Answers the ClientHello with bytes that are not TLS.
    Garbage,
    /// Accepts and never says anything.
    Silent,
    /// Completes TLS, then answers with something that is not HTTP.
    TlsGarbage,
    /// Completes TLS and sends headers; the body (no length) never ends and the
    /// connection never closes.
    NeverEnds,
    /// Completes TLS, reads the request, answers only after this long.
    Slow(Duration),
    /// MLLP: answers every message with this frame's content.
    Mllp(&'static str),
    /// Completes TLS and answers the first request of a connection (200, `Success`, kept
    /// alive); reading the next one, it closes the connection without answering, as a
    /// server closing an idle connection just as a request comes. With `only_first`, only
    /// the peer's very first request is answered. `heads` counts the requests read.
    CloseUnder {
        heads: Arc<AtomicUsize>,
        only_first: bool,
    },
}

pub(super) fn status(code: u16) -> Arc<AtomicU16> {
    Arc::new(AtomicU16::new(code))
}

pub(super) struct Peer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// TLS handshakes that resumed a session (`Script::Respond`).
    pub resumed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) async fn peer(script: Script, acceptor: &TlsAcceptor) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let (count, resumptions) = (accepted.clone(), resumed.clone());
    let acceptor = acceptor.clone();
    let task = tokio::spawn(async move {
        // Dropped (so aborted) with the accept loop.
        let mut held = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (script, acceptor) = (script.clone(), acceptor.clone());
            held.spawn(connection(stream, script, acceptor, resumptions.clone()));
        }
    });
    Peer {
        addr,
        accepted,
        resumed,
        task,
    }
}

async fn connection(
    mut stream: TcpStream,
    script: Script,
    acceptor: TlsAcceptor,
    resumed: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 4096];
    match script {
        Script::Hangup => {}
        Script::Silent => std::future::pending().await,
        Script::Garbage => {
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            std::future::pending().await
        }
        Script::Mllp(reply) => loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) if buf[..n].contains(&0x1c) => {
                    let frame = format!("\x0b{reply}\x1c\r");
                    let _ = stream.write_all(frame.as_bytes()).await;
                }
                Ok(_) => {}
            }
        },
        Script::Respond(code, body) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed.fetch_add(1, Ordering::SeqCst);
            }
            let service = service_fn(move |_req| {
                let code = StatusCode::from_u16(code.load(Ordering::SeqCst)).unwrap();
                async move {
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *response.status_mut() = code;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
        Script::CloseUnder { heads, only_first } => {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let mut answered = false;
            while request_head(&mut tls, &mut buf).await {
                let first = heads.fetch_add(1, Ordering::SeqCst) == 0;
                if answered || (only_first && !first) {
                    break;
                }
                answered = true;
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nSuccess";
                if tls.write_all(ok).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            // close_notify, then FIN: the orderly close of a kept-alive connection.
            let _ = tls.shutdown().await;
        }
        Script::TlsGarbage | Script::NeverEnds | Script::Slow(_) => {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let _ = tls.read(&mut buf).await;
            let reply: &[u8] = match script {
                Script::TlsGarbage => b"\x00\x01garbage, not HTTP\r\n\r\n",
                Script::NeverEnds => {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nSuccess, and"
                }
                Script::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nSuccess"
                }
                _ => unreachable!("matched above"),
            };
            let _ = tls.write_all(reply).await;
            let _ = tls.flush().await;
            std::future::pending().await
        }
    }
}

/// Reads one request head (a GET: no body) up to its blank line; false at the end of the
/// stream.
async fn request_head<S: AsyncReadExt + Unpin>(stream: &mut S, buf: &mut [u8]) -> bool {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A target at `port` on loopback, named `HOST`, with the catalog's test of `kind` and
/// `timeout`.
pub(super) fn target(kind: ServiceKind, port: u16, timeout: Duration) -> ProbeTarget {
    let mut check = HealthCheck::catalog_default(kind);
    check.timeout = timeout;
    ProbeTarget {
        kind,
        hostname: HOST.into(),
        connect_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port,
        check,
    }
}
