//! Which certificate steward issued or installed on each server, kept in
//! `STATE_DIR/issued-certificates.json` so that a restarted daemon recognises its own
//! certificates instead of issuing every server a fresh one. Only thumbprints and names:
//! no key material is ever written here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

const FILE: &str = "issued-certificates.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IssuedMemo {
    pub thumbprint: String,
    pub sans: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MemoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a list of issued certificates: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Server name -> what steward issued it.
#[derive(Debug, Default)]
pub(crate) struct IssuedMemos {
    /// `None`: remembered in memory only (tests, no state directory).
    path: Option<PathBuf>,
    memos: Mutex<BTreeMap<String, IssuedMemo>>,
}

impl IssuedMemos {
    /// What an earlier run remembered under `state_dir`. A missing file is a first start;
    /// an unreadable one is reported and then rewritten (the worst outcome of losing it
    /// is one fresh certificate per server).
    pub(crate) fn load(state_dir: Option<&Path>) -> Self {
        let Some(dir) = state_dir else {
            return Self::default();
        };
        let path = dir.join(FILE);
        let memos = match read(&path) {
            Ok(memos) => memos,
            Err(e) => {
                tracing::warn!("{e}; certificates steward issued before are not recognised");
                BTreeMap::new()
            }
        };
        Self {
            path: Some(path),
            memos: Mutex::new(memos),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, IssuedMemo>> {
        self.memos.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, server: &str) -> Option<IssuedMemo> {
        self.lock().get(server).cloned()
    }

    pub(crate) fn set(&self, server: &str, memo: IssuedMemo) {
        let mut memos = self.lock();
        if memos.get(server) == Some(&memo) {
            return;
        }
        memos.insert(server.to_owned(), memo);
        self.save(&memos);
    }

    pub(crate) fn forget(&self, server: &str) {
        let mut memos = self.lock();
        if memos.remove(server).is_some() {
            self.save(&memos);
        }
    }

    /// Written under the lock, so two writers never interleave; replaced by a rename, so
    /// a crash never leaves half a file.
    fn save(&self, memos: &BTreeMap<String, IssuedMemo>) {
        let Some(path) = &self.path else {
            return;
        };
        if let Err(e) = write(path, memos) {
            tracing::warn!("{e}; after a restart these certificates will be issued again");
        }
    }
}

fn read(path: &Path) -> Result<BTreeMap<String, IssuedMemo>, MemoError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(MemoError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_str(&text).map_err(|source| MemoError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, memos: &BTreeMap<String, IssuedMemo>) -> Result<(), MemoError> {
    let failed = |source| MemoError::Write {
        path: path.to_owned(),
        source,
    };
    let text = serde_json::to_string_pretty(memos).map_err(|e| failed(e.into()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memos_survive_a_restart_and_a_corrupt_file_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let memo = IssuedMemo {
            thumbprint: "AB".repeat(20),
            sans: vec!["app1.example.eng".into()],
        };
        IssuedMemos::load(Some(dir.path())).set("app1", memo.clone());
        let again = IssuedMemos::load(Some(dir.path()));
        assert_eq!(again.get("app1"), Some(memo));
        again.forget("app1");
        assert_eq!(IssuedMemos::load(Some(dir.path())).get("app1"), None);

        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        assert_eq!(IssuedMemos::load(Some(dir.path())).get("app1"), None);
    }
}
