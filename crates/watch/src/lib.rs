//! Steward's desired-state watcher (ARCHITECTURE.md, `crates/watch`).
//!
//! ```text
//! desired-state/ --notify--> filter --> debounce --> load + validate (spawn_blocking)
//!        ^ (parent watched too,          |                    |
//!          periodic rescan)              |     valid & different: next generation
//!                                        v                    v
//!                              WatchStatus channel    DesiredState channel (last good)
//! ```
//!
//! * An invalid or unreadable directory never replaces the last good snapshot; its errors
//!   go to the status. Deleting the directory is such an error; recreating it resumes.
//! * Generations count distinct valid desired states; see [`status`] for the exact meaning
//!   of `lastAppliedGeneration` and `lastAttemptedGeneration`.
//! * Events under dot-names (`.git/`) and non-YAML files are ignored; bursts are coalesced
//!   into one load after a quiet period, capped so a constant stream cannot starve loads;
//!   a periodic rescan covers events the OS dropped.
//! * Loads run one at a time on a thread of their own: a slow one is logged and shown in
//!   the status while it runs, shutdown never waits for one, and a load that could not
//!   judge the files (the process ran out of file descriptors) keeps the last verdict and
//!   is retried.

mod config;
mod debounce;
mod error;
mod filter;
mod reload;
mod report;
pub mod status;
mod watcher;

use std::path::Path;
use std::sync::Arc;

pub use config::WatchConfig;
pub use error::WatchError;
pub use status::{DesiredState, LoadOutcome, Trigger, WatchStatus};
pub use watcher::{watch, WatchHandle};

use steward_model::diff::diff;
use time::OffsetDateTime;

/// Load and validate `dir` once (the CLI, or a daemon that wants a valid state before it
/// starts watching). The result is generation 1 with an all-added diff; an invalid
/// directory is [`WatchError::Invalid`] carrying every error.
pub fn load_once(dir: &Path) -> Result<DesiredState, WatchError> {
    let loaded = reload::load(dir, &steward_model::load::Limits::default())?;
    let snapshot = loaded
        .snapshot
        .map_err(|errors| WatchError::Invalid { errors })?;
    Ok(DesiredState {
        generation: 1,
        diff: Arc::new(diff(None, &snapshot)),
        snapshot: Arc::new(snapshot),
        warnings: loaded.warnings.into(),
        loaded_at: OffsetDateTime::now_utc(),
    })
}
