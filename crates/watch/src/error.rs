//! Everything that can go wrong while watching or loading the desired-state directory.

use std::path::{Path, PathBuf};

use steward_model::diagnostic::display_path;
use steward_model::load::LoadError;
use steward_model::{Code, Diagnostic, Pos};

/// Why the watcher could not start, or why one look at the directory produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The directory does not exist (yet, or any more). While watching, this is a status,
    /// not the end: the last good snapshot stays live and the directory is re-checked.
    #[error("desired-state directory {} does not exist", display_path(.0))]
    DirectoryMissing(PathBuf),
    #[error("{} is not a directory", display_path(.0))]
    NotADirectory(PathBuf),
    #[error("cannot read {}: {source}", display_path(path))]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The process ran out of file descriptors, memory or threads: nothing is known about
    /// the files, so the load is retried rather than the desired state judged invalid.
    #[error("cannot load now: {0}")]
    Exhausted(String),
    /// The load took longer than its bound (a hung or very slow file system).
    #[error("{0}")]
    TooSlow(String),
    /// The files were read but do not make a valid desired state.
    #[error("desired state is invalid: {} error(s), first: {}", .errors.len(),
        .errors.first().map(ToString::to_string).unwrap_or_default())]
    Invalid { errors: Vec<Diagnostic> },
    /// The operating system's file watcher could not be set up (e.g. the inotify limit).
    #[error("cannot watch for file changes: {0}")]
    Notify(#[from] notify::Error),
    #[error("invalid watch configuration: {0}")]
    InvalidConfig(&'static str),
    /// The blocking load task panicked or was cancelled.
    #[error("the loader task failed: {0}")]
    Loader(String),
}

impl WatchError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::DirectoryMissing(_) => "directory_missing",
            Self::NotADirectory(_) => "not_a_directory",
            Self::Unreadable { .. } => "unreadable",
            Self::Exhausted(_) => "exhausted",
            Self::TooSlow(_) => "too_slow",
            Self::Invalid { .. } => "invalid",
            Self::Notify(_) => "notify",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Loader(_) => "loader",
        }
    }

    /// Classify a loader error: a missing directory is told apart from other I/O so the
    /// status can say "deleted" rather than a raw errno.
    pub(crate) fn from_load(dir: &Path, err: LoadError) -> Self {
        match err {
            LoadError::Io { path, source }
                if path == dir && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Self::DirectoryMissing(path)
            }
            LoadError::Io { path, source } => Self::Unreadable { path, source },
            LoadError::NotADirectory(path) => Self::NotADirectory(path),
            e @ LoadError::Exhausted { .. } => Self::Exhausted(e.to_string()),
            e @ LoadError::TooSlow(_) => Self::TooSlow(e.to_string()),
        }
    }

    /// Whether this says nothing about the files (the process's own limits, a slow file
    /// system): the last verdict on them stands and the load is retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Exhausted(_) | Self::TooSlow(_))
    }

    /// The problem as located diagnostics, so the status lists it alongside validation
    /// errors: relative to the directory where possible, `.` for the directory itself.
    pub(crate) fn diagnostics(&self, dir: &Path) -> Vec<Diagnostic> {
        let code = match self {
            Self::Invalid { errors } => return errors.clone(),
            Self::DirectoryMissing(_) => Code::DirectoryMissing,
            Self::NotADirectory(_) => Code::NotADirectory,
            Self::Unreadable { .. } => Code::Unreadable,
            Self::Exhausted(_)
            | Self::TooSlow(_)
            | Self::Notify(_)
            | Self::InvalidConfig(_)
            | Self::Loader(_) => Code::Watcher,
        };
        let file = match self {
            Self::Unreadable { path, .. } => path
                .strip_prefix(dir)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            _ => PathBuf::from("."),
        };
        vec![Diagnostic::error(
            file,
            Pos::new(1, 1),
            code,
            self.to_string(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_told_apart_from_a_missing_file() {
        let dir = Path::new("/srv/desired-state");
        let missing = |path: &Path| LoadError::Io {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let gone = WatchError::from_load(dir, missing(dir));
        assert_eq!(gone.metric_label(), "directory_missing");
        assert_eq!(gone.diagnostics(dir)[0].code, Code::DirectoryMissing);

        let file = dir.join("servers/app1.yaml");
        let raced = WatchError::from_load(dir, missing(&file));
        assert_eq!(raced.metric_label(), "unreadable");
        let d = &raced.diagnostics(dir)[0];
        assert_eq!(d.file, Path::new("servers/app1.yaml"));
        assert!(d.is_error());
    }

    #[test]
    fn running_out_of_file_descriptors_says_nothing_about_the_files() {
        let dir = Path::new("/srv/desired-state");
        let emfile = LoadError::Exhausted {
            path: dir.join("servers"),
            source: std::io::Error::from_raw_os_error(24),
        };
        let err = WatchError::from_load(dir, emfile);
        assert!(err.is_transient());
        assert_eq!(err.metric_label(), "exhausted");
        assert!(!WatchError::DirectoryMissing(dir.into()).is_transient());
    }
}
