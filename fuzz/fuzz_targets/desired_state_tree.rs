//! A desired-state directory built from the fuzz input (files, subdirectories, links
//! inside and outside the tree, link loops, FIFOs, unreadable entries), loaded the way the
//! daemon and `steward validate` load one. File contents are the bundled example's files,
//! edited, or raw bytes. Never a panic, never a hang (a FIFO or a loop must not block the
//! load: libFuzzer's timeout turns a hang into a crash); every diagnostic is located and
//! on one line; a snapshot exists exactly when there is no error.
#![no_main]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use steward_model::load::{load_dir_with, Limits};
use steward_model::validate::compile;

/// The bundled example, the usual starting point of a real desired state.
const EXAMPLE: &[(&str, &str)] = &[
    (
        "installation.yaml",
        include_str!("../../desired-state/installation.yaml"),
    ),
    (
        "servers/app1.yaml",
        include_str!("../../desired-state/servers/app1.yaml"),
    ),
    (
        "servers/app2.yaml",
        include_str!("../../desired-state/servers/app2.yaml"),
    ),
    (
        "health-checks.yaml",
        include_str!("../../desired-state/health-checks.yaml"),
    ),
    (
        "active-directory/corp.yaml",
        include_str!("../../desired-state/active-directory/corp.yaml"),
    ),
];

#[derive(Debug, Arbitrary)]
enum Name {
    /// One of the example's path components.
    Known(u8),
    Yaml(String),
    Any(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Content {
    Example(u8),
    /// An example file with a byte range replaced.
    Edited {
        file: u8,
        at: u16,
        remove: u8,
        insert: Vec<u8>,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Entry {
    File {
        path: Vec<Name>,
        content: Content,
        unreadable: bool,
    },
    Dir {
        path: Vec<Name>,
        unlistable: bool,
    },
    /// `up` leading `..` components, then `target`.
    Link {
        path: Vec<Name>,
        up: u8,
        target: Vec<Name>,
    },
    Fifo {
        path: Vec<Name>,
    },
}

#[derive(Debug, Arbitrary)]
struct Tree {
    /// Start from the bundled example (else from an empty directory).
    example: bool,
    entries: Vec<Entry>,
}

fn component(name: &Name) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStringExt;
    const KNOWN: &[&str] = &[
        "installation.yaml",
        "servers",
        "app1.yaml",
        "app2.yaml",
        "health-checks.yaml",
        "active-directory",
        "corp.yaml",
        ".git",
        ".hidden.yaml",
        "x.yml",
    ];
    let bytes: Vec<u8> = match name {
        Name::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].as_bytes().to_vec(),
        Name::Yaml(s) => format!("{s}.yaml").into_bytes(),
        Name::Any(b) => b.clone(),
    };
    // Not a name a directory can hold: skipped rather than escaping the tree.
    let bad = bytes.is_empty()
        || bytes.len() > 64
        || bytes.contains(&b'/')
        || bytes.contains(&0)
        || bytes == b"."
        || bytes == b"..";
    (!bad).then(|| std::ffi::OsString::from_vec(bytes))
}

fn relative(path: &[Name]) -> Option<PathBuf> {
    let parts: Vec<_> = path.iter().take(6).filter_map(component).collect();
    (!parts.is_empty()).then(|| parts.iter().collect())
}

fn content(c: &Content) -> Vec<u8> {
    let example = |i: u8| EXAMPLE[usize::from(i) % EXAMPLE.len()].1.as_bytes();
    match c {
        Content::Example(i) => example(*i).to_vec(),
        Content::Edited {
            file,
            at,
            remove,
            insert,
        } => {
            let text = example(*file);
            let at = usize::from(*at) % (text.len() + 1);
            let end = (at + usize::from(*remove)).min(text.len());
            [&text[..at], insert.as_slice(), &text[end..]].concat()
        }
        Content::Raw(bytes) => bytes.clone(),
    }
}

fn build(root: &Path, tree: &Tree) {
    if tree.example {
        for (rel, text) in EXAMPLE {
            let path = root.join(rel);
            let _ = fs::create_dir_all(path.parent().unwrap());
            let _ = fs::write(path, text);
        }
    }
    for entry in tree.entries.iter().take(24) {
        let (Entry::File { path, .. }
        | Entry::Dir { path, .. }
        | Entry::Link { path, .. }
        | Entry::Fifo { path }) = entry;
        let Some(rel) = relative(path) else { continue };
        if !place(root, &rel) {
            continue;
        }
        let at = root.join(&rel);
        // Failures just leave the tree as it is: any tree is a valid input.
        match entry {
            Entry::File {
                content: c,
                unreadable,
                ..
            } => {
                let created = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&at)
                    .and_then(|mut f| f.write_all(&content(c)));
                if created.is_ok() && *unreadable {
                    let _ = fs::set_permissions(&at, fs::Permissions::from_mode(0o000));
                }
            }
            Entry::Dir { unlistable, .. } => {
                if fs::create_dir(&at).is_ok() && *unlistable {
                    let _ = fs::set_permissions(&at, fs::Permissions::from_mode(0o000));
                }
            }
            Entry::Link { up, target, .. } => {
                let mut to = PathBuf::new();
                for _ in 0..(up % 8) {
                    to.push("..");
                }
                if let Some(t) = relative(target) {
                    to.push(t);
                }
                let _ = symlink(to, &at);
            }
            Entry::Fifo { .. } => {
                let _ = mkfifo(&at);
            }
        }
    }
}

/// Make `rel`'s parent directories inside `root` and check that `rel` itself is free,
/// never passing through a link or another entry: building the tree must not follow a
/// link out of it (the fuzzer may run as root) nor open a FIFO it made (that blocks).
fn place(root: &Path, rel: &Path) -> bool {
    let parts: Vec<_> = rel.components().collect();
    let Some((_, parents)) = parts.split_last() else {
        return false;
    };
    let mut at = root.to_path_buf();
    for part in parents {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return false,
            Err(_) => {
                if fs::create_dir(&at).is_err() {
                    return false;
                }
            }
        }
    }
    fs::symlink_metadata(root.join(rel)).is_err()
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing of this process.
    match unsafe { libc::mkfifo(c.as_ptr(), 0o644) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Put permissions back so the directory can be removed.
fn unlock(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                unlock(&entry.path());
            } else if kind.is_file() {
                let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644));
            }
        }
    }
}

fuzz_target!(|tree: Tree| {
    // Under the outer temp dir, so links that climb out stay within something we own.
    // In memory when the machine has a tmpfs there: a tree per input is written to disk.
    let shm = Path::new("/dev/shm");
    let outer = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("steward-fuzz-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let root = outer.path().join("desired-state");
    fs::create_dir(&root).expect("root");
    build(&root, &tree);
    let limits = Limits {
        max_file_bytes: 64 << 10,
        max_total_bytes: 256 << 10,
        max_depth: 4,
        ..Limits::default()
    };
    let loaded = load_dir_with(&root, &limits);
    unlock(outer.path());
    let Ok(loaded) = loaded else { return };
    let compiled = compile(loaded);
    assert_eq!(compiled.snapshot.is_some(), !compiled.has_errors());
    for d in &compiled.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "unlocated: {d}");
        let line = d.to_string();
        assert!(
            !line.chars().any(char::is_control),
            "control character in a diagnostic: {line:?}"
        );
        assert!(
            !d.file.is_absolute(),
            "absolute path in a diagnostic: {line}"
        );
    }
});
