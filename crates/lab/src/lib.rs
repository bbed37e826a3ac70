//! `steward lab-service`: one PatientSecure service as the lab runs it.
//!
//! It serves exactly the catalog's health surface for its kind (HTTPS health path, ADMIN's
//! redirect port, HL7's MLLP listener) so that steward's prober, agents and end-to-end tests
//! exercise the real protocols, and `GET /steward/lab` shows what the agent handed it.

pub mod args;
pub mod cert_reload;
mod fault;
mod hl7_listener;
mod https;
mod lab_info;
mod redirect;
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustls::ServerConfig;
use steward_model::catalog::{HealthTest, PortRule, ServiceKind};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use args::LabServiceArgs;
pub use cert_reload::{CertError, CertStatus, ReloadingCert};
pub use serve::Timeouts;

use lab_info::LabInfo;
use redirect::RedirectTarget;
use serve::Drain;

/// The port production serves plain HTTP on; in the catalog it marks a redirect port.
const PLAIN_HTTP_PORT: u16 = 80;

/// The exit code of `steward lab-service` when a port is held by another process
/// (EADDRINUSE's number on Linux). The agent recognises it (and looks up the holder), so
/// a service that cannot bind is reported as such instead of as a bare crash.
pub const EXIT_PORT_IN_USE: u8 = 98;

/// Why the lab service could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{kind} listens on {expected} port(s), got {got}")]
    PortCount {
        kind: ServiceKind,
        expected: usize,
        got: usize,
    },
    #[error("{kind} serves HTTPS: --cert and --key are required")]
    MissingCertificate { kind: ServiceKind },
    #[error("certificate: {0}")]
    Certificate(#[from] CertError),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("port-in-use: cannot listen on {addr}: another process holds the port")]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::PortCount { .. } => "port_count",
            Self::MissingCertificate { .. } => "missing_certificate",
            Self::Certificate(_) => "certificate",
            Self::Tls(_) => "tls",
            Self::PortInUse { .. } => "port_in_use",
            Self::Bind { .. } => "bind",
        }
    }

    /// The process exit code for this error: [`EXIT_PORT_IN_USE`] for a held port, 1
    /// for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::PortInUse { .. } => EXIT_PORT_IN_USE,
            _ => 1,
        }
    }
}

fn bind_error(addr: SocketAddr, source: std::io::Error) -> LabError {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        LabError::PortInUse { addr }
    } else {
        LabError::Bind { addr, source }
    }
}

/// What a port of a kind speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Https,
    Redirect,
    Mllp,
}

/// The roles of a kind's ports, in the order the agent passes them, read off the catalog.
fn roles(kind: ServiceKind) -> Vec<Role> {
    let spec = kind.spec();
    if spec.health == HealthTest::Mllp {
        return vec![Role::Mllp; kind.port_count()];
    }
    match spec.ports {
        PortRule::Fixed(ports) | PortRule::Default(ports) => ports
            .iter()
            .map(|&p| match p {
                PLAIN_HTTP_PORT => Role::Redirect,
                _ => Role::Https,
            })
            .collect(),
        PortRule::NextFree => vec![Role::Https],
    }
}

/// A lab service with its sockets bound, ready to serve.
pub struct LabService {
    info: Arc<LabInfo>,
    listeners: Vec<(Role, TcpListener)>,
    tls: Option<(TlsAcceptor, Arc<ReloadingCert>)>,
    timeouts: Timeouts,
    drain: Drain,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// Stops the watcher if the service is dropped without being served.
    _stop_on_drop: tokio_util::sync::DropGuard,
    health: Arc<AtomicBool>,
}

impl LabService {
    /// Checks the arguments against the catalog, loads the certificate and binds every port.
    pub async fn bind(args: LabServiceArgs) -> Result<Self, LabError> {
        Self::bind_with(args, true).await
    }

    /// Like [`bind`](Self::bind), without watching the certificate files: a simulated
    /// fleet runs thousands of services in one process, more than inotify allows
    /// instances, and reloads through [`certificate`](Self::certificate) when told to.
    pub async fn bind_unwatched(args: LabServiceArgs) -> Result<Self, LabError> {
        Self::bind_with(args, false).await
    }

