//! The agent's HTTPS listener: axum over tokio-rustls with mutual TLS. A client without a
//! certificate from the steward CA never gets past the handshake.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::AgentConfig;
use crate::driver::{Driver, ProcessDriver};
use crate::error::AgentError;
use crate::host::{host_info, system_hostname};
use crate::layout::Layout;
use crate::manager::ServiceManager;
use crate::routes::{router, App};

/// A peer that connects but never finishes the handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after shutdown is requested.
const GRACE: Duration = Duration::from_secs(10);

/// A bound agent, not yet serving: lets the caller learn the address (port 0 in tests).
pub struct AgentServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    app: Arc<App>,
    stop_services_on_exit: bool,
}

impl AgentServer {
    /// Read the certificates, recover installed services and bind the listener.
    pub async fn bind(config: AgentConfig) -> Result<Self, AgentError> {
        let read =
            |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| AgentError::io(p, e));
        let ca = read(&config.ca_pem)?;
        let cert = read(&config.cert)?;
        let key = read(&config.key)?;
        let mut tls = steward_pki::mtls_server_config(&ca, &cert, &key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| AgentError::Bind {
                    addr: config.listen,
                    source,
                })?;

        let layout = Layout::new(&config.state_dir);
        let driver = ProcessDriver::new(&config.driver, layout.clone(), config.listen.ip())?;
        let bind = driver.bind_address();
        let link_host = match (&config.hostname, bind.is_unspecified()) {
            (_, false) if bind.is_ipv6() => format!("[{bind}]"),
            (_, false) => bind.to_string(),
            (Some(name), true) => name.clone(),
            (None, true) => system_hostname(),
        };
        let driver: Arc<dyn Driver> = Arc::new(driver);
        let manager =
            ServiceManager::open(layout, driver, link_host, (&config.cert, &config.key)).await?;
        let app = Arc::new(App {
            manager,
            host: host_info(config.hostname.as_deref()),
        });
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            router: router(app.clone()),
            app,
            stop_services_on_exit: config.driver.stop_services_on_exit,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serve until `shutdown` completes, then let in-flight requests finish (bounded).
    /// Services keep running unless the config says to stop them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
        let addr = self.local_addr();
        tracing::info!(%addr, "agent listening (mutual TLS)");
        let graceful = GracefulShutdown::new();
        // Handshakes still in progress at shutdown are abandoned, not waited for.
        let (stopping, stop_signal) = tokio::sync::watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            tokio::spawn(serve_connection(
                self.acceptor.clone(),
                TowerToHyperService::new(self.router.clone()),
                tcp,
                peer,
                graceful.watcher(),
                stop_signal.clone(),
            ));
        }
        drop(self.listener);
        tracing::info!("agent shutting down");
        let _ = stopping.send(true);
        if tokio::time::timeout(GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time");
        }
        self.app.manager.shutdown(self.stop_services_on_exit).await;
        Ok(())
    }
}

/// One connection, in its own task so that nothing a peer does (a failed or stalled
/// handshake, garbage) affects the accept loop or other connections.
async fn serve_connection(
    acceptor: TlsAcceptor,
    service: TowerToHyperService<Router>,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    mut stop_signal: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop_signal.changed() => return,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Run the agent until `shutdown` completes.
pub async fn serve(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    AgentServer::bind(config).await?.run(shutdown).await
}
