//! Shared by the watcher's integration tests: a watched copy of the bundled desired state
//! and waits that poll for an expected state (never for a duration).
#![allow(dead_code)] // each test binary uses part of it

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use steward_testkit::copy_dir;

use steward_model::ServiceKind;
use steward_watch::{watch, DesiredState, WatchConfig, WatchHandle, WatchStatus};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../desired-state");
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const APP1: &str = "servers/app1.yaml";

pub struct Watched {
    _tmp: TempDir,
    pub dir: PathBuf,
    pub handle: WatchHandle,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Watched {
    /// A copy of the bundled desired state, watched, with generation 1 loaded.
    pub async fn start(config: WatchConfig) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("desired-state");
        copy_dir(Path::new(FIXTURE), &dir);
        Self::start_in(tmp, dir, config).await
    }

    pub async fn start_in(tmp: TempDir, dir: PathBuf, config: WatchConfig) -> Self {
        let shutdown = CancellationToken::new();
        let (handle, task) = watch(dir.clone(), config, shutdown.clone()).unwrap();
        let w = Self {
            _tmp: tmp,
            dir,
            handle,
            shutdown,
            task: Some(task),
        };
        w.desired("generation 1", |d| d.generation == 1).await;
        w
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dir.join(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.dir.join(rel), text).unwrap();
    }

    pub async fn status(
        &self,
        what: &str,
        mut pred: impl FnMut(&WatchStatus) -> bool,
    ) -> WatchStatus {
        let mut rx = self.handle.status();
        let got = match tokio::time::timeout(PATIENCE, rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        got.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; status: {:#?}",
                self.handle.current_status()
            )
        })
    }

    pub async fn desired(
        &self,
        what: &str,
        mut pred: impl FnMut(&DesiredState) -> bool,
    ) -> DesiredState {
        let mut rx = self.handle.desired();
        let waited =
            tokio::time::timeout(PATIENCE, rx.wait_for(|d| d.as_ref().is_some_and(&mut pred)));
        let got = match waited.await {
            Ok(Ok(d)) => d.clone(),
            _ => None,
        };
        got.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; status: {:#?}",
                self.handle.current_status()
            )
        })
    }

    pub fn generation(&self) -> u64 {
        self.handle.current().map_or(0, |d| d.generation)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the watch task stops on shutdown")
            .unwrap();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn psws_port(d: &DesiredState) -> u16 {
    d.snapshot.servers["app1"]
        .service(ServiceKind::Psws)
        .unwrap()
        .ports[0]
}

pub fn with_psws_port(app1: &str, port: u16) -> String {
    app1.replace("- kind: PSWS", &format!("- kind: PSWS\n      port: {port}"))
}

/// Watch `dir` (which may not exist, or be invalid) with the default settings and wait for
/// its first load, whatever the verdict: the handle, the watcher's task, its shutdown and
/// the status after that load.
pub async fn first_load(
    dir: &Path,
) -> (WatchHandle, JoinHandle<()>, CancellationToken, WatchStatus) {
    let shutdown = CancellationToken::new();
    let (handle, task) = watch(dir.to_owned(), WatchConfig::default(), shutdown.clone()).unwrap();
    let mut status = handle.status();
    let s = tokio::time::timeout(PATIENCE, status.wait_for(|s| s.attempts >= 1))
        .await
        .expect("the first load")
        .unwrap()
        .clone();
    (handle, task, shutdown, s)
}
