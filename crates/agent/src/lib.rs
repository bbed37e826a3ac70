//! The steward agent runs on every PatientSecure application server. It serves a JSON API
//! over mutual TLS (only holders of a steward-CA client certificate get in) through which
//! the daemon installs, uninstalls, restarts and inspects services, installs the server's
//! TLS certificate and pushes connection strings. It persists what it installed and
//! re-adopts running services after a restart. It never restarts a dead service on its
//! own: the daemon's controller notices and decides.
//!
//! [`AgentClient`] is the daemon's side of the same API.

pub mod api;
mod client;
mod config;
mod driver;
mod error;
mod host;
mod layout;
mod manager;
mod routes;
mod server;
mod state;

pub use client::{AgentClient, ClientError};
pub use config::{run, AgentArgs, AgentConfig};
pub use driver::{Driver, DriverConfig, ProcessDriver, RunHandle, RunStatus, ServiceDefinition};
pub use error::{AgentError, DriverError};
pub use layout::Layout;
pub use server::{serve, AgentServer};
