//! Controller HA (`steward run --ha etcd://... --ha-id NAME`): the daemon takes part in
//! steward-leader's election. Only the leader changes anything: agent changes carry its
//! epoch (and are not sent by a follower), the database and directories are only looked
//! at by followers, and only the leader mails. Followers watch the same desired state,
//! keep their observed state warm with read-only calls and probes, serve the API and
//! dashboard, and answer `POST`s with 503 and the leader's address (`guard.rs`).
//!
//! Before anything starts, the daemon's CA must be the one the cluster agreed on (the
//! first daemon publishes its fingerprint in etcd); a daemon without a CA never makes one
//! when others exist: it is set up from a backup.

mod guard;
mod metrics;
mod status;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use steward_controllers::{ControllersHandle, MetricsRegistry};
use steward_leader::{Cluster, Election, ElectionConfig, Endpoints, LeaderError, Leadership};
use tokio_util::sync::CancellationToken;

pub use guard::refuse_changes_on_followers;
pub use status::HaStatus;

/// `steward run`'s HA options.
#[derive(Debug, Clone, clap::Args)]
pub struct HaArgs {
    /// Run as one of several daemons electing a leader on etcd:
    /// etcd://HOST:PORT[,HOST:PORT...] (every member of the cluster).
    #[arg(long, value_name = "ENDPOINTS")]
    pub ha: Option<String>,
    /// This daemon's name in the election (unique among the daemons).
    #[arg(long, requires = "ha")]
    pub ha_id: Option<String>,
    /// The leader's lease: how long a leader that died without resigning keeps the
    /// others waiting (whole seconds, at least 2s).
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "ha")]
    pub ha_lease_ttl: Duration,
    /// How often the leader renews its lease (at most half the lease).
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "ha")]
    pub ha_renew_every: Duration,
    /// How soon a failed etcd call is tried again.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, requires = "ha")]
    pub ha_retry_every: Duration,
    /// This daemon's API as other daemons should point clients to it
    /// [default: http://LISTEN].
    #[arg(long, value_name = "URL", requires = "ha")]
    pub ha_advertise: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    steward_model::syntax::parse_duration(s).map_err(|e| e.to_string())
}

/// The election's configuration from the command line; `None` without `--ha`.
pub fn config(
    args: &HaArgs,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Option<ElectionConfig>> {
    let Some(raw) = &args.ha else {
        return Ok(None);
    };
    let id = args
        .ha_id
        .clone()
        .context("--ha needs --ha-id NAME: this daemon's name in the election")?;
    let api = args
        .ha_advertise
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"));
    let mut config = ElectionConfig::new(Endpoints::parse(raw)?, id, api);
    config.ttl = args.ha_lease_ttl;
    config.renew_every = args.ha_renew_every;
    config.retry_every = args.ha_retry_every;
    config.validate()?;
    Ok(Some(config))
}

/// The SHA-256 fingerprint of a CA certificate (of its DER, as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn ca_fingerprint(cert_pem: &str) -> anyhow::Result<String> {
    use rustls::pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context("the steward CA certificate is not PEM")?;
    let digest = sha2::Sha256::digest(der.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Connect to etcd and make sure no CA is made where the cluster already has one: call
/// before the CA is loaded or created. `ca_dir` is the daemon's CA directory.
pub async fn join(config: ElectionConfig, ca_dir: &Path) -> anyhow::Result<Cluster> {
    let cluster = Cluster::connect(config).await?;
    if !ca_dir.join("ca.pem").exists() {
        if let Some(theirs) = cluster.published_ca().await? {
            return Err(LeaderError::CaMissing { theirs }.into());
        }
    }
    Ok(cluster)
}

/// The election, running; its leadership is what the controllers and the API read.
pub struct Running {
    pub leadership: Leadership,
    metrics: metrics::HaMetrics,
    /// Cancel after the controllers stopped: the leader then resigns.
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Agree on the CA (refusing to start on a different one), register the metrics and
/// start campaigning.
pub async fn start(
    cluster: Cluster,
    ca_pem: &str,
    registry: &MetricsRegistry,
) -> anyhow::Result<Running> {
    cluster.agree_on_ca(&ca_fingerprint(ca_pem)?).await?;
    let (election, leadership) = Election::new(cluster);
    let metrics = metrics::HaMetrics::register(registry, leadership.id())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(election.run(stop.clone()));
    Ok(Running {
        leadership,
        metrics,
        stop,
        task,
    })
}

/// Fences the controllers' agent calls with this daemon's epoch.
struct LeaderFence(Leadership);

impl steward_agent::EpochSource for LeaderFence {
    fn acting_epoch(&self) -> Result<u64, String> {
        self.0
            .acting_epoch()
            .ok_or_else(|| status::not_leading(&self.0))
    }
}

/// Let the controllers act only while leading, and follow the election: log and count
/// each new leader, and on winning, take over (tell the agents, reconcile everything).
impl Running {
    pub fn wire(&self, controllers: &steward_controllers::Controllers, handle: ControllersHandle) {
        controllers.fence(Arc::new(LeaderFence(self.leadership.clone())));
        tokio::spawn(follow(
            self.leadership.clone(),
            handle,
            self.metrics.clone(),
        ));
    }
}

async fn follow(
    mut leadership: Leadership,
    controllers: ControllersHandle,
    metrics: metrics::HaMetrics,
) {
    let mut known: Option<(String, u64)> = None;
    let mut acting = false;
    loop {
        let leader = leadership.leader();
        let now = leader.as_ref().map(|l| (l.id.clone(), l.epoch));
        if now.is_some() && now != known {
            let l = leader.as_ref().expect("checked");
            tracing::info!(leader = %l.id, epoch = l.epoch, api = %l.api, "leader");
            metrics.leader_changed();
            known = now;
        }
        let leads = leadership.acting_epoch().is_some();
        metrics.set_leading(leads);
        if leads && !acting {
            controllers.take_over().await;
        } else if !leads && acting {
            tracing::warn!(
                "not the leader any more: changes stop here ({})",
                status::not_leading(&leadership)
            );
        }
        acting = leads;
        if leadership.changed().await.is_err() {
            return;
        }
    }
}
