//! Finding the desired-state files below a directory, and refusing what cannot be one.
//!
//! Rules (also in docs/desired-state.md):
//! * names starting with `.` are skipped, whatever they are;
//! * a directory is walked, down to [`Limits::max_depth`] levels, each directory at most
//!   once (a bind mount of a parent would otherwise recurse forever);
//! * a `*.yaml`/`*.yml` regular file is read;
//! * a `*.yaml`/`*.yml` symbolic link is read under its own name when it leads to a
//!   regular file inside the directory; a dangling link, a link loop, a link to a file
//!   outside the directory (say `/etc/shadow` or `/proc`) or to anything but a regular
//!   file is an error, one per link;
//! * a symbolic link to a directory is an error whatever its name: directories are never
//!   entered through links, which is what makes loops impossible (`ln -s . a` is one
//!   error, not a walk that never ends);
//! * any other `*.yaml`/`*.yml` entry (FIFO, socket, device) is an error without being
//!   opened: opening a FIFO for reading blocks until a writer appears.
//!
//! A subdirectory that cannot be listed is an error too: it may hold Servers.

use std::collections::HashSet;
use std::fs::{self, FileType, Metadata};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{human_size, is_exhaustion, is_loop, Limits, LoadError};
use crate::diagnostic::{display_path, quote, Code, Diagnostic};
use crate::Pos;

/// A regular file to read: its name relative to the directory, the path to open (the
/// link's resolved target for a link) and its size when found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileEntry {
    pub rel: PathBuf,
    pub open: PathBuf,
    pub size: u64,
}

#[derive(Debug, Default)]
pub(super) struct Walked {
    /// Sorted by relative name.
    pub files: Vec<FileEntry>,
    /// Entries that could not be used, each a located error.
    pub problems: Vec<Diagnostic>,
}

pub(super) fn walk(dir: &Path, limits: &Limits, deadline: Instant) -> Result<Walked, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let meta = fs::metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(LoadError::NotADirectory(dir.to_owned()));
    }
    let root = fs::canonicalize(dir).map_err(io)?;
    let mut walker = Walker {
        root,
        limits,
        deadline,
        seen_dirs: HashSet::new(),
        out: Walked::default(),
    };
    walker.seen_dirs.extend(identity(&meta));
    walker.directory(dir, Path::new(""), 0)?;
    let mut out = walker.out;
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    cap_total(&mut out, limits);
    Ok(out)
}

struct Walker<'a> {
    /// The directory, canonical: a link's target must be below it.
    root: PathBuf,
    limits: &'a Limits,
    deadline: Instant,
    /// (device, inode) of every directory entered.
    seen_dirs: HashSet<(u64, u64)>,
    out: Walked,
}

