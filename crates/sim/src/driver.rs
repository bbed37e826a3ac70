//! The `sim` driver: services are in-memory records; a started service is the lab
//! service's listeners (HTTPS health surface, ADMIN's redirect, HL7's MLLP), served as a
//! task of this process on the server's loopback address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use steward_agent::api::{ConnectionStrings, RemnantCleanup};
use steward_agent::{Driver, DriverError, Layout, RunHandle, RunStatus, ServiceDefinition};
use steward_lab::{LabService, LabServiceArgs, ReloadingCert};
use steward_model::ServiceKind;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::faults::Faults;

/// Ports below this are mapped to 10000 + port, as in the lab (no privileges needed).
const PRIVILEGED: u16 = 1024;
const SIGKILL: i32 = 9;

/// Fake pids, unique in the process, so the agent's records look like a real agent's.
static NEXT_PID: AtomicU32 = AtomicU32::new(100_000);

pub struct SimDriver {
    bind: IpAddr,
    layout: Layout,
    faults: Arc<Faults>,
    services: Mutex<HashMap<ServiceKind, Slot>>,
}

struct Slot {
    run: Run,
    /// Cleared by the control API to make the health path answer 503.
    healthy: Arc<AtomicBool>,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            run: Run::NotStarted,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }
}

#[derive(Default)]
enum Run {
    #[default]
    NotStarted,
    Running(Running),
    Exited {
        signal: Option<i32>,
    },
}

struct Running {
    pid: u32,
    stop: CancellationToken,
    task: JoinHandle<()>,
    certificate: Option<Arc<ReloadingCert>>,
}

