//! The daemon's client for the agent API: HTTPS with mutual TLS through steward's one
//! HTTPS client stack (steward-https-client, which the health prober uses too), a deadline
//! per request, typed methods per endpoint and errors that say what went wrong without
//! ever panicking on what an agent (or an impostor) sends back.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use steward_https_client::{HttpsClient, HttpsError, PoolLimits};
use steward_model::ServiceKind;
use steward_pki::PrivateKeyPem;

use crate::api::{
    CertificateRequest, CertificateStatus, ConnectionStrings, ConnectionStringsUpdate, ErrorBody,
    FencingStatus, HostInfo, InstallRequest, InstallResponse, RemnantCleanup, ServiceInfo,
    ServiceLogs, UninstallResponse,
};

/// Responses larger than this are not an agent talking.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
const SNIPPET_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid agent URL `{0}`: expected https://HOST:PORT")]
    InvalidUrl(String),
    #[error("connection refused")]
    ConnectRefused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        /// The agent's error code (`ErrorBody.error`) when the body had one.
        code: Option<String>,
        /// The agent's message, or a sanitised snippet of whatever the body was.
        message: String,
    },
    #[error("not a valid HTTP response: {0}")]
    Protocol(String),
    #[error("invalid response body: {0}")]
    InvalidBody(String),
    #[error("connection failed: {0}")]
    Transport(String),
    /// Controller HA: this daemon does not lead (now), so it sends no change; the text
    /// says who does.
    #[error("not sent: {0}")]
    NotLeader(String),
}

/// Where a client's changes get the leader epoch they carry (controller HA).
pub trait EpochSource: Send + Sync {
    /// The epoch to send with a change now, or why this daemon must not send one (it
    /// does not lead, or no longer: the text names the leader when known). Asked on
    /// every change, right before it is sent.
    fn acting_epoch(&self) -> Result<u64, String>;
}

impl ClientError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::ConnectRefused => "connect_refused",
            Self::Connect(_) => "connect",
            Self::Tls(_) => "tls",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "http_status",
            Self::Protocol(_) => "protocol",
            Self::InvalidBody(_) => "invalid_body",
            Self::Transport(_) => "transport",
            Self::NotLeader(_) => "not_leader",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The agent answered 404: the service (or setting) is not there.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

#[derive(Clone)]
pub struct AgentClient {
    base: String,
    http: Arc<HttpsClient>,
    timeout: Duration,
    /// `None`: a single daemon, changes carry no epoch.
    epochs: Option<Arc<dyn EpochSource>>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("fenced", &self.epochs.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client for the agent at `base_url` (`https://host:port`), with `tls` (normally
    /// [`steward_pki::mtls_client_config`]) and a deadline for each whole request.
    pub fn new(
        base_url: &str,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::sharing(base_url, Arc::new(agent_https(tls)), timeout)
    }

    /// A client for the agent at `base_url` that sends through `http` (from
    /// [`agent_https`]): every client made with the same `http` draws on one pool of
    /// kept-alive connections, bounded in all ([`AGENT_POOL`]), however many agents there
    /// are. A daemon makes one `http` for all of its agents.
    pub fn sharing(
        base_url: &str,
        http: Arc<HttpsClient>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let base = parse_base(base_url)?;
        Ok(Self {
            base,
            http,
            timeout,
            epochs: None,
        })
    }

    /// Idle kept-alive connections to the agent held now.
    pub fn idle_connections(&self) -> usize {
        self.http.idle_connections()
    }

    /// Fence every change (any method but GET) with the epoch `source` gives; when it
    /// gives none, the change is not sent at all ([`ClientError::NotLeader`]).
    pub fn with_epochs(mut self, source: Arc<dyn EpochSource>) -> Self {
        self.epochs = Some(source);
        self
    }

    /// A mutual-TLS client from PEM material: the steward CA, and the daemon's client
    /// certificate and key (`CertificateAuthority::issue_client`).
    pub fn with_mtls(
        base_url: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let tls = steward_pki::mtls_client_config(ca_pem, cert_pem, key_pem.expose())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Self::new(base_url, tls, timeout)
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn host(&self) -> Result<HostInfo, ClientError> {
        self.call(Method::GET, "/v1/host", None::<&()>).await
    }

    pub async fn services(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        self.call(Method::GET, "/v1/services", None::<&()>).await
    }

    pub async fn service(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.call(Method::GET, &format!("/v1/services/{kind}"), None::<&()>)
            .await
    }

    /// Install, reinstall or confirm a service (idempotent).
    pub async fn install(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
    ) -> Result<InstallResponse, ClientError> {
        self.call(Method::PUT, &format!("/v1/services/{kind}"), Some(request))
            .await
    }

    /// Uninstall; with `force`, forget the service even if its files cannot be removed.
    pub async fn uninstall(
        &self,
        kind: ServiceKind,
        force: bool,
    ) -> Result<UninstallResponse, ClientError> {
        let path = if force {
            format!("/v1/services/{kind}?force=true")
        } else {
            format!("/v1/services/{kind}")
        };
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// Install without starting (kept stopped, held, like after [`Self::stop`]).
    pub async fn install_held(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
    ) -> Result<InstallResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/services/{kind}?held=true"),
            Some(request),
        )
        .await
    }

    /// Stop the service and keep it stopped (across agent restarts) until [`Self::start`].
    pub async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{kind}/stop"),
            None::<&()>,
        )
        .await
    }

