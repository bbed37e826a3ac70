//! The client: dial (TCP, then TLS under the request's host as SNI and certificate name,
//! then hyper's HTTP/1.1 handshake), or reuse a pooled connection to the same address and
//! name; send the request and read a bounded body, every step against one deadline.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use crate::error::{local_exhaustion, HttpsError, Phase, TlsFailure};
use crate::pool::{Conn, Pool, PoolKey, PoolLimits};
use crate::sessions::Sessions;

/// What an exchange showed, whatever its outcome: the status (also when the body then
/// failed), the served leaf certificate's notAfter (also when the request then failed),
/// and whether a kept-alive connection carried it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exchange {
    pub status: Option<u16>,
    pub not_after: Option<OffsetDateTime>,
    pub reused: bool,
}

/// A complete response: its status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One TLS client configuration and the kept-alive connections and TLS sessions made
/// with it.
pub struct HttpsClient {
    /// Replaced whole by [`HttpsClient::set_tls`]; each dial resumes through a copy whose
    /// session store is scoped to its (address, TLS name).
    tls: RwLock<Arc<ClientConfig>>,
    pool: Pool,
    sessions: Arc<Sessions>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("idle", &self.pool.idle())
            .finish_non_exhaustive()
    }
}

/// HTTP/1.1 is what steward speaks to agents and services; saying so in ALPN keeps a
/// server that prefers h2 from choosing it. Sessions are resumed only through the
/// client's own store ([`Sessions`]), never rustls' cache keyed by name alone.
fn template(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

impl HttpsClient {
    /// A client with `config` (from steward-pki: trusted roots, and the client certificate
    /// for mutual TLS).
    pub fn new(config: ClientConfig, limits: PoolLimits) -> Self {
        Self {
            tls: RwLock::new(template(config)),
            pool: Pool::new(limits),
            sessions: Arc::new(Sessions::new(limits.sessions, limits.max_age)),
        }
    }

    /// A client trusting the PEM CA certificates `roots`, presenting no certificate.
    pub fn trusting<S: AsRef<str>>(
        roots: &[S],
        limits: PoolLimits,
    ) -> Result<Self, steward_pki::PkiError> {
        Ok(Self::new(steward_pki::client_config(roots)?, limits))
    }

    /// Use `config` from now on; idle connections and TLS sessions made under the old one
    /// are dropped (they were verified against CAs that may no longer be trusted).
    pub fn set_tls(&self, config: ClientConfig) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = template(config);
        self.pool.clear();
        self.sessions.clear();
    }

    /// Idle kept-alive connections held now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// (address, TLS name) keys with a TLS session kept now.
    pub fn kept_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The connector for a dial to `key`: resuming through the store scoped to it.
    fn connector(&self, key: &PoolKey) -> TlsConnector {
        let template = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !self.sessions.enabled() {
            return TlsConnector::from(template);
        }
        // A few Arcs and small vectors copied: nothing next to the handshake it serves.
        let mut config = (*template).clone();
        config.resumption = Resumption::store(self.sessions.scoped(key.clone()));
        TlsConnector::from(Arc::new(config))
    }

    /// Send `request` (an absolute `https://host:port/...` URI) to the addresses its host
    /// resolves to.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        max_body: usize,
        deadline: Instant,
    ) -> (Exchange, Result<Response, HttpsError>) {
        let prepared = origin(request.uri()).and_then(|(_, port)| {
            let (host, request) = origin_form(request)?;
            Ok((host, port, request))
        });
        let (host, port, request) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        match resolve(&host, port, deadline).await {
            Ok(addrs) => {
                let again = || Ok(copy(&request));
                self.send_to(&addrs, &host, again, max_body, deadline).await
            }
            Err(e) => (Exchange::default(), Err(e)),
        }
    }

    /// Send the request `build` makes (origin form: a path, and its `Host` header) to the
    /// first of `addrs` that accepts a connection, under the TLS name `name`, reading at
    /// most `max_body` bytes of body, all before `deadline`.
    ///
    /// `build` runs once per attempt: once, and a second time only when the peer closed a
    /// kept-alive connection under the first one (a request it never got, or an idempotent
    /// one), which is then sent on a fresh connection. Building again costs what the first
    /// build did, where keeping a copy for a retry that almost never comes would cost every
    /// request.
    pub async fn send_to<B>(
        &self,
        addrs: &[SocketAddr],
        name: &str,
        build: B,
        max_body: usize,
        deadline: Instant,
    ) -> (Exchange, Result<Response, HttpsError>)
    where
        B: Fn() -> Result<Request<Full<Bytes>>, HttpsError>,
    {
        let pooled = addrs.iter().find_map(|addr| {
            let key = PoolKey {
                addr: *addr,
                name: name.to_owned(),
            };
            self.pool.checkout(&key).map(|conn| (key, conn))
        });
        if let Some((key, conn)) = pooled {
            let request = match build().and_then(in_origin_form) {
                Ok(request) => request,
                Err(e) => return (Exchange::default(), Err(e)),
            };
            match self
                .exchange(key, conn, request, max_body, deadline, true)
                .await
            {
                Ok(done) => return done,
                Err(Some(e)) => return (Exchange::default(), Err(e)),
                // The peer closed the kept-alive connection under the request.
                Err(None) => {}
            }
        }
        let request = match build().and_then(in_origin_form) {
            Ok(request) => request,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        // Boxed: a dial's future (TCP, TLS handshake) is large and seldom needed, and
        // inline it would be moved with every request's future.
        let (key, conn) = match Box::pin(self.dial(addrs, name, deadline)).await {
            Ok(dialled) => dialled,
            Err(e) => return (Exchange::default(), Err(e)),
        };
        let not_after = conn.not_after;
        match self
            .exchange(key, conn, request, max_body, deadline, false)
            .await
        {
            Ok(done) => done,
            Err(e) => {
                let e = e.unwrap_or_else(|| HttpsError::Broken("connection closed".into()));
                let exchange = Exchange {
                    not_after,
                    ..Exchange::default()
                };
                (exchange, Err(e))
            }
        }
    }

    /// A fresh connection to the first of `addrs` that accepts one.
    async fn dial(
        &self,
        addrs: &[SocketAddr],
        name: &str,
        deadline: Instant,
    ) -> Result<(PoolKey, Conn), HttpsError> {
        let mut failure = HttpsError::Resolve(name.to_owned());
        let mut connected = None;
        for addr in addrs {
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => return Err(HttpsError::Timeout(Phase::Connect)),
                Ok(Ok(tcp)) => {
                    connected = Some((*addr, tcp));
                    break;
                }
                Ok(Err(e)) => {
                    failure = HttpsError::connect(&e);
                    // Another address needs a socket too.
                    if local_exhaustion(&e) {
                        break;
                    }
                }
            }
        }
        let (addr, tcp) = connected.ok_or(failure)?;
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| HttpsError::Tls(TlsFailure::Other(format!("invalid TLS name {name}"))))?;
        let key = PoolKey {
            addr,
            name: name.to_owned(),
        };
        let tls = timeout_at(deadline, self.connector(&key).connect(server_name, tcp))
            .await
            .map_err(|_| HttpsError::Timeout(Phase::TlsHandshake))?
            .map_err(|e| HttpsError::Tls(TlsFailure::from_io(&e, name)))?;
        self.sessions
            .handshake_done(&key, tls.get_ref().1.handshake_kind());
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
            .map_err(|e| HttpsError::exchange(&e, name))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((key, Conn::new(sender, not_after, driver)))
    }

    /// `request` on `conn`; the connection goes back to the pool if the exchange ended
    /// cleanly. `Err(None)`: a reused connection was closed under a request that may be
    /// sent again (never sent, or idempotent); the caller dials afresh.
    async fn exchange(
        &self,
        key: PoolKey,
        mut conn: Conn,
        request: Request<Full<Bytes>>,
        max_body: usize,
        deadline: Instant,
        reused: bool,
    ) -> Result<(Exchange, Result<Response, HttpsError>), Option<HttpsError>> {
        let mut exchange = Exchange {
            not_after: conn.not_after,
            reused,
            ..Exchange::default()
        };
        let idempotent = request.method().is_idempotent();
        let response = match timeout_at(deadline, conn.sender.send_request(request)).await {
            Err(_) => return Err(Some(HttpsError::Timeout(Phase::Response))),
            Ok(Err(e))
                if reused && (e.is_canceled() || idempotent && e.is_incomplete_message()) =>
            {
                return Err(None)
            }
            Ok(Err(e)) => return Err(Some(HttpsError::exchange(&e, &key.name))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        exchange.status = Some(status.as_u16());
        // The whole body is read, whatever the caller wants of it: only then can the
        // connection carry the next request.
        let body = match timeout_at(
            deadline,
            Limited::new(response.into_body(), max_body).collect(),
        )
        .await
        {
            Err(_) => return Ok((exchange, Err(HttpsError::Timeout(Phase::Body)))),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok((exchange, Err(HttpsError::BodyTooLarge(max_body))))
            }
            Ok(Err(e)) => return Ok((exchange, Err(HttpsError::body(e.as_ref(), &key.name)))),
            Ok(Ok(body)) => body.to_bytes(),
        };
        self.pool.checkin(key, conn);
        Ok((exchange, Ok(Response { status, body })))
    }
}

