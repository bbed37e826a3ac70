//! The real prober: HTTPS through steward's one HTTPS client (steward-https-client:
//! kept-alive connections pooled per address and TLS name, the server's hostname as SNI
//! and certificate name), or an HL7 MLLP round trip. Every step
//! runs against one deadline, the check's `timeout`, so a peer that hangs anywhere costs
//! the probe exactly that and nothing more.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, HOST, USER_AGENT};
use hyper::{Request, Uri};
use steward_https_client::{resolve, Exchange, HttpsClient, HttpsError, PoolLimits};
use steward_model::StatusRanges;
use tokio::time::Instant;

use super::error::ProbeError;
use super::{ProbeResult, ProbeTarget, Prober};

/// More body than this is not read: health pages are small, and the match is a substring.
const MAX_BODY: usize = 256 * 1024;
/// The accepted statuses when a check names none (the catalog names one for every kind).
const DEFAULT_ACCEPT: &str = "200-399";
const AGENT: &str = concat!("steward-prober/", env!("CARGO_PKG_VERSION"));

/// Idle probe connections kept: one per service at most (the monitor never probes a
/// service twice at once, so a second one would never be used), and few in all. An idle
/// TLS connection costs 20-30 KB (hyper's request channel and read buffer, rustls' state,
/// its task) and a descriptor; keeping one per service made the pool the largest share of
/// the daemon's heap (docs/scale.md, "Memory"). A probe without one dials again.
pub const PROBE_POOL: PoolLimits = PoolLimits {
    per_key: 1,
    total: 256,
    max_idle: Duration::from_secs(30),
    max_age: Duration::from_secs(300),
    sessions: PROBE_SESSIONS,
};

/// TLS sessions kept to resume, one per probed (address, TLS name): a probe that dials
/// again (most of them: few connections are kept) resumes its service's session, which
/// skips the certificate chain and its verification on both ends. 1,000 servers x 11
/// services with room; about 1.2 KB each with a small ECDSA certificate (docs/scale.md, "Probing CPU").
pub const PROBE_SESSIONS: usize = 16_384;

pub struct NetworkProber {
    /// The trusted CAs are replaced through it ([`Prober::trust`]).
    http: HttpsClient,
}

impl std::fmt::Debug for NetworkProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkProber")
            .field("idle", &self.http.idle_connections())
            .finish_non_exhaustive()
    }
}

impl NetworkProber {
    /// Trusting the PEM CA certificates `roots`, keeping [`PROBE_POOL`] idle.
    pub fn new(roots: &[String]) -> Result<Self, steward_pki::PkiError> {
        Self::with_limits(roots, PROBE_POOL)
    }

    pub fn with_limits(
        roots: &[String],
        limits: PoolLimits,
    ) -> Result<Self, steward_pki::PkiError> {
        Ok(Self {
            http: HttpsClient::trusting(roots, limits)?,
        })
    }

    /// Idle kept-alive connections held now.
    pub fn idle_connections(&self) -> usize {
        self.http.idle_connections()
    }

    /// The address probed: `connect_ip`, or the first the hostname resolves to.
    async fn address(
        &self,
        target: &ProbeTarget,
        deadline: Instant,
    ) -> Result<SocketAddr, ProbeError> {
        if let Some(ip) = target.connect_ip {
            return Ok(SocketAddr::new(ip, target.port));
        }
        resolve(&target.hostname, target.port, deadline)
            .await
            .map(|addrs| addrs[0])
            .map_err(|e| ProbeError::https(e, target.check.timeout))
    }

    async fn https(&self, target: &ProbeTarget, path: &str) -> (Exchange, Result<(), ProbeError>) {
        let deadline = Instant::now() + target.check.timeout;
        let addr = match self.address(target, deadline).await {
            Ok(addr) => addr,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        // The hostname is the TLS name and the `Host` header; `addr` is where it is sent.
        // The request is built in origin form, as it goes out: a path and a `Host`, no URL
        // to format and parse again, and built anew for a retry rather than copied.
        let build = || {
            let host = format!("{}:{}", target.hostname, target.port);
            let host = HeaderValue::try_from(host)
                .map_err(|e| HttpsError::InvalidRequest(e.to_string()))?;
            let path =
                Uri::try_from(path).map_err(|e| HttpsError::InvalidRequest(e.to_string()))?;
            // Not http's `Builder`: it moves the whole request head through every call.
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = path;
            let headers = request.headers_mut();
            headers.reserve(2);
            headers.insert(HOST, host);
            headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
            Ok(request)
        };
        let (exchange, response) = self
            .http
            .send_to(&[addr], &target.hostname, build, MAX_BODY, deadline)
            .await;
        let outcome = response
            .map_err(|e| ProbeError::https(e, target.check.timeout))
            .and_then(|r| verdict(target, r.status.as_u16(), &r.body));
        (exchange, outcome)
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
        self.http.set_tls(steward_pki::client_config(roots)?);
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
    let default;
    let accepted = match &target.check.accept_status {
        Some(accepted) => Some(accepted),
        None => {
            default = StatusRanges::parse(DEFAULT_ACCEPT).ok();
            default.as_ref()
        }
    };
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
