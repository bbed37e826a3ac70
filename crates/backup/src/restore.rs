//! Writing a verified archive into a state directory.

use std::path::{Path, PathBuf};

use crate::archive::VerifiedArchive;
use crate::staging::StagedTree;
use crate::state;
use crate::BackupError;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub bytes: u64,
}

/// Write every entry of `archive` under `dir` with its recorded mode: staged whole, then
/// moved into place ([`StagedTree`]).
///
/// An existing CA is refused unless `force`, checked before anything is written. The
/// CA's files are moved last, so an interrupted restore leaves no CA and can simply be
/// run again.
pub fn restore(
    archive: &VerifiedArchive,
    dir: &Path,
    force: bool,
) -> Result<Restored, BackupError> {
    let mut entries: Vec<_> = archive
        .entries
        .iter()
        .map(|e| {
            let listed = state::matching(&e.path).ok_or_else(|| BackupError::UnknownEntry {
                path: e.path.clone(),
            })?;
            Ok((listed.ca, e))
        })
        .collect::<Result<_, BackupError>>()?;
    if !force {
        for (_, entry) in entries.iter().filter(|(ca, _)| *ca) {
            let path = dir.join(&entry.path);
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(BackupError::CaExists { path });
            }
        }
    }
    entries.sort_by_key(|(ca, _)| *ca);
    std::fs::create_dir_all(dir).map_err(|e| BackupError::write(dir, e))?;
    let mut bytes = 0;
    let mut tree = StagedTree::new(dir)?;
    for (_, entry) in &entries {
        tree.stage(&PathBuf::from(&entry.path), &entry.contents, entry.mode)?;
        bytes += entry.contents.len() as u64;
    }
    // Moved in the order staged: the CA last.
    tree.commit()?;
    Ok(Restored {
        files: entries.len(),
        bytes,
    })
}