    /// Run a service stopped through [`Self::stop`] again.
    pub async fn start(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{kind}/start"),
            None::<&()>,
        )
        .await
    }

    pub async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/services/{kind}/restart"),
            None::<&()>,
        )
        .await
    }

    pub async fn logs(
        &self,
        kind: ServiceKind,
        tail_bytes: u64,
    ) -> Result<ServiceLogs, ClientError> {
        let path = format!("/v1/services/{kind}/logs?tailBytes={tail_bytes}");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// The installed server certificate, `None` if there is none.
    pub async fn certificate(&self) -> Result<Option<CertificateStatus>, ClientError> {
        none_if_not_found(self.call(Method::GET, "/v1/certificate", None::<&()>).await)
    }

    pub async fn install_certificate(
        &self,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
    ) -> Result<CertificateStatus, ClientError> {
        let request = CertificateRequest {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.clone(),
        };
        self.call(Method::PUT, "/v1/certificate", Some(&request))
            .await
    }

    /// The stored connection strings, `None` if never set.
    pub async fn connection_strings(&self) -> Result<Option<ConnectionStrings>, ClientError> {
        none_if_not_found(
            self.call(Method::GET, "/v1/connection-strings", None::<&()>)
                .await,
        )
    }

    pub async fn set_connection_strings(
        &self,
        strings: &ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, ClientError> {
        self.call(Method::PUT, "/v1/connection-strings", Some(strings))
            .await
    }

    pub async fn cleanup_remnants(&self) -> Result<RemnantCleanup, ClientError> {
        self.call(Method::POST, "/v1/remnants/cleanup", None::<&()>)
            .await
    }

    /// The highest leader epoch the agent has obeyed, and whether it is in HA mode.
    pub async fn fencing(&self) -> Result<FencingStatus, ClientError> {
        self.call(Method::GET, "/v1/fencing", None::<&()>).await
    }

    /// Tell the agent this daemon's epoch (a new leader does so first, so that its
    /// predecessor is refused even where the new leader has nothing to change).
    pub async fn announce_epoch(&self) -> Result<FencingStatus, ClientError> {
        self.call(Method::PUT, "/v1/fencing", None::<&()>).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).expect("request types serialize")),
            None => Bytes::new(),
        };
        let mut request = Request::builder();
        if method != Method::GET {
            if let Some(source) = &self.epochs {
                let epoch = source.acting_epoch().map_err(ClientError::NotLeader)?;
                request = request.header(crate::fencing::EPOCH_HEADER, epoch);
            }
        }
        let request = request
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("steward/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (_, response) = self.http.send(request, MAX_RESPONSE_BYTES, deadline).await;
        let (status, bytes) = response
            .map(|r| (r.status, r.body))
            .map_err(|e| client_error(e, self.timeout))?;
        if !status.is_success() {
            return Err(status_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidBody(e.to_string()))
    }
}

