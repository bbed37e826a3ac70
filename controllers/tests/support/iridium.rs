//! A real TDS server (iridium_server) for the tests whose services must install: installs
//! wait for the database. `scripts/test-all.sh` installs it into `target/peers/bin`;
//! without it a test fails under CI=true and is otherwise skipped with a reason.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "Iridium-Fleet-Pw1!";

pub struct Iridium {
    child: Child,
    port: u16,
    password_file: PathBuf,
}

impl Iridium {
    /// Starts plain TDS on a free 127.0.0.1 port; the password goes into a file in `dir`.
    pub fn start(dir: &Path) -> Option<Self> {
        let found = std::env::var_os("IRIDIUM_SERVER")
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/peers/bin/iridium-server"
            ))])
            .find(|p| p.is_file());
        let Some(binary) = found else {
            steward_testkit::skip(
                "iridium-server is not installed (scripts/test-all.sh installs it into target/peers)",
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--user",
                "sa",
                "--password",
                PASSWORD,
                "--memory",
                "--no-tls",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iridium-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let what = format!("iridium to listen on {addr}");
        steward_testkit::eventually(
            &what,
            Duration::from_secs(30),
            Duration::from_millis(10),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
        let password_file = dir.join("db-password");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&password_file, PASSWORD).unwrap();
        Some(Self {
            child,
            port,
            password_file,
        })
    }

    /// The Installation's `database` value for it (a database iridium has).
    pub fn database_yaml(&self) -> String {
        format!(
            "{{server: 127.0.0.1, port: {}, name: iridium_sql, user: sa, passwordRef: \"file:{}\", encrypt: false}}",
            self.port,
            self.password_file.display()
        )
    }
}

impl Drop for Iridium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
