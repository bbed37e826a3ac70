//! Reading one file, bounded and without blocking.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

use super::walk::FileEntry;
use super::{human_size, is_exhaustion, is_loop, Limits, LoadError};
use crate::diagnostic::{Code, Diagnostic};
use crate::Pos;

/// The file's bytes, or the located reason it cannot be read. `Err` is a problem of the
/// process (out of file descriptors), not of the file, and ends the load.
pub(super) fn read(
    file: &FileEntry,
    limits: &Limits,
) -> Result<Result<Vec<u8>, Diagnostic>, LoadError> {
    let problem = |code, message: String| {
        Ok(Err(Diagnostic::error(
            &file.rel,
            Pos::new(1, 1),
            code,
            message,
        )))
    };
    let handle = match open(file) {
        Ok(handle) => handle,
        Err(e) if is_exhaustion(&e) => {
            return Err(LoadError::Exhausted {
                path: file.open.clone(),
                source: e,
            })
        }
        Err(e) if is_loop(&e) => {
            // O_NOFOLLOW: the walk saw a regular file, and a link took its place since.
            return problem(
                Code::Unreadable,
                "was replaced by a symbolic link while being read; read again on the next load"
                    .to_owned(),
            );
        }
        Err(e) => return problem(Code::Unreadable, format!("cannot open: {e}")),
    };
    // Checked on the open handle, so a file swapped after the walk is caught too.
    let meta = match handle.metadata() {
        Ok(meta) => meta,
        Err(e) => return problem(Code::Unreadable, format!("cannot read: {e}")),
    };
    if !meta.is_file() {
        return problem(
            Code::Unreadable,
            "is no longer a regular file; only regular files are read".to_owned(),
        );
    }
    if meta.len() > limits.max_file_bytes {
        return problem(Code::TooLong, too_long(meta.len(), limits));
    }
    // The size may change between the check and the read: never read past the bound.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    if let Err(e) = handle
        .take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
    {
        if is_exhaustion(&e) {
            return Err(LoadError::Exhausted {
                path: file.open.clone(),
                source: e,
            });
        }
        return problem(Code::Unreadable, format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return problem(Code::TooLong, too_long(bytes.len() as u64, limits));
    }
    Ok(Ok(bytes))
}

fn too_long(size: u64, limits: &Limits) -> String {
    format!(
        "file is {}; files over {} are not read",
        human_size(size),
        human_size(limits.max_file_bytes)
    )
}

/// Non-blocking, so that a FIFO put in a regular file's place after the walk cannot hang
/// the load (it opens at once and is then refused as not a regular file); not following a
/// final symbolic link, so that a link put there cannot lead outside the directory.
fn open(file: &FileEntry) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    options.open(&file.open)
}

/// Read a file named by the desired state but outside the walk (a `file:` secret): like
/// the loader's reads, only a regular file, opened without blocking (a FIFO there would
/// hang the reader) and at most `max` bytes. Links are followed: secret mounts are links.
pub fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    // Sized up front, so that reading does not leave copies behind in reallocated memory
    // (secrets are read through here and wiped by their owner).
    let expected = meta.len().min(max).saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::new(ErrorKind::FileTooLarge, "file too large"));
    }
    Ok(bytes)
}