fn none_if_not_found<T>(result: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_base(base_url: &str) -> Result<String, ClientError> {
    let invalid = || ClientError::InvalidUrl(base_url.chars().take(200).collect());
    let uri: Uri = base_url.parse().map_err(|_| invalid())?;
    let authority = uri.authority().ok_or_else(invalid)?;
    let plain_path = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if uri.scheme_str() != Some("https") || !plain_path || authority.as_str().contains('@') {
        return Err(invalid());
    }
    Ok(format!("https://{authority}"))
}

fn status_error(status: StatusCode, body: &[u8]) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (
            Some(snippet(e.error.as_bytes())),
            snippet(e.message.as_bytes()),
        ),
        Err(_) => (None, snippet(body)),
    };
    ClientError::Status {
        status: status.as_u16(),
        code,
        message,
    }
}

/// A bounded, printable excerpt of untrusted bytes (for logs and status conditions).
fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Kept-alive connections to agents: two stay idle per agent (a reconcile and one more
/// call at once); a burst of more calls dials for the rest and closes those after it. An
/// idle mutual-TLS connection costs tens of KB and a descriptor, so two per agent for
/// 1,000 agents would be the largest share of the daemon's memory: at most 256 stay idle
/// in all. When the pool is full a connection coming back is closed rather than one kept
/// being evicted: the controllers visit servers in turn, and for a cycle longer than the
/// pool, evicting the least recently used would keep exactly the connections that are
/// needed last (no reuse at all); keeping the first ones reuses them every turn. A call to
/// an agent without one dials again (offering to resume its TLS session). Idle ones close
/// after 30 s, below the agent's keep-alive.
pub const AGENT_POOL: PoolLimits = PoolLimits {
    per_key: 2,
    total: 256,
    max_idle: Duration::from_secs(30),
    max_age: Duration::from_secs(300),
    // The TLS session a dial resumes: one per agent, about 1.2 KB each.
    sessions: 1_024,
};

/// The HTTPS client agent clients share (see [`AgentClient::sharing`]), with `tls`
/// (normally [`steward_pki::mtls_client_config`]) and [`AGENT_POOL`].
pub fn agent_https(tls: rustls::ClientConfig) -> HttpsClient {
    HttpsClient::new(tls, AGENT_POOL)
}

/// The HTTPS client's failure in the agent client's words (`timeout` is the deadline
/// that fired, whatever phase it caught).
fn client_error(error: HttpsError, timeout: Duration) -> ClientError {
    match error {
        HttpsError::ConnectionRefused => ClientError::ConnectRefused,
        HttpsError::LocalResources(why) | HttpsError::Connect(why) => ClientError::Connect(why),
        HttpsError::Resolve(host) => ClientError::Connect(format!("cannot resolve {host}")),
        HttpsError::Timeout(_) => ClientError::Timeout(timeout),
        HttpsError::Tls(failure) => ClientError::Tls(failure.to_string()),
        HttpsError::Malformed(why) => ClientError::Protocol(why),
        HttpsError::Broken(why) => ClientError::Transport(why),
        HttpsError::BodyTooLarge(limit) => {
            ClientError::InvalidBody(format!("response larger than {limit} bytes"))
        }
        HttpsError::InvalidRequest(why) => ClientError::InvalidUrl(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base("https://app1.example.eng:7443").unwrap(),
            "https://app1.example.eng:7443"
        );
        assert_eq!(
            parse_base("https://127.0.0.2:7443/").unwrap(),
            "https://127.0.0.2:7443"
        );
        for bad in [
            "http://a:1",
            "https://a:1/v1",
            "a:1",
            "https://u:p@a:1",
            "",
            "https://a:1/?x=1",
        ] {
            assert_eq!(
                parse_base(bad).unwrap_err().metric_label(),
                "invalid_url",
                "{bad}"
            );
        }
    }

    #[test]
    fn status_errors_keep_the_agents_message_or_a_clean_snippet() {
        let e = status_error(
            StatusCode::CONFLICT,
            br#"{"error":"conflict","message":"port 7001 is already used"}"#,
        );
        assert_eq!(e.status(), Some(409));
        assert!(matches!(&e, ClientError::Status { code: Some(c), .. } if c == "conflict"));
        let junk = vec![b'\x07'; 10_000];
        let e = status_error(StatusCode::BAD_GATEWAY, &junk);
        let ClientError::Status { message, .. } = e else {
            panic!()
        };
        assert!(message.len() <= SNIPPET_CHARS);
        assert!(!message.chars().any(char::is_control));
    }
}