/// The addresses `host` resolves to, in the resolver's order.
pub async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, HttpsError> {
    let unresolved = || HttpsError::Resolve(host.to_owned());
    let addrs: Vec<SocketAddr> = timeout_at(deadline, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| HttpsError::Timeout(Phase::Resolve))?
        .map_err(|e| match local_exhaustion(&e) {
            true => HttpsError::LocalResources(e.to_string()),
            false => unresolved(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(unresolved());
    }
    Ok(addrs)
}

/// The host (without an IPv6 literal's brackets) and port of an `https://` URI.
fn origin(uri: &Uri) -> Result<(String, u16), HttpsError> {
    let invalid = || HttpsError::InvalidRequest(format!("not an https://host URI: {uri}"));
    if uri.scheme_str() != Some("https") {
        return Err(invalid());
    }
    let host = uri.host().ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), uri.port_u16().unwrap_or(443)))
}

/// The TLS name, and the request as HTTP/1.1 sends it to an origin server: a path in the
/// request line and the authority in `Host` (unless the caller set one).
fn origin_form(
    mut request: Request<Full<Bytes>>,
) -> Result<(String, Request<Full<Bytes>>), HttpsError> {
    let (name, _) = origin(request.uri())?;
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path: Uri = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpsError::InvalidRequest(e.to_string()))?;
    *request.uri_mut() = path;
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(&authority)
            .map_err(|e| HttpsError::InvalidRequest(e.to_string()))?;
        request.headers_mut().insert(HOST, host);
    }
    Ok((name, request))
}