    async fn bind_with(args: LabServiceArgs, watch_files: bool) -> Result<Self, LabError> {
        let kind = args.kind;
        let roles = roles(kind);
        if roles.len() != args.ports.len() {
            return Err(LabError::PortCount {
                kind,
                expected: roles.len(),
                got: args.ports.len(),
            });
        }
        let tls = if roles.contains(&Role::Https) {
            let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
                return Err(LabError::MissingCertificate { kind });
            };
            Some(tls_acceptor(cert, key)?)
        } else {
            None
        };
        let mut listeners = Vec::with_capacity(roles.len());
        let mut bound_ports = Vec::with_capacity(roles.len());
        for (role, port) in roles.into_iter().zip(&args.ports) {
            let addr = SocketAddr::new(args.bind, *port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| bind_error(addr, source))?;
            let local = listener
                .local_addr()
                .map_err(|source| LabError::Bind { addr, source })?;
            bound_ports.push(local.port());
            listeners.push((role, listener));
        }
        let info = Arc::new(LabInfo {
            kind,
            release: args.release,
            bind: args.bind,
            ports: bound_ports,
            connection_strings: args.connection_strings,
            cert: tls.as_ref().map(|(_, cert)| cert.clone()),
        });
        // Watching starts here, not in `serve`, so that a change made between the two is
        // not missed.
        let drain = Drain::default();
        let watcher = tls
            .as_ref()
            .filter(|_| watch_files)
            .map(|(_, cert)| cert_reload::spawn_watcher(cert.clone(), drain.stop.clone()));
        Ok(Self {
            info,
            listeners,
            tls,
            timeouts: Timeouts::default(),
            _stop_on_drop: drain.stop.clone().drop_guard(),
            drain,
            watcher,
            health: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The served certificate pair, to reload by hand; `None` for kinds without TLS.
    pub fn certificate(&self) -> Option<Arc<ReloadingCert>> {
        self.tls.as_ref().map(|(_, cert)| cert.clone())
    }

    /// While the flag is false, the health path answers 503: a service that runs but
    /// fails its health test (failure injection of the simulated fleet).
    pub fn with_health(mut self, healthy: Arc<AtomicBool>) -> Self {
        self.health = healthy;
        self
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The bound addresses, in the order of `--port`.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// The served certificate and reload outcomes; `None` for kinds without TLS.
    pub fn certificate_status(&self) -> Option<watch::Receiver<CertStatus>> {
        self.tls.as_ref().map(|(_, cert)| cert.subscribe())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish within the drain timeout and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), LabError> {
        let drain = self.drain.clone();
        let https_port = self
            .listeners
            .iter()
            .find(|(role, _)| *role == Role::Https)
            .and_then(|(_, l)| l.local_addr().ok())
            .map(|a| a.port());
        let site = Arc::new(https::Site::new(self.info.clone(), self.health.clone()));
        let mut loops: Vec<_> = self.watcher.into_iter().collect();
        for (role, listener) in self.listeners {
            let addr = listener.local_addr().ok();
            tracing::info!(kind = %self.info.kind, ?role, ?addr, "listening");
            let (timeouts, drain) = (self.timeouts, drain.clone());
            let task = match role {
                Role::Https => {
                    let Some((acceptor, _)) = &self.tls else {
                        unreachable!("bind loads TLS for every kind with an HTTPS port")
                    };
                    tokio::spawn(https::serve(
                        listener,
                        acceptor.clone(),
                        site.clone(),
                        timeouts,
                        drain,
                    ))
                }
                Role::Redirect => {
                    let target = RedirectTarget {
                        https_port: https_port.unwrap_or(443),
                        fallback_host: self.info.bind,
                    };
                    tokio::spawn(redirect::serve(listener, target, timeouts, drain))
                }
                Role::Mllp => tokio::spawn(hl7_listener::serve(listener, timeouts, drain)),
            };
            loops.push(task);
        }
        shutdown.await;
        tracing::info!(kind = %self.info.kind, "shutting down");
        drain.shutdown(self.timeouts.drain).await;
        for task in loops {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Binds the ports from `args` and serves until `shutdown` resolves; the entry point of
/// `steward lab-service`.
pub async fn run(args: LabServiceArgs, shutdown: impl Future<Output = ()>) -> Result<(), LabError> {
    // The agent sends SIGHUP after pushing new connection strings or a new certificate.
    // SIGHUP's default action ends the process, so take it over before anything else, for
    // every kind (HL7 has no certificate watcher that would otherwise claim it): connection
    // strings are re-read on each request, and the certificate watcher reloads on its own.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::debug!("SIGHUP: configuration is re-read on use");
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; a reload signal would stop this service")
        }
    }
    LabService::bind(args).await?.serve(shutdown).await
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(TlsAcceptor, Arc<ReloadingCert>), LabError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(ReloadingCert::load(cert, key, provider.clone())?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    // Clients resume, as with Windows Schannel: the store keeps the sessions of the
    // certificate served, so a rotation is seen at the next handshake (`cert_reload.rs`).
    // One ticket per handshake: a client resumes the newest (steward's prober does).
    config.session_storage = store.clone();
    config.send_tls13_tickets = 1;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_roles_come_from_the_catalog() {
        assert_eq!(roles(ServiceKind::Admin), vec![Role::Https, Role::Redirect]);
        assert_eq!(
            roles(ServiceKind::Emergency),
            vec![Role::Https, Role::Https]
        );
        assert_eq!(roles(ServiceKind::Hl7), vec![Role::Mllp]);
        assert_eq!(roles(ServiceKind::Job), vec![Role::Https]);
        assert_eq!(roles(ServiceKind::Psis), vec![Role::Https]);
    }

    #[tokio::test]
    async fn a_held_port_is_a_distinct_error_and_exit_code() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let args = LabServiceArgs {
            kind: ServiceKind::Hl7,
            bind: addr.ip(),
            ports: vec![addr.port()],
            cert: None,
            key: None,
            connection_strings: None,
            release: None,
        };
        let err = LabService::bind(args)
            .await
            .err()
            .expect("the port is held");
        assert!(
            matches!(err, LabError::PortInUse { addr: a } if a == addr),
            "{err}"
        );
        assert_eq!(err.exit_code(), EXIT_PORT_IN_USE);
        assert_eq!(err.metric_label(), "port_in_use");
        assert!(err.to_string().starts_with("port-in-use: "), "{err}");
    }
}
