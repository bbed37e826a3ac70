//! The `process` driver: each service is a child process of the agent, started as
//! `{program} lab-service --kind KIND --bind IP --port P... --cert F --key F
//! --connection-strings F --release R`, with stdout and stderr appended to its log file
//! and a minimal environment (never the agent's whole one).
//!
//! Services run in their own process group so that a Ctrl-C aimed at the agent, or the
//! agent exiting, does not take them down: after a restart the agent re-adopts them
//! instead of starting duplicates.
//!
//! A service that exits with an error (a non-zero code) is started again by its
//! supervisor, with a short capped backoff (`restart.rs`), and the cause is kept as its
//! last failure (`failure.rs`). One that is stopped or killed from outside (a signal), or
//! exits cleanly, is left alone: the daemon's controller sees it stopped, records the
//! drift and restarts it through the API.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::Serialize;
use steward_model::ServiceKind;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::environment::minimal_environment;
use super::failure::{self, ServiceSite};
use super::restart::RestartBackoff;
use super::{procfs, Driver, RunHandle, RunStatus, ServiceDefinition};
use crate::api::{ConnectionStrings, LastFailure, RemnantCleanup, RemnantFailure};
use crate::error::DriverError;
use crate::layout::Layout;

/// A service log is rotated (once, to `service.log.1`) when it grows past this at start.
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// How often a re-adopted process (not our child, so no exit notification) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
const KILL_WAIT: Duration = Duration::from_secs(5);
/// In lab mode privileged ports are shifted by this, since the lab runs as a normal user.
const LAB_PORT_OFFSET: u16 = 10_000;

/// How the process driver runs services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// The service executable; `None` means the agent's own executable (`steward`).
    pub program: Option<PathBuf>,
    /// Lab mode: ports below 1024 are served on 10000 + port (ADMIN's 443/80 -> 10443/10080).
    pub lab: bool,
    /// The address services bind; `None` means the agent's listen address.
    pub bind: Option<IpAddr>,
    /// How long a service gets between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Stop the services when the agent shuts down (instead of leaving them to re-adopt).
    pub stop_services_on_exit: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            program: None,
            lab: false,
            bind: None,
            stop_timeout: Duration::from_secs(10),
            stop_services_on_exit: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
}

/// One start of a service (by the API) and the restarts its supervisor made since.
struct Supervised {
    /// Tells this supervision from a later one: a supervisor whose generation was
    /// replaced (a new start, an uninstall) must not start anything any more.
    generation: u64,
    /// The current instance: the pid changes when the supervisor restarts it.
    handle: RunHandle,
    /// `Some` while the current instance has exited (and not been replaced yet).
    exit: watch::Receiver<Option<Exit>>,
    watcher: JoinHandle<()>,
    adopted: bool,
    /// Stopped on purpose: the supervisor must not start it again.
    stopping: bool,
}

impl Supervised {
    fn running(&self) -> bool {
        self.exit.borrow().is_none()
            && (!self.adopted || procfs::runs(self.handle.pid, &self.handle.argv))
    }
}

