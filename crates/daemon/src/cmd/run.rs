//! `steward run`: the daemon. Watches the desired state, runs the controllers, serves the
//! HTTP API and, with `--lab`, starts a real agent per Server on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use steward_controllers::{AgentEndpoint, Controllers, ControllersConfig, Desired};
use steward_model::snapshot::Server;
use steward_model::SecretValue;
use steward_pki::CertificateAuthority;
use steward_watch::{WatchConfig, WatchHandle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::lab::{lab_dir, LabAddresses, LabFleet, DEFAULT_FIRST_ADDRESS};
use crate::metrics::DesiredStateMetrics;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The desired-state directory [default: ./desired-state, or the bundled example
    /// written to STATE_DIR/desired-state when there is none].
    #[arg(long)]
    desired_state: Option<PathBuf>,
    /// Start a real agent per Server on its own loopback address (127.0.0.11, .12, ...).
    #[arg(long)]
    lab: bool,
    /// Where the HTTP API (status, metrics, dashboard) listens.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// The daemon's state: the steward CA, its client certificate, the lab's agents.
    #[arg(long, default_value = ".steward")]
    state_dir: PathBuf,
    /// Bearer token for POST /api/v1/reconcile (unset: the endpoint is disabled).
    #[arg(long, env = "STEWARD_RECONCILE_TOKEN", hide_env_values = true)]
    reconcile_token: Option<SecretValue>,
    /// The lab's first server address, a loopback address (127.x.y.z); the others
    /// follow in the same /24.
    #[arg(long, default_value_t = DEFAULT_FIRST_ADDRESS, value_parser = parse_lab_address)]
    lab_first_address: std::net::Ipv4Addr,
    /// How often a Ready service is re-checked (e.g. 2s, 10s; at least 100ms).
    #[arg(long, default_value = "2s", value_parser = parse_resync)]
    resync: Duration,
}

/// Below this, re-checks are busy work (0s meant ~1,700 reconciles a second).
const MIN_RESYNC: Duration = Duration::from_millis(100);

fn parse_resync(s: &str) -> Result<Duration, String> {
    let d = steward_model::syntax::parse_duration(s).map_err(|e| e.to_string())?;
    if d < MIN_RESYNC {
        return Err(format!(
            "{s} is too short: services would be re-checked continuously; use at least 100ms"
        ));
    }
    Ok(d)
}

/// The lab's agents must live on this machine: a 127/8 address (not .0 or .255 of
/// its /24), never a real host the daemon would then dial.
fn parse_lab_address(s: &str) -> Result<std::net::Ipv4Addr, String> {
    let ip: std::net::Ipv4Addr = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address: lab agents run on this machine, on 127.x.y.z"
        ));
    }
    if matches!(ip.octets()[3], 0 | 255) {
        return Err(format!(
            "{ip} ends in .0 or .255: the lab numbers servers from it up to .254"
        ));
    }
    Ok(ip)
}

