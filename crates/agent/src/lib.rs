//! The steward agent runs on every PatientSecure application server. It serves a JSON API
//! over mutual TLS (only holders of a steward-CA client certificate get in) through which
//! the daemon installs, uninstalls, restarts and inspects services, installs the server's
//! TLS certificate and pushes connection strings. It persists what it installed and
//! re-adopts running services after a restart. A service that exits with an error is
//! started again by the agent (capped backoff) and the cause is kept as its `lastFailure`;
//! one stopped or killed from outside is left to the daemon's controller, which notices
//! and decides.
//!
//! With several steward daemons (controller HA), every change is fenced by the leader's
//! epoch (see `fencing.rs`): a paused ex-leader cannot act once its successor spoke.
//!
//! [`AgentClient`] is the daemon's side of the same API.

pub mod api;
mod client;
mod config;
mod driver;
mod error;
mod fencing;
mod host;
mod layout;
mod manager;
mod routes;
mod server;
mod state;

pub use client::{agent_https, AgentClient, ClientError, EpochSource, AGENT_POOL};
pub use config::AgentConfig;
pub use driver::{
    find_running, minimal_environment, port_holder, process_command_line, Driver, DriverConfig,
    PortHolder, ProcessDriver, RestartBackoff, RunHandle, RunStatus, ServiceDefinition,
    EXIT_PORT_IN_USE,
};
pub use error::{AgentError, DriverError};
pub use fencing::{FencingState, EPOCH_HEADER};
pub use layout::Layout;
pub use manager::{validate_connection_strings, validate_install};
pub use server::{serve, AgentServer};
pub use state::running_service;
