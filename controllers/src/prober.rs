//! Health probes, as blackbox_exporter would run them: an HTTPS GET of the service's test
//! path on its first listening port, verified against the trusted CAs under the server's
//! hostname (SNI), or an HL7 round trip over MLLP. One fresh connection per probe, so a
//! probe also proves the service still accepts connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use steward_model::snapshot::HealthCheck;
use steward_model::{ServiceKind, StatusRanges};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// More body than this is not read: health pages are small, and the match is a substring.
const MAX_BODY: usize = 1024 * 1024;

/// What to probe.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTarget {
    pub kind: ServiceKind,
    /// TLS name (SNI and certificate check) and `Host` header.
    pub hostname: String,
    /// Connect here instead of resolving `hostname`.
    pub connect_ip: Option<IpAddr>,
    pub port: u16,
    pub check: HealthCheck,
}

impl ProbeTarget {
    /// `GET https://app1.example.eng:7001/identityserver`, or `MLLP app2.example.eng:2244`.
    pub(crate) fn describe(&self) -> String {
        match &self.check.path {
            Some(path) => format!("GET https://{}:{}{path}", self.hostname, self.port),
            None => format!("MLLP {}:{}", self.hostname, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeResult {
    pub duration: Duration,
    pub http_status: Option<u16>,
    pub outcome: Result<(), ProbeError>,
}

impl ProbeResult {
    pub(crate) fn success(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Why a probe failed. The text is shown in status; it never holds a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("status {status} is not in the accepted {accepted}")]
    Status { status: u16, accepted: String },
    #[error("the response does not contain `{0}`")]
    BodyMismatch(String),
    #[error("HL7: {0}")]
    Hl7(String),
}

impl ProbeError {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::Resolve(_) => "resolve",
            Self::Connect(_) => "connect",
            Self::Tls(_) => "tls",
            Self::Http(_) => "http",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "status",
            Self::BodyMismatch(_) => "body_mismatch",
            Self::Hl7(_) => "hl7",
        }
    }
}

#[async_trait]
pub(crate) trait Prober: Send + Sync {
    async fn probe(&self, target: &ProbeTarget) -> ProbeResult;
}

pub(crate) struct NetworkProber {
    tls: TlsConnector,
}

impl NetworkProber {
    pub(crate) fn new(roots: &[String]) -> Result<Self, steward_pki::PkiError> {
        let mut config = steward_pki::client_config(roots)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn address(&self, target: &ProbeTarget) -> Result<SocketAddr, ProbeError> {
        if let Some(ip) = target.connect_ip {
            return Ok(SocketAddr::new(ip, target.port));
        }
        tokio::net::lookup_host((target.hostname.as_str(), target.port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ProbeError::Resolve(target.hostname.clone()))
    }

    async fn https(
        &self,
        target: &ProbeTarget,
        path: &str,
    ) -> (Option<u16>, Result<(), ProbeError>) {
        let exchange = async {
            let addr = self.address(target).await?;
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| ProbeError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(target.hostname.clone())
                .map_err(|_| ProbeError::Tls(format!("invalid TLS name {}", target.hostname)))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| ProbeError::Tls(tls_text(&e)))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| ProbeError::Http(e.to_string()))?;
            // Drives the connection; it ends when `sender` is dropped.
            let driver = tokio::spawn(connection);
            let request = Request::get(path)
                .header(HOST, format!("{}:{}", target.hostname, target.port))
                .header(
                    USER_AGENT,
                    concat!("steward-prober/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| ProbeError::Http(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ProbeError::Http(e.to_string()))?;
            let status = response.status().as_u16();
            let body = match &target.check.response_match {
                Some(_) => Some(
                    Limited::new(response.into_body(), MAX_BODY)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .map_err(|e| ProbeError::Http(e.to_string())),
                ),
                None => None,
            };
            drop(sender);
            driver.abort();
            Ok::<_, ProbeError>((status, body))
        };
        let (status, body) = match tokio::time::timeout(target.check.timeout, exchange).await {
            Err(_) => return (None, Err(ProbeError::Timeout(target.check.timeout))),
            Ok(Err(e)) => return (None, Err(e)),
            Ok(Ok(v)) => v,
        };
        let accepted = target
            .check
            .accept_status
            .clone()
            .or_else(|| StatusRanges::parse("200-399").ok());
        if let Some(accepted) = accepted {
            if !accepted.contains(status) {
                let accepted = accepted.to_string();
                return (Some(status), Err(ProbeError::Status { status, accepted }));
            }
        }
        if let (Some(expected), Some(body)) = (&target.check.response_match, body) {
            let body = match body {
                Ok(b) => b,
                Err(e) => return (Some(status), Err(e)),
            };
            if !contains(&body, expected.as_bytes()) {
                return (
                    Some(status),
                    Err(ProbeError::BodyMismatch(expected.clone())),
                );
            }
        }
        (Some(status), Ok(()))
    }

    async fn mllp(&self, target: &ProbeTarget) -> Result<(), ProbeError> {
        let addr = self.address(target).await?;
        steward_hl7::probe(addr, target.check.timeout)
            .await
            .map(drop)
            .map_err(|e| ProbeError::Hl7(e.to_string()))
    }
}

#[async_trait]
impl Prober for NetworkProber {
    async fn probe(&self, target: &ProbeTarget) -> ProbeResult {
        let started = Instant::now();
        let (http_status, outcome) = match target.check.path.clone() {
            Some(path) => self.https(target, &path).await,
            None => (None, self.mllp(target).await),
        };
        ProbeResult {
            duration: started.elapsed(),
            http_status,
            outcome,
        }
    }
}

/// tokio-rustls reports handshake failures as `io::Error` wrapping the rustls error;
/// the inner text ("invalid peer certificate: UnknownIssuer") is what a person needs.
fn tls_text(error: &std::io::Error) -> String {
    match error.get_ref() {
        Some(inner) => inner.to_string(),
        None => error.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use steward_model::snapshot::HealthCheck;

    struct Lab {
        _dir: tempfile::TempDir,
        ca_pem: String,
        stop: tokio_util::sync::CancellationToken,
        addrs: Vec<SocketAddr>,
    }

    const HOST: &str = "app1.example.eng";

    async fn lab(kind: ServiceKind) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let issued = ca
            .issue_server(&[HOST.to_owned()], &[], Duration::from_secs(3600))
            .unwrap();
        let (cert, key) = issued.write_pair(dir.path(), "server").unwrap();
        let args = steward_lab::LabServiceArgs {
            kind,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: vec![0; kind.port_count()],
            cert: Some(cert),
            key: Some(key),
            connection_strings: None,
            release: Some("6.12.1".into()),
        };
        let service = steward_lab::LabService::bind(args).await.unwrap();
        let addrs = service.local_addrs();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(service.serve(stop.clone().cancelled_owned()));
        Lab {
            _dir: dir,
            ca_pem: ca.cert_pem().to_owned(),
            stop,
            addrs,
        }
    }

    fn target(kind: ServiceKind, port: u16, check: HealthCheck) -> ProbeTarget {
        ProbeTarget {
            kind,
            hostname: HOST.into(),
            connect_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port,
            check,
        }
    }

    #[tokio::test]
    async fn https_probe_checks_status_body_and_certificate() {
        let lab = lab(ServiceKind::Psws).await;
        let prober = NetworkProber::new(std::slice::from_ref(&lab.ca_pem)).unwrap();
        let port = lab.addrs[0].port();
        let check = HealthCheck::catalog_default(ServiceKind::Psws);

        let ok = prober
            .probe(&target(ServiceKind::Psws, port, check.clone()))
            .await;
        assert_eq!(ok.outcome, Ok(()));
        assert_eq!(ok.http_status, Some(200));

        let mut wrong_body = check.clone();
        wrong_body.response_match = Some("IdentityServer4".into());
        let r = prober
            .probe(&target(ServiceKind::Psws, port, wrong_body))
            .await;
        assert_eq!(r.outcome.unwrap_err().metric_label(), "body_mismatch");

        let mut strict = check.clone();
        strict.accept_status = Some(StatusRanges::parse("201").unwrap());
        let r = prober.probe(&target(ServiceKind::Psws, port, strict)).await;
        assert!(
            matches!(r.outcome, Err(ProbeError::Status { status: 200, .. })),
            "{r:?}"
        );

        let mut wrong_path = check.clone();
        wrong_path.path = Some("/nothing-here".into());
        let r = prober
            .probe(&target(ServiceKind::Psws, port, wrong_path))
            .await;
        assert_eq!(r.http_status, Some(404));
        assert!(!r.success());

        // Another CA: the certificate must not be trusted.
        let other = tempfile::tempdir().unwrap();
        let other_ca = steward_pki::CertificateAuthority::init(other.path()).unwrap();
        let untrusting = NetworkProber::new(&[other_ca.cert_pem().to_owned()]).unwrap();
        let r = untrusting
            .probe(&target(ServiceKind::Psws, port, check.clone()))
            .await;
        let err = r.outcome.unwrap_err();
        assert_eq!(err.metric_label(), "tls", "{err}");

        // A name the certificate does not carry.
        let mut t = target(ServiceKind::Psws, port, check);
        t.hostname = "app2.example.eng".into();
        assert_eq!(
            prober.probe(&t).await.outcome.unwrap_err().metric_label(),
            "tls"
        );
        lab.stop.cancel();
    }

    #[tokio::test]
    async fn refused_and_silent_ports_fail_in_time() {
        let prober = NetworkProber::new(&[lab(ServiceKind::Psis).await.ca_pem]).unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let mut check = HealthCheck::catalog_default(ServiceKind::Psis);
        check.timeout = Duration::from_millis(300);
        let r = prober
            .probe(&target(ServiceKind::Psis, port, check.clone()))
            .await;
        assert_eq!(r.outcome.unwrap_err().metric_label(), "connect");

        // Accepts TCP but never speaks TLS.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let r = prober.probe(&target(ServiceKind::Psis, port, check)).await;
        assert_eq!(r.outcome.unwrap_err().metric_label(), "timeout");
        assert!(r.duration < Duration::from_secs(2));
        keep.abort();
    }

    #[tokio::test]
    async fn hl7_probe_expects_an_accepting_ack() {
        let lab = lab(ServiceKind::Hl7).await;
        let prober = NetworkProber::new(std::slice::from_ref(&lab.ca_pem)).unwrap();
        let check = HealthCheck::catalog_default(ServiceKind::Hl7);
        let t = target(ServiceKind::Hl7, lab.addrs[0].port(), check);
        assert_eq!(t.describe(), format!("MLLP {HOST}:{}", lab.addrs[0].port()));
        let r = prober.probe(&t).await;
        assert_eq!(r.outcome, Ok(()));
        assert_eq!(r.http_status, None);
        lab.stop.cancel();
    }
}