impl Running {
    async fn end(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl SimDriver {
    /// Services listen on `bind`; the agent's layout (under its state directory) holds
    /// the server certificate they serve.
    pub fn new(bind: IpAddr, layout: Layout, faults: Arc<Faults>) -> Self {
        Self {
            bind,
            layout,
            faults,
            services: Mutex::new(HashMap::new()),
        }
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn services(&self) -> MutexGuard<'_, HashMap<ServiceKind, Slot>> {
        // Every critical section leaves the map consistent, so poisoning is harmless.
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_running(&self, kind: ServiceKind, after: Run) -> Option<Running> {
        let mut services = self.services();
        let slot = services.get_mut(&kind)?;
        match std::mem::replace(&mut slot.run, after) {
            Run::Running(running) => Some(running),
            other => {
                slot.run = other;
                None
            }
        }
    }

    /// Kill a running service as SIGKILL would: its listeners close at once and the
    /// agent reports it exited on a signal. False if it was not running.
    pub async fn kill(&self, kind: ServiceKind) -> bool {
        match self.take_running(
            kind,
            Run::Exited {
                signal: Some(SIGKILL),
            },
        ) {
            Some(running) => {
                // Closing the listeners and connections is what a killed process's
                // peers see; the graceful drain is immediate for idle connections.
                running.end().await;
                tracing::info!(service = %kind, "sim: service killed");
                true
            }
            None => false,
        }
    }

    /// Make a service pass (`true`) or fail its health test. False if not installed.
    pub fn set_healthy(&self, kind: ServiceKind, healthy: bool) -> bool {
        match self.services().get(&kind) {
            Some(slot) => {
                slot.healthy.store(healthy, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Each installed service, whether it runs and whether its health path passes.
    pub fn overview(&self) -> Vec<(ServiceKind, bool, bool)> {
        let mut out: Vec<_> = self
            .services()
            .iter()
            .map(|(kind, slot)| {
                (
                    *kind,
                    matches!(slot.run, Run::Running(_)),
                    slot.healthy.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort_by_key(|(kind, ..)| *kind);
        out
    }

    async fn serve(&self, def: &ServiceDefinition) -> Result<Running, DriverError> {
        let args = LabServiceArgs {
            kind: def.kind,
            bind: self.bind,
            ports: self.listen_ports(&def.ports),
            cert: Some(self.layout.server_cert()),
            key: Some(self.layout.server_key()),
            connection_strings: None,
            release: Some(def.release.clone()),
        };
        let healthy = self.services().entry(def.kind).or_default().healthy.clone();
        let service = LabService::bind_unwatched(args)
            .await
            .map_err(|e| DriverError::Spawn {
                program: format!("sim {}", def.kind),
                source: std::io::Error::other(e.to_string()),
            })?
            .with_health(healthy);
        let certificate = service.certificate();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = service.serve(stop.cancelled_owned()).await {
                    tracing::warn!(error = %e, "sim service stopped");
                }
            }
        });
        Ok(Running {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            stop,
            task,
            certificate,
        })
    }
}

fn handle(kind: ServiceKind, pid: u32) -> RunHandle {
    RunHandle {
        pid,
        argv: vec!["steward-sim".into(), kind.as_str().into()],
    }
}

#[async_trait::async_trait]
impl Driver for SimDriver {
    fn listen_ports(&self, declared: &[u16]) -> Vec<u16> {
        declared
            .iter()
            .map(|&p| if p < PRIVILEGED { 10_000 + p } else { p })
            .collect()
    }

    async fn install(&self, def: &ServiceDefinition) -> Result<(), DriverError> {
        self.faults.delay().await;
        if self.faults.install_fails() {
            return Err(DriverError::Spawn {
                program: format!("installer of {}", def.kind),
                source: std::io::Error::other("simulated install failure"),
            });
        }
        self.services().entry(def.kind).or_default();
        Ok(())
    }

    async fn configure(&self, _: ServiceKind, _: &ConnectionStrings) -> Result<(), DriverError> {
        Ok(())
    }

    async fn start(&self, def: &ServiceDefinition) -> Result<RunHandle, DriverError> {
        self.faults.delay().await;
        if let Some(Run::Running(running)) = self.services().get(&def.kind).map(|s| &s.run) {
            return Ok(handle(def.kind, running.pid));
        }
        let running = self.serve(def).await?;
        let pid = running.pid;
        let previous = std::mem::replace(
            &mut self.services().entry(def.kind).or_default().run,
            Run::Running(running),
        );
        // Two starts raced: keep the newer, stop the older.
        if let Run::Running(older) = previous {
            older.end().await;
        }
        Ok(handle(def.kind, pid))
    }

    async fn adopt(&self, _: &ServiceDefinition, handle: &RunHandle) -> bool {
        // The agent was restarted in this process (made unreachable and back): its
        // services kept running here.
        self.services()
            .values()
            .any(|slot| matches!(&slot.run, Run::Running(r) if r.pid == handle.pid))
    }

    async fn stop(&self, kind: ServiceKind) -> Result<(), DriverError> {
        self.faults.delay().await;
        if let Some(running) = self.take_running(kind, Run::Exited { signal: None }) {
            running.end().await;
        }
        Ok(())
    }

    async fn reload(&self, kind: ServiceKind) -> Result<bool, DriverError> {
        let certificate = match self.services().get(&kind).map(|s| &s.run) {
            Some(Run::Running(running)) => running.certificate.clone(),
            _ => return Ok(false),
        };
        if let Some(certificate) = certificate {
            certificate.reload();
        }
        Ok(true)
    }

    async fn status(&self, kind: ServiceKind) -> RunStatus {
        self.faults.delay().await;
        match self.services().get(&kind).map(|s| &s.run) {
            Some(Run::Running(running)) => RunStatus::Running { pid: running.pid },
            Some(Run::Exited { signal }) => RunStatus::Exited {
                code: None,
                signal: *signal,
            },
            _ => RunStatus::NotStarted,
        }
    }

    async fn uninstall(&self, kind: ServiceKind) -> Result<(), DriverError> {
        self.stop(kind).await?;
        self.services().remove(&kind);
        Ok(())
    }

    fn install_path(&self, kind: ServiceKind) -> PathBuf {
        self.layout.service_dir(kind)
    }

    async fn logs(&self, _: ServiceKind, _: u64) -> Result<(String, bool), DriverError> {
        Ok((String::new(), false))
    }

    async fn cleanup_remnants(&self, _: &[ServiceKind]) -> RemnantCleanup {
        RemnantCleanup::default()
    }

    async fn detach(&self, stop_services: bool) {
        if !stop_services {
            return;
        }
        let running: Vec<Running> = self
            .services()
            .values_mut()
            .filter_map(|slot| match std::mem::take(&mut slot.run) {
                Run::Running(r) => Some(r),
                _ => None,
            })
            .collect();
        for r in running {
            r.end().await;
        }
    }
}

#[cfg(test)]
mod tests;
