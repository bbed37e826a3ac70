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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use steward_controllers::{ControllersHandle, MetricsRegistry};
use steward_leader::{
    ClientIdentity, Cluster, Election, ElectionConfig, Endpoints, EtcdTls, LeaderError, Leadership,
};
use tokio_util::sync::CancellationToken;

pub use guard::refuse_changes_on_followers;
pub use status::HaStatus;

/// `steward run`'s HA options.
#[derive(Debug, Clone, clap::Args)]
pub struct HaArgs {
    /// Run as one of several daemons electing a leader on etcd:
    /// etcd://HOST:PORT[,HOST:PORT...] (every member of the cluster), or etcds://... for
    /// TLS (with --ha-trust).
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
    /// With etcds:// endpoints: the CA certificate(s), PEM, that signed the etcd members'
    /// certificates.
    #[arg(long, value_name = "FILE", requires = "ha")]
    pub ha_trust: Option<PathBuf>,
    /// This daemon's client certificate, PEM, for etcd members started with
    /// --client-cert-auth (with --ha-key).
    #[arg(long, value_name = "FILE", requires_all = ["ha", "ha_key"])]
    pub ha_cert: Option<PathBuf>,
    /// The private key of --ha-cert, PEM.
    #[arg(long, value_name = "FILE", requires_all = ["ha", "ha_cert"])]
    pub ha_key: Option<PathBuf>,
}

/// Certificates and keys are small; a larger file is the wrong file.
const MAX_PEM_FILE: u64 = 1 << 20;

fn read_pem(flag: &str, path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_PEM_FILE,
        "{flag} {}: {size} bytes, more than a PEM file of certificates or a key can be ({MAX_PEM_FILE})",
        path.display()
    );
    std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read it as text", path.display()))
}

/// The TLS settings for etcd from `--ha-trust`, `--ha-cert` and `--ha-key`, each file
/// checked to hold what it should before anything connects.
fn etcd_tls(args: &HaArgs) -> anyhow::Result<Option<EtcdTls>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(trust) = &args.ha_trust else {
        anyhow::ensure!(
            args.ha_cert.is_none(),
            "--ha-cert needs --ha-trust FILE: the CA that signed the etcd members' certificates"
        );
        return Ok(None);
    };
    let certificates = |flag: &str, path: &Path| -> anyhow::Result<String> {
        let pem = read_pem(flag, path)?;
        let found = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{flag} {}: not PEM certificates: {e}", path.display()))?;
        anyhow::ensure!(
            !found.is_empty(),
            "{flag} {}: holds no PEM certificate",
            path.display()
        );
        Ok(pem)
    };
    let trust_pem = certificates("--ha-trust", trust)?;
    let client = match (&args.ha_cert, &args.ha_key) {
        (Some(cert), Some(key)) => {
            let cert_pem = certificates("--ha-cert", cert)?;
            let key_pem = read_pem("--ha-key", key)?;
            // The parse error never quotes the key.
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
                anyhow::anyhow!("--ha-key {}: holds no PEM private key", key.display())
            })?;
            Some(ClientIdentity::new(cert_pem, key_pem))
        }
        _ => None,
    };
    Ok(Some(EtcdTls { trust_pem, client }))
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
    config.tls = etcd_tls(args)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ha: &str) -> HaArgs {
        HaArgs {
            ha: Some(ha.to_owned()),
            ha_id: Some("ctl1".to_owned()),
            ha_lease_ttl: Duration::from_secs(10),
            ha_renew_every: Duration::from_secs(2),
            ha_retry_every: Duration::from_millis(500),
            ha_advertise: None,
            ha_trust: None,
            ha_cert: None,
            ha_key: None,
        }
    }

    fn listen() -> std::net::SocketAddr {
        "127.0.0.1:9464".parse().unwrap()
    }

    #[test]
    fn etcds_needs_a_trust_file_and_etcd_refuses_one() {
        let err = config(&args("etcds://127.0.0.1:2379"), listen()).unwrap_err();
        assert!(format!("{err:#}").contains("--ha-trust"), "{err:#}");

        let dir = tempfile::tempdir().unwrap();
        let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let mut plain = args("etcd://127.0.0.1:2379");
        plain.ha_trust = Some(ca.cert_path());
        let err = config(&plain, listen()).unwrap_err();
        assert!(format!("{err:#}").contains("etcds://"), "{err:#}");

        let mut tls = args("etcds://127.0.0.1:2379");
        tls.ha_trust = Some(ca.cert_path());
        let config = config(&tls, listen()).unwrap().unwrap();
        assert!(config.tls.is_some_and(|t| t.client.is_none()));
    }

    #[test]
    fn each_file_is_checked_and_a_key_is_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let ca = steward_pki::CertificateAuthority::init(dir.path().join("ca")).unwrap();
        let client = ca.issue_client("ctl1").unwrap();
        let (cert, key) = client.write_pair(dir.path(), "client").unwrap();
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "SECRET-LOOKING TEXT\n").unwrap();

        let mut tls = args("etcds://127.0.0.1:2379");
        tls.ha_trust = Some(not_pem.clone());
        let err = format!("{:#}", config(&tls, listen()).unwrap_err());
        assert!(
            err.contains("--ha-trust") && err.contains("notes.txt"),
            "{err}"
        );

        tls.ha_trust = Some(ca.cert_path());
        tls.ha_cert = Some(cert.clone());
        tls.ha_key = Some(not_pem);
        let err = format!("{:#}", config(&tls, listen()).unwrap_err());
        assert!(
            err.contains("--ha-key") && err.contains("no PEM private key"),
            "{err}"
        );
        assert!(!err.contains("SECRET-LOOKING"), "{err}");

        tls.ha_key = Some(dir.path().join("missing.key"));
        let err = format!("{:#}", config(&tls, listen()).unwrap_err());
        assert!(err.contains("missing.key"), "{err}");

        tls.ha_key = Some(key);
        let config = config(&tls, listen()).unwrap().unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(config.tls.is_some_and(|t| t.client.is_some()));
    }
}
