//! Which file-system events can change the desired state.
//!
//! The same rule as the loader's (docs/desired-state.md): `*.yaml`/`*.yml` below the directory, and
//! nothing under a name starting with `.`, so `.git/` churn during a commit or fetch,
//! editor swap files and backups never cause a reload.

use std::path::{Component, Path};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind};

/// What an event means to the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relevance {
    Ignore,
    /// Something below the directory changed: reload after the debounce.
    Reload,
    /// The directory itself was created, removed or renamed: its recursive watch must be
    /// set up again before reloading, since inotify watches follow inodes, not paths.
    Rearm,
}

pub(crate) fn classify(event: &Event, dir: &Path) -> Relevance {
    // The kernel dropped events; only a full reload can tell what changed.
    if event.need_rescan() {
        return Relevance::Rearm;
    }
    if !changes_content(&event.kind) {
        return Relevance::Ignore;
    }
    let folder = matches!(
        event.kind,
        EventKind::Create(notify::event::CreateKind::Folder)
            | EventKind::Remove(notify::event::RemoveKind::Folder)
    );
    // A path moved away can no longer be inspected; it may have been a directory of
    // YAML files, so it counts unless its name says it is some other file.
    let moved_away = matches!(
        event.kind,
        EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both))
    );
    event
        .paths
        .iter()
        .map(|path| classify_path(path, dir, folder, moved_away))
        .max_by_key(|r| match r {
            Relevance::Ignore => 0,
            Relevance::Reload => 1,
            Relevance::Rearm => 2,
        })
        .unwrap_or(Relevance::Ignore)
}

/// Reads (including the loader's own) and metadata-only changes leave the content as it is.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

fn classify_path(path: &Path, dir: &Path, folder: bool, moved_away: bool) -> Relevance {
    if path == dir {
        return Relevance::Rearm;
    }
    // Events from the parent's watch about the directory's siblings.
    let Ok(rel) = path.strip_prefix(dir) else {
        return Relevance::Ignore;
    };
    let hidden = rel.components().any(|c| match c {
        Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if hidden {
        return Relevance::Ignore;
    }
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let maybe_dir = path.extension().is_none() && (moved_away || path.is_dir());
    if yaml || folder || maybe_dir {
        Relevance::Reload
    } else {
        Relevance::Ignore
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use notify::event::{CreateKind, DataChange, Flag, MetadataKind, RemoveKind};

    use super::*;

    const DIR: &str = "/srv/repo/desired-state";

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    fn of(kind: EventKind, path: &str) -> Relevance {
        classify(&event(kind, path), Path::new(DIR))
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));

    #[test]
    fn yaml_writes_below_the_directory_reload() {
        assert_eq!(
            of(WRITE, "/srv/repo/desired-state/installation.yaml"),
            Relevance::Reload
        );
        assert_eq!(
            of(
                EventKind::Create(CreateKind::File),
                "/srv/repo/desired-state/servers/app3.yml"
            ),
            Relevance::Reload
        );
        assert_eq!(
            of(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/srv/repo/desired-state/servers/app1.yaml"
            ),
            Relevance::Reload
        );
    }

    #[test]
    fn hidden_paths_other_files_and_siblings_are_ignored() {
        for path in [
            "/srv/repo/desired-state/.git/index",
            "/srv/repo/desired-state/.git/refs/heads/main.yaml",
            "/srv/repo/desired-state/servers/.app1.yaml.swp",
            "/srv/repo/desired-state/servers/app1.yaml~",
            "/srv/repo/desired-state/README.md",
            "/srv/repo/desired-state/4913",
            "/srv/repo/README.yaml",
            "/srv/repo/desired-state-old/app1.yaml",
        ] {
            assert_eq!(of(WRITE, path), Relevance::Ignore, "{path}");
        }
    }

    #[test]
    fn reads_and_metadata_changes_are_ignored() {
        // The loader's own reads must not schedule another load.
        let file = "/srv/repo/desired-state/installation.yaml";
        assert_eq!(
            of(EventKind::Access(AccessKind::Open(AccessMode::Any)), file),
            Relevance::Ignore
        );
        assert_eq!(
            of(EventKind::Access(AccessKind::Open(AccessMode::Any)), DIR),
            Relevance::Ignore
        );
        assert_eq!(
            of(EventKind::Access(AccessKind::Close(AccessMode::Read)), file),
            Relevance::Ignore
        );
        assert_eq!(
            of(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                file
            ),
            Relevance::Ignore
        );
    }

    #[test]
    fn the_directory_itself_and_overflows_rearm() {
        assert_eq!(
            of(EventKind::Remove(RemoveKind::Folder), DIR),
            Relevance::Rearm
        );
        assert_eq!(
            of(EventKind::Create(CreateKind::Folder), DIR),
            Relevance::Rearm
        );
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(classify(&overflow, Path::new(DIR)), Relevance::Rearm);
    }

    #[test]
    fn subdirectories_moved_in_or_out_reload() {
        assert_eq!(
            of(
                EventKind::Remove(RemoveKind::Folder),
                "/srv/repo/desired-state/servers"
            ),
            Relevance::Reload
        );
        assert_eq!(
            of(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                "/srv/repo/desired-state/servers"
            ),
            Relevance::Reload
        );
        // A rename pair counts when either side is relevant (temp file renamed over).
        let pair = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(PathBuf::from("/srv/repo/desired-state/.app1.yaml.tmp"))
            .add_path(PathBuf::from("/srv/repo/desired-state/app1.yaml"));
        assert_eq!(classify(&pair, Path::new(DIR)), Relevance::Reload);
    }
}
