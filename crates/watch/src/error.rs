//! Everything that can go wrong while watching or loading the desired-state directory.

use std::path::{Path, PathBuf};

use steward_model::load::LoadError;
use steward_model::{Diagnostic, Pos};

/// Why the watcher could not start, or why one look at the directory produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The directory does not exist (yet, or any more). While watching, this is a status,
    /// not the end: the last good snapshot stays live and the directory is re-checked.
    #[error("desired-state directory {} does not exist", .0.display())]
    DirectoryMissing(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        }
    }

    /// The problem as located diagnostics, so the status lists it alongside validation
    /// errors: relative to the directory where possible, `.` for the directory itself.
    pub(crate) fn diagnostics(&self, dir: &Path) -> Vec<Diagnostic> {
        let code = match self {
            Self::Invalid { errors } => return errors.clone(),
            Self::DirectoryMissing(_) => "directory-missing",
            Self::NotADirectory(_) => "not-a-directory",
            Self::Unreadable { .. } => "unreadable",
            Self::Notify(_) | Self::InvalidConfig(_) | Self::Loader(_) => "watcher",
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
        assert_eq!(gone.diagnostics(dir)[0].code, "directory-missing");

        let file = dir.join("servers/app1.yaml");
        let raced = WatchError::from_load(dir, missing(&file));
        assert_eq!(raced.metric_label(), "unreadable");
        let d = &raced.diagnostics(dir)[0];
        assert_eq!(d.file, Path::new("servers/app1.yaml"));
        assert!(d.is_error());
    }
}