/// What a supervisor needs to start its service again.
#[derive(Clone)]
struct Launch {
    program: PathBuf,
    argv: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> Result<tokio::process::Child, DriverError> {
        fs::create_dir_all(&self.dir).map_err(|e| DriverError::io(&self.dir, e))?;
        let log = open_log(&self.log)?;
        let log_err = log.try_clone().map_err(|e| DriverError::io(&self.log, e))?;
        note_in(&self.log, &format!("starting: {}", self.argv.join(" ")));
        tokio::process::Command::new(&self.program)
            .args(&self.argv[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(minimal_environment())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|source| {
                let err = DriverError::Spawn {
                    program: self.program.to_string_lossy().into_owned(),
                    source,
                };
                note_in(&self.log, &err.to_string());
                err
            })
    }
}

/// The driver's state, shared with the supervisor tasks.
struct Shared {
    procs: Mutex<HashMap<ServiceKind, Supervised>>,
    failures: Mutex<HashMap<ServiceKind, LastFailure>>,
    generations: AtomicU64,
}

impl Shared {
    fn procs(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceKind, Supervised>> {
        // A panic while holding this lock leaves the map consistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceKind, LastFailure>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start `kind` again for the supervisor of `generation`, unless it was stopped or
    /// superseded meanwhile (checked and done under the lock, so a stop or a new start
    /// cannot race with it).
    fn respawn(
        &self,
        kind: ServiceKind,
        generation: u64,
        launch: &Launch,
        exit: &watch::Sender<Option<Exit>>,
    ) -> Respawn {
        let mut procs = self.procs();
        let Some(entry) = procs.get_mut(&kind) else {
            return Respawn::Cancelled;
        };
        if entry.generation != generation || entry.stopping {
            return Respawn::Cancelled;
        }
        match launch.spawn() {
            Ok(child) => match child.id() {
                Some(pid) => {
                    entry.handle.pid = pid;
                    exit.send_replace(None);
                    tracing::info!(service = %kind, pid, "service restarted by the agent");
                    Respawn::Started(child)
                }
                None => Respawn::Failed("the service exited at once".to_owned()),
            },
            Err(e) => Respawn::Failed(e.to_string()),
        }
    }
}

enum Respawn {
    Started(tokio::process::Child),
    Failed(String),
    Cancelled,
}

pub struct ProcessDriver {
    program: PathBuf,
    lab: bool,
    bind: IpAddr,
    stop_timeout: Duration,
    layout: Layout,
    shared: Arc<Shared>,
}

impl ProcessDriver {
    /// `default_bind` is used when the config names no bind address.
    pub fn new(
        config: &DriverConfig,
        layout: Layout,
        default_bind: IpAddr,
    ) -> Result<Self, DriverError> {
        let program = match &config.program {
            Some(p) => p.clone(),
            None => {
                std::env::current_exe().map_err(|e| DriverError::io("current executable", e))?
            }
        };
        Ok(Self {
            program,
            lab: config.lab,
            bind: config.bind.unwrap_or(default_bind),
            stop_timeout: config.stop_timeout,
            layout,
            shared: Arc::new(Shared {
                procs: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                generations: AtomicU64::new(0),
            }),
        })
    }

    pub fn bind_address(&self) -> IpAddr {
        self.bind
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceKind, Supervised>> {
        self.shared.procs()
    }

    fn argv(&self, def: &ServiceDefinition) -> Vec<String> {
        let mut argv = vec![
            self.program.to_string_lossy().into_owned(),
            "lab-service".into(),
            "--kind".into(),
            def.kind.as_str().into(),
            "--bind".into(),
            self.bind.to_string(),
        ];
        for port in self.listen_ports(&def.ports) {
            argv.push("--port".into());
            argv.push(port.to_string());
        }
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        argv.extend([
            "--cert".into(),
            path(self.layout.server_cert()),
            "--key".into(),
            path(self.layout.server_key()),
            "--connection-strings".into(),
            path(self.layout.connection_strings_file(def.kind)),
            "--release".into(),
            def.release.clone(),
        ]);
        argv
    }

    fn launch(&self, def: &ServiceDefinition) -> Launch {
        Launch {
            program: self.program.clone(),
            argv: self.argv(def),
            dir: self.layout.service_dir(def.kind),
            log: self.layout.log_file(def.kind),
        }
    }

    fn site(&self, def: &ServiceDefinition) -> ServiceSite {
        ServiceSite {
            bind: self.bind,
            listen_ports: self.listen_ports(&def.ports),
            log: self.layout.log_file(def.kind),
        }
    }

    /// Agent lines in the service log make it double as the install log.
    fn note(&self, kind: ServiceKind, message: &str) {
        note_in(&self.layout.log_file(kind), message);
    }

    fn next_generation(&self) -> u64 {
        self.shared.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn supervise_adopted(&self, kind: ServiceKind, handle: RunHandle) {
        let (tx, rx) = watch::channel(None);
        let log = self.layout.log_file(kind);
        let (pid, argv) = (handle.pid, handle.argv.clone());
        let watcher = tokio::spawn(async move {
            while procfs::runs(pid, &argv) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            note_in(
                &log,
                &format!("process {pid} is gone (exit status unknown: it was re-adopted)"),
            );
            let _ = tx.send(Some(Exit {
                code: None,
                signal: None,
            }));
        });
        let generation = self.next_generation();
        self.replace(
            kind,
            Supervised {
                generation,
                handle,
                exit: rx,
                watcher,
                adopted: true,
                stopping: false,
            },
        );
    }

    fn replace(&self, kind: ServiceKind, supervised: Supervised) {
        if let Some(old) = self.procs().insert(kind, supervised) {
            old.watcher.abort();
        }
    }

    /// Mark `kind` as stopped on purpose; the running instance's pid and exit receiver,
    /// if it runs.
    fn halt(&self, kind: ServiceKind) -> Option<(RunHandle, watch::Receiver<Option<Exit>>, bool)> {
        let mut procs = self.procs();
        let s = procs.get_mut(&kind)?;
        s.stopping = true;
        s.running()
            .then(|| (s.handle.clone(), s.exit.clone(), s.adopted))
    }

    fn running_handle(&self, kind: ServiceKind) -> Option<RunHandle> {
        let procs = self.procs();
        let s = procs.get(&kind)?;
        s.running().then(|| s.handle.clone())
    }

    async fn wait_exit(
        rx: &mut watch::Receiver<Option<Exit>>,
        handle: &RunHandle,
        adopted: bool,
        limit: Duration,
    ) -> bool {
        let exited = async {
            loop {
                if rx.borrow().is_some() || (adopted && !procfs::runs(handle.pid, &handle.argv)) {
                    return;
                }
                // The adopted watcher polls; re-check at the same pace for an early exit.
                if tokio::time::timeout(ADOPTED_POLL, rx.changed())
                    .await
                    .is_ok_and(|r| r.is_err())
                {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, exited).await.is_ok()
    }
}

/// Wait for the service's instances one after another: note each exit, explain the
/// failed ones, and start the service again after a failure until it is stopped or
/// superseded.
async fn supervise(
    shared: Arc<Shared>,
    kind: ServiceKind,
    generation: u64,
    launch: Launch,
    site: ServiceSite,
    mut child: tokio::process::Child,
    tx: watch::Sender<Option<Exit>>,
) {
    let mut backoff = RestartBackoff::default();
    loop {
        let started = Instant::now();
        let exit = match child.wait().await {
            Ok(status) => Exit {
                code: status.code(),
                signal: status.signal(),
            },
            Err(_) => Exit {
                code: None,
                signal: None,
            },
        };
        note_in(&launch.log, &describe_exit(exit));
        let failed_code = exit.code.filter(|c| *c != 0);
        if let Some(code) = failed_code {
            let site = site.clone();
            let failure = tokio::task::spawn_blocking(move || failure::diagnose(&site, code))
                .await
                .unwrap_or_else(|_| failure::start_failed(format!("exited with code {code}")));
            note_in(&launch.log, &failure.message);
            tracing::warn!(service = %kind, reason = failure.reason.as_str(), "{}", failure.message);
            shared.failures().insert(kind, failure);
        }
        let _ = tx.send(Some(exit));
        if failed_code.is_none() {
            return;
        }
        let mut ran_for = Some(started.elapsed());
        child = loop {
            let delay = backoff.delay(ran_for.take());
            note_in(
                &launch.log,
                &format!("starting again in {:.1} s", delay.as_secs_f64()),
            );
            tokio::time::sleep(delay).await;
            match shared.respawn(kind, generation, &launch, &tx) {
                Respawn::Started(child) => break child,
                Respawn::Cancelled => return,
                Respawn::Failed(message) => {
                    shared
                        .failures()
                        .insert(kind, failure::start_failed(message));
                }
            }
        };
    }
}

fn open_log(path: &Path) -> Result<File, DriverError> {
    if fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| DriverError::io(path, e))
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn listen_ports(&self, declared: &[u16]) -> Vec<u16> {
        declared
            .iter()
            .map(|&p| {
                if self.lab && p < 1024 {
                    p + LAB_PORT_OFFSET
                } else {
                    p
                }
            })
            .collect()
    }

    async fn install(&self, def: &ServiceDefinition) -> Result<(), DriverError> {
        let dir = self.layout.service_dir(def.kind);
        fs::create_dir_all(&dir).map_err(|e| DriverError::io(&dir, e))?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Manifest<'a> {
            kind: ServiceKind,
            release: &'a str,
            drive: &'a str,
            ports: &'a [u16],
            listen_ports: Vec<u16>,
            #[serde(with = "time::serde::rfc3339")]
            installed_at: OffsetDateTime,
        }
        let manifest = Manifest {
            kind: def.kind,
            release: &def.release,
            drive: &def.drive,
            ports: &def.ports,
            listen_ports: self.listen_ports(&def.ports),
            installed_at: OffsetDateTime::now_utc(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let path = self.layout.manifest_file(def.kind);
        write_replacing(&path, &json)?;
        // A new installation starts without the old one's failure.
        self.shared.failures().remove(&def.kind);
        self.note(
            def.kind,
            &format!(
                "installed release {} on drive {} with ports {:?}",
                def.release, def.drive, def.ports
            ),
        );
        Ok(())
    }

    async fn configure(
        &self,
        kind: ServiceKind,
        strings: &ConnectionStrings,
    ) -> Result<(), DriverError> {
        let dir = self.layout.service_dir(kind);
        fs::create_dir_all(&dir).map_err(|e| DriverError::io(&dir, e))?;
        let json = serde_json::to_vec_pretty(strings).expect("connection strings serialize");
        write_replacing(&self.layout.connection_strings_file(kind), &json)
    }

    async fn start(&self, def: &ServiceDefinition) -> Result<RunHandle, DriverError> {
        let launch = self.launch(def);
        let generation = self.next_generation();
        let (tx, rx) = watch::channel(None);
        // Checked and spawned under the lock: a supervisor restarting an older
        // generation at this moment cannot start a second instance beside this one.
        let handle = {
            let mut procs = self.procs();
            if let Some(s) = procs.get(&def.kind).filter(|s| s.running()) {
                return Ok(s.handle.clone());
            }
            let child = match launch.spawn() {
                Ok(child) => child,
                Err(e) => {
                    self.shared
                        .failures()
                        .insert(def.kind, failure::start_failed(e.to_string()));
                    return Err(e);
                }
            };
            let pid = child.id().ok_or_else(|| {
                DriverError::io(&self.program, std::io::Error::other("exited at once"))
            })?;
            let handle = RunHandle {
                pid,
                argv: launch.argv.clone(),
            };
            let watcher = tokio::spawn(supervise(
                self.shared.clone(),
                def.kind,
                generation,
                launch,
                self.site(def),
                child,
                tx,
            ));
            // The old supervision (if any) ends here; its generation no longer matches.
            let supervised = Supervised {
                generation,
                handle: handle.clone(),
                exit: rx,
                watcher,
                adopted: false,
                stopping: false,
            };
            if let Some(old) = procs.insert(def.kind, supervised) {
                old.watcher.abort();
            }
            handle
        };
        tracing::info!(service = %def.kind, pid = handle.pid, "service started");
        Ok(handle)
    }

    async fn adopt(&self, def: &ServiceDefinition, handle: &RunHandle) -> bool {
        if let Some(current) = self.running_handle(def.kind) {
            return current == *handle;
        }
        let pid = if procfs::runs(handle.pid, &handle.argv) {
            handle.pid
        } else {
            // Restarted by our supervisor under a pid the state file never saw (the agent
            // died soon after): the same command line is the same service.
            match procfs::find_running(&handle.argv) {
                Some(pid) => pid,
                None => return false,
            }
        };
        let handle = RunHandle {
            pid,
            argv: handle.argv.clone(),
        };
        self.supervise_adopted(def.kind, handle);
        self.note(def.kind, &format!("re-adopted running process {pid}"));
        tracing::info!(service = %def.kind, pid, "re-adopted running service");
        true
    }

    async fn stop(&self, kind: ServiceKind) -> Result<(), DriverError> {
        let Some((handle, mut rx, adopted)) = self.halt(kind) else {
            return Ok(());
        };
        self.note(kind, &format!("stopping process {}", handle.pid));
        signal_group(handle.pid, Signal::TERM)?;
        if Self::wait_exit(&mut rx, &handle, adopted, self.stop_timeout).await {
            return Ok(());
        }
        self.note(
            kind,
            &format!("process {} ignored SIGTERM; killing it", handle.pid),
        );
        signal_group(handle.pid, Signal::KILL)?;
        if Self::wait_exit(&mut rx, &handle, adopted, KILL_WAIT).await {
            Ok(())
        } else {
            Err(DriverError::Unkillable { pid: handle.pid })
        }
    }

    async fn reload(&self, kind: ServiceKind) -> Result<bool, DriverError> {
        let Some(handle) = self.running_handle(kind) else {
            return Ok(false);
        };
        // Only the service itself: its own children may not expect SIGHUP.
        let pid = raw_pid(handle.pid)?;
        match kill_process(pid, Signal::HUP) {
            Ok(()) => {
                self.note(kind, "told to reload (SIGHUP)");
                Ok(true)
            }
            Err(rustix::io::Errno::SRCH) => Ok(false),
            Err(e) => Err(DriverError::Signal {
                pid: handle.pid,
                source: e.into(),
            }),
        }
    }

    async fn status(&self, kind: ServiceKind) -> RunStatus {
        let procs = self.procs();
        let Some(s) = procs.get(&kind) else {
            return RunStatus::NotStarted;
        };
        if s.running() {
            return RunStatus::Running { pid: s.handle.pid };
        }
        let exit = (*s.exit.borrow()).unwrap_or(Exit {
            code: None,
            signal: None,
        });
        RunStatus::Exited {
            code: exit.code,
            signal: exit.signal,
        }
    }

    fn last_failure(&self, kind: ServiceKind) -> Option<LastFailure> {
        self.shared.failures().get(&kind).cloned()
    }

    async fn uninstall(&self, kind: ServiceKind) -> Result<(), DriverError> {
        self.stop(kind).await?;
        if let Some(old) = self.procs().remove(&kind) {
            old.watcher.abort();
        }
        self.shared.failures().remove(&kind);
        let dir = self.layout.service_dir(kind);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DriverError::Remove { path: dir, source }),
        }
    }

    fn install_path(&self, kind: ServiceKind) -> PathBuf {
        self.layout.service_dir(kind)
    }

    async fn logs(
        &self,
        kind: ServiceKind,
        tail_bytes: u64,
    ) -> Result<(String, bool), DriverError> {
        let path = self.layout.log_file(kind);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((String::new(), false))
            }
            Err(e) => return Err(DriverError::io(path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| DriverError::io(&path, e))?
            .len();
        let start = len.saturating_sub(tail_bytes);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| DriverError::io(&path, e))?;
        let mut bytes = Vec::new();
        file.take(tail_bytes)
            .read_to_end(&mut bytes)
            .map_err(|e| DriverError::io(&path, e))?;
        let truncated = start > 0;
        if truncated {
            // Drop the partial first line.
            if let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
                bytes.drain(..=nl);
            }
        }
        Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
    }

    async fn cleanup_remnants(&self, installed: &[ServiceKind]) -> RemnantCleanup {
        let mut report = RemnantCleanup::default();
        let dir = self.layout.services_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return report;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owned = name
                .parse::<ServiceKind>()
                .is_ok_and(|kind| installed.contains(&kind));
            if owned {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            let shown = path.to_string_lossy().into_owned();
            match removed {
                Ok(()) => report.removed.push(shown),
                Err(e) => report.failed.push(RemnantFailure {
                    path: shown,
                    error: e.to_string(),
                }),
            }
        }
        report.removed.sort();
        report
    }

    async fn detach(&self, stop_services: bool) {
        for s in self.procs().values_mut() {
            s.stopping = true;
        }
        if stop_services {
            let kinds: Vec<ServiceKind> = self.procs().keys().copied().collect();
            for kind in kinds {
                if let Err(e) = self.stop(kind).await {
                    tracing::warn!(service = %kind, error = %e, "could not stop service");
                }
            }
        }
        for (_, s) in self.procs().drain() {
            s.watcher.abort();
        }
    }
}

fn raw_pid(pid: u32) -> Result<Pid, DriverError> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| DriverError::Signal {
            pid,
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })
}

/// Signal the service's process group (it leads one), so helpers it spawned go too.
fn signal_group(pid: u32, signal: Signal) -> Result<(), DriverError> {
    let raw = raw_pid(pid)?;
    let result = match kill_process_group(raw, signal) {
        // No such group: a process that left its group; signal it alone.
        Err(rustix::io::Errno::SRCH) => kill_process(raw, signal),
        other => other,
    };
    match result {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(DriverError::Signal {
            pid,
            source: e.into(),
        }),
    }
}

fn describe_exit(exit: Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("process exited with code {code}"),
        (None, Some(signal)) => format!("process killed by signal {signal}"),
        (None, None) => "process exited".to_owned(),
    }
}

