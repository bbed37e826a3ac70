//! Getting a secured connection: TCP connect, StartTLS or LDAPS, the connection task; and
//! the mapping of what can fail on the way (and later on the wire) to `DirectoryError`.

use std::io;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, StdStream};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::config::{DirectoryConfig, Endpoint, Transport};
use crate::error::DirectoryError;
use crate::starttls::{self, StartTlsFailure};
use crate::tls::{self, TlsFailure};

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
pub(crate) async fn guarded<T, F>(limit: Duration, fut: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, LdapError>>,
{
    guarded_any(limit, async { fut.await.map_err(Failure::Ldap) }).await
}

pub(crate) async fn guarded_any<T, F>(limit: Duration, fut: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, Failure>>,
{
    match timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
        Err(_) => Err(Failure::Deadline),
        Ok(Err(_)) => Err(Failure::Panicked),
        Ok(Ok(result)) => result,
    }
}

pub(crate) fn io_failure(url: &str, during: &'static str, err: &io::Error) -> DirectoryError {
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

pub(crate) async fn tcp_connect(
    config: &DirectoryConfig,
    endpoint: &Endpoint,
) -> Result<TcpStream, DirectoryError> {
    let url = config.url.clone();
    let connect = async {
        match config.connect_to {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await,
        }
    };
    let tcp = match timeout(config.connect_timeout, connect).await {
        Err(_) => {
            return Err(DirectoryError::Unreachable {
                url,
                reason: format!("no TCP connection within {:?}", config.connect_timeout),
            })
        }
        Ok(Err(e)) => {
            return Err(DirectoryError::Unreachable {
                url,
                reason: match config.connect_to {
                    Some(addr) => format!("TCP connect to {addr}: {e}"),
                    None => format!("TCP connect to {}:{}: {e}", endpoint.host, endpoint.port),
                },
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
pub(crate) async fn secure(
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
