//! HAProxy in master-worker mode: starting it, and reloads through the master CLI.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::runtime::{send, RuntimeApi};
use super::Haproxy;
use crate::BalancerError;

/// How long a new worker may take to answer on the runtime socket.
const WORKER_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct Master {
    bin: PathBuf,
    config_file: PathBuf,
    socket: PathBuf,
    runtime: RuntimeApi,
}

impl Master {
    pub(super) fn new(h: &Haproxy) -> Self {
        Self {
            bin: h.bin.clone(),
            config_file: h.config_file.clone(),
            socket: h.master_socket.clone(),
            runtime: h.runtime(),
        }
    }

    /// Start `haproxy -W` in the foreground on the installed configuration, and wait until
    /// its worker answers on the runtime socket. The caller owns the process (killed when
    /// the returned child is dropped).
    pub async fn spawn(&self) -> Result<Child, BalancerError> {
        let _ = std::fs::remove_file(&self.socket);
        let mut child = Command::new(&self.bin)
            .arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(format!("{},mode,600", self.socket.display()))
            .arg("-f")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BalancerError::HaproxyMissing(format!("{}: {e}", self.bin.display())))?;
        let started = Instant::now();
        loop {
            if self.runtime.worker_pid().await.is_ok() {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut err).await;
                }
                let alerts: Vec<&str> = err.lines().filter(|l| l.contains("ALERT")).collect();
                return Err(BalancerError::ReloadFailed(format!(
                    "haproxy exited ({status}) at start: {}",
                    alerts.join("; ")
                )));
            }
            if started.elapsed() > WORKER_DEADLINE {
                return Err(BalancerError::SocketUnresponsive {
                    path: self.runtime.socket().to_owned(),
                    detail: "the worker did not answer after start".into(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ask the master to reload, and wait until a new worker answers on the runtime
    /// socket. If none does, the old worker is still serving the old configuration.
    pub async fn reload(&self) -> Result<(), BalancerError> {
        let old = self.runtime.worker_pid().await?;
        // HAProxy 2.6 answers nothing and may close the connection as it re-executes.
        match send(&self.socket, "reload").await {
            Ok(_) => {}
            Err(BalancerError::SocketUnresponsive { detail, .. })
                if detail.contains("reset") || detail.contains("pipe") => {}
            Err(e) => return Err(e),
        }
        let started = Instant::now();
        loop {
            match self.runtime.worker_pid().await {
                Ok(pid) if pid != old => return Ok(()),
                _ if started.elapsed() > WORKER_DEADLINE => {
                    return Err(BalancerError::ReloadFailed(format!(
                        "no new worker answered within {} s; the old one keeps serving",
                        WORKER_DEADLINE.as_secs()
                    )))
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}
