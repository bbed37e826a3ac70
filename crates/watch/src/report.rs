//! What the watcher says in the log after a load: each change of verdict once.
//!
//! A rejected directory is logged when it becomes invalid and again only when its errors
//! change, never on every rescan; its recovery is logged (`desired state valid again`);
//! a load that could not judge the files says so and that it will retry. Diagnostics are
//! already made inert and short (see `steward_model::diagnostic`), and at most a few of
//! them are written: the status lists them all.

use std::fmt::Write as _;

use crate::status::{DesiredState, LoadOutcome, WatchStatus};

/// Errors quoted in a rejection's log line; the status has the rest.
const LOGGED_ERRORS: usize = 3;

pub(crate) fn log_outcome(
    before: &WatchStatus,
    after: &WatchStatus,
    published: Option<&DesiredState>,
    was_slow: bool,
) {
    let trigger = after.last_trigger.map_or("", |t| t.as_str());
    let took_ms = after.last_load_duration.as_secs_f64() * 1000.0;
    let live = after.last_applied_generation;
    // A live generation whose files were rejected (or unreadable) until this load.
    let was_rejected = !before.valid && before.last_applied_generation > 0;
    if was_slow {
        tracing::warn!(
            took_s = after.last_load_duration.as_secs_f64(),
            trigger,
            "slow desired-state load finished"
        );
    }
    match after.last_outcome {
        Some(LoadOutcome::Applied) => {
            let generation = published.map_or(live, |s| s.generation);
            let changes = published.map(|s| s.diff.to_string()).unwrap_or_default();
            if was_rejected {
                tracing::info!(
                    generation,
                    %changes,
                    files = after.files,
                    trigger,
                    took_ms,
                    "desired state valid again (generation {generation})"
                );
            } else {
                tracing::info!(
                    generation,
                    %changes,
                    files = after.files,
                    warnings = after.warning_count,
                    trigger,
                    took_ms,
                    "desired state loaded"
                );
            }
        }
        Some(LoadOutcome::Unchanged) if was_rejected => {
            tracing::info!(
                generation = live,
                trigger,
                "desired state valid again (generation {live})"
            );
        }
        Some(LoadOutcome::Unchanged) => {
            tracing::debug!(
                generation = live,
                trigger,
                took_ms,
                "desired state unchanged"
            );
        }
        Some(LoadOutcome::Invalid | LoadOutcome::Failed)
            if before.valid || before.errors != after.errors || before.last_outcome.is_none() =>
        {
            tracing::warn!(
                errors = after.error_count,
                live_generation = live,
                trigger,
                first = %first_errors(after),
                "desired state rejected; the last good generation stays live"
            );
        }
        // The same errors again (a rescan, a save repeating the mistake): said already.
        Some(LoadOutcome::Invalid | LoadOutcome::Failed) => {}
        Some(LoadOutcome::Deferred) => {
            tracing::warn!(
                error = after.last_load_error.as_deref().unwrap_or_default(),
                live_generation = live,
                trigger,
                "could not load the desired state now (not a problem of the files); keeping the live generation and retrying"
            );
        }
        None => {}
    }
}

/// The first few errors, `; `-separated, with how many more there are.
fn first_errors(status: &WatchStatus) -> String {
    let mut out = String::new();
    for (i, e) in status.errors.iter().take(LOGGED_ERRORS).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{e}");
    }
    let more = status.error_count.saturating_sub(LOGGED_ERRORS);
    if more > 0 {
        let _ = write!(out, "; and {more} more");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use steward_model::{Code, Diagnostic, Pos};
    use time::OffsetDateTime;

    use super::*;
    use crate::reload::Found;
    use crate::status::{Tracker, Trigger};
    use crate::WatchError;

    /// Log lines written while `f` runs, one string each.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn broken(n: u32) -> Found {
        Found::Invalid {
            errors: (1..=n)
                .map(|i| {
                    Diagnostic::error(
                        "servers/app2.yaml",
                        Pos::new(i, 3),
                        Code::UnknownField,
                        "unknown field `colour`",
                    )
                })
                .collect(),
            warnings: Vec::new(),
            files: 5,
        }
    }

    fn valid_unchanged() -> Found {
        Found::Unchanged {
            warnings: Vec::new(),
            files: 5,
        }
    }

    /// Record `found` and return the lines logged for it.
    fn load(t: &mut Tracker, found: Found, trigger: Trigger) -> Vec<String> {
        let before = t.status().clone();
        let published = t.record(found, trigger, OffsetDateTime::UNIX_EPOCH, Duration::ZERO);
        let after = t.status().clone();
        logged(|| log_outcome(&before, &after, published.as_ref(), false))
    }

    fn tracker_at_generation_one() -> Tracker {
        let mut t = Tracker::new("/d".into());
        let text = &steward_testkit::Fixture::installation().yaml();
        let mut loaded = steward_model::load::Loaded::default();
        steward_model::load::load_text(Path::new("i.yaml"), text, &mut loaded);
        let snapshot = steward_model::validate::compile(loaded).snapshot.unwrap();
        let first = Found::Changed {
            diff: Arc::new(steward_model::diff::diff(None, &snapshot)),
            snapshot: Arc::new(snapshot),
            warnings: Vec::new(),
            files: 1,
        };
        t.record(
            first,
            Trigger::Initial,
            OffsetDateTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        t
    }

    #[test]
    fn a_rejection_is_logged_once_with_its_first_errors_and_not_per_rescan() {
        let mut t = tracker_at_generation_one();
        let lines = load(&mut t, broken(5), Trigger::Change);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("desired state rejected"), "{}", lines[0]);
        assert!(lines[0].contains("errors=5"), "{}", lines[0]);
        assert!(lines[0].contains("servers/app2.yaml:3:3: error[unknown-field]"));
        assert!(lines[0].contains("and 2 more"), "{}", lines[0]);
        assert!(
            !lines[0].contains("servers/app2.yaml:4:3"),
            "only the first three"
        );
        // The same errors again (a rescan, another save of the same mistake): silence.
        assert!(load(&mut t, broken(5), Trigger::Rescan).is_empty());
        // Different errors: logged.
        assert_eq!(load(&mut t, broken(1), Trigger::Change).len(), 1);
    }

    #[test]
    fn recovery_is_logged_whether_or_not_the_content_changed() {
        let mut t = tracker_at_generation_one();
        load(&mut t, broken(1), Trigger::Change);
        let lines = load(&mut t, valid_unchanged(), Trigger::Change);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("desired state valid again (generation 1)"),
            "{}",
            lines[0]
        );
        // Once: the next unchanged rescan is quiet (debug).
        assert!(load(&mut t, valid_unchanged(), Trigger::Rescan).is_empty());
    }

    #[test]
    fn a_deferred_load_says_it_will_retry_and_judges_nothing() {
        let mut t = tracker_at_generation_one();
        let emfile = Found::Deferred(WatchError::Exhausted("Too many open files".into()));
        let lines = load(&mut t, emfile, Trigger::Rescan);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("retrying"), "{}", lines[0]);
        assert!(lines[0].contains("Too many open files"), "{}", lines[0]);
        assert!(!lines[0].contains("rejected"));
        // Coming back from a deferred load to the same valid files is not a recovery.
        assert!(load(&mut t, valid_unchanged(), Trigger::Retry).is_empty());
    }
}
