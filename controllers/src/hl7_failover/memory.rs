//! What the HL7 failover keeps between runs: the listener it keeps active and the last
//! failover, persisted in `hl7-failover.json` under the state directory (so a restarted
//! daemon neither forgets `lastFailover` nor moves the listener back); and, in memory only,
//! since when the active listener fails, whether it answered last, and where the HL7
//! backend was last pointed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Hl7FailoverError;
use crate::status::LastFailover;

/// The file under the state directory (steward-backup's archive carries it).
pub(crate) const FILE: &str = "hl7-failover.json";
const VERSION: u32 = 1;

/// Why the active listener counts as failing (the `reason` of a failover).
pub(crate) type Failing = (Instant, &'static str);

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Hl7State {
    pub active: Option<String>,
    pub last_failover: Option<LastFailover>,
    pub failing: Option<Failing>,
    pub answering: bool,
    /// The server the HL7 backend was last pointed at by this process.
    pub routed: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    version: u32,
    active: Option<String>,
    last_failover: Option<LastFailover>,
}

#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// `None`: in memory only (tests without a state directory).
    path: Option<PathBuf>,
    state: Mutex<Hl7State>,
    /// `failback: manual`: an operator asked to return to `preferred`. Apart from the
    /// state, which a run copies and writes back: a request made meanwhile is not lost.
    failback: AtomicBool,
    /// What the passes saw of the listeners they do not test (in memory only).
    pub(super) views: super::view::Views,
}

impl Memory {
    /// What an earlier run left under `state_dir`. A missing file is a first start; an
    /// unreadable one is reported and replaced at the next change (the listeners' states
    /// on the agents still say which one runs).
    pub(crate) fn load(state_dir: Option<&Path>) -> Self {
        let Some(dir) = state_dir else {
            return Self::default();
        };
        let path = dir.join(FILE);
        let mut state = Hl7State::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Persisted>(&bytes) {
                Ok(p) if p.version == VERSION => {
                    state.active = p.active;
                    state.last_failover = p.last_failover;
                }
                Ok(p) => tracing::warn!(
                    "{}: unsupported version {}; the last HL7 failover is forgotten",
                    path.display(),
                    p.version
                ),
                Err(e) => tracing::warn!(
                    "{}: {e}; the last HL7 failover is forgotten",
                    path.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "{}: {e}; the last HL7 failover is forgotten",
                path.display()
            ),
        }
        Self {
            path: Some(path),
            state: Mutex::new(state),
            failback: AtomicBool::new(false),
            views: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Hl7State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self) -> Hl7State {
        self.lock().clone()
    }

    /// Keep `state`; written to the file when its persisted part changed. Only the
    /// controller's one key writes, so a read-modify-write never races another.
    pub(crate) fn set(&self, state: Hl7State) -> Result<(), Hl7FailoverError> {
        let mut current = self.lock();
        let changed =
            current.active != state.active || current.last_failover != state.last_failover;
        *current = state;
        if !changed {
            return Ok(());
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        let persisted = Persisted {
            version: VERSION,
            active: current.active.clone(),
            last_failover: current.last_failover.clone(),
        };
        let json = serde_json::to_vec_pretty(&persisted).expect("the HL7 record serializes");
        let failed = |detail: String| Hl7FailoverError::Memory {
            path: path.clone(),
            detail,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        }
        steward_pki::replace_private_file(path, &json).map_err(|e| failed(e.to_string()))
    }

    /// The next run reads every listener afresh (an operator's full resync).
    pub(crate) fn look_again_in_full(&self) {
        self.views.look_again_in_full();
    }

    /// An operator's request to return to `preferred` (`failback: manual`).
    pub(crate) fn request_failback(&self) {
        self.failback.store(true, Ordering::SeqCst);
    }

    /// Whether a failback was asked for since the last call.
    pub(crate) fn take_failback_request(&self) -> bool {
        self.failback.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_listener_and_last_failover_survive_a_reload() {
        let root = tempfile::tempdir().unwrap();
        // Created when first written.
        let dir = &root.path().join("state");
        let memory = Memory::load(Some(dir));
        assert_eq!(memory.get(), Hl7State::default());
        let last = LastFailover {
            at: time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            from: "app1".into(),
            to: "app2".into(),
            reason: "ListenerStopped".into(),
            seconds: 3.5,
        };
        memory
            .set(Hl7State {
                active: Some("app2".into()),
                last_failover: Some(last.clone()),
                answering: true,
                ..Hl7State::default()
            })
            .unwrap();
        let again = Memory::load(Some(dir)).get();
        assert_eq!(again.active.as_deref(), Some("app2"));
        assert_eq!(again.last_failover, Some(last));
        // What is not persisted starts over.
        assert!(!again.answering);

        std::fs::write(dir.join(FILE), "{ not json").unwrap();
        assert_eq!(Memory::load(Some(dir)).get(), Hl7State::default());
    }
}
