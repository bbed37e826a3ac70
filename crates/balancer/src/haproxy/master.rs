//! HAProxy in master-worker mode: starting it, and reloads through the master CLI.

use std::path::{Path, PathBuf};
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
    /// the returned child is dropped). HAProxy's messages are piped: for short-lived uses
    /// that do not reload often (a long-running one would fill the pipe; see
    /// [`Master::spawn_logged`]).
    pub async fn spawn(&self) -> Result<Child, BalancerError> {
        self.start(None).await
    }

    /// [`Master::spawn`], HAProxy's messages appended to `log`, in a process group of its
    /// own (the master and its workers), so that a supervisor can stop them together.
    pub async fn spawn_logged(&self, log: &Path) -> Result<Child, BalancerError> {
        self.start(Some(log)).await
    }

    async fn start(&self, log: Option<&Path>) -> Result<Child, BalancerError> {
        let _ = std::fs::remove_file(&self.socket);
        let mut command = Command::new(&self.bin);
        command
            .arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(format!("{},mode,600", self.socket.display()))
            .arg("-f")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let log_start = match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| BalancerError::Write {
                        path: path.to_owned(),
                        source,
                    })?;
                let start = file.metadata().map(|m| m.len()).unwrap_or(0);
                command.stderr(file).process_group(0);
                Some((path, start))
            }
            None => {
                command.stderr(Stdio::piped());
                None
            }
        };
        let mut child = command
            .spawn()
            .map_err(|e| BalancerError::HaproxyMissing(format!("{}: {e}", self.bin.display())))?;
        let started = Instant::now();
        loop {
            if self.runtime.worker_pid().await.is_ok() {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = match log_start {
                    Some((path, start)) => std::fs::read(path)
                        .map(|b| {
                            String::from_utf8_lossy(b.get(start as usize..).unwrap_or(&[]))
                                .into_owned()
                        })
                        .unwrap_or_default(),
                    None => {
                        let mut err = String::new();
                        if let Some(mut stderr) = child.stderr.take() {
                            use tokio::io::AsyncReadExt;
                            let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut err).await;
                        }
                        err
                    }
                };
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
