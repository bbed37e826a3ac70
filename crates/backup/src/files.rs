//! Writing a file so that no reader ever sees half of it and it never has broader
//! permissions than intended, not even between creating and chmod-ing it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use steward_pki::PkiError;

use crate::BackupError;

/// Write (or atomically replace) `path` with mode 0600: an archive file. The one atomic
/// private-file writer is steward-pki's (keys and certificates go the same way).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), BackupError> {
    steward_pki::replace_private_file(path, contents).map_err(|e| match e {
        PkiError::Io { path, source } => BackupError::Write { path, source },
        other => BackupError::write(path, std::io::Error::other(other.to_string())),
    })
}

/// Create `dir` and its missing parents below `root` (mode 0700), refusing any existing
/// component that is not a real directory: a link there could lead the restore elsewhere.
pub(crate) fn create_dirs_below(root: &Path, relative: &Path) -> Result<(), BackupError> {
    let mut here = root.to_path_buf();
    for component in relative.components() {
        here.push(component);
        match fs::symlink_metadata(&here) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(BackupError::write(
                    &here,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a directory (links are not followed)",
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
                .mode(0o700)
                .create(&here)
                .map_err(|e| BackupError::write(&here, e))?,
            Err(e) => return Err(BackupError::write(&here, e)),
        }
    }
    Ok(())
}

/// Files written in two steps so that thousands of them cost two flushes to disk, not
/// one each: every file to a temporary name (no fsync), `syncfs`, every rename, `syncfs`. Until [`Batch::commit`] renames, nothing under the targets has
/// changed, and dropping the batch removes the temporary files.
#[derive(Default)]
pub(crate) struct Batch {
    staged: Vec<(PathBuf, PathBuf)>,
}

impl Batch {
    /// Write `contents` beside `path` with `mode`, to be renamed over it by `commit`.
    pub(crate) fn stage(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), BackupError> {
        let temp = steward_pki::temporary_beside(path);
        let failed = |e| BackupError::write(&temp, e);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o600)
            .open(&temp)
            .map_err(failed)?;
        self.staged.push((temp.clone(), path.to_path_buf()));
        file.write_all(contents).map_err(failed)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(failed)
    }

    /// Flush every staged file's data, rename each into place in staging order, then
    /// flush again so the new directory entries are durable too (one `syncfs` for all
    /// directories: an fsync per directory cost ~4,000 journal commits for 1,000 servers).
    pub(crate) fn commit(mut self, root: &Path) -> Result<(), BackupError> {
        flush_filesystem(root)?;
        for (temp, path) in std::mem::take(&mut self.staged) {
            if let Err(e) = fs::rename(&temp, &path) {
                let _ = fs::remove_file(&temp);
                return Err(BackupError::write(path, e));
            }
        }
        flush_filesystem(root)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for (temp, _) in &self.staged {
            let _ = fs::remove_file(temp);
        }
    }
}

/// `syncfs(2)` on the filesystem holding `root`: one flush for every file written there.
fn flush_filesystem(root: &Path) -> Result<(), BackupError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(root).map_err(|e| BackupError::write(root, e))?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(BackupError::write(root, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_is_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.age");
        write_private_file(&path, b"one").unwrap();
        write_private_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_batch_changes_nothing_until_committed_then_everything() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        fs::write(&old, "before").unwrap();
        let mut batch = Batch::default();
        batch.stage(&old, b"after", 0o600).unwrap();
        batch.stage(&dir.path().join("new"), b"n", 0o644).unwrap();
        drop(batch);
        assert_eq!(fs::read(&old).unwrap(), b"before");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temps removed"
        );

        let mut batch = Batch::default();
        batch.stage(&old, b"after", 0o600).unwrap();
        batch.stage(&dir.path().join("new"), b"n", 0o644).unwrap();
        batch.commit(dir.path()).unwrap();
        assert_eq!(fs::read(&old).unwrap(), b"after");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_link_below_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("lab")).unwrap();
        let err = create_dirs_below(dir.path(), Path::new("lab/app1")).unwrap_err();
        assert!(matches!(err, BackupError::Write { .. }), "{err}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
