//! Test support: a CA and leaf certificates made by rcgen, a lab service on 127.0.0.1
//! ports chosen by the OS, and a small HTTPS/HTTP client that reports the served
//! certificate.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HOST;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use steward_lab::{LabService, LabServiceArgs, Timeouts};
use steward_model::catalog::ServiceKind;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

/// A leaf certificate and key, PEM, plus the DER the server will present.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "steward lab test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
        }
    }

    pub fn leaf(&self, common_name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn client(&self) -> Client {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }
}

pub struct CertFiles {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn new(leaf: &Leaf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        Self { dir, cert, key }
    }

    /// Replaces both files in place, certificate first, as a careless writer would.
    pub fn overwrite(&self, cert_pem: &str, key_pem: &str) {
        std::fs::write(&self.cert, cert_pem).unwrap();
        std::fs::write(&self.key, key_pem).unwrap();
    }

    /// Replaces both files by renaming new files over them.
    pub fn rename_over(&self, cert_pem: &str, key_pem: &str) {
        for (path, text) in [(&self.key, key_pem), (&self.cert, cert_pem)] {
            let tmp = self.dir.path().join(".incoming");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

pub fn args(kind: ServiceKind, files: Option<&CertFiles>) -> LabServiceArgs {
    LabServiceArgs {
        kind,
        bind: "127.0.0.1".parse().unwrap(),
        ports: vec![0; kind.port_count()],
        cert: files.map(|f| f.cert.clone()),
        key: files.map(|f| f.key.clone()),
        connection_strings: None,
        release: Some("7.1.0-lab".to_owned()),
    }
}

/// A lab service running in the background until `stop`.
pub struct Running {
    pub addrs: Vec<SocketAddr>,
    pub service_status: Option<tokio::sync::watch::Receiver<steward_lab::CertStatus>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), steward_lab::LabError>>,
}

impl Running {
    pub async fn start(args: LabServiceArgs) -> Self {
        Self::start_with(args, Timeouts::default()).await
    }

    pub async fn start_with(args: LabServiceArgs, timeouts: Timeouts) -> Self {
        let service = LabService::bind(args)
            .await
            .unwrap()
            .with_timeouts(timeouts);
        let addrs = service.local_addrs();
        let service_status = service.certificate_status();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(async {
            let _ = rx.await;
        }));
        Self {
            addrs,
            service_status,
            shutdown: Some(tx),
            task,
        }
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), steward_lab::LabError> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
    }

    /// Waits until the certificate status satisfies `f`.
    pub async fn wait_cert(&mut self, f: impl FnMut(&steward_lab::CertStatus) -> bool) {
        let rx = self.service_status.as_mut().unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(f))
            .await
            .expect("certificate status reached in time")
            .unwrap();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
    /// The leaf certificate the server presented (empty over plain HTTP); on a resumed
    /// session, the one of the handshake it resumes.
    pub peer_cert: Vec<u8>,
    /// Whether the TLS handshake resumed a session this client kept.
    pub resumed: bool,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Client {
    connector: TlsConnector,
}

impl Client {
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<Reply, BoxError> {
        self.request(addr, Method::GET, path).await
    }

    /// One request on a new TLS connection.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
    ) -> Result<Reply, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = self
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let state = tls.get_ref().1;
        let peer_cert = state
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let resumed = state.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let mut reply = send(tls, addr, method, path).await?;
        reply.peer_cert = peer_cert;
        reply.resumed = resumed;
        Ok(reply)
    }

    /// A bare TLS stream, for writing requests byte by byte.
    pub async fn raw_tls(
        &self,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        Ok(self
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?)
    }

    /// A kept-alive TLS connection for several requests.
    pub async fn connect(&self, addr: SocketAddr) -> Result<KeptAlive, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = self
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(KeptAlive {
            sender,
            addr,
            peer_cert,
        })
    }
}

pub struct KeptAlive {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    pub peer_cert: Vec<u8>,
}

impl KeptAlive {
    pub async fn get(&mut self, path: &str) -> Result<Reply, BoxError> {
        self.sender.ready().await?;
        let req = request(self.addr, Method::GET, path);
        let resp = self.sender.send_request(req).await?;
        reply(resp).await
    }
}

/// One plain-HTTP request on a new connection.
pub async fn plain_get(addr: SocketAddr, path: &str) -> Result<Reply, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    send(tcp, addr, Method::GET, path).await
}

fn request(addr: SocketAddr, method: Method, path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .body(Empty::new())
        .unwrap()
}

async fn send<I>(io: I, addr: SocketAddr, method: Method, path: &str) -> Result<Reply, BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(request(addr, method, path)).await?;
    reply(resp).await
}

async fn reply(resp: hyper::Response<hyper::body::Incoming>) -> Result<Reply, BoxError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        peer_cert: Vec::new(),
        resumed: false,
    })
}
