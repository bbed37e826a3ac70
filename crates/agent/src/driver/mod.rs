//! How services are actually installed and run. The agent's API and bookkeeping are
//! driver-independent; the `process` driver (lab, Linux) runs each service as a supervised
//! child process. A Windows driver (msiexec, IIS bindings, certificate store) would sit
//! behind the same trait.

mod environment;
mod failure;
mod process;
mod procfs;
mod restart;
mod sockets;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_model::ServiceKind;

use crate::api::{ConnectionStrings, LastFailure, RemnantCleanup};
use crate::error::DriverError;

pub use environment::minimal_environment;
pub use failure::EXIT_PORT_IN_USE;
pub use process::{DriverConfig, ProcessDriver};
pub(crate) use procfs::runs as procfs_runs;
pub use procfs::{cmdline as process_command_line, find_running};
pub use restart::RestartBackoff;
pub use sockets::{port_holder, PortHolder};

/// What to install: the parts of an install request that shape the running service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDefinition {
    pub kind: ServiceKind,
    /// Declared ports (the driver may map them, see [`Driver::listen_ports`]).
    pub ports: Vec<u16>,
    pub drive: String,
    pub release: String,
}

/// Identifies a started service instance well enough to find it again after the agent
/// restarts: the pid, and the command line to tell it from a recycled pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHandle {
    pub pid: u32,
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Never started by this driver instance (or forgotten).
    NotStarted,
    Running {
        pid: u32,
    },
    /// `code` is set when the process exited on its own, `signal` when a signal killed it;
    /// neither is known for a re-adopted process (it is not our child).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The ports a service declared with `declared` really listens on.
    fn listen_ports(&self, declared: &[u16]) -> Vec<u16>;

    /// Lay down (or update) the service's files. Does not start it.
    async fn install(&self, def: &ServiceDefinition) -> Result<(), DriverError>;

    /// Write the service's connection-strings configuration.
    async fn configure(
        &self,
        kind: ServiceKind,
        strings: &ConnectionStrings,
    ) -> Result<(), DriverError>;

    /// Start the service; a no-op returning the current handle if it already runs.
    async fn start(&self, def: &ServiceDefinition) -> Result<RunHandle, DriverError>;

    /// Take over supervision of an instance started before the agent restarted. False if
    /// it no longer runs (then the caller starts a new one).
    async fn adopt(&self, def: &ServiceDefinition, handle: &RunHandle) -> bool;

    /// Stop the service (gracefully, then forcibly). Not running is not an error.
    async fn stop(&self, kind: ServiceKind) -> Result<(), DriverError>;

    /// Ask a running service to re-read its certificate and configuration. Returns
    /// whether it was running (and so was told).
    async fn reload(&self, kind: ServiceKind) -> Result<bool, DriverError>;

    async fn status(&self, kind: ServiceKind) -> RunStatus;

    /// Why the service last failed (exited with an error, could not start), if it did
    /// since it was installed.
    fn last_failure(&self, _kind: ServiceKind) -> Option<LastFailure> {
        None
    }

    /// Stop the service and remove its files.
    async fn uninstall(&self, kind: ServiceKind) -> Result<(), DriverError>;

    /// Where the service's files live (reported as remnants when they cannot be removed).
    fn install_path(&self, kind: ServiceKind) -> PathBuf;

    /// The last `tail_bytes` of the service's captured output and install log, and
    /// whether there is more before it.
    async fn logs(&self, kind: ServiceKind, tail_bytes: u64)
        -> Result<(String, bool), DriverError>;

    /// Delete leftovers of services that are not in `installed`.
    async fn cleanup_remnants(&self, installed: &[ServiceKind]) -> RemnantCleanup;

    /// The agent is shutting down: stop supervising, and stop the services too if
    /// `stop_services` (otherwise they keep running and are re-adopted on restart).
    async fn detach(&self, stop_services: bool);
}
