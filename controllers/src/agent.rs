//! The controllers' view of an agent: a trait over [`AgentClient`] so that tests can
//! script an agent's answers, and a per-server cache of clients (sharing one pool of
//! kept-alive connections).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use steward_agent::api::{
    CertificateStatus, ConnectionStrings, ConnectionStringsUpdate, HostInfo, InstallRequest,
    InstallResponse, RemnantCleanup, ServiceInfo, ServiceLogs, UninstallResponse,
};
use steward_agent::{AgentClient, ClientError, EpochSource};
use steward_https_client::HttpsClient;
use steward_model::snapshot::Server;
use steward_model::ServiceKind;
use steward_pki::PrivateKeyPem;
use tokio::time::Instant;

use crate::config::{AgentEndpoint, EndpointFn};
use crate::listing::{Freshness, Need, SharedListing};

/// The agent API calls the controllers make.
#[async_trait]
pub(crate) trait AgentApi: Send + Sync {
    async fn host(&self) -> Result<HostInfo, ClientError>;
    /// The host, as read through this client within `max_age` ([`SharedListing`] keeps
    /// the last answer): it changes only when the agent is reinstalled.
    async fn host_within(&self, _max_age: Duration) -> Result<HostInfo, ClientError> {
        self.host().await
    }
    async fn services(&self) -> Result<Vec<ServiceInfo>, ClientError>;
    /// The services, from a listing as fresh as `need` says: one listing may answer
    /// several callers ([`crate::listing`]).
    async fn services_fresh(&self, _need: Need) -> Result<Vec<ServiceInfo>, ClientError> {
        self.services().await
    }
    /// `held`: a new installation stays stopped (an HL7 standby).
    async fn install(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
        held: bool,
    ) -> Result<InstallResponse, ClientError>;
    async fn uninstall(&self, kind: ServiceKind) -> Result<UninstallResponse, ClientError>;
    async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError>;
    /// Stop and hold stopped (across agent restarts) until [`AgentApi::start`].
    async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError>;
    async fn start(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError>;
    async fn certificate(&self) -> Result<Option<CertificateStatus>, ClientError>;
    async fn install_certificate(
        &self,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
    ) -> Result<CertificateStatus, ClientError>;
    async fn connection_strings(&self) -> Result<Option<ConnectionStrings>, ClientError>;
    async fn set_connection_strings(
        &self,
        strings: &ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, ClientError>;
    async fn cleanup_remnants(&self) -> Result<RemnantCleanup, ClientError>;
    /// Controller HA: tell the agent this leader's epoch, so that an older leader is
    /// refused there from now on. Nothing to do for a single daemon.
    async fn announce_epoch(&self) -> Result<(), ClientError> {
        Ok(())
    }
    /// The tail of a service's captured output (its install log).
    async fn logs(&self, kind: ServiceKind, tail_bytes: u64) -> Result<ServiceLogs, ClientError>;
}

#[async_trait]
impl AgentApi for AgentClient {
    async fn host(&self) -> Result<HostInfo, ClientError> {
        AgentClient::host(self).await
    }
    async fn services(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        AgentClient::services(self).await
    }
    async fn install(
        &self,
        kind: ServiceKind,
        request: &InstallRequest,
        held: bool,
    ) -> Result<InstallResponse, ClientError> {
        if held {
            AgentClient::install_held(self, kind, request).await
        } else {
            AgentClient::install(self, kind, request).await
        }
    }
    async fn uninstall(&self, kind: ServiceKind) -> Result<UninstallResponse, ClientError> {
        // Never forced: files that cannot be removed are the operator's call.
        AgentClient::uninstall(self, kind, false).await
    }
    async fn restart(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        AgentClient::restart(self, kind).await
    }
    async fn stop(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        AgentClient::stop(self, kind).await
    }
    async fn start(&self, kind: ServiceKind) -> Result<ServiceInfo, ClientError> {
        AgentClient::start(self, kind).await
    }
    async fn certificate(&self) -> Result<Option<CertificateStatus>, ClientError> {
        AgentClient::certificate(self).await
    }
    async fn install_certificate(
        &self,
        cert_pem: &str,
        key_pem: &PrivateKeyPem,
    ) -> Result<CertificateStatus, ClientError> {
        AgentClient::install_certificate(self, cert_pem, key_pem).await
    }
    async fn connection_strings(&self) -> Result<Option<ConnectionStrings>, ClientError> {
        AgentClient::connection_strings(self).await
    }
    async fn set_connection_strings(
        &self,
        strings: &ConnectionStrings,
    ) -> Result<ConnectionStringsUpdate, ClientError> {
        AgentClient::set_connection_strings(self, strings).await
    }
    async fn cleanup_remnants(&self) -> Result<RemnantCleanup, ClientError> {
        AgentClient::cleanup_remnants(self).await
    }
    async fn announce_epoch(&self) -> Result<(), ClientError> {
        AgentClient::announce_epoch(self).await.map(|_| ())
    }
    async fn logs(&self, kind: ServiceKind, tail_bytes: u64) -> Result<ServiceLogs, ClientError> {
        AgentClient::logs(self, kind, tail_bytes).await
    }
}

/// Controller HA: where agent clients get the leader epoch their changes carry; unset
/// for a single daemon (changes carry none).
pub(crate) type Fence = Arc<OnceLock<Arc<dyn EpochSource>>>;

/// Makes a client for an endpoint.
pub(crate) trait Connector: Send + Sync {
    fn connect(&self, endpoint: &AgentEndpoint) -> Result<Arc<dyn AgentApi>, ClientError>;
}

/// Real HTTPS clients with the daemon's mTLS identity, all sending through one HTTPS
/// client: one TLS configuration, and one pool of kept-alive connections bounded in all
/// ([`steward_agent::AGENT_POOL`]) instead of one pool per agent.
pub(crate) struct ClientConnector {
    pub http: Arc<HttpsClient>,
    pub timeout: Duration,
    pub fence: Fence,
}

impl ClientConnector {
    pub(crate) fn new(tls: rustls::ClientConfig, timeout: Duration, fence: Fence) -> Self {
        Self {
            http: Arc::new(steward_agent::agent_https(tls)),
            timeout,
            fence,
        }
    }
}

impl Connector for ClientConnector {
    fn connect(&self, endpoint: &AgentEndpoint) -> Result<Arc<dyn AgentApi>, ClientError> {
        let client =
            AgentClient::sharing(&endpoint.base_url, Arc::clone(&self.http), self.timeout)?;
        Ok(Arc::new(match self.fence.get() {
            Some(source) => client.with_epochs(Arc::clone(source)),
            None => client,
        }))
    }
}

/// A client and the endpoint it was made for.
type Cached = (AgentEndpoint, Arc<SharedListing>);

/// How often kept listings past their use are dropped.
const SWEEP: Duration = Duration::from_secs(10);

/// One client per server, rebuilt when the server's agent URL changes; each shares its
/// service listings among the reconciles that can use them.
pub(crate) struct Agents {
    connector: Arc<dyn Connector>,
    endpoints: EndpointFn,
    cache: Mutex<HashMap<String, Cached>>,
    swept: Mutex<Instant>,
    /// Since when a reconcile needs its listing, by why it runs.
    pub(crate) freshness: Freshness,
}

impl Agents {
    pub(crate) fn new(connector: Arc<dyn Connector>, endpoints: EndpointFn) -> Self {
        Self {
            connector,
            endpoints,
            cache: Mutex::new(HashMap::new()),
            swept: Mutex::new(Instant::now()),
            freshness: Freshness::default(),
        }
    }

    pub(crate) fn endpoint(&self, server: &Server) -> AgentEndpoint {
        (self.endpoints)(server)
    }

    pub(crate) fn get(&self, server: &Server) -> Result<Arc<dyn AgentApi>, ClientError> {
        let endpoint = self.endpoint(server);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&cache);
        if let Some((cached, client)) = cache.get(&server.name) {
            if *cached == endpoint {
                return Ok(client.clone());
            }
        }
        let client = Arc::new(SharedListing::new(self.connector.connect(&endpoint)?));
        cache.insert(server.name.clone(), (endpoint, client.clone()));
        Ok(client)
    }

    /// Now and then, drop the listings kept past their use.
    fn sweep(&self, cache: &HashMap<String, Cached>) {
        let now = Instant::now();
        {
            let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            if now.saturating_duration_since(*swept) < SWEEP {
                return;
            }
            *swept = now;
        }
        for (_, client) in cache.values() {
            client.expire(now);
        }
    }

    pub(crate) fn forget(&self, server: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(server);
    }
}
