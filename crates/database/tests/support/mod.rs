//! A real TDS server for the tests: iridium_server, started on loopback per test.
//!
//! scripts/test-all.sh installs it into `target/peers/bin` (or set `IRIDIUM_SERVER`). When it
//! is missing a test fails with CI=true and otherwise prints SKIPPED and passes.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use steward_database::{DatabaseConfig, Password};

pub const USER: &str = "sa";
pub const PASSWORD: &str = "Iridium-Test-Pw1!";

pub struct Iridium {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
}

/// The iridium-server binary, or `None` after printing why the test is skipped.
pub fn binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("IRIDIUM_SERVER").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/peers/bin/iridium-server"
        ))),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    let reason =
        "iridium-server is not installed (scripts/test-all.sh installs it into target/peers)";
    steward_testkit::skip(reason);
    None
}

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
        Self::start_with(vec!["--no-tls".into()])
    }

    /// Starts with extra flags (`--no-tls`, or `--tls-cert F --tls-key F`).
    pub fn start_with(extra: Vec<String>) -> Option<Self> {
        let mut server = Self {
            binary: binary()?,
            child: None,
            port: free_port(),
            extra,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--user", USER, "--password", PASSWORD, "--memory"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iridium-server");
        self.child = Some(child);
        self.wait_until_accepting();
    }

    /// Polls until the port accepts TCP (iridium starts in well under a second).
    pub fn wait_until_accepting(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let what = format!("iridium to listen on {addr}");
        steward_testkit::eventually(
            &what,
            Duration::from_secs(30),
            Duration::from_millis(10),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
    }

    /// Kills the server and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
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

impl Drop for Iridium {
    fn drop(&mut self) {
        self.stop();
    }
}
