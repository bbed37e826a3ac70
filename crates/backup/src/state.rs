//! What a backup holds: the daemon's state that cannot be recomputed, as one list.
//!
//! Adding a state file to backups is one line in [`STATE_FILES`] (and one row in
//! docs/backup.md). Paths are relative to the state directory, `/`-separated; a `*`
//! segment matches one directory or file name (never `.`/`..`, never a dot-name, never
//! through a symbolic link). Restore writes only paths that match this list, so an
//! archive cannot place a file anywhere else.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::BackupError;

/// One kind of state file.
#[derive(Debug, Clone, Copy)]
pub struct StateFile {
    /// The path pattern below the state directory.
    pub pattern: &'static str,
    /// Restored only after every other file, and never replaced without `--force`.
    pub ca: bool,
}

const fn file(pattern: &'static str) -> StateFile {
    StateFile { pattern, ca: false }
}

/// Everything `steward backup` takes, in the order restore writes it (CA last, so an
/// interrupted restore never leaves a CA beside missing memos; run it again).
pub const STATE_FILES: &[StateFile] = &[
    // Which certificate steward installed on each server (thumbprint + names).
    file("issued-certificates.json"),
    // Which HL7 listener is active, and the last failover.
    file("hl7-failover.json"),
    // The rolling upgrade in progress (so a restored daemon resumes it where it was), and
    // the install logs of a server it halted on.
    file("upgrade.json"),
    file("upgrade-logs/*"),
    // The lab's agents: their credentials, and what they installed (records, server TLS
    // certificate and key, each service's install manifest and connection strings).
    file("lab/*/agent.pem"),
    file("lab/*/agent.key"),
    file("lab/*/state/agent-state.json"),
    file("lab/*/state/tls/server.pem"),
    file("lab/*/state/tls/server.key"),
    file("lab/*/state/services/*/install.json"),
    file("lab/*/state/services/*/connection-strings.json"),
    // The steward CA.
    StateFile {
        pattern: "ca/ca.pem",
        ca: true,
    },
    StateFile {
        pattern: "ca/ca.key",
        ca: true,
    },
];

/// Bounds on what a backup reads: state files are small (a 1,000-server memo is ~150 KB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;

/// A state file as read: its relative path, permission bits and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// The pattern of [`STATE_FILES`] that `path` matches, if any.
pub fn matching(path: &str) -> Option<&'static StateFile> {
    let segments: Vec<&str> = path.split('/').collect();
    if !segments.iter().all(|s| is_plain_name(s)) {
        return None;
    }
    STATE_FILES.iter().find(|f| {
        let pattern: Vec<&str> = f.pattern.split('/').collect();
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| *p == "*" || p == s)
    })
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['\\', '\0'])
}

/// Read every state file under `dir`, each once and whole (the daemon replaces its files
/// by rename, so each is read as one consistent version), sorted by path.
pub fn collect(dir: &Path) -> Result<Vec<StateEntry>, BackupError> {
    let mut entries = Vec::new();
    let mut total = 0u64;
    for state_file in STATE_FILES {
        let mut paths = Vec::new();
        expand(
            dir,
            "",
            &state_file.pattern.split('/').collect::<Vec<_>>(),
            &mut paths,
        )?;
        paths.sort();
        for rel in paths {
            let path = dir.join(&rel);
            let Some((mode, contents)) = read_regular(&path)? else {
                continue;
            };
            total += contents.len() as u64;
            if total > MAX_TOTAL_BYTES {
                return Err(BackupError::TooLarge {
                    path: dir.to_owned(),
                    limit: MAX_TOTAL_BYTES,
                });
            }
            entries.push(StateEntry {
                path: rel,
                mode,
                contents,
            });
        }
    }
    Ok(entries)
}

