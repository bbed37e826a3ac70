//! `steward run`: the daemon. Watches the desired state, runs the controllers, serves the
//! HTTP API and, with `--lab`, starts a real agent per Server on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use steward_controllers::{
    AgentEndpoint, Controllers, ControllersConfig, ControllersHandle, Desired, DirectoryLab,
};
use steward_model::snapshot::Server;
use steward_model::SecretValue;
use steward_pki::CertificateAuthority;
use steward_watch::{WatchConfig, WatchHandle};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::lab::balancer::LabBalancer;
use crate::lab::directory::LabDirectories;
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
    /// Reach the agents of a lab another daemon runs (`steward run --lab`, same
    /// --lab-first-address and desired state) without starting any: a second daemon of
    /// a controller HA lab.
    #[arg(long, conflicts_with = "lab")]
    lab_attach: bool,
    #[command(flatten)]
    ha: crate::ha::HaArgs,
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

impl Args {
    /// `--lab`: the lab supplies agents and a directory.
    pub(crate) fn lab(&self) -> bool {
        self.lab
    }
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
    crate::open_files::raise();
    // First, before anything is created or started: a port in use fails here, at once.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--listen): is another steward running there?",
                args.listen
            )
        })?;
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
    let shutdown = crate::signals::shutdown_token();
    tokio::spawn(crate::heap::release_periodically(shutdown.clone()));
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let dir = desired_state_dir(&args)?;
    tracing::info!(desired_state = %dir.display(), lab = args.lab, "starting steward");

    // Controller HA: etcd first, so that a daemon never makes a CA of its own where the
    // others already have one.
    let cluster = match crate::ha::config(&args.ha, args.listen)? {
        Some(config) => Some(crate::ha::join(config, &args.state_dir.join("ca")).await?),
        None => None,
    };
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
    let registry = steward_controllers::MetricsRegistry::default();
    let ds_metrics = DesiredStateMetrics::register(&registry)?;
    let ha = match cluster {
        Some(cluster) => Some(crate::ha::start(cluster, ca.cert_pem(), &registry).await?),
        None => None,
    };
    tokio::spawn(report_desired_state(watch_handle.clone(), ds_metrics));

    // The lab's addresses: one record, assigned by the lab fleet, read by the endpoints.
    let addresses = Arc::new(RwLock::new(LabAddresses::starting_at(
        args.lab_first_address,
    )));
    let endpoints: Arc<dyn Fn(&Server) -> AgentEndpoint + Send + Sync> =
        if args.lab || args.lab_attach {
            let addresses = Arc::clone(&addresses);
            Arc::new(move |server: &Server| lab_endpoint(server, &addresses))
        } else {
            Arc::new(AgentEndpoint::from_server)
        };
    let controllers = Controllers::new(
        ControllersConfig {
            ca: Some(Arc::clone(&ca)),
            agent_tls,
            // The installation's own CAs (certFile, trust) are added, and re-read when
            // their files change, by the controllers.
            probe_roots: vec![ca.cert_pem().to_owned()],
            endpoints,
            resync: args.resync,
            agent_timeout: Duration::from_secs(5),
            // Each server-keyed look talks to its own agent and per_server bounds the
            // calls one agent gets at once, so the budget is for the daemon's own work:
            // at 16, installs and resync looks waited on agent round trips, not on CPU.
            max_concurrent: 64,
            per_server: 4,
            installed_by: "steward".to_owned(),
            state_dir: Some(args.state_dir.clone()),
        },
        &registry,
    )?;
    let lab_directories = Arc::new(tokio::sync::Mutex::new(LabDirectories::new(
        // Beside the lab's server directories, not among them.
        args.state_dir.join("directories"),
        args.lab_first_address,
    )));
    if args.lab {
        // The lab's directories: at their lab addresses, certificates from the steward CA.
        let addresses = lab_directories.lock().await.addresses();
        controllers.lab_directories(DirectoryLab {
            trust: vec![ca.cert_path()],
            address: Arc::new(move |name: &str| {
                addresses.read().ok().and_then(|a| a.get(name).copied())
            }),
        });
    }
    // The lab's HAProxy: on the address below the first server's, low ports mapped.
    let lab_balancer_settings = crate::lab::balancer::settings(args.lab_first_address);
    if args.lab {
        controllers.balancer_settings(lab_balancer_settings.clone());
    }
    let lab_balancer = Arc::new(tokio::sync::Mutex::new(LabBalancer::new(
        args.state_dir.clone(),
        lab_balancer_settings,
    )));
    let handle = controllers.handle();
    if let Some(ha) = &ha {
        ha.wire(&controllers, handle.clone());
    }
    tokio::spawn(super::notify::report_invalid(
        watch_handle.clone(),
        handle.clone(),
    ));

    if args.lab {
        // All or nothing: a half-started lab would leave the other servers unreachable.
        let _ = watch_handle.status().wait_for(|s| s.attempts > 0).await;
        if let Some(desired) = watch_handle.current() {
            crate::lab::check_room(
                &LabAddresses::starting_at(args.lab_first_address),
                &desired.snapshot,
            )?;
        }
    }
    let lab_fleet = if args.lab {
        Some(Arc::new(tokio::sync::Mutex::new(LabFleet::new(
            std::env::current_exe().context("cannot find the steward executable")?,
            lab_dir(&args.state_dir),
            Arc::clone(&addresses),
        ))))
    } else {
        None
    };

    let (desired_tx, desired_rx) = watch::channel(None);
    tokio::spawn(forward_desired(
        watch_handle.clone(),
        desired_tx,
        dir.clone(),
        lab_fleet.clone().map(|fleet| LabSetup {
            fleet,
            ca: Arc::clone(&ca),
            store: handle.store(),
            directories: Arc::clone(&lab_directories),
            balancer: Arc::clone(&lab_balancer),
        }),
        args.lab_attach.then(|| Arc::clone(&addresses)),
    ));
    tokio::spawn(report_convergence(handle.clone()));

    let app = api::router(AppState {
        store: handle.store(),
        controllers: handle,
        watch: watch_handle.clone(),
        registry,
        ca_pem: Some(Arc::from(ca.cert_pem())),
        reconcile_token: args.reconcile_token.take().map(Arc::new),
        backup: Some(Arc::new(api::BackupSource::from_env(
            args.state_dir.clone(),
        ))),
        ha: ha.as_ref().map(|ha| ha.leadership.clone()),
    });
    tracing::info!("API and dashboard on http://{}", args.listen);
    let http = tokio::spawn(api::serve(
        listener,
        app,
        shutdown.clone().cancelled_owned(),
    ));

    let report = controllers.run(desired_rx, shutdown.clone()).await;
    tracing::info!("controllers stopped ({report})");
    if let Some(ha) = ha {
        // Only now, with nothing in flight: a follower takes over at once.
        ha.stop.cancel();
        let _ = ha.task.await;
    }
    if let Some(fleet) = lab_fleet {
        // The directories first: the fleet's clean-up takes any process left on the
        // lab's state directory for an orphaned service.
        lab_directories.lock().await.shutdown().await;
        lab_balancer.lock().await.shutdown().await;
        fleet.lock().await.shutdown(Duration::from_secs(8)).await;
        tracing::info!("lab stopped");
    }
    let _ = http.await;
    let _ = watch_task.await;
    Ok(())
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

