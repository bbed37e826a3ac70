//! A real TDS server for the tests: iridium_server, started on loopback per test.
//!
//! scripts/test-all.sh installs it into `target/peers/bin` (or set `IRIDIUM_SERVER`). When it
//! is missing a test fails with CI=true and otherwise prints SKIPPED and passes.

#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use steward_database::{Connection, DatabaseConfig, Password};

pub use steward_testkit::iridium::USER;
pub const PASSWORD: &str = "Iridium-Test-Pw1!";

/// The test kit's iridium_server with this crate's `config()` (through `Deref`).
pub struct Iridium(steward_testkit::iridium::Iridium);

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Iridium {
    /// Starts a plain-TDS (`--no-tls`) server, or returns `None` when the binary is missing.
    pub fn start() -> Option<Self> {
        steward_testkit::iridium::Iridium::start(PASSWORD).map(Self)
    }

    /// Starts with extra flags (`--no-tls`, or `--tls-cert F --tls-key F`).
    pub fn start_with(extra: Vec<String>) -> Option<Self> {
        steward_testkit::iridium::Iridium::start_with(PASSWORD, extra).map(Self)
    }

    /// A configuration for this server: plain TDS (iridium's TLS breaks after the handshake
    /// with tiberius 0.13), the `sa` login, short timeouts.
    pub fn config(&self, database: &str) -> DatabaseConfig {
        let mut c = DatabaseConfig::new("127.0.0.1", database, USER, Password::new(PASSWORD));
        c.port = Some(self.port);
        c.encrypt = false;
        c.timeouts.connect = Duration::from_secs(2);
        c.timeouts.login = Duration::from_secs(5);
        c.timeouts.command = Duration::from_secs(5);
        c
    }
}

/// A started server and a session to its `database` as `sa`; `None` when the binary is
/// missing (the test is skipped).
pub async fn connected(database: &str) -> Option<(Iridium, Connection)> {
    let server = Iridium::start()?;
    let conn = Connection::open(&server.config(database)).await.unwrap();
    Some((server, conn))
}

impl std::ops::Deref for Iridium {
    type Target = steward_testkit::iridium::Iridium;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Iridium {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
