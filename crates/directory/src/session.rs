//! One bound, TLS-protected connection and the bounded operations on it.

use std::io;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, StdStream};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::config::{DirectoryConfig, Endpoint, Transport};
use crate::entry::Entry;
use crate::error::{result_name, DirectoryError};
use crate::kind::DirectoryKind;
use crate::starttls::{self, StartTlsFailure};
use crate::tls::{self, TlsFailure};

/// Entries per page of a paged search (AD's MaxPageSize is 1,000).
const PAGE_SIZE: i32 = 500;

/// A connection that is TLS-protected and bound. Dropping it closes the connection.
pub struct Session {
    pub(crate) ldap: Ldap,
    driver: Option<JoinHandle<ldap3::result::Result<()>>>,
    pub(crate) config: DirectoryConfig,
    kind: DirectoryKind,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.config.url)
            .field("bind_dn", &self.config.bind_dn)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

impl Session {
    /// Connects, secures the connection (LDAPS, or StartTLS on `ldap://`), checks that TLS
    /// is really in place, binds, and reads the root DSE to tell AD from generic LDAP.
    pub async fn connect(config: &DirectoryConfig) -> Result<Self, DirectoryError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let tls = tls::client_config(&config.trust)?;
        let url = config.url.clone();
        if config.password.expose().is_empty() {
            // RFC 4513 5.1.2: a simple bind with a DN and no password is an unauthenticated
            // bind that many servers accept; it would look like success.
            return Err(DirectoryError::BindFailed {
                url,
                bind_dn: config.bind_dn.clone(),
                reason: "the password is empty (an unauthenticated bind); refused before sending"
                    .into(),
            });
        }
        let tcp = tcp_connect(config, &endpoint).await?;
        let (mut ldap, driver) = secure(config, &endpoint, tcp, tls).await?;
        // ldap3 keeps whether TLS is up private; a peer certificate proves it. Without one
        // the password would travel in clear, so the bind is never sent.
        let peer = timeout(config.operation_timeout, ldap.get_peer_certificate()).await;
        if !matches!(peer, Ok(Ok(Some(_)))) {
            driver.abort();
            return Err(DirectoryError::Protocol {
                url,
                during: "securing the connection",
                reason: "no TLS session on the connection; the bind is not sent in clear".into(),
            });
        }
        let mut session = Self {
            ldap,
            driver: Some(driver),
            config: config.clone(),
            kind: DirectoryKind::Generic,
        };
        session.bind().await?;
        session.kind = session.detect_kind().await?;
        Ok(session)
    }

    /// Active Directory (Samba or Windows) or a generic LDAP server.
    pub fn kind(&self) -> DirectoryKind {
        self.kind
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Unbinds and closes (bounded). Dropping the session closes it too, without the unbind.
    pub async fn close(mut self) {
        let _ = timeout(self.config.operation_timeout, self.ldap.unbind()).await;
    }

    async fn bind(&mut self) -> Result<(), DirectoryError> {
        let dn = self.config.bind_dn.clone();
        let password = self.config.password.clone();
        let op = self.config.operation_timeout;
        let ldap = &mut self.ldap;
        let result = guarded(
            op,
            ldap.with_timeout(op).simple_bind(&dn, password.expose()),
        )
        .await;
        let result = match result {
            Ok(result) => result,
            Err(failure) => return Err(self.failure("binding", failure).await),
        };
        if result.rc == 0 {
            return Ok(());
        }
        let mut reason = format!("{} ({})", result_name(result.rc), result.rc);
        let text = result.text.trim();
        if !text.is_empty() {
            // AD puts the reason here ("data 52e": bad password, "775": locked out). It never
            // echoes the password, but scrub it anyway: this text ends up in conditions.
            reason.push_str(": ");
            reason.push_str(&text.replace(password.expose(), "<redacted>"));
        }
        Err(DirectoryError::BindFailed {
            url: self.config.url.clone(),
            bind_dn: dn,
            reason,
        })
    }

    async fn detect_kind(&mut self) -> Result<DirectoryKind, DirectoryError> {
        let root = self
            .search(
                "reading the root DSE",
                "",
                Scope::Base,
                "(objectClass=*)",
                &["supportedCapabilities"],
                false,
            )
            .await?;
        Ok(DirectoryKind::from_root_dse(root.first()))
    }

    /// Reads `attrs` of one entry (a base-scope search).
    pub async fn read_attributes(
        &mut self,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Entry, DirectoryError> {
        const DURING: &str = "reading an entry";
        let entries = self
            .search(DURING, dn, Scope::Base, "(objectClass=*)", attrs, false)
            .await?;
        entries
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol(DURING, format!("`{dn}` was not returned")))
    }

    /// A bounded search: at most `max_entries` entries (more is a `Protocol` error and the
    /// search is abandoned), continuation references skipped (AD answers subtree searches
    /// at the domain root with references to other partitions), paged when `paged`.
    pub(crate) async fn search(
        &mut self,
        during: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        paged: bool,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let max = self.config.max_entries;
        let op = self.config.operation_timeout;
        let ldap = &mut self.ldap;
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let run = async move {
            let mut adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> =
                vec![Box::new(EntriesOnly::new())];
            if paged {
                adapters.push(Box::new(PagedResults::new(PAGE_SIZE)));
            }
            let mut stream = ldap
                .with_timeout(op)
                .streaming_search_with(adapters, base, scope, filter, attrs)
                .await
                .map_err(Failure::Ldap)?;
            let mut entries = Vec::new();
            while let Some(raw) = stream.next().await.map_err(Failure::Ldap)? {
                if entries.len() == max {
                    let id = stream.ldap_handle().last_id();
                    let _ = stream.finish().await;
                    let _ = stream.ldap_handle().abandon(id).await;
                    return Err(Failure::TooMany(max));
                }
                entries.push(Entry::decode(raw.0).map_err(Failure::Malformed)?);
            }
            let result = stream.finish().await;
            Ok((entries, result))
        };
        let (entries, result) = match guarded_any(op, run).await {
            Ok(done) => done,
            Err(failure) => return Err(self.failure(during, failure).await),
        };
        match result.rc {
            0 => Ok(entries),
            4 => Err(self.protocol(
                during,
                "the server cut the search off at its size limit".into(),
            )),
            10 => Err(self.protocol(
                during,
                format!(
                    "the server answered with a referral to {}",
                    result.refs.join(" ")
                ),
            )),
            _ => Err(self.rejected(during, &result)),
        }
    }

    /// Runs one single-result operation (add, modify, delete) and returns its result code
    /// and text; the caller decides which codes mean converged.
    pub(crate) async fn single<F>(
        &mut self,
        during: &'static str,
        op: F,
    ) -> Result<LdapResult, DirectoryError>
    where
        F: for<'a> FnOnce(
            &'a mut Ldap,
        )
            -> futures::future::BoxFuture<'a, ldap3::result::Result<LdapResult>>,
    {
        let limit = self.config.operation_timeout;
        let ldap = self.ldap.with_timeout(limit);
        match guarded(limit, op(ldap)).await {
            Ok(result) => Ok(result),
            Err(failure) => Err(self.failure(during, failure).await),
        }
    }

    pub(crate) fn protocol(&self, during: &'static str, reason: String) -> DirectoryError {
        DirectoryError::Protocol {
            url: self.config.url.clone(),
            during,
            reason,
        }
    }

    pub(crate) fn rejected(&self, during: &'static str, result: &LdapResult) -> DirectoryError {
        let mut reason = result_name(result.rc).to_string();
        if !result.text.trim().is_empty() {
            reason = format!("{reason}: {}", result.text.trim());
        }
        DirectoryError::Rejected {
            url: self.config.url.clone(),
            during,
            code: result.rc,
            reason,
        }
    }

    /// Turns a failed operation into a precise error. When the connection is gone, the
    /// connection task's own outcome tells a close from garbage.
    async fn failure(&mut self, during: &'static str, failure: Failure) -> DirectoryError {
        let url = self.config.url.clone();
        let op = self.config.operation_timeout;
        match failure {
            Failure::Deadline | Failure::Ldap(LdapError::Timeout { .. }) => {
                DirectoryError::Timeout {
                    url,
                    during,
                    timeout: op,
                }
            }
            Failure::TooMany(max) => self.protocol(
                during,
                format!("more than {max} entries; the search was cut off and abandoned"),
            ),
            Failure::Malformed(what) => self.protocol(during, format!("malformed entry ({what})")),
            Failure::Panicked => self.protocol(during, "malformed response from the server".into()),
            Failure::Ldap(LdapError::LdapResult { result }) => self.rejected(during, &result),
            Failure::Ldap(LdapError::Io { source }) => io_failure(&url, during, &source),
            Failure::Ldap(
                LdapError::ResultRecv { .. }
                | LdapError::OpSend { .. }
                | LdapError::IdScrubSend { .. }
                | LdapError::MiscSend { .. }
                | LdapError::EndOfStream,
            ) => self.connection_outcome(during).await,
            Failure::Ldap(LdapError::FilterParsing) => self.protocol(
                during,
                "internal: an invalid search filter was built".into(),
            ),
            Failure::Ldap(other) => self.protocol(during, other.to_string()),
        }
    }

    async fn connection_outcome(&mut self, during: &'static str) -> DirectoryError {
        let url = self.config.url.clone();
        let closed = |url| DirectoryError::Unreachable {
            url,
            reason: format!("the server closed the connection while {during}"),
        };
        let Some(driver) = self.driver.take_if(|d| d.is_finished()) else {
            return closed(url);
        };
        match driver.await {
            Ok(Ok(())) => closed(url),
            Ok(Err(LdapError::Io { source })) => io_failure(&url, during, &source),
            Ok(Err(other)) => self.protocol(during, other.to_string()),
            Err(_) => self.protocol(during, "malformed LDAP message from the server".into()),
        }
    }
}

