//! One module per subcommand. Each `run` returns the process exit code.

pub mod agent;
pub mod backup;
pub mod ca;
pub mod console;
pub mod daemon_client;
pub mod db;
pub mod lab;
pub mod lab_service;
pub mod notify;
pub mod plan;
pub mod restore;
pub mod run;
pub mod schema;
pub mod sim;
pub mod status;
pub mod upgrade;
pub mod validate;

use std::path::PathBuf;

/// Where desired state is read from when no directory is given.
pub const DEFAULT_DESIRED_STATE: &str = "desired-state";

pub fn desired_state_dir(dir: &Option<PathBuf>) -> PathBuf {
    dir.clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DESIRED_STATE))
}
