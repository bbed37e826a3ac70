//! What the watcher publishes, and the generation bookkeeping behind it.
//!
//! Generations (the status document's `lastAppliedGeneration` vs
//! `lastAttemptedGeneration` and every error; docs/http-api.md):
//!
//! * A **generation** numbers a distinct valid desired state. The first valid snapshot is
//!   generation 1; each later valid snapshot that differs by value from the last good one
//!   is the next number. A save that changes only comments or formatting, or a revert to
//!   exactly what is live, does not bump it. Invalid content never gets a generation.
//! * `last_applied_generation` is the generation of the snapshot that is live (published
//!   on the desired-state channel); 0 until the first valid load. "Applied" means accepted
//!   as the desired state, not yet reconciled: per-object `observedGeneration` says that.
//! * `last_attempted_generation` is the generation the directory's current content has:
//!   equal to `last_applied_generation` when that content is live, and
//!   `last_applied_generation + 1` (the number it will get once fixed) while the content
//!   is invalid or unreadable. So `last_attempted > last_applied` exactly when the files
//!   are not what is running, as with Flux's lastAttemptedRevision.
//! * `attempts` counts every load, whatever triggered it and whatever it found; a burst of
//!   saves coalesced by the debounce counts once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use steward_model::diff::SnapshotDiff;
use steward_model::{Diagnostic, Snapshot};
use time::OffsetDateTime;

use crate::reload::Found;

/// A validated desired state, as published to controllers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    /// What changed from the previous generation; for generation 1, everything as added.
    pub diff: Arc<SnapshotDiff>,
    /// Warnings of the load that produced this generation.
    pub warnings: Arc<[Diagnostic]>,
    pub loaded_at: OffsetDateTime,
}

/// What caused a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// The first load when watching starts.
    Initial,
    /// File-system events, after the debounce.
    Change,
    /// The periodic full re-read.
    Rescan,
    /// [`crate::WatchHandle::reload`] (an operator's refresh, SIGHUP).
    Manual,
    /// A retry after a load that could not judge the files (outcome `deferred`).
    Retry,
}

impl Trigger {
    /// A bounded label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Change => "change",
            Self::Rescan => "rescan",
            Self::Manual => "manual",
            Self::Retry => "retry",
        }
    }
}

/// What the last finished load found. Bounded: safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadOutcome {
    /// Valid and different: published as a new generation.
    Applied,
    /// Valid and equal to what is live.
    Unchanged,
    /// Read, but not a valid desired state.
    Invalid,
    /// The directory could not be read (missing, not a directory, unreadable).
    Failed,
    /// Nothing could be judged (the process ran out of file descriptors, the file system
    /// was too slow): the previous verdict stands and the load is retried.
    Deferred,
}

impl LoadOutcome {
    pub const ALL: [LoadOutcome; 5] = [
        Self::Applied,
        Self::Unchanged,
        Self::Invalid,
        Self::Failed,
        Self::Deferred,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
        }
    }
}

/// How many errors (and, separately, warnings) the status lists; the counts say how many
/// there are in all. A directory can hold a million broken documents, and the status is
/// served on every dashboard refresh.
pub const MAX_LISTED: usize = 100;