/// The relative paths under `dir` matching `pattern` (after `prefix`).
fn expand(
    dir: &Path,
    prefix: &str,
    pattern: &[&str],
    out: &mut Vec<String>,
) -> Result<(), BackupError> {
    let Some((first, rest)) = pattern.split_first() else {
        out.push(prefix.to_owned());
        return Ok(());
    };
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    };
    if *first != "*" {
        return expand(dir, &join(first), rest, out);
    }
    let here = dir.join(prefix);
    let listing = match fs::read_dir(&here) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::read(here, e)),
    };
    for entry in listing {
        let entry = entry.map_err(|e| BackupError::read(&here, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Directories only, never through a link: a link could lead out of the state dir.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_plain_name(&name) && (is_dir || rest.is_empty()) {
            expand(dir, &join(&name), rest, out)?;
        }
    }
    Ok(())
}

/// A regular file's mode and contents, or `None` when it does not exist. Opened without
/// following a final link and non-blocking, so a FIFO cannot hang a backup.
fn read_regular(path: &PathBuf) -> Result<Option<(u32, Vec<u8>)>, BackupError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BackupError::read(path, e)),
    };
    let meta = file.metadata().map_err(|e| BackupError::read(path, e))?;
    if !meta.is_file() {
        return Err(BackupError::NotAFile { path: path.clone() });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(BackupError::TooLarge {
            path: path.clone(),
            limit: MAX_FILE_BYTES,
        });
    }
    let mut contents = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|e| BackupError::read(path, e))?;
    if contents.len() as u64 > MAX_FILE_BYTES {
        return Err(BackupError::TooLarge {
            path: path.clone(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(Some((meta.mode() & 0o777, contents)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_plain_segment_per_star() {
        assert!(matching("ca/ca.key").is_some_and(|f| f.ca));
        assert!(matching("lab/app1/agent.key").is_some());
        assert!(matching("lab/app1/state/services/PSIS/install.json").is_some());
        for bad in [
            "../ca/ca.key",
            "lab/../agent.key",
            "lab/./agent.key",
            "/ca/ca.key",
            "lab/a/b/agent.key",
            "lab/.hidden/agent.key",
            "desired-state/app.yaml",
            "lab/app1/agent.log",
            "",
        ] {
            assert!(matching(bad).is_none(), "{bad}");
        }
    }

    /// Restore moves a subtree whose place is free whole: the CA's directory must hold
    /// the CA only, or moving it (last) would not be what puts the CA in place last.
    #[test]
    fn no_other_state_file_shares_the_cas_directory() {
        let top = |f: &StateFile| f.pattern.split('/').next().unwrap_or_default();
        for ca in STATE_FILES.iter().filter(|f| f.ca) {
            assert!(ca.pattern.contains('/'), "{}", ca.pattern);
            for other in STATE_FILES.iter().filter(|f| !f.ca) {
                assert_ne!(top(ca), top(other), "{} beside the CA", other.pattern);
            }
        }
    }

    #[test]
    fn docs_backup_md_lists_every_state_file() {
        let docs = include_str!("../../../docs/backup.md");
        for state_file in STATE_FILES {
            let quoted = format!("`{}`", state_file.pattern);
            assert!(
                docs.contains(&quoted),
                "docs/backup.md does not list {quoted}"
            );
        }
    }

    #[test]
    fn collect_takes_listed_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("ca")).unwrap();
        fs::write(d.join("ca/ca.pem"), "cert").unwrap();
        fs::create_dir_all(d.join("lab/app1/state")).unwrap();
        fs::write(d.join("lab/app1/agent.key"), "k").unwrap();
        fs::write(d.join("lab/app1/agent.log"), "log").unwrap();
        fs::write(d.join("lab/app1/state/agent-state.json"), "{}").unwrap();
        // A link where a directory is expected is not followed.
        std::os::unix::fs::symlink(d.join("lab/app1"), d.join("lab/linked")).unwrap();
        let paths: Vec<String> = collect(d).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "lab/app1/agent.key",
                "lab/app1/state/agent-state.json",
                "ca/ca.pem"
            ]
        );
    }

    #[test]
    fn a_fifo_in_the_list_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issued-certificates.json");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            collect(dir.path()),
            Err(BackupError::NotAFile { .. })
        ));
    }
}
