//! HAProxy's runtime API over its stats socket: one command per connection (the
//! non-interactive mode: HAProxy answers and closes).

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::stats::{parse_stat, ServerStat};
use super::COMMAND_TIMEOUT;
use crate::BalancerError;

/// The answers are small (a few KiB per farm); a socket that streams more is not HAProxy.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RuntimeApi {
    socket: PathBuf,
}

/// A server's administrative state, as `set server B/S state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

impl RuntimeApi {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Send one command and read the whole answer.
    pub async fn command(&self, command: &str) -> Result<String, BalancerError> {
        send(&self.socket, command).await
    }

    /// Drain or maintenance without a reload.
    pub async fn set_state(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), BalancerError> {
        let state = match state {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        };
        let answer = self
            .command(&format!("set server {backend}/{server} state {state}"))
            .await?;
        // Success is an empty answer; anything else is HAProxy explaining a refusal.
        match answer.trim() {
            "" => Ok(()),
            refusal => Err(BalancerError::CommandRefused(refusal.to_owned())),
        }
    }

    /// Route `backend` to `to` alone: every other server in `members` is put in
    /// maintenance first (so two never receive traffic at once), then `to` is made ready and
    /// marked up at once rather than after `rise` checks (the caller has seen it answer).
    pub async fn route_only(
        &self,
        backend: &str,
        to: &str,
        members: &[String],
    ) -> Result<(), BalancerError> {
        for other in members.iter().filter(|m| m.as_str() != to) {
            self.set_state(backend, other, AdminState::Maint).await?;
        }
        self.set_state(backend, to, AdminState::Ready).await?;
        self.set_health_up(backend, to).await
    }

    /// Mark a server's operational state up without waiting for its checks (they go on and
    /// take it down again if it fails them).
    pub async fn set_health_up(&self, backend: &str, server: &str) -> Result<(), BalancerError> {
        let answer = self
            .command(&format!("set server {backend}/{server} health up"))
            .await?;
        match answer.trim() {
            "" => Ok(()),
            refusal => Err(BalancerError::CommandRefused(refusal.to_owned())),
        }
    }

    /// Every server of every backend, from `show stat`.
    pub async fn servers(&self) -> Result<Vec<ServerStat>, BalancerError> {
        Ok(parse_stat(&self.command("show stat").await?))
    }

    /// The worker's process id (`show info`): a reload changes it.
    pub async fn worker_pid(&self) -> Result<u32, BalancerError> {
        let info = self.command("show info").await?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| BalancerError::CommandRefused("show info has no Pid".into()))
    }
}

pub(super) async fn send(socket: &std::path::Path, command: &str) -> Result<String, BalancerError> {
    let unresponsive = |detail: String| BalancerError::SocketUnresponsive {
        path: socket.to_owned(),
        detail,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Ok(String::from_utf8_lossy(&answer).into_owned()),
        Ok(Err(e)) => Err(unresponsive(e.to_string())),
        Err(_) => Err(unresponsive(format!(
            "no answer within {} s",
            COMMAND_TIMEOUT.as_secs()
        ))),
    }
}