/// `request` if it is in origin form with a `Host` header, as [`HttpsClient::send_to`]
/// takes it: without a `Host` an HTTP/1.1 server must refuse it, and an absolute URI would
/// name a host other than the TLS name.
fn in_origin_form(request: Request<Full<Bytes>>) -> Result<Request<Full<Bytes>>, HttpsError> {
    if request.uri().authority().is_some() || request.uri().scheme().is_some() {
        let uri = request.uri();
        return Err(HttpsError::InvalidRequest(format!(
            "{uri} is not a path (origin form)"
        )));
    }
    if !request.headers().contains_key(HOST) {
        return Err(HttpsError::InvalidRequest("no Host header".into()));
    }
    Ok(request)
}

/// The same request again, for a second attempt on a fresh connection (the body is
/// reference-counted bytes, so this copies no payload).
fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut again = Request::new(request.body().clone());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.version_mut() = request.version();
    *again.headers_mut() = request.headers().clone();
    again
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_out_in_origin_form_with_the_authority_as_host() {
        let request = Request::get("https://app1.example.eng:7001/identityserver?x=1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (name, sent) = origin_form(request).unwrap();
        assert_eq!(name, "app1.example.eng");
        assert_eq!(sent.uri(), "/identityserver?x=1");
        assert_eq!(sent.headers()[HOST], "app1.example.eng:7001");

        let ipv6 = Request::get("https://[::1]:7443")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (name, sent) = origin_form(ipv6).unwrap();
        assert_eq!((name.as_str(), sent.uri().path()), ("::1", "/"));

        let plain = Request::get("http://a:1/").body(Full::new(Bytes::new()));
        let err = origin_form(plain.unwrap()).unwrap_err();
        assert_eq!(err.metric_label(), "invalid_request");
    }

    #[test]
    fn send_to_takes_a_path_and_a_host_header_only() {
        let request = |uri: &str, host: Option<&str>| {
            let mut request = Request::get(uri);
            if let Some(host) = host {
                request = request.header(HOST, host);
            }
            request.body(Full::new(Bytes::new())).unwrap()
        };
        let ok = in_origin_form(request("/identityserver?x=1", Some("app1:7001"))).unwrap();
        assert_eq!(ok.uri(), "/identityserver?x=1");

        let absolute = request("https://app1.example.eng:7001/", Some("app1:7001"));
        let err = in_origin_form(absolute).unwrap_err();
        assert_eq!(err.metric_label(), "invalid_request");
        assert!(err.to_string().contains("not a path"), "{err}");

        let err = in_origin_form(request("/", None)).unwrap_err();
        assert_eq!(err.to_string(), "invalid request: no Host header");
    }

    #[test]
    fn a_host_header_the_caller_set_is_kept() {
        let request = Request::get("https://127.0.0.1:7001/")
            .header(HOST, "app1.example.eng:7001")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (name, sent) = origin_form(request).unwrap();
        assert_eq!(name, "127.0.0.1");
        assert_eq!(sent.headers()[HOST], "app1.example.eng:7001");
    }
}