impl Walker<'_> {
    fn directory(&mut self, path: &Path, rel: &Path, depth: usize) -> Result<(), LoadError> {
        if Instant::now() > self.deadline {
            return Err(LoadError::TooSlow(self.limits.max_duration));
        }
        let listing = match fs::read_dir(path) {
            Ok(listing) => listing,
            Err(e) if depth == 0 && !is_exhaustion(&e) => {
                return Err(LoadError::Io {
                    path: path.to_owned(),
                    source: e,
                })
            }
            Err(e) => return self.failed(path, rel, e, "cannot list the directory"),
        };
        // In listing order: files are sorted once at the end, problems with every diagnostic.
        for entry in listing {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => return self.failed(path, rel, e, "cannot list the directory"),
            };
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let entry_path = entry.path();
            let entry_rel = rel.join(&name);
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    self.failed(&entry_path, &entry_rel, e, "cannot read")?;
                    continue;
                }
            };
            if file_type.is_dir() {
                self.subdirectory(&entry_path, &entry_rel, depth + 1)?;
            } else if file_type.is_symlink() {
                self.link(&entry_path, entry_rel)?;
            } else if is_yaml(&entry_rel) {
                if file_type.is_file() {
                    match fs::symlink_metadata(&entry_path) {
                        Ok(meta) => self.out.files.push(FileEntry {
                            rel: entry_rel,
                            open: entry_path,
                            size: meta.len(),
                        }),
                        Err(e) => self.failed(&entry_path, &entry_rel, e, "cannot read")?,
                    }
                } else {
                    let what = special(&file_type);
                    self.problem(
                        &entry_rel,
                        Code::Unreadable,
                        format!("is {what}; only regular files are read"),
                    );
                }
            }
        }
        Ok(())
    }

    fn subdirectory(&mut self, path: &Path, rel: &Path, depth: usize) -> Result<(), LoadError> {
        if depth > self.limits.max_depth {
            self.problem(
                rel,
                Code::TooLong,
                format!(
                    "directory nested more than {} levels deep; not read",
                    self.limits.max_depth
                ),
            );
            return Ok(());
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => return self.failed(path, rel, e, "cannot read the directory"),
        };
        if identity(&meta).is_some_and(|id| !self.seen_dirs.insert(id)) {
            self.problem(
                rel,
                Code::Unreadable,
                "is a directory already read under another name (a bind mount loop?); not read twice",
            );
            return Ok(());
        }
        self.directory(path, rel, depth)
    }

    /// A symbolic link: see the module's rules.
    fn link(&mut self, path: &Path, rel: PathBuf) -> Result<(), LoadError> {
        let yaml = is_yaml(&rel);
        let target = match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) if is_exhaustion(&e) => {
                return Err(LoadError::Exhausted {
                    path: path.to_owned(),
                    source: e,
                })
            }
            // Not something that could be read, and not a directory either: a link that
            // is not named like a desired-state file is then none of our business.
            Err(_) if !yaml => return Ok(()),
            Err(e) if is_loop(&e) => {
                self.problem(
                    &rel,
                    Code::Symlink,
                    "symbolic link loop: the link never reaches a file",
                );
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problem(
                    &rel,
                    Code::Unreadable,
                    format!("dangling symbolic link: {} does not exist", link_text(path)),
                );
                return Ok(());
            }
            Err(e) => {
                self.problem(
                    &rel,
                    Code::Unreadable,
                    format!("cannot follow the symbolic link: {e}"),
                );
                return Ok(());
            }
        };
        let meta = match fs::metadata(&target) {
            Ok(meta) => meta,
            Err(e) if !yaml && !is_exhaustion(&e) => return Ok(()),
            Err(e) => return self.failed(path, &rel, e, "cannot follow the symbolic link"),
        };
        if meta.is_dir() {
            self.problem(
                &rel,
                Code::Symlink,
                "symbolic link to a directory: directories are not entered through links (link the files instead)",
            );
            return Ok(());
        }
        if !yaml {
            return Ok(());
        }
        if !target.starts_with(&self.root) {
            self.problem(
                &rel,
                Code::Symlink,
                format!(
                    "symbolic link leads outside the desired-state directory (to {}); only links to files inside it are followed",
                    link_text(path)
                ),
            );
        } else if !meta.is_file() {
            let what = special(&meta.file_type());
            self.problem(
                &rel,
                Code::Unreadable,
                format!("symbolic link to {what}; only regular files are read"),
            );
        } else {
            self.out.files.push(FileEntry {
                rel,
                open: target,
                size: meta.len(),
            });
        }
        Ok(())
    }

    /// An I/O error about one entry: the process's own limits end the load (nothing is
    /// wrong with the files); anything else is that entry's located error.
    fn failed(
        &mut self,
        path: &Path,
        rel: &Path,
        err: std::io::Error,
        doing: &str,
    ) -> Result<(), LoadError> {
        if is_exhaustion(&err) {
            return Err(LoadError::Exhausted {
                path: path.to_owned(),
                source: err,
            });
        }
        self.problem(rel, Code::Unreadable, format!("{doing}: {err}"));
        Ok(())
    }

    fn problem(&mut self, rel: &Path, code: Code, message: impl Into<String>) {
        let file = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        self.out
            .problems
            .push(Diagnostic::error(file, Pos::new(1, 1), code, message));
    }
}

/// Files beyond the total size bound are not read; the first of them says so (one error
/// is enough to refuse the snapshot, and the message counts the rest).
fn cap_total(out: &mut Walked, limits: &Limits) {
    let mut total = 0u64;
    let Some(over) = out.files.iter().position(|f| {
        total = total.saturating_add(f.size.min(limits.max_file_bytes.saturating_add(1)));
        total > limits.max_total_bytes
    }) else {
        return;
    };
    let dropped = out.files.split_off(over);
    out.problems.push(Diagnostic::error(
        &dropped[0].rel,
        Pos::new(1, 1),
        Code::TooLong,
        format!(
            "the desired-state files exceed {} in total; this file and {} more are not read",
            human_size(limits.max_total_bytes),
            dropped.len() - 1
        ),
    ));
}

/// A link's target as written (not resolved: that would print this machine's paths).
fn link_text(link: &Path) -> String {
    fs::read_link(link).map_or_else(|_| "its target".to_owned(), |t| quote(&display_path(&t)))
}

pub(super) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// What a non-regular, non-directory entry is, for messages.
fn special(t: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    let _ = t;
    "something other than a regular file"
}

/// (device, inode): the same directory reached by two names has one identity.
fn identity(meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}
