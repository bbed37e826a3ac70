//! A real TDS (SQL Server wire protocol) server for the tests: iridium_server on a free
//! loopback port, in memory, plain TDS (iridium's TLS breaks after the handshake with
//! tiberius 0.13). `scripts/test-all.sh` installs it into `target/peers/bin` (or set
//! `IRIDIUM_SERVER`); missing, a test fails under CI and is otherwise skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The login every test server has.
pub const USER: &str = "sa";

/// The iridium-server binary, or `None` after [`crate::skip`] said why.
pub fn binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("IRIDIUM_SERVER").map(PathBuf::from),
        Some(crate::workspace_root().join("target/peers/bin/iridium-server")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    crate::skip(
        "iridium-server is not installed (scripts/test-all.sh installs it into target/peers)",
    );
    None
}

/// One running iridium_server, killed on drop.
pub struct Iridium {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// The `sa` login's password.
    pub password: &'static str,
    extra: Vec<String>,
}

impl Iridium {
    /// Plain TDS (`--no-tls`) with `sa`/`password`; `None` when the binary is missing.
    pub fn start(password: &'static str) -> Option<Self> {
        Self::start_with(password, vec!["--no-tls".into()])
    }

    /// With other flags (`--no-tls`, or `--tls-cert F --tls-key F`).
    pub fn start_with(password: &'static str, extra: Vec<String>) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self {
            binary: binary()?,
            child: None,
            port,
            password,
            extra,
        };
        server.spawn();
        Some(server)
    }

    /// Start it (again) on its port and wait until it accepts connections.
    pub fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--user", USER, "--password", self.password, "--memory"])
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
        crate::eventually(
            &what,
            Duration::from_secs(30),
            Duration::from_millis(10),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
    }

    /// Kill it and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Iridium {
    fn drop(&mut self) {
        self.stop();
    }
}