/// Why an operation did not produce a result.
pub(crate) enum Failure {
    Ldap(LdapError),
    Deadline,
    TooMany(usize),
    Malformed(&'static str),
    Panicked,
}

/// Bounds a future by `limit` and turns a panic inside ldap3 (it panics on some malformed
/// messages) into an error instead of unwinding through the controller.
async fn guarded<T, F>(limit: Duration, fut: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, LdapError>>,
{
    guarded_any(limit, async { fut.await.map_err(Failure::Ldap) }).await
}

async fn guarded_any<T, F>(limit: Duration, fut: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, Failure>>,
{
    match timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
        Err(_) => Err(Failure::Deadline),
        Ok(Err(_)) => Err(Failure::Panicked),
        Ok(Ok(result)) => result,
    }
}

fn io_failure(url: &str, during: &'static str, err: &io::Error) -> DirectoryError {
    let url = url.to_string();
    if let Some(tls) = tls::classify(err) {
        return match tls {
            TlsFailure::Untrusted(reason) => DirectoryError::TlsUntrusted { url, reason },
            TlsFailure::HostMismatch(reason) => {
                let host = Endpoint::parse(&url).map(|e| e.host).unwrap_or_default();
                DirectoryError::TlsHostMismatch { url, host, reason }
            }
            TlsFailure::Other(reason) => DirectoryError::Protocol {
                url,
                during,
                reason: format!("TLS: {reason}"),
            },
        };
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => DirectoryError::Unreachable {
            url,
            reason: format!("the server closed the connection while {during}"),
        },
        io::ErrorKind::TimedOut => DirectoryError::Unreachable {
            url,
            reason: format!("the network timed out while {during}"),
        },
        // ldap3's codec reports undecodable bytes as "decoding error".
        _ => DirectoryError::Protocol {
            url,
            during,
            reason: format!("malformed LDAP message from the server ({err})"),
        },
    }
}

async fn tcp_connect(
    config: &DirectoryConfig,
    endpoint: &Endpoint,
) -> Result<TcpStream, DirectoryError> {
    let url = config.url.clone();
    let address = (endpoint.host.as_str(), endpoint.port);
    let tcp = match timeout(config.connect_timeout, TcpStream::connect(address)).await {
        Err(_) => {
            return Err(DirectoryError::Unreachable {
                url,
                reason: format!("no TCP connection within {:?}", config.connect_timeout),
            })
        }
        Ok(Err(e)) => {
            return Err(DirectoryError::Unreachable {
                url,
                reason: format!("TCP connect to {}:{}: {e}", endpoint.host, endpoint.port),
            })
        }
        Ok(Ok(tcp)) => tcp,
    };
    // Many small request/response pairs: Nagle plus delayed ACKs would add ~40 ms to each.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// StartTLS when asked for, then the TLS handshake (each bounded by the connect timeout),
/// then the connection task.
async fn secure(
    config: &DirectoryConfig,
    endpoint: &Endpoint,
    mut tcp: TcpStream,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(Ldap, JoinHandle<ldap3::result::Result<()>>), DirectoryError> {
    let url = config.url.clone();
    let limit = config.connect_timeout;
    if endpoint.transport == Transport::StartTls {
        const DURING: &str = "StartTLS";
        let failure = match timeout(limit, starttls::negotiate(&mut tcp)).await {
            Ok(Ok(())) => None,
            Err(_) => Some(DirectoryError::Timeout {
                url: url.clone(),
                during: DURING,
                timeout: limit,
            }),
            Ok(Err(StartTlsFailure::Closed)) => Some(DirectoryError::Unreachable {
                url: url.clone(),
                reason: format!("the server closed the connection during {DURING}"),
            }),
            Ok(Err(StartTlsFailure::Refused(reason))) => Some(DirectoryError::Protocol {
                url: url.clone(),
                during: DURING,
                reason: format!(
                    "the server refused StartTLS ({reason}); the bind is not sent without TLS"
                ),
            }),
            Ok(Err(StartTlsFailure::Garbage(reason))) => Some(DirectoryError::Protocol {
                url: url.clone(),
                during: DURING,
                reason: format!("{reason}; the bind is not sent without TLS"),
            }),
        };
        if let Some(failure) = failure {
            return Err(failure);
        }
    }
    const DURING: &str = "TLS handshake";
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    // From here on the socket speaks TLS whichever way we got here: ldap3 is told LDAPS.
    let ldap_url = url::Url::parse(&format!("ldaps://{host}:{}", endpoint.port))
        .map_err(|e| DirectoryError::Config(format!("server URL `{url}`: {e}")))?;
    let tcp = tcp.into_std().map_err(|e| DirectoryError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let settings = LdapConnSettings::new()
        .set_config(tls)
        .set_std_stream(StdStream::Tcp(tcp));
    let connecting = LdapConnAsync::from_url_with_settings(settings, &ldap_url);
    let (conn, ldap) = match guarded(limit, connecting).await {
        Ok(pair) => pair,
        Err(failure) => {
            return Err(match failure {
                Failure::Deadline | Failure::Ldap(LdapError::Timeout { .. }) => {
                    DirectoryError::Timeout {
                        url,
                        during: DURING,
                        timeout: limit,
                    }
                }
                Failure::Ldap(LdapError::Io { source }) => io_failure(&url, DURING, &source),
                Failure::Ldap(LdapError::Rustls { source }) => {
                    io_failure(&url, DURING, &io::Error::other(source))
                }
                Failure::Ldap(LdapError::DNSName { .. }) => DirectoryError::Config(format!(
                    "server URL `{url}`: the host is not a valid TLS server name"
                )),
                Failure::Ldap(other) => DirectoryError::Protocol {
                    url,
                    during: DURING,
                    reason: other.to_string(),
                },
                Failure::Panicked | Failure::Malformed(_) | Failure::TooMany(_) => {
                    DirectoryError::Protocol {
                        url,
                        during: DURING,
                        reason: "malformed response from the server".into(),
                    }
                }
            });
        }
    };
    let driver = tokio::spawn(conn.drive());
    Ok((ldap, driver))
}
