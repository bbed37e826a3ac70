//! Fencing: with several steward daemons (controller HA), only the current leader may
//! change anything. Every mutating call (any method but GET and HEAD, on any route, so
//! routes added later are covered too) carries the leader's epoch in the
//! [`EPOCH_HEADER`] header: the etcd revision at which it won, which only grows from one
//! leader to the next. The agent persists the highest epoch it has seen (`fencing.json`,
//! before the call runs) and refuses a lower one, so a paused or cut-off ex-leader cannot
//! act once its successor has spoken to this agent.
//!
//! The rule for calls without an epoch: accepted only while the agent is not in HA
//! mode. It is in HA mode when started with `--require-epoch`, or from the first call
//! that carried an epoch on (persisted: a restart does not undo it). A single daemon
//! (no `--ha`) sends no epoch and drives an agent that has never seen one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::error::AgentError;

/// The header of a mutating call that carries the caller's leader epoch.
pub const EPOCH_HEADER: &str = "steward-epoch";

/// What `fencing.json` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FencingState {
    /// The highest epoch this agent has accepted; `None`: never one (not in HA mode,
    /// unless started with `--require-epoch`).
    pub highest_epoch: Option<u64>,
}

/// The agent's fencing record and mode.
#[derive(Debug)]
pub(crate) struct Fencing {
    path: PathBuf,
    required: AtomicBool,
    /// Held while an epoch is checked and persisted, so two calls cannot both pass
    /// with epochs that race each other to disk.
    state: Mutex<FencingState>,
}

impl Fencing {
    pub(crate) fn load(path: PathBuf) -> Result<Self, AgentError> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FencingState::default(),
            Err(e) => return Err(AgentError::io(&path, e)),
        };
        Ok(Self {
            path,
            required: AtomicBool::new(false),
            state: Mutex::new(state),
        })
    }

    /// `--require-epoch`: HA mode from the start.
    pub(crate) fn require(&self) {
        self.required.store(true, Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> FencingState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn in_ha_mode(&self) -> bool {
        self.required.load(Ordering::Relaxed) || self.state().highest_epoch.is_some()
    }

    /// Admit a mutating call that carries `epoch` (`None`: no header).
    pub(crate) fn admit(&self, epoch: Option<u64>) -> Result<(), AgentError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(epoch) = epoch else {
            if self.required.load(Ordering::Relaxed) || state.highest_epoch.is_some() {
                return Err(AgentError::EpochRequired);
            }
            return Ok(());
        };
        match state.highest_epoch {
            Some(highest) if epoch < highest => Err(AgentError::StaleEpoch { epoch, highest }),
            Some(highest) if epoch == highest => Ok(()),
            _ => {
                // On disk before the call runs: a restart must not forget a newer leader.
                let next = FencingState {
                    highest_epoch: Some(epoch),
                };
                let json = serde_json::to_vec(&next).expect("fencing state serializes");
                steward_pki::replace_private_file(&self.path, &json).map_err(|e| {
                    AgentError::State {
                        path: self.path.clone(),
                        reason: format!("cannot record leader epoch {epoch}: {e}"),
                    }
                })?;
                if let Some(previous) = state.highest_epoch {
                    tracing::info!(epoch, previous, "a new steward leader");
                }
                *state = next;
                Ok(())
            }
        }
    }
}

fn epoch_of(request: &Request) -> Result<Option<u64>, AgentError> {
    let Some(value) = request.headers().get(EPOCH_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            AgentError::InvalidRequest(format!(
                "the {EPOCH_HEADER} header must be a decimal number"
            ))
        })
}

/// The one layer in front of every route: reads pass, changes are fenced.
pub(crate) async fn guard(
    State(fencing): State<Arc<Fencing>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let admitted = epoch_of(&request).and_then(|epoch| fencing.admit(epoch));
    match admitted {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                error = %refused,
                "refused a change"
            );
            refused.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fencing(dir: &tempfile::TempDir) -> Fencing {
        Fencing::load(dir.path().join("fencing.json")).unwrap()
    }

    #[test]
    fn a_lower_epoch_is_refused_and_the_highest_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let f = fencing(&dir);
        assert!(!f.in_ha_mode());
        f.admit(None).unwrap();
        f.admit(Some(7)).unwrap();
        f.admit(Some(7)).unwrap();
        let refused = f.admit(Some(5)).unwrap_err();
        assert!(
            matches!(
                refused,
                AgentError::StaleEpoch {
                    epoch: 5,
                    highest: 7
                }
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("no longer"), "{refused}");
        assert_eq!(refused.status_code(), axum::http::StatusCode::CONFLICT);
        f.admit(Some(9)).unwrap();

        let restarted = fencing(&dir);
        assert_eq!(restarted.state().highest_epoch, Some(9));
        assert!(matches!(
            restarted.admit(Some(8)),
            Err(AgentError::StaleEpoch { .. })
        ));
    }

    #[test]
    fn calls_without_an_epoch_are_refused_in_ha_mode() {
        let dir = tempfile::tempdir().unwrap();
        let seen = fencing(&dir);
        seen.admit(Some(3)).unwrap();
        let refused = seen.admit(None).unwrap_err();
        assert!(matches!(refused, AgentError::EpochRequired), "{refused}");
        assert_eq!(
            refused.status_code(),
            axum::http::StatusCode::PRECONDITION_REQUIRED
        );

        let other = tempfile::tempdir().unwrap();
        let required = fencing(&other);
        required.require();
        assert!(required.in_ha_mode());
        assert!(matches!(
            required.admit(None),
            Err(AgentError::EpochRequired)
        ));
        required.admit(Some(1)).unwrap();
    }

    #[test]
    fn a_damaged_record_stops_the_agent_instead_of_forgetting_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fencing.json"), "{not json").unwrap();
        let e = Fencing::load(dir.path().join("fencing.json")).unwrap_err();
        assert_eq!(e.metric_label(), "state");
    }
}
