//! The real prober: HTTPS through kept-alive pooled connections (hyper over rustls, the
//! server's hostname as SNI and certificate name), or an HL7 MLLP round trip. Every step
//! runs against one deadline, the check's `timeout`, so a peer that hangs anywhere costs
//! the probe exactly that and nothing more.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use steward_model::StatusRanges;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::error::{local_exhaustion, ProbeError, ProbePhase, TlsFailure};
use super::pool::{Conn, Pool, PoolKey, PoolLimits};
use super::{ProbeResult, ProbeTarget, Prober};

/// More body than this is not read: health pages are small, and the match is a substring.
const MAX_BODY: usize = 256 * 1024;
/// The accepted statuses when a check names none (the catalog names one for every kind).
const DEFAULT_ACCEPT: &str = "200-399";

pub struct NetworkProber {
    /// Replaced whole when the trusted CAs change ([`Prober::trust`]).
    tls: RwLock<TlsConnector>,
    pool: Pool,
}

impl std::fmt::Debug for NetworkProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkProber")
            .field("idle", &self.pool.idle())
            .finish_non_exhaustive()
    }
}

fn connector(roots: &[String]) -> Result<TlsConnector, steward_pki::PkiError> {
    let mut config = steward_pki::client_config(roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// What one HTTPS exchange gave.
#[derive(Default)]
struct Exchange {
    status: Option<u16>,
    not_after: Option<OffsetDateTime>,
    reused: bool,
}

impl NetworkProber {
    /// Trusting the PEM CA certificates `roots`.
    pub fn new(roots: &[String]) -> Result<Self, steward_pki::PkiError> {
        Self::with_limits(roots, PoolLimits::default())
    }

    pub fn with_limits(
        roots: &[String],
        limits: PoolLimits,
    ) -> Result<Self, steward_pki::PkiError> {
        Ok(Self {
            tls: RwLock::new(connector(roots)?),
            pool: Pool::new(limits),
        })
    }

    /// Idle kept-alive connections held now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    async fn address(
        &self,
        target: &ProbeTarget,
        deadline: Instant,
    ) -> Result<SocketAddr, ProbeError> {
        if let Some(ip) = target.connect_ip {
            return Ok(SocketAddr::new(ip, target.port));
        }
        let lookup = tokio::net::lookup_host((target.hostname.as_str(), target.port));
        let unresolved = || ProbeError::Resolve(target.hostname.clone());
        timeout_at(deadline, lookup)
            .await
            .map_err(|_| timeout(ProbePhase::Resolve, target))?
            .map_err(|e| match local_exhaustion(&e) {
                true => ProbeError::LocalResources(e.to_string()),
                false => unresolved(),
            })?
            .next()
            .ok_or_else(unresolved)
    }

    async fn dial(
        &self,
        key: &PoolKey,
        target: &ProbeTarget,
        deadline: Instant,
    ) -> Result<Conn, ProbeError> {
        let tcp = timeout_at(deadline, TcpStream::connect(key.addr))
            .await
            .map_err(|_| timeout(ProbePhase::Connect, target))?
            .map_err(|e| ProbeError::connect(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(key.name.clone()).map_err(|_| {
            ProbeError::Tls(TlsFailure::Other(format!("invalid TLS name {}", key.name)))
        })?;
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let tls = timeout_at(deadline, tls.connect(name, tcp))
            .await
            .map_err(|_| timeout(ProbePhase::TlsHandshake, target))?
            .map_err(|e| ProbeError::Tls(TlsFailure::from_io(&e, &key.name)))?;
        let not_after = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
            .map(|(_, cert)| cert.validity().not_after.to_datetime());
        // No I/O happens here: the handshake only sets the connection up.
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn::new(sender, not_after, driver))
    }

    /// GET `path` on `conn`; the connection goes back to the pool if the exchange ended
    /// cleanly. `Err(None)`: a reused connection was closed under the request (the peer's
    /// keep-alive timeout); the caller dials afresh.
    async fn exchange(
        &self,
        key: &PoolKey,
        mut conn: Conn,
        target: &ProbeTarget,
        path: &str,
        deadline: Instant,
        reused: bool,
    ) -> Result<(Exchange, Result<(), ProbeError>), Option<ProbeError>> {
        let mut exchange = Exchange {
            not_after: conn.not_after,
            reused,
            ..Exchange::default()
        };
        let request = Request::get(path)
            .header(HOST, format!("{}:{}", target.hostname, target.port))
            .header(
                USER_AGENT,
                concat!("steward-prober/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| Some(ProbeError::Http(e.to_string())))?;
        let response = match timeout_at(deadline, conn.sender.send_request(request)).await {
            Err(_) => return Err(Some(timeout(ProbePhase::Response, target))),
            Ok(Err(e)) if reused && (e.is_canceled() || e.is_incomplete_message()) => {
                return Err(None)
            }
            Ok(Err(e)) => return Err(Some(ProbeError::Http(http_text(&e)))),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        exchange.status = Some(status);
        // Read the whole body even without a match to make: only then can the
        // connection carry the next request.
        let body = match timeout_at(
            deadline,
            Limited::new(response.into_body(), MAX_BODY).collect(),
        )
        .await
        {
            Err(_) => return Ok((exchange, Err(timeout(ProbePhase::Body, target)))),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok((exchange, Err(ProbeError::BodyTooLarge(MAX_BODY))))
            }
            Ok(Err(e)) => return Ok((exchange, Err(ProbeError::Http(e.to_string())))),
            Ok(Ok(body)) => body.to_bytes(),
        };
        self.pool.checkin(key.clone(), conn);
        Ok((exchange, verdict(target, status, &body)))
    }

    async fn https(&self, target: &ProbeTarget, path: &str) -> (Exchange, Result<(), ProbeError>) {
        let deadline = Instant::now() + target.check.timeout;
        let addr = match self.address(target, deadline).await {
            Ok(addr) => addr,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        let key = PoolKey {
            addr,
            name: target.hostname.clone(),
        };
        if let Some(conn) = self.pool.checkout(&key) {
            match self
                .exchange(&key, conn, target, path, deadline, true)
                .await
            {
                Ok(done) => return done,
                Err(Some(e)) => return (Exchange::default(), Err(e)),
                Err(None) => {}
            }
        }
        let conn = match self.dial(&key, target, deadline).await {
            Ok(conn) => conn,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        let not_after = conn.not_after;
        match self
            .exchange(&key, conn, target, path, deadline, false)
            .await
        {
            Ok(done) => done,
            Err(e) => {
                let e = e.unwrap_or_else(|| ProbeError::Http("connection closed".into()));
                let exchange = Exchange {
                    not_after,
                    ..Exchange::default()
                };
                (exchange, Err(e))
            }
        }
    }

    async fn mllp(&self, target: &ProbeTarget) -> Result<(), ProbeError> {
        let timeout = target.check.timeout;
        let deadline = Instant::now() + timeout;
        let addr = self.address(target, deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        steward_hl7::probe(addr, left)
            .await
            .map(drop)
            .map_err(|e| ProbeError::hl7(&e, timeout))
    }
}

#[async_trait]
impl Prober for NetworkProber {
    fn trust(&self, roots: &[String]) -> Result<(), steward_pki::PkiError> {
        let fresh = connector(roots)?;
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.pool.clear();
        Ok(())
    }

    async fn probe(&self, target: &ProbeTarget) -> ProbeResult {
        let started = Instant::now();
        let (exchange, outcome) = match target.check.path.as_deref() {
            Some(path) => self.https(target, path).await,
            None => (Exchange::default(), self.mllp(target).await),
        };
        ProbeResult {
            duration: started.elapsed(),
            http_status: exchange.status,
            cert_not_after: exchange.not_after,
            reused_connection: exchange.reused,
            outcome,
        }
    }
}

/// The status and body against the check.
fn verdict(target: &ProbeTarget, status: u16, body: &[u8]) -> Result<(), ProbeError> {
    let accepted = target
        .check
        .accept_status
        .clone()
        .or_else(|| StatusRanges::parse(DEFAULT_ACCEPT).ok());
    if let Some(accepted) = accepted {
        if !accepted.contains(status) {
            return Err(ProbeError::Status {
                status,
                accepted: accepted.to_string(),
            });
        }
    }
    if let Some(expected) = &target.check.response_match {
        if !contains(body, expected.as_bytes()) {
            return Err(ProbeError::BodyMismatch(expected.clone()));
        }
    }
    Ok(())
}

fn timeout(phase: ProbePhase, target: &ProbeTarget) -> ProbeError {
    ProbeError::Timeout {
        phase,
        after: target.check.timeout,
    }
}

/// hyper's text plus its cause ("connection closed before message completed", "invalid
/// HTTP version parsed").
fn http_text(error: &hyper::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