/// The watcher's status: what is live, what the directory holds, and every problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchStatus {
    /// The watched directory, absolute.
    pub directory: PathBuf,
    pub last_applied_generation: u64,
    pub last_attempted_generation: u64,
    /// Whether the last load produced a snapshot (false before the first load).
    pub valid: bool,
    /// Errors of the last load that judged the files: validation errors, located, or one
    /// for a directory that is missing or unreadable. Empty when valid. At most
    /// [`MAX_LISTED`]; `error_count` has them all.
    pub errors: Vec<Diagnostic>,
    pub error_count: usize,
    /// Warnings of the last load that could read the files (at most [`MAX_LISTED`]).
    pub warnings: Vec<Diagnostic>,
    pub warning_count: usize,
    /// Desired-state files read by the last load.
    pub files: usize,
    pub attempts: u64,
    pub last_trigger: Option<Trigger>,
    /// When the last load finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_loaded_at: Option<OffsetDateTime>,
    /// When the live generation was published.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_applied_at: Option<OffsetDateTime>,
    /// How long the last load (read + validate + compare) took.
    #[serde(serialize_with = "seconds")]
    pub last_load_duration: Duration,
    /// When the last finished load started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_load_started_at: Option<OffsetDateTime>,
    pub last_outcome: Option<LoadOutcome>,
    /// Why the last load could not judge the files (outcome `deferred`); empty otherwise.
    pub last_load_error: Option<String>,
    /// Set while a load has been running for longer than the slow-load bound: when it
    /// started. A load that never ends (a hung network share) shows here.
    #[serde(with = "time::serde::rfc3339::option")]
    pub loading_since: Option<OffsetDateTime>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl WatchStatus {
    pub fn new(directory: PathBuf) -> Self {
        Self {
            directory,
            last_applied_generation: 0,
            last_attempted_generation: 0,
            valid: false,
            errors: Vec::new(),
            error_count: 0,
            warnings: Vec::new(),
            warning_count: 0,
            files: 0,
            attempts: 0,
            last_trigger: None,
            last_loaded_at: None,
            last_applied_at: None,
            last_load_duration: Duration::ZERO,
            last_load_started_at: None,
            last_outcome: None,
            last_load_error: None,
            loading_since: None,
        }
    }

    fn set_errors(&mut self, mut errors: Vec<Diagnostic>) {
        self.error_count = errors.len();
        errors.truncate(MAX_LISTED);
        self.errors = errors;
    }

    fn set_warnings(&mut self, mut warnings: Vec<Diagnostic>) {
        self.warning_count = warnings.len();
        warnings.truncate(MAX_LISTED);
        self.warnings = warnings;
    }
}

/// The last good state and the status, updated by each load's result.
#[derive(Debug)]
pub(crate) struct Tracker {
    current: Option<DesiredState>,
    status: WatchStatus,
}

impl Tracker {
    pub fn new(directory: PathBuf) -> Self {
        Self {
            current: None,
            status: WatchStatus::new(directory),
        }
    }

    pub fn last_good(&self) -> Option<Arc<Snapshot>> {
        self.current.as_ref().map(|c| Arc::clone(&c.snapshot))
    }

    pub fn status(&self) -> &WatchStatus {
        &self.status
    }

    /// A load has been running for longer than the slow-load bound, since `since`.
    pub fn loading(&mut self, since: OffsetDateTime) {
        self.status.loading_since = Some(since);
    }

