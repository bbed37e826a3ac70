//! One lab agent's life, over and over: clear its address of leftovers, start it, say
//! "started" only once it listens, and when it dies start it again (0.2 s doubling to
//! 10 s, back to 0.2 s after it stayed up), until the lab shuts down. The restart loop
//! ([`keep_running`]) and the way a lab child is started ([`lab_command`]) serve the lab's
//! TDS server too.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use steward_agent::RestartBackoff;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::orphans::{occupant, recorded_pid, runs_agent_on, signal_group, stop_agent, Occupant};
use super::LabError;

/// How long an agent left by a previous daemon gets to stop (and stop its services).
const LEFTOVER_GRACE: Duration = Duration::from_secs(8);
const LISTEN_POLL: Duration = Duration::from_millis(50);

/// Everything needed to start one lab agent.
#[derive(Debug, Clone)]
pub(super) struct AgentSpec {
    pub name: String,
    pub hostname: String,
    pub addr: IpAddr,
    pub port: u16,
    /// `LAB_DIR/NAME`: certificates, `agent.log`, `agent.pid`, the agent's `state/`.
    pub dir: PathBuf,
    pub program: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl AgentSpec {
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    fn spawn(&self) -> Result<Child, LabError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LabError::Io { path, source }
        };
        let log_path = self.log_file();
        lab_command(&self.program, &log_path)
            .map_err(io(&log_path))?
            .arg("agent")
            .arg("--listen")
            .arg(self.listen().to_string())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--ca")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .arg("--hostname")
            .arg(&self.hostname)
            .arg("--service-program")
            .arg(&self.program)
            .arg("--lab")
            .arg("--stop-services-on-exit")
            .arg("--stop-timeout-secs")
            .arg("3")
            .spawn()
            .map_err(|source| LabError::Spawn {
                host: self.hostname.clone(),
                program: self.program.clone(),
                source,
            })
    }
}

/// A lab child writing to `log` (appended, stdout and stderr): not the daemon's
/// environment (it holds the secrets the desired state refers to, and every lab process's
/// /proc/PID/environ is readable), and its own process group, so stopping the lab reaches
/// the child and anything it started even if it cannot clean up itself.
pub(super) fn lab_command(program: &Path, log: &Path) -> std::io::Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let log_err = log.try_clone()?;
    let mut command = Command::new(program);
    command
        .env_clear()
        .envs(steward_agent::minimal_environment())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(true);
    Ok(command)
}