pub(crate) fn load_or_init_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
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

/// What the lab needs to place a generation's servers before the controllers see it.
struct LabSetup {
    fleet: Arc<tokio::sync::Mutex<LabFleet>>,
    ca: Arc<CertificateAuthority>,
    /// Where the lab says what it could not do for the database.
    store: Arc<steward_controllers::Store>,
    directories: Arc<tokio::sync::Mutex<LabDirectories>>,
    balancer: Arc<tokio::sync::Mutex<LabBalancer>>,
}

/// Hand each new generation, with the loader's diff, to the controllers. In lab mode its
/// servers' agents are started and their addresses assigned first, in this same task, so
/// the controllers reach new agents at once.
async fn forward_desired(
    watch: WatchHandle,
    tx: watch::Sender<Option<Desired>>,
    dir: PathBuf,
    lab: Option<LabSetup>,
    attached: Option<Arc<RwLock<LabAddresses>>>,
) {
    let mut desired = watch.desired();
    loop {
        let current = desired.borrow_and_update().clone();
        if let Some(state) = current {
            if let Some(addresses) = &attached {
                // The same numbering the lab daemon gives the same servers.
                addresses
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_for(&state.snapshot);
            }
            if let Some(lab) = &lab {
                let mut fleet = lab.fleet.lock().await;
                if let Err(e) = fleet.ensure(&state.snapshot, &lab.ca) {
                    tracing::error!(error = %e, "lab");
                }
                let note = fleet.ensure_database(&state.snapshot, &dir).await;
                lab.store.set_database_note(note);
                drop(fleet);
                let mut directories = lab.directories.lock().await;
                for e in directories.ensure(&state.snapshot, &dir, &lab.ca).await {
                    tracing::error!(error = %e, "lab");
                }
                drop(directories);
                lab.balancer.lock().await.ensure(&state.snapshot).await;
            }
            let _ = tx.send(Some(Desired {
                generation: state.generation,
                snapshot: state.snapshot,
                dir: dir.clone(),
                diff: Some(state.diff),
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

/// Log `converged in N s` once per generation the controllers accepted, when the fleet is
/// what it declares (every declared service installed, running and healthy, pending
/// prunes done), counted from that generation's acceptance.
async fn report_convergence(controllers: ControllersHandle) {
    let store = controllers.store();
    let in_force = controllers.desired();
    let mut changes = store.changes();
    let mut reported = 0u64;
    loop {
        if let Some(accepted) = in_force.current() {
            let generation = accepted.generation();
            if generation > reported && store.converged(generation) {
                tracing::info!(
                    generation,
                    "converged in {:.1} s",
                    accepted.at.elapsed().as_secs_f64()
                );
                reported = generation;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