    /// Record one load that finished at `at` after `took`. Returns the new desired state
    /// when it is a new generation.
    pub fn record(
        &mut self,
        found: Found,
        trigger: Trigger,
        at: OffsetDateTime,
        took: Duration,
    ) -> Option<DesiredState> {
        let s = &mut self.status;
        s.attempts += 1;
        s.last_trigger = Some(trigger);
        s.last_loaded_at = Some(at);
        s.last_load_started_at = Some(at - took);
        s.last_load_duration = took;
        s.loading_since = None;
        s.last_load_error = None;
        let applied = s.last_applied_generation;
        let mut published = None;
        let outcome = match found {
            Found::Unchanged { warnings, files } => {
                s.valid = true;
                s.set_errors(Vec::new());
                s.set_warnings(warnings);
                s.files = files;
                s.last_attempted_generation = applied;
                LoadOutcome::Unchanged
            }
            Found::Changed {
                snapshot,
                diff,
                warnings,
                files,
            } => {
                let state = DesiredState {
                    generation: applied + 1,
                    snapshot,
                    diff,
                    warnings: warnings.clone().into(),
                    loaded_at: at,
                };
                s.valid = true;
                s.set_errors(Vec::new());
                s.set_warnings(warnings);
                s.files = files;
                s.last_applied_generation = state.generation;
                s.last_attempted_generation = state.generation;
                s.last_applied_at = Some(at);
                self.current = Some(state.clone());
                published = Some(state);
                LoadOutcome::Applied
            }
            Found::Invalid {
                errors,
                warnings,
                files,
            } => {
                s.valid = false;
                s.set_errors(errors);
                s.set_warnings(warnings);
                s.files = files;
                s.last_attempted_generation = applied + 1;
                LoadOutcome::Invalid
            }
            Found::Failed(err) => {
                s.valid = false;
                s.set_errors(err.diagnostics(&s.directory));
                s.set_warnings(Vec::new());
                s.files = 0;
                s.last_attempted_generation = applied + 1;
                LoadOutcome::Failed
            }
            Found::Deferred(err) => {
                // Validity, errors and generations describe the files, and nothing new is
                // known about them.
                s.last_load_error = Some(err.to_string());
                LoadOutcome::Deferred
            }
        };
        s.last_outcome = Some(outcome);
        published
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use steward_model::diff::diff;
    use steward_model::load::{load_text, Loaded};
    use steward_model::validate::compile;
    use steward_model::Pos;
    use steward_testkit::Fixture;

    use super::*;
    use crate::WatchError;

    fn snapshot(release: &str) -> Snapshot {
        let mut loaded = Loaded::default();
        let text = Fixture::installation().release(release).yaml();
        load_text(Path::new("installation.yaml"), &text, &mut loaded);
        compile(loaded).snapshot.expect("valid")
    }

    fn changed(tracker: &Tracker, release: &str) -> Found {
        let snapshot = snapshot(release);
        Found::Changed {
            diff: Arc::new(diff(tracker.last_good().as_deref(), &snapshot)),
            snapshot: Arc::new(snapshot),
            warnings: Vec::new(),
            files: 1,
        }
    }

    fn invalid() -> Found {
        Found::Invalid {
            errors: vec![Diagnostic::error(
                "installation.yaml",
                Pos::new(7, 12),
                steward_model::Code::InvalidType,
                "expected a string",
            )],
            warnings: Vec::new(),
            files: 1,
        }
    }

    fn record(t: &mut Tracker, found: Found) -> Option<u64> {
        t.record(
            found,
            Trigger::Change,
            OffsetDateTime::UNIX_EPOCH,
            Duration::ZERO,
        )
        .map(|s| s.generation)
    }

    fn generations(t: &Tracker) -> (u64, u64, bool) {
        let s = t.status();
        (
            s.last_applied_generation,
            s.last_attempted_generation,
            s.valid,
        )
    }

    #[test]
    fn generations_count_distinct_valid_states() {
        let mut t = Tracker::new("/d".into());
        assert_eq!(generations(&t), (0, 0, false));
        let first = changed(&t, "1.0.0");
        assert_eq!(record(&mut t, first), Some(1));
        assert_eq!(generations(&t), (1, 1, true));
        let unchanged = Found::Unchanged {
            warnings: Vec::new(),
            files: 1,
        };
        assert_eq!(record(&mut t, unchanged), None);
        assert_eq!(generations(&t), (1, 1, true));
        let second = changed(&t, "2.0.0");
        assert_eq!(record(&mut t, second), Some(2));
        assert_eq!(generations(&t), (2, 2, true));
        assert_eq!(t.status().attempts, 3);
    }

    #[test]
    fn invalid_content_is_attempted_but_not_applied() {
        let mut t = Tracker::new("/d".into());
        let first = changed(&t, "1.0.0");
        record(&mut t, first);
        assert_eq!(record(&mut t, invalid()), None);
        assert_eq!(generations(&t), (1, 2, false));
        assert_eq!(t.status().errors[0].pos(), Pos::new(7, 12));
        // Another broken save is still the candidate for generation 2.
        assert_eq!(record(&mut t, invalid()), None);
        assert_eq!(generations(&t), (1, 2, false));
        assert_eq!(t.last_good().unwrap().installation.release, "1.0.0");
        // The fix gets the number that was attempted.
        let fixed = changed(&t, "2.0.0");
        assert_eq!(record(&mut t, fixed), Some(2));
        assert_eq!(generations(&t), (2, 2, true));
        assert!(t.status().errors.is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error_and_a_revert_clears_it() {
        let mut t = Tracker::new("/d".into());
        let first = changed(&t, "1.0.0");
        record(&mut t, first);
        let gone = Found::Failed(WatchError::DirectoryMissing("/d".into()));
        assert_eq!(record(&mut t, gone), None);
        assert_eq!(generations(&t), (1, 2, false));
        assert_eq!(
            t.status().errors[0].code,
            steward_model::Code::DirectoryMissing
        );
        assert_eq!(t.status().files, 0);
        // Restored with the same content: valid again, same generation.
        let same = Found::Unchanged {
            warnings: Vec::new(),
            files: 1,
        };
        assert_eq!(record(&mut t, same), None);
        assert_eq!(generations(&t), (1, 1, true));
        assert!(t.status().errors.is_empty());
    }

    #[test]
    fn a_deferred_load_keeps_the_verdict_on_the_files() {
        let mut t = Tracker::new("/d".into());
        let first = changed(&t, "1.0.0");
        record(&mut t, first);
        let emfile = Found::Deferred(WatchError::Exhausted("too many open files".into()));
        assert_eq!(record(&mut t, emfile), None);
        let s = t.status();
        assert_eq!(
            generations(&t),
            (1, 1, true),
            "still valid, nothing attempted"
        );
        assert!(s.errors.is_empty());
        assert_eq!(s.last_outcome, Some(LoadOutcome::Deferred));
        assert!(s.last_load_error.as_deref().unwrap().contains("open files"));
        assert_eq!(s.attempts, 2);

        // Broken files stay reported as broken through a deferred load, too.
        record(&mut t, invalid());
        let emfile = Found::Deferred(WatchError::Exhausted("too many open files".into()));
        record(&mut t, emfile);
        assert_eq!(generations(&t), (1, 2, false));
        assert_eq!(t.status().error_count, 1);
        // The next real load clears the load error.
        let same = Found::Unchanged {
            warnings: Vec::new(),
            files: 1,
        };
        record(&mut t, same);
        assert_eq!(t.status().last_load_error, None);
        assert_eq!(t.status().last_outcome, Some(LoadOutcome::Unchanged));
    }

    #[test]
    fn a_flood_of_errors_is_counted_but_listed_only_in_part() {
        let mut t = Tracker::new("/d".into());
        let errors: Vec<Diagnostic> = (0..10_000)
            .map(|i| {
                Diagnostic::error(
                    "flood.yaml",
                    Pos::new(i + 1, 1),
                    steward_model::Code::MissingField,
                    "document has no `kind`",
                )
            })
            .collect();
        let flood = Found::Invalid {
            errors,
            warnings: Vec::new(),
            files: 1,
        };
        record(&mut t, flood);
        assert_eq!(t.status().error_count, 10_000);
        assert_eq!(t.status().errors.len(), MAX_LISTED);
    }

    #[test]
    fn a_slow_load_shows_until_it_finishes() {
        let mut t = Tracker::new("/d".into());
        t.loading(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(t.status().loading_since, Some(OffsetDateTime::UNIX_EPOCH));
        let first = changed(&t, "1.0.0");
        t.record(
            first,
            Trigger::Initial,
            OffsetDateTime::UNIX_EPOCH + Duration::from_secs(7),
            Duration::from_secs(7),
        );
        let s = t.status();
        assert_eq!(s.loading_since, None);
        assert_eq!(s.last_load_started_at, Some(OffsetDateTime::UNIX_EPOCH));
        assert_eq!(s.last_load_duration, Duration::from_secs(7));
    }

    #[test]
    fn status_serializes_for_the_api() {
        let mut t = Tracker::new("/d".into());
        record(&mut t, invalid());
        let json = serde_json::to_value(t.status()).unwrap();
        assert_eq!(json["lastAttemptedGeneration"], 1);
        assert_eq!(json["lastAppliedGeneration"], 0);
        assert_eq!(json["lastTrigger"], "change");
        assert_eq!(json["lastLoadedAt"], "1970-01-01T00:00:00Z");
        assert_eq!(json["errors"][0]["line"], 7);
    }
}
