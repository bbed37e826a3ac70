//! The lab's load balancer: a real HAProxy in master-worker mode for a desired state whose
//! `loadBalancer.vendor` is `haproxy`, as the lab agents stand in for servers. The balancer
//! controller writes, checks and reloads its configuration (through the master socket)
//! exactly as it would on a production machine; the lab only runs the process: started
//! once the controller has installed a configuration, restarted when it dies (0.2 s,
//! doubling to 10 s), stopped with the lab, and one a crashed daemon left running on the
//! same configuration is stopped first.
//!
//! Its frontends bind the address just below the first lab server's (127.0.0.10 for the
//! default 127.0.0.11), ports below 1024 on 10000 + port ([`settings`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use steward_agent::RestartBackoff;
use steward_balancer::haproxy::Haproxy;
use steward_controllers::BalancerSettings;
use steward_model::resource::LbVendor;
use steward_model::Snapshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::orphans::{signal_group, stop_leftovers};

/// How often the supervisor looks for the configuration the controller installs.
const CONFIG_POLL: Duration = Duration::from_millis(100);
/// How long HAProxy may take to stop (it closes its listeners and ends its sessions).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the controllers need to drive the lab's HAProxy: bind the lab's address, map
/// ports below 1024 (no privileges), the `haproxy` on PATH.
pub fn settings(first: Ipv4Addr) -> BalancerSettings {
    BalancerSettings {
        bind: IpAddr::V4(address(first)),
        map_low_ports: true,
        haproxy: None,
    }
}

/// Just below the first server's address (directories count down from there too; they
/// use other ports).
pub fn address(first: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, d] = first.octets();
    Ipv4Addr::new(a, b, c, d.saturating_sub(1).max(1))
}

/// The files of the HAProxy a snapshot declares, if its vendor is haproxy.
fn declared(snapshot: &Snapshot, state_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let lb = snapshot.installation.load_balancer.as_ref()?;
    if lb.vendor? != LbVendor::Haproxy {
        return None;
    }
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            state_dir.join(p)
        }
    };
    Some((
        resolve(&lb.haproxy.config_file),
        resolve(&lb.haproxy.admin_socket),
    ))
}

#[derive(Debug)]
struct Running {
    files: (PathBuf, PathBuf),
    pid: Arc<AtomicI32>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The lab's HAProxy, if the desired state declares one.
#[derive(Debug)]
pub struct LabBalancer {
    /// The daemon's state directory (relative HAProxy paths resolve against it, as the
    /// controller resolves them).
    state_dir: PathBuf,
    settings: BalancerSettings,
    running: Option<Running>,
}

impl LabBalancer {
    /// `settings`: where it binds and which binary runs it, as the controllers have them.
    pub fn new(state_dir: PathBuf, settings: BalancerSettings) -> Self {
        Self {
            state_dir,
            settings,
            running: None,
        }
    }

    /// Supervise an HAProxy when `snapshot` declares one (a new one when its files
    /// moved); stop it when the load balancer left the desired state.
    pub async fn ensure(&mut self, snapshot: &Snapshot) {
        let wanted = declared(snapshot, &self.state_dir);
        if self.running.as_ref().map(|r| &r.files) == wanted.as_ref() {
            return;
        }
        self.shutdown().await;
        let Some(files) = wanted else {
            return;
        };
        let bin = match self.settings.binary() {
            Ok(bin) => bin,
            Err(e) => {
                // The balancer controller reports it as the load balancer's condition.
                tracing::error!("lab load balancer: {e}; the farms stay down");
                return;
            }
        };
        let haproxy = Haproxy::new(bin, files.0.clone(), files.1.clone());
        let pid = Arc::new(AtomicI32::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(haproxy, pid.clone(), stop.clone()));
        self.running = Some(Running {
            files,
            pid,
            stop,
            task,
        });
    }

    /// Stop HAProxy (master and workers), SIGKILL after a grace period.
    pub async fn shutdown(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.cancel();
        if tokio::time::timeout(STOP_GRACE * 2, running.task)
            .await
            .is_err()
        {
            let pid = running.pid.load(Ordering::SeqCst);
            if pid != 0 {
                signal_group(pid, Signal::KILL);
            }
        }
    }
}

/// Keep HAProxy running until `stop`.
async fn supervise(haproxy: Haproxy, pid: Arc<AtomicI32>, stop: CancellationToken) {
    let mut backoff = RestartBackoff::default();
    let log = haproxy.config_file.with_file_name("haproxy.log");
    loop {
        // The controller installs a configuration only once `haproxy -c` accepted it.
        while !haproxy.config_file.exists() {
            tokio::select! {
                () = tokio::time::sleep(CONFIG_POLL) => {}
                () = stop.cancelled() => return,
            }
        }
        // An HAProxy a previous daemon left (it was SIGKILLed) holds the lab's ports.
        stop_leftovers(&haproxy.config_file, "haproxy", STOP_GRACE).await;
        let ran_for = live_once(&haproxy, &log, &pid, &stop).await;
        if stop.is_cancelled() {
            // A start interrupted between spawn and the worker answering leaves nothing.
            stop_leftovers(&haproxy.config_file, "haproxy", STOP_GRACE).await;
            return;
        }
        let delay = backoff.delay(ran_for);
        tracing::warn!(
            "lab load balancer: restarting haproxy in {:.1} s (its messages: {})",
            delay.as_secs_f64(),
            log.display()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One life of HAProxy: how long it ran, `None` when it did not start. On `stop` the
/// master is asked to stop its workers (SIGTERM to its group), and reaped.
async fn live_once(
    haproxy: &Haproxy,
    log: &Path,
    pid: &AtomicI32,
    stop: &CancellationToken,
) -> Option<Duration> {
    let started = Instant::now();
    let master = haproxy.master();
    let mut child = tokio::select! {
        spawned = master.spawn_logged(log) => match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("lab load balancer: {e}");
                return None;
            }
        },
        () = stop.cancelled() => return None,
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    pid.store(group, Ordering::SeqCst);
    tracing::info!(
        pid = group,
        "lab load balancer: haproxy serving {}",
        haproxy.config_file.display()
    );
    tokio::select! {
        status = child.wait() => {
            tracing::warn!("lab load balancer: haproxy exited ({status:?})");
        }
        () = stop.cancelled() => {
            signal_group(group, Signal::TERM);
            if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                signal_group(group, Signal::KILL);
                let _ = child.wait().await;
            }
        }
    }
    pid.store(0, Ordering::SeqCst);
    Some(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_sits_just_below_the_first_server() {
        assert_eq!(
            address(Ipv4Addr::new(127, 0, 0, 11)),
            Ipv4Addr::new(127, 0, 0, 10)
        );
        assert_eq!(
            address(Ipv4Addr::new(127, 0, 42, 11)),
            Ipv4Addr::new(127, 0, 42, 10)
        );
        let s = settings(Ipv4Addr::new(127, 0, 0, 11));
        assert!(s.map_low_ports);
        assert_eq!(s.bind, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)));
    }
}
