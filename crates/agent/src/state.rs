//! `agent-state.json`: what the agent installed, so that it survives an agent restart.
//! Written to a temporary file and renamed, so a crash never leaves half a file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use steward_model::ServiceKind;
use time::OffsetDateTime;

use crate::api::{ConnectionStrings, InstallRequest};
use crate::driver::{find_running, RunHandle, ServiceDefinition};
use crate::error::AgentError;
use crate::layout::Layout;

/// The pid of `kind`'s running instance, read from an agent's state directory by a tool
/// on the same machine (`steward lab kill`): the recorded pid while it still runs the
/// recorded command, else the process running that command (the agent restarted it
/// since). `Ok(None)`: installed but not running.
pub fn running_service(state_dir: &Path, kind: ServiceKind) -> Result<Option<u32>, AgentError> {
    let state = PersistedState::load(&Layout::new(state_dir).state_file())?;
    let record = state
        .services
        .get(&kind)
        .ok_or(AgentError::NotInstalled(kind))?;
    Ok(record.handle.as_ref().and_then(|h| {
        if crate::driver::procfs_runs(h.pid, &h.argv) {
            Some(h.pid)
        } else {
            find_running(&h.argv)
        }
    }))
}

const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersistedState {
    pub version: u32,
    pub services: BTreeMap<ServiceKind, ServiceRecord>,
    pub connection_strings: Option<ConnectionStrings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceRecord {
    pub ports: Vec<u16>,
    pub drive: String,
    pub release: String,
    pub installed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    /// The last started instance, to re-adopt after a restart.
    pub handle: Option<RunHandle>,
    /// Why the last install or start failed.
    pub last_error: Option<String>,
    /// Stopped through `POST .../stop` (an HL7 standby or a fenced listener): not started
    /// again by an agent restart, a reinstall or `restart`, only by `POST .../start`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl ServiceRecord {
    pub fn new(request: &InstallRequest) -> Self {
        Self {
            ports: request.ports.clone(),
            drive: request.drive.clone(),
            release: request.release.clone(),
            installed_by: request.installed_by.clone(),
            installed_at: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc()),
            handle: None,
            last_error: None,
            held: false,
        }
    }

    /// Whether `request` asks for what is installed. Who asks does not matter: a
    /// different `installedBy` alone is no reason to reinstall.
    pub fn same_spec(&self, request: &InstallRequest) -> bool {
        self.ports == request.ports
            && self.drive == request.drive
            && self.release == request.release
    }

    pub fn definition(&self, kind: ServiceKind) -> ServiceDefinition {
        ServiceDefinition {
            kind,
            ports: self.ports.clone(),
            drive: self.drive.clone(),
            release: self.release.clone(),
        }
    }
}

impl PersistedState {
    /// A missing file is a fresh agent. A corrupt one is an error: starting empty would
    /// forget running services and start duplicates beside them.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: VERSION,
                    ..Self::default()
                })
            }
            Err(e) => return Err(AgentError::io(path, e)),
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| AgentError::State {
            path: path.to_path_buf(),
            reason: format!("{e}; fix or move the file away to start empty"),
        })?;
        if state.version != VERSION {
            return Err(AgentError::State {
                path: path.to_path_buf(),
                reason: format!("unsupported version {} (expected {VERSION})", state.version),
            });
        }
        Ok(state)
    }

    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        let json = serde_json::to_vec_pretty(self).expect("agent state serializes");
        steward_pki::replace_private_file(path, &json).map_err(|e| match e {
            steward_pki::PkiError::Io { path, source } => AgentError::Io { path, source },
            other => AgentError::State {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-state.json");
        let empty = PersistedState::load(&path).unwrap();
        assert!(empty.services.is_empty());

        let mut state = empty.clone();
        let request = InstallRequest {
            ports: vec![7001],
            drive: "C:".into(),
            release: "6.12.1".into(),
            installed_by: "steward".into(),
        };
        let mut record = ServiceRecord::new(&request);
        record.handle = Some(RunHandle {
            pid: 42,
            argv: vec!["/bin/svc".into(), "lab-service".into()],
        });
        state.services.insert(ServiceKind::Psis, record);
        state.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"PSIS\"") && text.contains("installedAt"),
            "{text}"
        );
        assert_eq!(PersistedState::load(&path).unwrap(), state);

        std::fs::write(&path, "{ not json").unwrap();
        let err = PersistedState::load(&path).unwrap_err();
        assert_eq!(err.metric_label(), "state");
    }

    #[test]
    fn installed_by_alone_is_not_a_change() {
        let request = InstallRequest {
            ports: vec![7001],
            drive: "C:".into(),
            release: "6.12.1".into(),
            installed_by: "alice".into(),
        };
        let record = ServiceRecord::new(&request);
        let other_user = InstallRequest {
            installed_by: "bob".into(),
            ..request.clone()
        };
        assert!(record.same_spec(&other_user));
        let upgrade = InstallRequest {
            release: "6.13.0".into(),
            ..request
        };
        assert!(!record.same_spec(&upgrade));
    }
}
