//! Reading a desired-state directory into raw, located documents.
//!
//! Every `*.yaml`/`*.yml` file below the directory is read (names starting with `.` are
//! skipped, so `.git/` is); each file may hold several documents. A document that does
//! not parse yields a located diagnostic and the others are still read, so one run
//! reports every broken document.
//!
//! The directory is hostile input like the files: anything that cannot be read as a
//! desired-state file is a located error, never a file that quietly does not exist
//! (with `prune: true` a missing Server is uninstalled). Only regular files are read,
//! through non-blocking opens that do not follow a final symbolic link, and every read is
//! bounded ([`Limits`]). See `walk` for the rules on symbolic links.

mod document;
mod read;
mod walk;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) use document::PORT_RANGE;
pub use document::{load_bytes, load_text};
pub use read::read_regular_file;

use crate::diagnostic::Diagnostic;
use crate::resource::Resource;

/// A document and the file it came from (relative to the directory).
#[derive(Debug, Clone)]
pub struct Sourced {
    pub file: PathBuf,
    pub resource: Resource,
}

/// What a directory holds: the documents that parsed and the problems of those that did not.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Sourced>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
    /// Kinds of documents that were present but did not parse. Rules about a kind's count
    /// ("exactly one Installation") stay quiet for these, rather than pile a misleading
    /// second error on the real one. `?` stands for a document whose kind is unreadable
    /// (including every document of a file that could not be read at all).
    pub unparsed_kinds: Vec<String>,
}

impl Loaded {
    /// Whether a document of `kind` (or of unreadable kind) failed to parse.
    pub fn may_have_lost(&self, kind: &str) -> bool {
        self.unparsed_kinds.iter().any(|k| k == kind || k == "?")
    }

    /// Record a file that could not be read: its documents may be of any kind.
    fn unreadable(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
        self.unparsed_kinds.push("?".to_owned());
    }
}

/// Bounds on one load, so that no directory can make it take unbounded memory or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read. Default 4 MiB (a 1,000-server fleet is about 250 KiB in all).
    pub max_file_bytes: u64,
    /// Largest total of all files read. Default 64 MiB.
    pub max_total_bytes: u64,
    /// Deepest directory nesting below the desired-state directory. Default 32.
    pub max_depth: usize,
    /// Longest a load may take; checked between files. Default 30 s.
    pub max_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 << 20,
            max_total_bytes: 64 << 20,
            max_depth: 32,
            max_duration: Duration::from_secs(30),
        }
    }
}

/// The directory as a whole could not be read: a usage, I/O or resource problem, not
/// invalid content.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", crate::diagnostic::display_path(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a directory", crate::diagnostic::display_path(.0))]
    NotADirectory(PathBuf),
    /// The process hit its own limits (open files, memory) while opening `path`. Says
    /// nothing about the files: the same load may succeed a moment later.
    #[error(
        "cannot open {}: {source} (a limit of this process, not a problem of the file)",
        crate::diagnostic::display_path(path)
    )]
    Exhausted {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading took longer than [`Limits::max_duration`] (a hung network share).
    #[error("reading the directory took longer than {} s", .0.as_secs())]
    TooSlow(Duration),
}

impl LoadError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::NotADirectory(_) => "not_a_directory",
            Self::Exhausted { .. } => "exhausted",
            Self::TooSlow(_) => "too_slow",
        }
    }
}

/// Whether an I/O error is the process's own limit rather than a property of the file.
pub(crate) fn is_exhaustion(err: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            err.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
        )
    }
    #[cfg(not(unix))]
    {
        err.kind() == std::io::ErrorKind::OutOfMemory
    }
}

/// Whether an I/O error is a symbolic link loop (or a final link refused by `O_NOFOLLOW`).
pub(crate) fn is_loop(err: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        err.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// A size for messages: `4 MiB`, `50.5 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn human_size(bytes: u64) -> String {
    let (value, unit) = match bytes {
        b if b >= 1 << 20 => (b as f64 / f64::from(1u32 << 20), "MiB"),
        b if b >= 1 << 10 => (b as f64 / f64::from(1u32 << 10), "KiB"),
        b => return format!("{b} bytes"),
    };
    let shown = format!("{value:.1}");
    format!("{} {unit}", shown.strip_suffix(".0").unwrap_or(&shown))
}

/// Read every desired-state file below `dir`, within the default [`Limits`].
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    load_dir_with(dir, &Limits::default())
}

/// Read every desired-state file below `dir`.
pub fn load_dir_with(dir: &Path, limits: &Limits) -> Result<Loaded, LoadError> {
    let deadline = Instant::now() + limits.max_duration;
    let walked = walk::walk(dir, limits, deadline)?;
    let mut loaded = Loaded::default();
    for problem in walked.problems {
        loaded.unreadable(problem);
    }
    let files = walked.files;
    // Files parse independently; split them into contiguous runs, one per core, and
    // concatenate the results in order so output stays deterministic.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = files.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Loaded, LoadError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(run)
            .map(|chunk| scope.spawn(move || load_files(chunk, limits, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in parts {
        let part = part?;
        loaded.documents.extend(part.documents);
        loaded.diagnostics.extend(part.diagnostics);
        loaded.unparsed_kinds.extend(part.unparsed_kinds);
        loaded.files += part.files;
    }
    Ok(loaded)
}

fn load_files(
    files: &[walk::FileEntry],
    limits: &Limits,
    deadline: Instant,
) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for file in files {
        if Instant::now() > deadline {
            return Err(LoadError::TooSlow(limits.max_duration));
        }
        match read::read(file, limits)? {
            Ok(bytes) => {
                loaded.files += 1;
                load_bytes(&file.rel, &bytes, &mut loaded);
            }
            Err(problem) => loaded.unreadable(problem),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(4 << 20), "4 MiB");
        assert_eq!(human_size(50 * (1 << 20) + (1 << 19)), "50.5 MiB");
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(100), "100 bytes");
    }

    #[cfg(unix)]
    #[test]
    fn only_the_process_s_own_limits_count_as_exhaustion() {
        use std::io::Error;
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            assert!(is_exhaustion(&Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EACCES, libc::ENOENT, libc::EIO, libc::ELOOP] {
            assert!(!is_exhaustion(&Error::from_raw_os_error(errno)), "{errno}");
        }
    }
}