pub async fn run(args: Args) -> u8 {
    match serve(args).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

async fn serve(mut args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Absolute from here on: the lab's agents and services get these paths on their
    // command lines and run in directories of their own, where a relative path would point
    // somewhere else.
    args.state_dir = std::path::absolute(&args.state_dir)
        .with_context(|| format!("cannot resolve {}", args.state_dir.display()))?;
    if let Some(dir) = &args.desired_state {
        args.desired_state = Some(
            std::path::absolute(dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?,
        );
    }
    let started = Instant::now();
    let shutdown = crate::signals::shutdown_token();
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let dir = desired_state_dir(&args)?;
    tracing::info!(desired_state = %dir.display(), lab = args.lab, "starting steward");

    let ca = Arc::new(load_or_init_ca(&args.state_dir.join("ca"))?);
    let client = ca
        .issue_client("steward-daemon")
        .context("daemon client certificate")?;
    let agent_tls =
        steward_pki::mtls_client_config(ca.cert_pem(), &client.cert_pem, client.key_pem.expose())
            .context("agent TLS configuration")?;

    let (watch_handle, watch_task) =
        steward_watch::watch(dir.clone(), WatchConfig::default(), shutdown.clone())
            .context("cannot watch the desired-state directory")?;
    let registry = prometheus::Registry::new();
    let ds_metrics = DesiredStateMetrics::register(&registry)?;
    tokio::spawn(report_desired_state(watch_handle.clone(), ds_metrics));

    let addresses = Arc::new(RwLock::new(LabAddresses::starting_at(
        args.lab_first_address,
    )));
    let endpoints: Arc<dyn Fn(&Server) -> AgentEndpoint + Send + Sync> = if args.lab {
        let addresses = Arc::clone(&addresses);
        Arc::new(move |server: &Server| lab_endpoint(server, &addresses))
    } else {
        Arc::new(|server: &Server| AgentEndpoint {
            base_url: server.agent_url.clone(),
            connect_ip: None,
        })
    };
    let controllers = Controllers::new(
        ControllersConfig {
            ca: Some(Arc::clone(&ca)),
            agent_tls,
            probe_roots: probe_roots(&watch_handle, &ca).await,
            endpoints,
            resync: args.resync,
            agent_timeout: Duration::from_secs(5),
            max_concurrent: 16,
            per_server: 4,
            installed_by: "steward".to_owned(),
        },
        &registry,
    )?;
    let store = controllers.store();

    if args.lab {
        // All or nothing: a half-started lab would leave the other servers unreachable.
        if let Some(desired) = watch_handle.current() {
            crate::lab::check_room(
                &LabAddresses::starting_at(args.lab_first_address),
                &desired.snapshot,
            )?;
        }
    }
    let lab_fleet = if args.lab {
        let fleet = Arc::new(tokio::sync::Mutex::new(LabFleet::new(
            std::env::current_exe().context("cannot find the steward executable")?,
            lab_dir(&args.state_dir),
            LabAddresses::starting_at(args.lab_first_address),
        )));
        tokio::spawn(follow_lab(
            watch_handle.clone(),
            Arc::clone(&fleet),
            Arc::clone(&ca),
            Arc::clone(&addresses),
            shutdown.clone(),
        ));
        Some(fleet)
    } else {
        None
    };

    let (desired_tx, desired_rx) = watch::channel(None);
    tokio::spawn(forward_desired(
        watch_handle.clone(),
        desired_tx,
        dir.clone(),
        lab_fleet.is_some(),
        Arc::clone(&addresses),
    ));
    tokio::spawn(report_convergence(
        watch_handle.clone(),
        Arc::clone(&store),
        started,
    ));

    let app = api::router(AppState {
        store,
        watch: watch_handle.clone(),
        registry,
        ca_pem: Some(Arc::from(ca.cert_pem())),
        reconcile_token: args.reconcile_token.take().map(Arc::new),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!("API and dashboard on http://{}", args.listen);
    let http = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    });

    let report = controllers.run(desired_rx, shutdown.clone()).await;
    // Each controller logged its own summary as it stopped; this is the total.
    let all = [report.servers, report.certificates, report.services];
    let failed: usize = all.iter().map(|s| s.failed).sum();
    let abandoned: usize = all.iter().map(|s| s.abandoned).sum();
    tracing::info!(
        reconciles = all.iter().map(|s| s.finished()).sum::<usize>(),
        failed,
        abandoned,
        "controllers stopped"
    );
    if let Some(fleet) = lab_fleet {
        fleet.lock().await.shutdown(Duration::from_secs(8)).await;
        tracing::info!("lab stopped");
    }
    let _ = http.await;
    let _ = watch_task.await;
    Ok(())
}

/// The CAs trusted when probing services: the steward CA, plus (from the first desired
/// state) `certificateAuthority.certFile` and `trust`, which issued third-party server
/// certificates. Read once at start: a change of these files needs a daemon restart.
async fn probe_roots(watch: &WatchHandle, ca: &CertificateAuthority) -> Vec<String> {
    let mut roots = vec![ca.cert_pem().to_owned()];
    let mut status = watch.status();
    let _ = status.wait_for(|s| s.attempts > 0).await;
    let Some(desired) = watch.current() else {
        return roots;
    };
    let dir = watch.current_status().directory;
    let authority = &desired.snapshot.installation.certificate_authority;
    for file in authority.cert_file.iter().chain(&authority.trust) {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            dir.join(file)
        };
        // Bounded, and refusing a FIFO (which would block the daemon's start for good).
        match steward_model::load::read_regular_file(&path, 1 << 20).map(String::from_utf8) {
            Ok(Ok(pem)) => roots.push(pem),
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "a trusted CA is not UTF-8 PEM; probes of certificates it issued will fail")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a trusted CA; probes of certificates it issued will fail")
            }
        }
    }
    roots
}

/// The directory to watch: the one given, `./desired-state`, or the bundled example.
fn desired_state_dir(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.desired_state {
        return Ok(dir.clone());
    }
    let local = PathBuf::from(super::DEFAULT_DESIRED_STATE);
    if local.is_dir() {
        return Ok(std::path::absolute(local)?);
    }
    let bundled = args.state_dir.join("desired-state");
    if crate::embedded::write_if_absent(&bundled)? {
        tracing::info!(dir = %bundled.display(), "wrote the bundled example desired state");
    }
    Ok(bundled)
}