/// Run `life` again each time it ends, after the restart backoff (0.2 s doubling to 10 s;
/// back to 0.2 s after a life that stayed up), until `cancel`. `life` says how long the
/// child ran, `None` when it did not start.
pub(super) async fn keep_running<F, L>(what: &str, cancel: &CancellationToken, mut life: F)
where
    F: FnMut() -> L,
    L: Future<Output = Option<Duration>>,
{
    let mut backoff = RestartBackoff::default();
    loop {
        let ran_for = life().await;
        if cancel.is_cancelled() {
            return;
        }
        let delay = backoff.delay(ran_for);
        tracing::warn!("restarting {what} in {:.1} s", delay.as_secs_f64());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Keep the agent of `spec` running until `cancel`; `pid` always holds the running
/// agent's pid (0: none), for a shutdown that has to SIGKILL it.
pub(super) async fn supervise(spec: AgentSpec, pid: Arc<AtomicI32>, cancel: CancellationToken) {
    let what = format!("the lab agent of {}", spec.name);
    keep_running(&what, &cancel, || live_once(&spec, &pid, &cancel)).await;
}

enum Start {
    Listening,
    Exited(ExitStatus),
    Cancelled,
}

/// One life of the agent. How long it ran; `None` when it did not start.
async fn live_once(
    spec: &AgentSpec,
    pid_slot: &AtomicI32,
    cancel: &CancellationToken,
) -> Option<Duration> {
    if let Err(e) = clear_address(spec).await {
        tracing::error!(server = %spec.name, "{e}");
        return None;
    }
    let mut child = match spec.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(server = %spec.name, "{e}");
            return None;
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    pid_slot.store(pid, Ordering::SeqCst);
    if let Err(e) = std::fs::write(spec.pid_file(), format!("{pid}\n")) {
        tracing::warn!(server = %spec.name, error = %e, "cannot record the lab agent's pid");
    }
    let started = Instant::now();
    let status = match until_listening(spec, &mut child, pid, cancel).await {
        Start::Listening => {
            tracing::info!(
                server = %spec.name,
                hostname = %spec.hostname,
                addr = %spec.addr,
                port = spec.port,
                pid,
                "lab agent started"
            );
            tokio::select! {
                status = child.wait() => status.ok(),
                () = cancel.cancelled() => None,
            }
        }
        Start::Exited(status) => {
            tracing::error!(
                server = %spec.name,
                %status,
                log = %spec.log_file().display(),
                "the lab agent exited before it listened on {}",
                spec.listen()
            );
            pid_slot.store(0, Ordering::SeqCst);
            let _ = std::fs::remove_file(spec.pid_file());
            return Some(started.elapsed());
        }
        Start::Cancelled => None,
    };
    match status {
        Some(status) if !cancel.is_cancelled() => {
            tracing::warn!(server = %spec.name, pid, %status, "lab agent exited");
        }
        _ => {
            // Shutting down: the agent stops its services on SIGTERM.
            signal_group(pid, Signal::TERM);
            let _ = child.wait().await;
        }
    }
    pid_slot.store(0, Ordering::SeqCst);
    let _ = std::fs::remove_file(spec.pid_file());
    Some(started.elapsed())
}

/// Wait until the agent itself listens on its address (not merely "someone does"), or
/// exits, or the lab shuts down.
async fn until_listening(
    spec: &AgentSpec,
    child: &mut Child,
    pid: i32,
    cancel: &CancellationToken,
) -> Start {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Start::Exited(status);
        }
        let holder = steward_agent::port_holder(spec.addr, spec.port);
        if holder.is_some_and(|h| h.pid == Some(pid as u32)) {
            return Start::Listening;
        }
        tokio::select! {
            () = tokio::time::sleep(LISTEN_POLL) => {}
            () = cancel.cancelled() => return Start::Cancelled,
        }
    }
}

/// Make the agent's address free for it: an agent a previous daemon left running (found
/// by its pid file, or on the address with our state directory on its command line) is
/// stopped; anything else there is an error, and left alone.
async fn clear_address(spec: &AgentSpec) -> Result<(), LabError> {
    let state = spec.state_dir();
    if let Some(pid) = recorded_pid(&spec.pid_file()).filter(|p| runs_agent_on(*p, &state)) {
        stop_leftover(spec, pid, "recorded in its pid file").await?;
    }
    match occupant(spec.addr, spec.port, &state) {
        Occupant::Free => Ok(()),
        Occupant::OurAgent { pid } => stop_leftover(spec, pid, "found on its address").await,
        Occupant::Foreign { who } => Err(LabError::AddressTaken {
            host: spec.hostname.clone(),
            addr: spec.listen(),
            who,
        }),
    }
}

async fn stop_leftover(spec: &AgentSpec, pid: i32, how: &str) -> Result<(), LabError> {
    tracing::warn!(
        server = %spec.name,
        pid,
        "stopping the lab agent a previous daemon left running ({how}); a new one replaces it"
    );
    if stop_agent(pid, LEFTOVER_GRACE).await {
        Ok(())
    } else {
        Err(LabError::LeftoverAgent {
            host: spec.hostname.clone(),
            pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_child_that_keeps_dying_is_restarted_ever_slower_until_cancelled() {
        let cancel = CancellationToken::new();
        let starts = Mutex::new(Vec::new());
        let begun = tokio::time::Instant::now();
        keep_running("a test child", &cancel, || {
            let mut starts = starts.lock().unwrap();
            starts.push(begun.elapsed());
            if starts.len() == 5 {
                cancel.cancel();
            }
            // Dies at once, or (the first time) never starts.
            let ran_for = (starts.len() > 1).then_some(Duration::ZERO);
            async move { ran_for }
        })
        .await;
        let starts = starts.into_inner().unwrap();
        let millis: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            [0, 200, 600, 1400, 3000],
            "0.2 s doubling, then stopped"
        );
    }
}
