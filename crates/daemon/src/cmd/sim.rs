//! `steward sim`: a simulated fleet of N servers (crate steward-sim) for a daemon to
//! manage, and `steward sim generate`, its desired state. With `--shards S` the servers
//! are split over S child processes, since each process may open only so many files
//! (every service holds listeners and its prober's connections).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use steward_model::catalog::DEFAULT_AGENT_PORT;
use steward_sim::generate::{self, FleetShape};
use steward_sim::{sim_servers, SimConfig, SimFleet};

use crate::lab::LabDatabase;

/// The control API's default port on every simulated server's address.
const DEFAULT_CONTROL_PORT: u16 = 7444;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<SimCommand>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// The daemon's state directory: the steward CA the agents' certificates come from
    /// (created when missing); the sim keeps its agents' state in STATE_DIR/sim.
    #[arg(long, default_value = ".steward")]
    state_dir: PathBuf,
    /// Split the servers over this many processes (each may open only so many files).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    shards: u16,
    /// Which shard this process is (set by the parent of a sharded sim).
    #[arg(long, hide = true)]
    shard_index: Option<u16>,
    /// Each server's control API port (fault injection), on the server's own address.
    #[arg(long, default_value_t = DEFAULT_CONTROL_PORT)]
    control_port: u16,
    /// The share of installs (0-100) that fail on every server.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    install_failure_percent: u8,
    /// The fleet's desired state: written here (with --servers and --services-per-server)
    /// when the directory holds no installation.yaml, and its database (a TDS server on
    /// loopback, as in the lab) served while the sim runs.
    #[arg(long)]
    desired_state: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// How many servers.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Services per server (1-11; the catalog's first K kinds), for the desired state.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u8).range(1..=11))]
    services_per_server: u8,
    /// The first server's address (127.x.y.z); the others follow, skipping .0 and .255.
    #[arg(long, default_value_t = Ipv4Addr::new(127, 1, 0, 1))]
    first_address: Ipv4Addr,
    /// The agents' port.
    #[arg(long, default_value_t = DEFAULT_AGENT_PORT)]
    agent_port: u16,
    /// Every kind's health-check interval in the desired state.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    probe_interval: Duration,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Write the desired state of a simulated fleet into --out.
    Generate {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    steward_model::syntax::parse_duration(s).map_err(|e| e.to_string())
}

impl FleetArgs {
    fn shape(&self) -> FleetShape {
        FleetShape {
            servers: self.servers,
            services_per_server: usize::from(self.services_per_server),
            first_address: self.first_address,
            agent_port: self.agent_port,
            probe_interval: self.probe_interval,
        }
    }
}

