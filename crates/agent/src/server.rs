//! The agent's HTTPS listener: axum over tokio-rustls with mutual TLS, served by
//! `steward-serve` within [`limits`]. A client without a certificate from the steward CA
//! never gets past the handshake; a client that never finishes one is closed at its
//! deadline, and no number of clients takes more than a quarter of the agent's open files.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use steward_serve::{Limits, Server};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::AgentConfig;
use crate::driver::{Driver, ProcessDriver};
use crate::error::AgentError;
use crate::fencing::Fencing;
use crate::host::{host_info, system_hostname};
use crate::layout::Layout;
use crate::manager::ServiceManager;
use crate::routes::{router, App};

/// The most connections the agent holds: its clients are one daemon (a few pooled
/// connections) and the odd administrator.
const MAX_CONNECTIONS: usize = 256;

/// The agent API's bounds, for a process that may open `open_files` files.
pub fn limits(open_files: Option<u64>) -> Limits {
    Limits {
        max_connections: Limits::connection_budget(open_files, MAX_CONNECTIONS),
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        // Above the daemon client's 30 s pool idle time, so the client always gives up a
        // kept-alive connection first and never sends on one the agent is closing.
        idle_timeout: Duration::from_secs(90),
        // An uninstall waits for the service to stop (stop_timeout, 10 s by default).
        request_timeout: Duration::from_secs(60),
        // Certificates and connection strings: kilobytes.
        max_body_bytes: 1024 * 1024,
        max_head_bytes: 64 * 1024,
        shutdown_grace: Duration::from_secs(10),
    }
}

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
        let (tls, listener) = tls_and_listener(&config).await?;
        let layout = Layout::new(&config.state_dir);
        let driver = ProcessDriver::new(&config.driver, layout.clone(), config.listen.ip())?;
        let bind = driver.bind_address();
        Self::with_driver(config, listener, tls, Arc::new(driver), bind).await
    }

    /// Like [`bind`](Self::bind), with `driver` running the services instead of the
    /// process driver (the simulated fleet serves the real API over its own driver); the
    /// services' links name the listen address.
    pub async fn bind_with_driver(
        config: AgentConfig,
        driver: Arc<dyn Driver>,
    ) -> Result<Self, AgentError> {
        let (tls, listener) = tls_and_listener(&config).await?;
        let bind = config.listen.ip();
        Self::with_driver(config, listener, tls, driver, bind).await
    }

    async fn with_driver(
        config: AgentConfig,
        listener: TcpListener,
        tls: rustls::ServerConfig,
        driver: Arc<dyn Driver>,
        bind: std::net::IpAddr,
    ) -> Result<Self, AgentError> {
        let layout = Layout::new(&config.state_dir);
        let link_host = match (&config.hostname, bind.is_unspecified()) {
            (_, false) if bind.is_ipv6() => format!("[{bind}]"),
            (_, false) => bind.to_string(),
            (Some(name), true) => name.clone(),
            (None, true) => system_hostname(),
        };
        let fencing = Arc::new(Fencing::load(layout.fencing_file())?);
        let manager =
            ServiceManager::open(layout, driver, link_host, (&config.cert, &config.key)).await?;
        let app = Arc::new(App {
            manager,
            host: host_info(config.hostname.as_deref()),
            fencing,
        });
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            router: router(app.clone()),
            app,
            stop_services_on_exit: config.driver.stop_services_on_exit,
        })
    }

    /// HA mode from the start (`--require-epoch`): every change must carry a leader
    /// epoch, even before the first leader has spoken to this agent.
    pub fn require_epoch(self) -> Self {
        self.app.fencing.require();
        self
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
        let limits = limits(steward_serve::open_files_limit());
        tracing::info!(%addr, max_connections = limits.max_connections, "agent listening (mutual TLS)");
        let shutdown = async {
            shutdown.await;
            tracing::info!("agent shutting down");
        };
        Server::new("agent", self.listener, limits)
            .with_tls(self.acceptor)
            .serve(self.router, shutdown)
            .await;
        self.app.manager.shutdown(self.stop_services_on_exit).await;
        Ok(())
    }
}

/// The mutual-TLS configuration from the configured files, and the bound listener.
async fn tls_and_listener(
    config: &AgentConfig,
) -> Result<(rustls::ServerConfig, TcpListener), AgentError> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| AgentError::io(p, e));
    let ca = read(&config.ca_pem)?;
    let cert = read(&config.cert)?;
    let key = read(&config.key)?;
    let mut tls = steward_pki::mtls_server_config(&ca, &cert, &key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
    Ok((tls, listener))
}

/// Run the agent until `shutdown` completes.
pub async fn serve(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    AgentServer::bind(config).await?.run(shutdown).await
}
