//! Writing a verified archive into a state directory.

use std::path::{Path, PathBuf};

use crate::archive::VerifiedArchive;
use crate::files::{create_dirs_below, Batch};
use crate::state;
use crate::BackupError;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub bytes: u64,
}

/// Write every entry of `archive` under `dir`, each atomically with its recorded mode.
///
/// An existing CA is refused unless `force`, checked before anything is written. The
/// CA's files are written last, so an interrupted restore leaves no CA and can simply be
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
    let mut batch = Batch::default();
    for (_, entry) in &entries {
        let relative = PathBuf::from(&entry.path);
        if let Some(parent) = relative.parent() {
            create_dirs_below(dir, parent)?;
        }
        batch.stage(&dir.join(&relative), &entry.contents, entry.mode)?;
        bytes += entry.contents.len() as u64;
    }
    // Renamed in the order staged: the CA last.
    batch.commit(dir)?;
    Ok(Restored {
        files: entries.len(),
        bytes,
    })
}