pub async fn run(args: Args) -> u8 {
    let result = match &args.command {
        Some(SimCommand::Generate { fleet, out }) => generate(fleet, out),
        None => serve(args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

fn generate(fleet: &FleetArgs, out: &Path) -> anyhow::Result<()> {
    if !fleet.first_address.is_loopback() {
        anyhow::bail!(
            "--first-address {} is not a loopback address",
            fleet.first_address
        );
    }
    let servers = generate::write(&fleet.shape(), out)?;
    println!(
        "wrote {} servers x {} services to {}",
        servers.len(),
        generate::kinds(usize::from(fleet.services_per_server)).len(),
        out.display()
    );
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    crate::open_files::raise();
    if !args.fleet.first_address.is_loopback() {
        anyhow::bail!(
            "--first-address {} is not a loopback address",
            args.fleet.first_address
        );
    }
    let shutdown = crate::signals::shutdown_token();
    let state_dir = std::path::absolute(&args.state_dir)
        .with_context(|| format!("cannot resolve {}", args.state_dir.display()))?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let ca = super::run::load_or_init_ca(&state_dir.join("ca"))?;
    let servers = sim_servers(args.fleet.servers, args.fleet.first_address)?;

    if args.shards > 1 && args.shard_index.is_none() {
        return parent(&args, &state_dir, shutdown).await;
    }
    let mut database = database(&args, &state_dir).await?;
    let (index, count) = (
        usize::from(args.shard_index.unwrap_or(0)),
        usize::from(args.shards),
    );
    let share = servers.len().div_ceil(count);
    let mine: Vec<_> = servers
        .into_iter()
        .skip(index * share)
        .take(share)
        .collect();
    let (first, last) = match (mine.first(), mine.last()) {
        (Some(f), Some(l)) => (f.address, l.address),
        _ => {
            tracing::warn!(shard = index, "no servers for this shard");
            shutdown.cancelled().await;
            return Ok(());
        }
    };
    let config = SimConfig {
        servers: mine,
        agent_port: args.fleet.agent_port,
        control_port: Some(args.control_port),
        work_dir: state_dir.join("sim"),
        install_failure_percent: args.install_failure_percent,
    };
    let count = config.servers.len();
    let mut fleet = tokio::select! {
        fleet = SimFleet::start(config, &ca) => fleet?,
        () = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(
        servers = count,
        %first,
        %last,
        agent_port = args.fleet.agent_port,
        control_port = args.control_port,
        shard = index,
        "sim: fleet ready"
    );
    shutdown.cancelled().await;
    fleet.shutdown().await;
    if let Some(db) = database.as_mut() {
        db.stop().await;
    }
    tracing::info!(shard = index, "sim: stopped");
    Ok(())
}

/// The fleet's desired state (generated when absent) and its database, served by the
/// first shard only.
async fn database(args: &Args, state_dir: &Path) -> anyhow::Result<Option<LabDatabase>> {
    let Some(dir) = &args.desired_state else {
        return Ok(None);
    };
    if args.shard_index.unwrap_or(0) != 0 {
        return Ok(None);
    }
    if !dir.join("installation.yaml").exists() {
        generate(&args.fleet, dir)?;
    }
    let compiled = steward_model::validate_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let Some(snapshot) = compiled.snapshot else {
        anyhow::bail!(
            "{} is not a valid desired state: run `steward validate {}`",
            dir.display(),
            dir.display()
        );
    };
    let mut database = LabDatabase::new(state_dir.join("sim-database.log"));
    let program = std::env::current_exe().context("cannot find the steward executable")?;
    if let Some(note) = database.ensure(&snapshot, dir, &program).await {
        anyhow::bail!("the fleet's database: {note}");
    }
    Ok(Some(database))
}

/// Run one child process per shard until shutdown, then stop them all.
async fn parent(
    args: &Args,
    state_dir: &Path,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("cannot find the steward executable")?;
    let mut children = Vec::new();
    for index in 0..args.shards {
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("sim")
            .arg("--servers")
            .arg(args.fleet.servers.to_string())
            .arg("--services-per-server")
            .arg(args.fleet.services_per_server.to_string())
            .arg("--first-address")
            .arg(args.fleet.first_address.to_string())
            .arg("--agent-port")
            .arg(args.fleet.agent_port.to_string())
            .arg("--probe-interval")
            .arg(format!("{}ms", args.fleet.probe_interval.as_millis()))
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--shards")
            .arg(args.shards.to_string())
            .arg("--shard-index")
            .arg(index.to_string())
            .arg("--control-port")
            .arg(args.control_port.to_string())
            .arg("--install-failure-percent")
            .arg(args.install_failure_percent.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &args.desired_state {
            command
                .arg("--desired-state")
                .arg(std::path::absolute(dir)?);
        }
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's. A shard
        // must not outlive a parent that died without stopping it.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        children.push(command.spawn().context("cannot start a sim shard")?);
    }
    let children = Arc::new(tokio::sync::Mutex::new(children));
    let exited = {
        let children = children.clone();
        async move {
            // Poll rather than hold the lock across a wait: shutdown needs it too.
            loop {
                for child in children.lock().await.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return status;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let failed = tokio::select! {
        () = shutdown.cancelled() => None,
        status = exited => Some(status),
    };
    for child in children.lock().await.iter_mut() {
        if let Some(pid) = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for child in children.lock().await.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    match failed {
        Some(status) => anyhow::bail!("a sim shard exited ({status}); the others were stopped"),
        None => Ok(()),
    }
}
