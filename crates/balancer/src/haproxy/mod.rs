//! The live HAProxy driver: the configuration is written only after `haproxy -c` accepted
//! it, the servers' state is saved before every reload (so drain and maintenance survive
//! it), the reload goes through the master socket (the old worker keeps serving until the
//! new one has taken the listening sockets), and server state changes go through the
//! runtime API without a reload.

mod master;
mod runtime;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use master::Master;
pub use runtime::{AdminState, RuntimeApi};
pub use stats::{parse_stat, MemberState, ServerStat};

use crate::render::{write_if_changed, Written};
use crate::BalancerError;

/// The oldest HAProxy steward drives: `http-check send`/`expect` (2.2), the master CLI's
/// `reload` answering on the master socket and `expose-fd listeners` handing sockets over
/// across reloads as steward relies on them (tested on 2.6, the LTS Debian ships).
pub const MIN_VERSION: (u32, u32) = (2, 6);
const NEEDED: &str = "2.6";

/// How long a socket command or `haproxy -c` may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of one HAProxy that steward drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Haproxy {
    pub bin: PathBuf,
    pub config_file: PathBuf,
    /// The runtime API (the configuration's stats socket).
    pub admin_socket: PathBuf,
    /// The master CLI (`-S`), through which reloads are asked for.
    pub master_socket: PathBuf,
    pub state_file: PathBuf,
}

/// What [`Haproxy::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The file already held this configuration.
    Unchanged,
    /// Written and reloaded: the new worker answers.
    Reloaded,
}

impl Haproxy {
    /// The files beside `config_file`: `master.sock`, `server-state`.
    pub fn new(bin: PathBuf, config_file: PathBuf, admin_socket: PathBuf) -> Self {
        let dir = config_file.parent().unwrap_or(Path::new(".")).to_owned();
        Self {
            bin,
            config_file,
            admin_socket,
            master_socket: dir.join("master.sock"),
            state_file: dir.join("server-state"),
        }
    }

    pub fn runtime(&self) -> RuntimeApi {
        RuntimeApi::new(self.admin_socket.clone())
    }

    pub fn master(&self) -> Master {
        Master::new(self)
    }

    /// `haproxy -vv`: the version, refused below [`MIN_VERSION`] (or when the binary
    /// does not say which it is).
    pub async fn version(&self) -> Result<String, BalancerError> {
        let out = self.run(&["-vv"]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some((found, version)) = parse_version(&text) else {
            return Err(BalancerError::HaproxyMissing(format!(
                "{} -vv does not name a HAProxy version",
                self.bin.display()
            )));
        };
        if found < MIN_VERSION {
            return Err(BalancerError::HaproxyTooOld {
                found: version,
                needed: NEEDED,
            });
        }
        Ok(version)
    }

    /// `haproxy -c` on `config`: a rejection carries HAProxy's alerts.
    pub async fn check(&self, config: &Path) -> Result<(), BalancerError> {
        let out = self.run(&["-c", "-f", &config.to_string_lossy()]).await?;
        if out.status.success() {
            return Ok(());
        }
        let alerts: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("[ALERT]"))
            .map(|l| {
                l.split_once(" : ")
                    .map_or(l, |(_, rest)| rest)
                    .trim()
                    .to_owned()
            })
            .collect();
        let text = alerts.join("; ");
        if text.contains("could not resolve address") {
            Err(BalancerError::Unresolvable(text))
        } else {
            Err(BalancerError::ConfigRejected(text))
        }
    }

    /// Make the running HAProxy serve `content`: when the file differs (a new desired state,
    /// or someone edited it), check the candidate, save the servers' state, install the
    /// file and reload. A candidate HAProxy rejects is never installed, so the running
    /// process keeps its configuration.
    pub async fn apply(&self, content: &str) -> Result<Applied, BalancerError> {
        if std::fs::read(&self.config_file).is_ok_and(|old| old == content.as_bytes()) {
            return Ok(Applied::Unchanged);
        }
        let candidate = self.config_file.with_extension("cfg.candidate");
        write_if_changed(&candidate, content)?;
        let checked = self.check(&candidate).await;
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&candidate);
            return Err(e);
        }
        let _ = std::fs::remove_file(&candidate);
        // No HAProxy answering (not started yet, or its socket is broken): the checked
        // file is installed anyway, so the HAProxy that starts next serves it.
        let saved = self.save_state().await;
        let previous = std::fs::read_to_string(&self.config_file).ok();
        let written = write_if_changed(&self.config_file, content)?;
        debug_assert_eq!(written, Written::Replaced);
        saved?;
        if let Err(e) = self.master().reload().await {
            // The old worker still serves the previous file: put it back, so that the
            // installed file stays what HAProxy serves and the next run tries again
            // instead of finding the file current.
            if let Some(previous) = previous {
                write_if_changed(&self.config_file, &previous)?;
            }
            return Err(e);
        }
        Ok(Applied::Reloaded)
    }

    /// `show servers state` into the state file HAProxy loads at start (written atomically:
    /// a reload never reads half a file).
    pub async fn save_state(&self) -> Result<(), BalancerError> {
        let state = self.runtime().command("show servers state").await?;
        write_if_changed(&self.state_file, &state)?;
        Ok(())
    }

    async fn run(&self, args: &[&str]) -> Result<std::process::Output, BalancerError> {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(COMMAND_TIMEOUT, out).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(BalancerError::HaproxyMissing(format!(
                "{}: {e}",
                self.bin.display()
            ))),
            Err(_) => Err(BalancerError::HaproxyMissing(format!(
                "{} did not answer within {} s",
                self.bin.display(),
                COMMAND_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// `(major, minor)` and the version word of `haproxy -v`/`-vv` output: "HAProxy version
/// 2.6.12-1+deb12u4 2023/..." (before 2.0 "HA-Proxy version 1.8.19 ...").
pub fn parse_version(text: &str) -> Option<((u32, u32), String)> {
    let version = text
        .lines()
        .find(|l| l.starts_with("HAProxy version") || l.starts_with("HA-Proxy version"))?
        .split_whitespace()
        .nth(2)?;
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(((major, minor), version.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_either_banner() {
        let v = |t| parse_version(t).map(|(n, _)| n);
        assert_eq!(
            parse_version(
                "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: ..."
            )
            .unwrap(),
            ((2, 6), "2.6.12-1+deb12u4".to_owned())
        );
        assert_eq!(
            v("HA-Proxy version 1.8.19-1+deb10u3 2020/08/01"),
            Some((1, 8))
        );
        assert_eq!(v("HAProxy version 3.0.5 2024/09/19"), Some((3, 0)));
        assert_eq!(v("Usage : haproxy [-f <cfgfile>]"), None);
        assert_eq!(v("HAProxy version x.y"), None);
        assert!((2, 4) < MIN_VERSION && (2, 6) >= MIN_VERSION && (3, 0) > MIN_VERSION);
    }
}