fn note_in(log: &Path, message: &str) {
    let stamp = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "[steward-agent {stamp}] {message}");
    }
}

fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), DriverError> {
    steward_pki::replace_private_file(path, contents).map_err(|e| match e {
        steward_pki::PkiError::Io { path, source } => DriverError::Io { path, source },
        other => DriverError::io(path, std::io::Error::other(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(lab: bool) -> ProcessDriver {
        let config = DriverConfig {
            program: Some("/bin/true".into()),
            lab,
            ..DriverConfig::default()
        };
        ProcessDriver::new(&config, Layout::new("/tmp/x"), "127.0.0.2".parse().unwrap()).unwrap()
    }

    #[test]
    fn lab_maps_privileged_ports() {
        assert_eq!(
            driver(true).listen_ports(&[443, 80, 7001]),
            [10443, 10080, 7001]
        );
        assert_eq!(driver(false).listen_ports(&[443, 80]), [443, 80]);
    }

    #[test]
    fn command_line_follows_the_lab_service_contract() {
        let d = driver(true);
        let argv = d.argv(&ServiceDefinition {
            kind: ServiceKind::Emergency,
            ports: vec![7005, 7006],
            drive: "C:".into(),
            release: "6.12.1".into(),
        });
        assert_eq!(
            argv.join(" "),
            "/bin/true lab-service --kind EMERGENCY --bind 127.0.0.2 --port 7005 --port 7006 \
             --cert /tmp/x/tls/server.pem --key /tmp/x/tls/server.key \
             --connection-strings /tmp/x/services/EMERGENCY/connection-strings.json --release 6.12.1"
        );
    }
}
