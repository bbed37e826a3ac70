//! The rollout in progress, persisted in the state directory (`upgrade.json`) after every
//! step, so that a restarted daemon resumes exactly where it was and never runs a
//! finished server again.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::status::{ServerUpgradePhase, UpgradePhase, UpgradeServerStatus, UpgradeStatus};

/// The file below the state directory (also in steward-backup's list).
pub(crate) const FILE: &str = "upgrade.json";
/// Install logs of failed servers, below the state directory.
pub(crate) const LOG_DIR: &str = "upgrade-logs";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rollout {
    pub from: String,
    pub to: String,
    pub phase: UpgradePhase,
    pub servers: Vec<ServerRollout>,
    pub reason: Option<String>,
    pub next_window: Option<String>,
    pub logs: Vec<String>,
    /// Refused by `from`: a resume cannot help, only a new commit.
    #[serde(default)]
    pub refused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerRollout {
    pub name: String,
    pub phase: ServerUpgradePhase,
    /// While `Upgrading`: how many of its services (in install order) were released to
    /// the service controller.
    #[serde(default)]
    pub admitted: usize,
}

impl Rollout {
    pub(crate) fn status(&self, mixed: Vec<String>) -> UpgradeStatus {
        UpgradeStatus {
            phase: self.phase,
            from: Some(self.from.clone()),
            to: Some(self.to.clone()),
            servers: self
                .servers
                .iter()
                .map(|s| UpgradeServerStatus {
                    name: s.name.clone(),
                    phase: s.phase,
                })
                .collect(),
            reason: self.reason.clone(),
            next_window: self.next_window.clone(),
            logs: self.logs.clone(),
            mixed_releases: mixed,
        }
    }

    pub(crate) fn server_mut(&mut self, name: &str) -> Option<&mut ServerRollout> {
        self.servers.iter_mut().find(|s| s.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RolloutError {
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged: {source}", .path.display())]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The last rollout written under `state_dir`; `Ok(None)` when there is none.
pub(crate) fn load(state_dir: &Path) -> Result<Option<Rollout>, RolloutError> {
    let path = state_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RolloutError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RolloutError::Damaged { path, source })
}

/// Replace the file atomically (temp file, fsync, rename), or remove it for `None`.
pub(crate) fn save(state_dir: &Path, rollout: Option<&Rollout>) -> Result<(), RolloutError> {
    let path = state_dir.join(FILE);
    let write = |source| RolloutError::Write {
        path: path.clone(),
        source,
    };
    let Some(rollout) = rollout else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(write(e)),
            _ => Ok(()),
        };
    };
    let json = serde_json::to_vec_pretty(rollout).unwrap_or_default();
    let tmp = state_dir.join(format!(".{FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(write)?;
    file.write_all(&json).map_err(write)?;
    file.sync_all().map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)
}

/// Keep a failed service's install log; the path relative to the state directory.
pub(crate) fn keep_log(
    state_dir: &Path,
    server: &str,
    kind: steward_model::ServiceKind,
    log: &str,
) -> Result<String, RolloutError> {
    let relative = format!("{LOG_DIR}/{server}-{kind}.log");
    let path = state_dir.join(&relative);
    let write = |source| RolloutError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir.join(LOG_DIR)).map_err(write)?;
    std::fs::write(&path, log).map_err(write)?;
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_goes_when_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let rollout = Rollout {
            from: "6.12.1".into(),
            to: "6.13.0".into(),
            phase: UpgradePhase::Progressing,
            servers: vec![
                ServerRollout {
                    name: "app1".into(),
                    phase: ServerUpgradePhase::Done,
                    admitted: 2,
                },
                ServerRollout {
                    name: "app2".into(),
                    phase: ServerUpgradePhase::Upgrading,
                    admitted: 1,
                },
            ],
            reason: None,
            next_window: None,
            logs: vec![],
            refused: false,
        };
        save(dir.path(), Some(&rollout)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(rollout));
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(RolloutError::Damaged { .. })
        ));
    }
}
