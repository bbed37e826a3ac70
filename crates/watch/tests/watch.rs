//! The watcher against real files and the real OS watcher.
//!
//! Every wait polls for the expected state with a generous timeout; nothing asserts on
//! how fast a reload happens, only on what ends up published.

use std::fs;
use std::path::Path;
use std::time::Duration;

use steward_model::diff::{ObjectRef, ServiceRef};
use steward_model::ServiceKind;
use steward_watch::{Trigger, WatchConfig};

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_load_is_generation_one() {
    let w = Watched::start(WatchConfig::default()).await;
    let d = w.handle.current().unwrap();
    assert!(d.diff.initial);
    assert_eq!(d.snapshot.servers.len(), 2);
    let s = w.status("the first status", |s| s.attempts >= 1).await;
    assert!(s.valid);
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (1, 1)
    );
    assert_eq!(s.files, 5);
    assert_eq!(s.last_trigger, Some(Trigger::Initial));
    assert!(s.errors.is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_break_and_fix() {
    let w = Watched::start(WatchConfig::default()).await;
    let original = w.read(APP1);

    // An edit: generation 2, and the diff names the service that moved.
    w.write(APP1, &with_psws_port(&original, 7102));
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(psws_port(&d), 7102);
    let psws = ServiceRef {
        server: "app1".to_owned(),
        kind: ServiceKind::Psws,
    };
    assert_eq!(d.diff.services.changed, [psws].into());
    assert!(d.diff.affected().any(|r| r
        == ObjectRef::Service {
            server: "app1".to_owned(),
            kind: ServiceKind::Psws
        }));

    // A broken save: the status says where; generation 2 stays live.
    let broken = with_psws_port(&original, 7102).replace("hostname:", "hostnme:");
    let line = broken.lines().position(|l| l.contains("hostnme")).unwrap() + 1;
    w.write(APP1, &broken);
    let s = w.status("the invalid status", |s| !s.valid).await;
    assert!(
        s.errors
            .iter()
            .any(|e| e.file == Path::new(APP1) && e.line as usize == line),
        "no error at {APP1}:{line}: {:#?}",
        s.errors
    );
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (2, 3)
    );
    let live = w.handle.current().unwrap();
    assert_eq!((live.generation, psws_port(&live)), (2, 7102));

    // The fix becomes generation 3 and clears the errors.
    w.write(APP1, &with_psws_port(&original, 7202));
    let d = w.desired("generation 3", |d| d.generation == 3).await;
    assert_eq!(psws_port(&d), 7202);
    let s = w.status("the valid status", |s| s.valid).await;
    assert!(s.errors.is_empty());
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (3, 3)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_only_change_keeps_the_generation() {
    let w = Watched::start(WatchConfig::default()).await;
    let mut desired = w.handle.desired();
    desired.borrow_and_update();
    let text = w.read(APP1);
    w.write(APP1, &format!("# reviewed by the night shift\n{text}"));
    let s = w.status("the reload", |s| s.attempts >= 2).await;
    assert!(s.valid);
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (1, 1)
    );
    assert_eq!(w.generation(), 1);
    assert!(!desired.has_changed().unwrap(), "nothing new was published");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_is_coalesced_and_ends_on_the_last() {
    let w = Watched::start(WatchConfig::default()).await;
    let original = w.read(APP1);
    let before = w.handle.current_status().attempts;
    let last = 7100 + 199;
    for port in 7100..=last {
        w.write(APP1, &with_psws_port(&original, port));
    }
    let d = w.desired("the last write", |d| psws_port(d) == last).await;
    let s = w
        .status("the status of that generation", |s| {
            s.valid && s.last_applied_generation == d.generation
        })
        .await;
    let reloads = s.attempts - before;
    eprintln!(
        "200 writes -> {reloads} reloads, generation {}",
        d.generation
    );
    assert!(
        reloads <= 20,
        "200 writes caused {reloads} reloads; the debounce should coalesce them"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_stream_of_writes_does_not_starve_reloads() {
    let w = Watched::start(WatchConfig::default()).await;
    let original = w.read(APP1);
    // Never quiet for the 150 ms debounce, for five times the 1 s maximum delay.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut port = 7100;
    while std::time::Instant::now() < until {
        port += 1;
        w.write(APP1, &with_psws_port(&original, port));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = w.handle.current_status().attempts - 1;
    eprintln!(
        "{} writes over 5 s -> {during} reloads during the stream",
        port - 7100
    );
    assert!(during >= 1, "no reload while events kept coming");
    w.desired("the last write", |d| psws_port(d) == port).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_by_rename_is_picked_up() {
    let w = Watched::start(WatchConfig::default()).await;
    let text = with_psws_port(&w.read(APP1), 7102);
    // What editors and `git checkout` do: write a temporary file, rename it over.
    let temp = w.dir.join("servers/.app1.yaml.tmp");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, w.dir.join(APP1)).unwrap();
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(psws_port(&d), 7102);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_directory_keeps_the_last_good_and_recreating_it_resumes() {
    let w = Watched::start(WatchConfig::default()).await;
    fs::remove_dir_all(&w.dir).unwrap();
    let s = w
        .status("the missing-directory status", |s| {
            s.errors.iter().any(|e| e.code == "directory-missing")
        })
        .await;
    assert!(!s.valid);
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (1, 2)
    );
    assert_eq!(w.generation(), 1, "the last good snapshot stays live");

    // Recreated with different content: watching resumes and it becomes generation 2.
    copy_dir(Path::new(FIXTURE), &w.dir);
    let installation = w.read("installation.yaml").replace("6.12.1", "6.13.0");
    w.write("installation.yaml", &installation);
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(d.snapshot.installation.release, "6.13.0");
    assert!(d.diff.affected().any(|r| r == ObjectRef::Installation));

    // And it is watched again, not just read once.
    w.write(APP1, &with_psws_port(&w.read(APP1), 7102));
    let d = w.desired("generation 3", |d| d.generation == 3).await;
    assert_eq!(psws_port(&d), 7102);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_directory_that_does_not_exist_yet() {
    // The daemon may start before the checkout: a status, not a failure.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("desired-state");
    let (handle, task, shutdown, s) = first_load(&dir).await;
    assert!(!s.valid);
    assert_eq!(s.errors[0].code, "directory-missing");
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (0, 1)
    );
    assert!(handle.current().is_none());

    copy_dir(Path::new(FIXTURE), &dir);
    let mut desired = handle.desired();
    tokio::time::timeout(PATIENCE, desired.wait_for(|d| d.is_some()))
        .await
        .expect("generation 1 once the directory appears")
        .unwrap();
    assert_eq!(handle.current().unwrap().generation, 1);
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_dot_names_and_to_other_files_cause_no_reload() {
    let w = Watched::start(WatchConfig::default()).await;
    fs::create_dir_all(w.dir.join(".git/refs/heads")).unwrap();
    for i in 0..20 {
        fs::write(w.dir.join(".git/index"), format!("index {i}")).unwrap();
        fs::write(w.dir.join(".git/refs/heads/main"), format!("{i:040}")).unwrap();
        fs::write(w.dir.join(".git/config.yaml"), "not: [desired state").unwrap();
    }
    fs::write(w.dir.join("README.md"), "notes").unwrap();
    fs::write(w.dir.join("servers/.app1.yaml.swp"), "swap").unwrap();
    // Absence can only be shown by waiting: well past the debounce and its maximum delay.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = w.handle.current_status();
    assert_eq!(s.attempts, 1, "ignored changes caused a reload: {s:#?}");

    // The watcher is alive: a manual reload and a real change are both seen.
    w.handle.reload();
    let s = w
        .status("the manual reload", |s| {
            s.last_trigger == Some(Trigger::Manual)
        })
        .await;
    assert_eq!((s.attempts, s.last_applied_generation), (2, 1));
    w.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_rescan_sees_changes_that_raise_no_event() {
    // A file linked from a dot-directory inside the desired state: editing the target
    // raises only events the filter ignores (dot-names), like an event lost to an inotify
    // overflow.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("desired-state");
    copy_dir(Path::new(FIXTURE), &dir);
    let hidden = dir.join(".shared/app1.yaml");
    fs::create_dir(dir.join(".shared")).unwrap();
    fs::rename(dir.join(APP1), &hidden).unwrap();
    std::os::unix::fs::symlink("../.shared/app1.yaml", dir.join(APP1)).unwrap();
    let config = WatchConfig {
        rescan_interval: Duration::from_millis(500),
        ..WatchConfig::default()
    };
    let w = Watched::start_in(tmp, dir, config).await;
    let text = fs::read_to_string(&hidden).unwrap();
    fs::write(&hidden, with_psws_port(&text, 7102)).unwrap();
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(psws_port(&d), 7102);
    let s = w
        .status("the status of generation 2", |s| {
            s.last_applied_generation == 2
        })
        .await;
    assert_eq!(s.last_trigger, Some(Trigger::Rescan));
    w.stop().await;
}

#[test]
fn load_once_returns_generation_one_or_every_error() {
    let d = steward_watch::load_once(Path::new(FIXTURE)).unwrap();
    assert_eq!(d.generation, 1);
    assert!(d.diff.initial);

    let tmp = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), tmp.path());
    fs::write(tmp.path().join("servers/app3.yaml"), "kind: Server\n").unwrap();
    let err = steward_watch::load_once(tmp.path()).unwrap_err();
    assert_eq!(err.metric_label(), "invalid");

    let err = steward_watch::load_once(&tmp.path().join("nope")).unwrap_err();
    assert_eq!(err.metric_label(), "directory_missing");
}
