//! The simulated fleet (`steward sim`): N steward agents in one process, each on its own
//! loopback address, serving the real agent API (router, mutual TLS, limits) over a
//! [`SimDriver`] instead of the process driver. Installs, uninstalls, restarts and
//! certificate installs change in-memory records and open or close real listeners that
//! serve the catalog's health surface (the lab service's code, in-process), so the
//! daemon's controllers and prober run exactly their production code against it.
//!
//! Faults are injected per server through a small plain-HTTP control API on the server's
//! own address ([`control`]): fail a service's health test, kill a service, make the agent
//! unreachable or slow, fail a share of installs.

pub mod control;
mod driver;
mod error;
mod faults;
mod fleet;
pub mod generate;
mod servers;

pub use driver::SimDriver;
pub use error::SimError;
pub use faults::Faults;
pub use fleet::{SimConfig, SimFleet};
pub use servers::{sim_servers, SimServer};
