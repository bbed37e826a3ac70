//! The PatientSecure SQL Server database, spoken to over TDS (tiberius).
//!
//! - [`DatabaseConfig`]: where the server is, the installer login, TLS trust, the service
//!   login and every timeout.
//! - [`Connection`] and [`Pool`]: TLS-verified connections (unless `encrypt: false`) with
//!   bounded connect, login and command time; the pool tests each idle connection with
//!   `SELECT 1` before handing it out, so it recovers on its own after a server restart.
//! - [`verify()`]: the server's version and every [`Missing`] piece of the vendor's setup.
//! - [`provision`]: the idempotent T-SQL that creates what is missing (`create: true`), and
//!   the same statements as a script for a DBA (`steward db script`).
//!
//! Failures are an [`Error`] with a bounded [`Error::label`]; no error, `Debug` output or
//! generated statement ever contains a password.

mod config;
mod connection;
mod error;
pub mod grants;
mod pool;
pub mod provision;
pub mod tsql;
mod verify;

pub use config::{
    default_service_login, DatabaseConfig, Password, ServerName, ServiceLogin, Timeouts,
    DEFAULT_PORT,
};
pub use connection::Connection;
pub use error::{Error, Stage};
pub use pool::{Pool, Pooled};
pub use verify::{server_version, verify, Missing, ServerVersion, Verification};