fn load_or_init_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
    if dir.join("ca.pem").exists() {
        Ok(CertificateAuthority::load(dir)?)
    } else {
        let ca = CertificateAuthority::init(dir)?;
        tracing::info!(dir = %dir.display(), "created the steward CA");
        Ok(ca)
    }
}

fn lab_endpoint(server: &Server, addresses: &RwLock<LabAddresses>) -> AgentEndpoint {
    let ip = addresses.read().ok().and_then(|a| a.get(&server.hostname));
    let port = server
        .agent_url
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(steward_model::catalog::DEFAULT_AGENT_PORT);
    match ip {
        Some(ip) => AgentEndpoint {
            base_url: format!("https://{ip}:{port}"),
            connect_ip: Some(ip),
        },
        // Not placed (yet, or no room): unreachable, which the server controller reports
        // and retries. Never the real host of `agent_url` (.invalid never resolves).
        None => AgentEndpoint {
            base_url: format!("https://{}.lab.invalid:{port}", server.name),
            connect_ip: None,
        },
    }
}

/// Start lab agents for each new generation's servers, before the controllers see it.
async fn follow_lab(
    watch: WatchHandle,
    fleet: Arc<tokio::sync::Mutex<LabFleet>>,
    ca: Arc<CertificateAuthority>,
    addresses: Arc<RwLock<LabAddresses>>,
    shutdown: CancellationToken,
) {
    let mut desired = watch.desired();
    loop {
        let current = desired.borrow_and_update().clone();
        if let Some(state) = current {
            let mut fleet = fleet.lock().await;
            if let Err(e) = fleet.ensure(&state.snapshot, &ca) {
                tracing::error!(error = %e, "lab");
            }
            if let Ok(mut a) = addresses.write() {
                *a = fleet.addresses().clone();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
        }
    }
}

/// Hand each new generation to the controllers. In lab mode the lab's addresses are
/// assigned first (by `follow_lab`), so the controllers can reach new agents at once.
async fn forward_desired(
    watch: WatchHandle,
    tx: watch::Sender<Option<Desired>>,
    dir: PathBuf,
    lab: bool,
    addresses: Arc<RwLock<LabAddresses>>,
) {
    let mut desired = watch.desired();
    loop {
        let current = desired.borrow_and_update().clone();
        if let Some(state) = current {
            if lab {
                // Wait (briefly) until every server of this generation has a lab address.
                for _ in 0..50 {
                    let placed = addresses.read().is_ok_and(|a| {
                        state
                            .snapshot
                            .servers
                            .values()
                            .all(|s| a.get(&s.hostname).is_some())
                    });
                    if placed {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let _ = tx.send(Some(Desired {
                generation: state.generation,
                snapshot: state.snapshot,
                dir: dir.clone(),
            }));
        }
        if desired.changed().await.is_err() {
            return;
        }
    }
}

/// Keep the desired-state metrics current. (The watcher logs rejections and recoveries,
/// once each; logging here too repeated every error on every status update.)
async fn report_desired_state(watch: WatchHandle, metrics: DesiredStateMetrics) {
    let mut status = watch.status();
    loop {
        metrics.observe(&status.borrow_and_update());
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// Log `converged in N s` once per generation, when every declared service is installed,
/// running and passing its health test.
async fn report_convergence(
    watch: WatchHandle,
    store: Arc<steward_controllers::Store>,
    started: Instant,
) {
    let mut changes = store.changes();
    let mut reported = 0u64;
    loop {
        let generation = watch.current_status().last_applied_generation;
        if generation > reported && store.converged(generation) {
            tracing::info!(
                generation,
                "converged in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            reported = generation;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_ca_file_that_is_a_fifo_does_not_block_the_start() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("desired-state");
        crate::embedded::write_if_absent(&dir).unwrap();
        let installation = std::fs::read_to_string(dir.join("installation.yaml")).unwrap();
        let trusting =
            installation.replace("# trust: [certs/corp-root.pem]", "trust: [corp-root.pem]");
        assert_ne!(trusting, installation);
        std::fs::write(dir.join("installation.yaml"), trusting).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.join("corp-root.pem"))
            .status()
            .unwrap();
        assert!(status.success());
        let ca = CertificateAuthority::init(tmp.path().join("ca")).unwrap();
        // On a thread of its own: a blocked read fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                let (handle, _task) =
                    steward_watch::watch(dir, WatchConfig::default(), shutdown.clone()).unwrap();
                let _ = tx.send(probe_roots(&handle, &ca).await);
                shutdown.cancel();
            });
        });
        let roots = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("reading the trusted CA blocked");
        assert_eq!(roots.len(), 1, "only the steward CA");
    }
}
