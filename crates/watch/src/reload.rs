//! One look at the directory: read, validate, compare with the last good snapshot.
//!
//! Blocking (file I/O and CPU-bound validation); the watcher runs it on `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;

use steward_model::diff::{diff, SnapshotDiff};
use steward_model::load::Limits;
use steward_model::{load, validate, Diagnostic, Snapshot};

use crate::WatchError;

/// What the files held.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated snapshot, or the errors that prevented it.
    pub snapshot: Result<Snapshot, Vec<Diagnostic>>,
    pub warnings: Vec<Diagnostic>,
    pub files: usize,
}

/// What a look found, relative to the last good snapshot.
#[derive(Debug)]
pub(crate) enum Found {
    /// Valid and equal by value to the last good snapshot: reformatting, comments, files
    /// split or merged. No new generation.
    Unchanged {
        warnings: Vec<Diagnostic>,
        files: usize,
    },
    /// Valid and different (or the first): the next generation.
    /// Shared already: the snapshot is published as is.
    Changed {
        snapshot: Arc<Snapshot>,
        diff: Arc<SnapshotDiff>,
        warnings: Vec<Diagnostic>,
        files: usize,
    },
    /// Read, but not a valid desired state.
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
        files: usize,
    },
    /// The directory could not be read at all.
    Failed(WatchError),
    /// Nothing is known about the files: the process ran out of file descriptors, or the
    /// file system was too slow. The last verdict stands; the load is retried.
    Deferred(WatchError),
}

pub(crate) fn load(dir: &Path, limits: &Limits) -> Result<Loaded, WatchError> {
    let loaded = load::load_dir_with(dir, limits).map_err(|e| WatchError::from_load(dir, e))?;
    let files = loaded.files;
    let compiled = validate::compile(loaded);
    let (errors, warnings): (Vec<_>, Vec<_>) = compiled
        .diagnostics
        .into_iter()
        .partition(Diagnostic::is_error);
    Ok(Loaded {
        snapshot: compiled.snapshot.ok_or(errors),
        warnings,
        files,
    })
}

pub(crate) fn look(dir: &Path, last_good: Option<&Snapshot>, limits: &Limits) -> Found {
    let loaded = match load(dir, limits) {
        Ok(loaded) => loaded,
        Err(err) if err.is_transient() => return Found::Deferred(err),
        Err(err) => return Found::Failed(err),
    };
    let Loaded {
        snapshot,
        warnings,
        files,
    } = loaded;
    match snapshot {
        Err(errors) => Found::Invalid {
            errors,
            warnings,
            files,
        },
        Ok(snapshot) if last_good == Some(&snapshot) => Found::Unchanged { warnings, files },
        Ok(snapshot) => Found::Changed {
            diff: Arc::new(diff(last_good, &snapshot)),
            snapshot: Arc::new(snapshot),
            warnings,
            files,
        },
    }
}
