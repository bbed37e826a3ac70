//! Writing the archive file so that no reader ever sees half of it and it never has
//! broader permissions than intended.

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
}
