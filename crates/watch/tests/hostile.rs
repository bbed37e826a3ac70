//! The watcher with hostile entries in the directory: each is reported as a located
//! error, the last good snapshot stays live, nothing stalls the watcher, and once the entry
//! is gone the next good edit applies.
#![cfg(unix)]

mod support;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use steward_model::Code;
use steward_watch::WatchConfig;
use support::*;

/// Put a hostile entry in a watched copy of the bundled state (generation 1), expect one
/// located error of `code` on `file` while generation 1 stays live, then remove it and
/// check that an ordinary edit still becomes generation 2.
async fn survives(code: Code, file: &str, add: impl FnOnce(&Path), remove: impl FnOnce(&Path)) {
    let w = Watched::start(WatchConfig::default()).await;
    add(&w.dir);
    let s = w
        .status(&format!("error[{code}] on {file}"), |s| {
            !s.valid
                && s.errors
                    .iter()
                    .any(|e| e.code == code && e.file == Path::new(file))
        })
        .await;
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (1, 2)
    );
    for e in &s.errors {
        let shown = e.to_string();
        assert!(
            !shown.chars().any(char::is_control) && shown.len() < 1024,
            "{shown:?}"
        );
    }
    let live = w.handle.current().expect("the last good snapshot");
    assert_eq!(live.generation, 1);
    assert_eq!(live.snapshot.servers.len(), 2, "nothing torn down");

    remove(&w.dir);
    w.write(APP1, &with_psws_port(&w.read(APP1), 7102));
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(psws_port(&d), 7102);
    let s = w.status("valid again", |s| s.valid).await;
    assert!(s.errors.is_empty());
    w.stop().await;
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

const APP3: &str = "servers/app3.yaml";

fn remove(rel: &'static str) -> impl FnOnce(&Path) {
    move |dir: &Path| fs::remove_file(dir.join(rel)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo() {
    survives(
        Code::Unreadable,
        APP3,
        |d| mkfifo(&d.join(APP3)),
        remove(APP3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket() {
    let holder = std::sync::Mutex::new(None);
    survives(
        Code::Unreadable,
        APP3,
        |d| {
            let listener = std::os::unix::net::UnixListener::bind(d.join(APP3)).unwrap();
            *holder.lock().unwrap() = Some(listener);
        },
        remove(APP3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_link() {
    survives(
        Code::Unreadable,
        "servers/app2.yaml",
        |d| {
            fs::rename(d.join("servers/app2.yaml"), d.join("app2.moved")).unwrap();
            symlink("../app2.yaml", d.join("servers/app2.yaml")).unwrap();
        },
        |d| {
            fs::remove_file(d.join("servers/app2.yaml")).unwrap();
            fs::rename(d.join("app2.moved"), d.join("servers/app2.yaml")).unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_loop() {
    survives(
        Code::Symlink,
        "servers/loop",
        |d| {
            symlink(".", d.join("servers/loop")).unwrap();
            symlink("b.yaml", d.join("servers/a.yaml")).unwrap();
            symlink("a.yaml", d.join("servers/b.yaml")).unwrap();
        },
        |d| {
            for name in ["loop", "a.yaml", "b.yaml"] {
                fs::remove_file(d.join("servers").join(name)).unwrap();
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_out_of_the_directory() {
    survives(
        Code::Symlink,
        "passwd.yaml",
        |d| symlink("/etc/passwd", d.join("passwd.yaml")).unwrap(),
        remove("passwd.yaml"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_directory() {
    survives(
        Code::Symlink,
        "more-servers",
        |d| symlink("servers", d.join("more-servers")).unwrap(),
        remove("more-servers"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    if steward_testkit::rerun_unprivileged("an_unreadable_file") {
        return;
    }
    survives(
        Code::Unreadable,
        APP3,
        |d| {
            // Made unreadable before it appears, so the load that sees it cannot read it.
            let staged = d.join("app3.staged");
            fs::write(&staged, "kind: Server\n").unwrap();
            fs::set_permissions(&staged, fs::Permissions::from_mode(0o000)).unwrap();
            fs::rename(&staged, d.join(APP3)).unwrap();
        },
        remove(APP3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_value() {
    survives(
        Code::TooLong,
        APP3,
        |d| {
            let text = format!(
                "apiVersion: steward/v1\nkind: Server\nmetadata: {{name: {}}}\n",
                "n".repeat(50 << 20)
            );
            fs::write(d.join(APP3), text).unwrap();
        },
        remove(APP3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters() {
    survives(
        Code::InvalidName,
        APP3,
        |d| {
            let text = "apiVersion: steward/v1\nkind: Server\nmetadata: {name: \"x\\nservers/app1.yaml:1:1: error[fake]: \\e[2J\"}\nspec:\n  hostname: app3.example.eng\n  certificate: {generate: true}\n";
            fs::write(d.join(APP3), text).unwrap();
        },
        remove(APP3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_directory_outside_is_not_watched() {
    // The OS watcher must not follow links either: `ln -s / root` would put a watch on
    // every directory of the machine. Changes behind such a link cause no reload.
    let outside = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("desired-state");
    copy_dir(Path::new(FIXTURE), &dir);
    symlink(outside.path(), dir.join("elsewhere")).unwrap();
    let (handle, task, shutdown, s) = first_load(&dir).await;
    assert!(s.errors.iter().any(|e| e.code == Code::Symlink), "{s:#?}");
    for i in 0..20 {
        fs::write(outside.path().join("app9.yaml"), format!("# {i}\n")).unwrap();
    }
    // Absence can only be shown by waiting: well past the debounce and its maximum delay.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        handle.current_status().attempts,
        1,
        "a change behind the link was watched"
    );
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}
