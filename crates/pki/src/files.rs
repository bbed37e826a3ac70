//! Writing key, certificate and other private files (the backup archive too) so that a
//! reader never sees a half-written file and a private file is never readable by anyone
//! else, not even for the instant between creating and chmod-ing it: the file is created
//! owner-only, then given its exact final mode whatever the umask, flushed, and only then
//! put in place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::PkiError;

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Clone, Copy)]
enum Placement {
    /// Fail if the target exists (hard link: atomic and never replaces).
    New,
    /// Atomically replace the target (rename).
    Replace,
}

/// Write a private file (mode 0600) that must not exist yet.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, PRIVATE_MODE, Placement::New)
}

/// Write or atomically replace a private file (mode 0600).
pub fn replace_private_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, PRIVATE_MODE, Placement::Replace)
}

pub(crate) fn write_new_public_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, PUBLIC_MODE, Placement::New)
}

pub(crate) fn replace_public_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomically(path, contents, PUBLIC_MODE, Placement::Replace)
}

fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    placement: Placement,
) -> Result<(), PkiError> {
    let temp = temporary_beside(path);
    let result = write_temp(&temp, contents, mode).and_then(|()| match placement {
        Placement::New => fs::hard_link(&temp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists(path.to_path_buf())
            } else {
                PkiError::io(path, e)
            }
        }),
        Placement::Replace => fs::rename(&temp, path).map_err(|e| PkiError::io(path, e)),
    });
    // After a rename the temp name is gone already; after a link or a failure it is not.
    let _ = fs::remove_file(&temp);
    if result.is_ok() {
        // Best effort: make the new directory entry durable too.
        if let Ok(d) = File::open(directory_of(path)) {
            let _ = d.sync_all();
        }
    }
    result
}

fn write_temp(temp: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode & PRIVATE_MODE);
    }
    let mut file = options.open(temp).map_err(|e| PkiError::io(temp, e))?;
    file.write_all(contents)
        .and_then(|()| exact_mode(&file, mode))
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::io(temp, e))
}

/// `mode` exactly, whatever the umask took away at creation.
fn exact_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A fresh hidden name beside `target` (same directory, so a rename is atomic), unique in
/// this process and among processes.
pub fn temporary_beside(target: &Path) -> PathBuf {
    let dir = directory_of(target);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// The permission bits of a file, to refuse keys that others can read.
#[cfg(unix)]
pub(crate) fn mode_of(path: &Path) -> Result<u32, PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| PkiError::io(path, e))?;
    Ok(meta.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_and_new_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_new_private_file(&path, b"one").unwrap();
        assert_eq!(mode_of(&path).unwrap(), 0o600);
        let err = write_new_private_file(&path, b"two").unwrap_err();
        assert!(matches!(err, PkiError::AlreadyExists(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        replace_private_file(&path, b"three").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(mode_of(&path).unwrap(), 0o600);
        // No temp files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
