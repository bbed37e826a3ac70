//! Running out of file descriptors is the process's problem, not the files': the watcher
//! keeps the last good snapshot, does not call the desired state invalid, says so in the
//! status and retries. Its own test binary: it lowers the process-wide open-file limit.
#![cfg(target_os = "linux")]

mod support;

use std::fs::File;

use steward_watch::{LoadOutcome, Trigger, WatchConfig};
use support::*;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn set_soft_limit(soft: u64) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read the struct passed, nothing else.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let previous = limit;
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        previous
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_keeps_the_live_state_valid_and_retries() {
    let w = Watched::start(WatchConfig::default()).await;

    // Use up every descriptor the (lowered) limit allows.
    let previous = set_soft_limit(open_fds() + 32);
    let mut hogs = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hogs.push(f);
    }
    w.handle.reload();
    let s = w
        .status("the deferred load", |s| {
            s.last_outcome == Some(LoadOutcome::Deferred)
        })
        .await;
    drop(hogs);
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &previous), 0) };

    assert!(s.valid, "out of descriptors is not invalid files: {s:#?}");
    assert!(s.errors.is_empty(), "{s:#?}");
    assert_eq!(
        (s.last_applied_generation, s.last_attempted_generation),
        (1, 1)
    );
    let why = s.last_load_error.clone().unwrap_or_default();
    assert!(why.contains("os error 24"), "{why}");
    assert_eq!(w.handle.current().unwrap().generation, 1);

    // The retry reads the files again, now that descriptors are free.
    let s = w
        .status("the retry", |s| {
            s.last_trigger == Some(Trigger::Retry) && s.last_outcome == Some(LoadOutcome::Unchanged)
        })
        .await;
    assert_eq!(s.last_load_error, None);
    w.write(APP1, &with_psws_port(&w.read(APP1), 7102));
    let d = w.desired("generation 2", |d| d.generation == 2).await;
    assert_eq!(psws_port(&d), 7102);
    w.stop().await;
}
